//! The zones `weft dns` serves, written as RFC 1035 master files: the cluster domain's, and one
//! per reverse zone of the cluster's ranges (`weft dns --print-zone`). What the cluster DNS
//! answers, for a reader, and the same records for another DNS server to load: the DNS
//! benchmark serves them from Knot, NSD and Unbound to compare them with weft on equal data.
//!
//! The files hold exactly the compiled records, with two things the format needs and weft does
//! not answer: an NS record at each apex (a zone must have one; weft answers NS questions with no
//! data), naming the `kube-dns` Service when it is in the zone, and a SOA at each reverse zone's
//! apex (weft puts the cluster domain's SOA in its
//! negative answers under the reverse zones). Pods' names (`a-b-c-d.<ns>.pod.<domain>`) are
//! synthesised at lookup for any address and cannot be listed; records outside every zone weft
//! answers for (reverse names of addresses outside the cluster's ranges, which weft refuses)
//! are left out. Both are counted in the cluster domain's header.
//!
//! [`listed`] lists the Services and EndpointSlices once, through the same view the server
//! watches, and compiles them as the server does.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_model::cidr::Ipv4Cidr;
use weft_view::source::{self, SourceError};
use weft_view::{Interest, Shared};

use crate::zone::{Data, Zone, ZoneConfig};

/// One zone's master file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterFile {
    /// The zone's apex, absolute and lowercase (`cluster.local.`, `96.10.in-addr.arpa.`).
    pub origin: String,
    /// The file: a comment, `$ORIGIN`, then one record per line with absolute names.
    pub text: String,
}

/// The master files of `zone`, compiled with `config`: the cluster domain's first, then the
/// reverse zones in the order of `config.reverse`.
pub fn render(zone: &Zone, config: &ZoneConfig) -> Vec<MasterFile> {
    let apex = absolute(&config.domain);
    let soa = zone
        .records()
        .find(|(n, d)| *n == apex && matches!(d, Data::Soa { .. }))
        .map(|(_, d)| d.clone());
    let (mname, soa) = match soa {
        Some(soa @ Data::Soa { .. }) => (soa_mname(&soa), soa),
        _ => {
            let mname = format!("ns.dns.{apex}");
            let soa = Data::Soa {
                mname: mname.clone(),
                rname: format!("hostmaster.{apex}"),
                serial: 1,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: config.ttl,
            };
            (mname, soa)
        }
    };
    // The NS names the cluster DNS Service when the zone has its address (kzonecheck wants an
    // address for an NS inside the zone), else the SOA's server name.
    let kube_dns = format!("kube-dns.kube-system.svc.{apex}");
    let ns = if zone
        .records()
        .any(|(n, d)| n == kube_dns && matches!(d, Data::A(_) | Data::Aaaa(_)))
    {
        kube_dns
    } else {
        mname
    };
    let mut zones: Vec<(String, Vec<String>)> = vec![(apex.clone(), Vec::new())];
    for origin in config.reverse.iter().flat_map(reverse_zones) {
        if !zones.iter().any(|(o, _)| *o == origin) {
            zones.push((origin, Vec::new()));
        }
    }
    for (origin, lines) in zones.iter_mut() {
        lines.push(line(origin, config.ttl, &soa));
        lines.push(format!(
            "{}\t{}\tIN\tNS\t{}",
            escaped(origin),
            config.ttl,
            escaped(&ns)
        ));
    }
    let mut outside = 0usize;
    for (name, data) in zone.records() {
        if matches!(data, Data::Soa { .. }) {
            continue; // written first, above
        }
        let served =
            reverse_v4(name).is_none_or(|ip| config.reverse.iter().any(|c| c.contains(ip)));
        // The most specific zone the name is in.
        let home = zones
            .iter_mut()
            .filter(|(origin, _)| under(name, origin))
            .max_by_key(|(origin, _)| origin.len());
        match home {
            Some((_, lines)) if served => lines.push(line(name, config.ttl, data)),
            _ => outside += 1,
        }
    }
    zones
        .into_iter()
        .map(|(origin, lines)| {
            let mut text = String::new();
            if origin == apex {
                let _ = writeln!(
                    text,
                    "; {origin}: the records weft dns serves ({}), and an NS record at the apex for the format",
                    lines.len() - 1
                );
                let _ = writeln!(
                    text,
                    "; not listed: pods' names (a-b-c-d.<namespace>.pod.{apex}, for any address); records outside the zones served: {outside}"
                );
            } else {
                let _ = writeln!(
                    text,
                    "; {origin}: the records weft dns serves ({}), and a SOA and an NS record at the apex for the format",
                    lines.len() - 2
                );
            }
            let _ = writeln!(text, "$ORIGIN {origin}");
            for l in lines {
                text.push_str(&l);
                text.push('\n');
            }
            MasterFile { origin, text }
        })
        .collect()
}

/// The files of [`render`] as one text, one zone after the other (each starts with its
/// comment and its `$ORIGIN`).
pub fn render_all(zone: &Zone, config: &ZoneConfig) -> String {
    render(zone, config)
        .into_iter()
        .map(|f| f.text)
        .collect::<Vec<_>>()
        .join("\n")
}

fn soa_mname(soa: &Data) -> String {
    match soa {
        Data::Soa { mname, .. } => mname.clone(),
        _ => String::new(),
    }
}

fn absolute(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// Whether `name` is `origin` or below it (both absolute).
fn under(name: &str, origin: &str) -> bool {
    name == origin
        || name
            .strip_suffix(origin)
            .is_some_and(|head| head.ends_with('.'))
}

/// The reverse zones that cover `cidr`: its range split on octet boundaries (a /12 is sixteen
/// /16 zones), from /8 up to /24; a range longer than /24 is in its /24's zone (records outside
/// the range are still left out).
fn reverse_zones(cidr: &Ipv4Cidr) -> Vec<String> {
    let zone_prefix = cidr.prefix().div_ceil(8).clamp(1, 3) * 8;
    let zone_of = |net: Ipv4Addr| {
        let octets = net.octets();
        let labels: Vec<String> = octets[..usize::from(zone_prefix / 8)]
            .iter()
            .rev()
            .map(u8::to_string)
            .collect();
        format!("{}.in-addr.arpa.", labels.join("."))
    };
    if cidr.prefix() > zone_prefix {
        return vec![zone_of(cidr.network())];
    }
    (0..cidr.subnet_count(zone_prefix))
        .filter_map(|i| cidr.subnet(zone_prefix, i))
        .map(|s| zone_of(s.network()))
        .collect()
}

/// The address a four-label `in-addr.arpa.` name stands for.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa.")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// A name as the master-file format reads it: bytes other than letters, digits, `-`, `_`, `*`
/// and the dots between labels as `\DDD`.
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:03}");
        }
    }
    out
}

fn line(owner: &str, ttl: u32, data: &Data) -> String {
    let rdata = match data {
        Data::A(ip) => format!("A\t{ip}"),
        Data::Aaaa(ip) => format!("AAAA\t{ip}"),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("SRV\t{priority} {weight} {port} {}", escaped(target)),
        Data::Ptr(target) => format!("PTR\t{}", escaped(target)),
        Data::Cname(target) => format!("CNAME\t{}", escaped(target)),
        Data::Txt(text) => {
            let mut quoted = String::from("TXT\t\"");
            for b in text.bytes() {
                match b {
                    b'"' | b'\\' => {
                        quoted.push('\\');
                        quoted.push(char::from(b));
                    }
                    0x20..=0x7e => quoted.push(char::from(b)),
                    _ => {
                        let _ = write!(quoted, "\\{b:03}");
                    }
                }
            }
            quoted.push('"');
            quoted
        }
        Data::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => format!(
            "SOA\t{} {} {serial} {refresh} {retry} {expire} {minimum}",
            escaped(mname),
            escaped(rname)
        ),
    };
    format!("{}\t{ttl}\tIN\t{rdata}", escaped(owner))
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("starting a runtime to list with: {0}")]
    Runtime(std::io::Error),
    #[error(
        "the Services and EndpointSlices were not listed within {0:?} (is the API reachable?)"
    )]
    Timeout(Duration),
}

/// The zone `weft dns` would serve now: the Services and EndpointSlices listed once through the
/// view the server watches (the same watchers, the same whole-list rule), compiled as the
/// server compiles them. `serial` is the SOA's.
pub fn listed(
    config: &ZoneConfig,
    kubeconfig: Option<&Path>,
    serial: u32,
    timeout: Duration,
) -> Result<Zone, ListError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ListError::Runtime)?;
    runtime.block_on(async {
        let client = source::client(kubeconfig).await?;
        let shared = Shared::new();
        let interest = Interest {
            services: true,
            ..Interest::default()
        };
        let kinds = source::kinds(&interest);
        source::spawn(&client, &shared, interest);
        let deadline = Instant::now() + timeout;
        while !shared.read().listed(&kinds) {
            if Instant::now() > deadline {
                return Err(ListError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let view = shared.read();
        let services: Vec<&Service> = view.services().map(|(_, s)| s).collect();
        let slices: Vec<&EndpointSlice> = view.slices().collect();
        Ok(Zone::compile(config.clone(), &services, &slices, serial))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs<T: serde::de::DeserializeOwned>(yaml: &str) -> Vec<T> {
        yaml.split("\n---\n")
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect()
    }

    const SERVICES: &str = "metadata: {name: kube-dns, namespace: kube-system}
spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}]}
---
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.97.0.1, clusterIPs: [10.97.0.1], ports: [{name: http, port: 80, protocol: TCP}, {port: 9000}]}
---
metadata: {name: db, namespace: prod}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
metadata: {name: docs, namespace: default}
spec: {type: ExternalName, externalName: kubernetes.io}";

    const SLICES: &str = "metadata: {name: db-1, namespace: prod, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints: [{addresses: [10.244.1.5], hostname: db-0, conditions: {ready: true}}, {addresses: [192.168.7.7], conditions: {ready: true}}]";

    fn config() -> ZoneConfig {
        ZoneConfig {
            domain: "cluster.local".into(),
            ttl: 30,
            reverse: vec![
                "10.96.0.0/14".parse().unwrap(),
                "10.244.0.0/16".parse().unwrap(),
            ],
        }
    }

    fn zone() -> Zone {
        let services: Vec<Service> = docs(SERVICES);
        let slices: Vec<EndpointSlice> = docs(SLICES);
        Zone::compile(
            config(),
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
            7,
        )
    }

    #[test]
    fn the_master_files_of_a_zone() {
        insta::assert_snapshot!(render_all(&zone(), &config()));
    }

    #[test]
    fn every_record_weft_serves_is_in_one_file() {
        let files = render(&zone(), &config());
        let origins: Vec<&str> = files.iter().map(|f| f.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "cluster.local.",
                "96.10.in-addr.arpa.",
                "97.10.in-addr.arpa.",
                "98.10.in-addr.arpa.",
                "99.10.in-addr.arpa.",
                "244.10.in-addr.arpa."
            ]
        );
        let all = render_all(&zone(), &config());
        for (name, data) in zone().records() {
            let inside = !name.ends_with(".in-addr.arpa.") || name.contains(".10.in-addr");
            assert_eq!(all.contains(&line(name, 30, data)), inside, "{name} {data}");
        }
    }

    #[test]
    fn reverse_zones_on_octet_boundaries() {
        let zones = |c: &str| reverse_zones(&c.parse().unwrap());
        assert_eq!(zones("10.244.0.0/16"), ["244.10.in-addr.arpa."]);
        assert_eq!(zones("10.0.0.0/8"), ["10.in-addr.arpa."]);
        assert_eq!(zones("10.96.0.0/12").len(), 16);
        assert_eq!(zones("10.1.2.0/24"), ["2.1.10.in-addr.arpa."]);
        assert_eq!(zones("10.1.2.64/26"), ["2.1.10.in-addr.arpa."]);
        assert_eq!(zones("172.16.0.0/20").len(), 16);
        assert_eq!(zones("0.0.0.0/0").len(), 256);
    }

    #[test]
    fn names_and_text_are_escaped() {
        let txt = Data::Txt("a \"b\" \\ c".into());
        assert_eq!(
            line("x y.cluster.local.", 5, &txt),
            "x\\032y.cluster.local.\t5\tIN\tTXT\t\"a \\\"b\\\" \\\\ c\""
        );
    }
}
