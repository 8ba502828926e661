//! The records of the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0),
//! compiled from Services and their EndpointSlices, and the answer to one question.
//!
//! Per Service `<svc>` in namespace `<ns>`, under the cluster domain `<zone>`:
//! - ClusterIP: `<svc>.<ns>.svc.<zone>` A/AAAA its cluster IPs; `_<port>._<proto>.<svc>...` SRV
//!   (priority 0, weight 100, the Service port, target the Service's name) for each named port;
//!   PTR for each cluster IP.
//! - Headless (`clusterIP: None`): the Service's name has an A/AAAA per ready endpoint (every
//!   endpoint with `publishNotReadyAddresses`); each endpoint has a name of its own,
//!   `<hostname>.<svc>...` (its hostname, or its address with dashes, as CoreDNS names it), with
//!   its A/AAAA and a PTR back; SRV per named port and endpoint, targeting the endpoint's name.
//! - ExternalName: a CNAME to the external name.
//! - `dns-version.<zone>` TXT "1.1.0"; the zone's SOA.
//! - Pods: `a-b-c-d.<ns>.pod.<zone>` is a-b-c-d's address, for any address, as CoreDNS's
//!   `pods insecure` answers (synthesised at lookup, not stored).
//!
//! Names are compared in lowercase. A name that exists with other types gets NOERROR with no
//! answer and the SOA; a name that does not exist, NXDOMAIN with the SOA; a name outside the
//! zones weft serves (the cluster domain, the reverse zones of the cluster's ranges, and the
//! reverse names of the addresses it has records for, IPv6 or outside those ranges) is refused
//! here (forwarding is the server's business).
//!
//! An ANY question gets one RRset of the name, the first in the order A, AAAA, SRV, PTR, CNAME,
//! TXT, SOA (RFC 8482 section 4.1, as BIND's `minimal-any` and Knot answer): never the whole
//! name, which would make every Service a UDP amplifier.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_model::cidr::Ipv4Cidr;

/// The schema version the `dns-version` record announces.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What the zone is built for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
    /// The TTL of every record (kubeadm's CoreDNS: 30 s).
    pub ttl: u32,
    /// Ranges whose reverse names weft answers for (the service and pod CIDRs).
    pub reverse: Vec<Ipv4Cidr>,
}

/// The SOA serial a server's first zone gets: the time in seconds, so the serials of a restarted
/// server still go up (each recompile adds one).
pub fn first_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(1))
}

impl ZoneConfig {
    /// The zone a cluster's DNS serves: its domain and TTL, and the reverse names of its service
    /// and pod ranges.
    pub fn of(cluster: &weft_model::config::ClusterConfig) -> ZoneConfig {
        ZoneConfig {
            domain: cluster.cluster_domain.clone(),
            ttl: cluster.dns_ttl,
            reverse: vec![cluster.service_cidr, cluster.pod_cidr],
        }
    }
}

impl Default for ZoneConfig {
    /// Kubernetes' defaults: `cluster.local`, a TTL of 30 s, 10.96.0.0/12 and 10.244.0.0/16.
    fn default() -> Self {
        ZoneConfig::of(&weft_model::config::ClusterConfig::default())
    }
}

/// One record's data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    Cname(String),
    Txt(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

/// The record types a question can ask for (those weft has, and the rest as `Other`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qtype {
    A,
    Aaaa,
    Srv,
    Ptr,
    Cname,
    Txt,
    Soa,
    Any,
    Other(u16),
}

impl Data {
    /// The type a question asks for to get this record.
    pub fn kind(&self) -> Qtype {
        match self {
            Data::A(_) => Qtype::A,
            Data::Aaaa(_) => Qtype::Aaaa,
            Data::Srv { .. } => Qtype::Srv,
            Data::Ptr(_) => Qtype::Ptr,
            Data::Cname(_) => Qtype::Cname,
            Data::Txt(_) => Qtype::Txt,
            Data::Soa { .. } => Qtype::Soa,
        }
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Data::A(ip) => write!(f, "A {ip}"),
            Data::Aaaa(ip) => write!(f, "AAAA {ip}"),
            Data::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "SRV {priority} {weight} {port} {target}"),
            Data::Ptr(name) => write!(f, "PTR {name}"),
            Data::Cname(name) => write!(f, "CNAME {name}"),
            Data::Txt(text) => write!(f, "TXT {text:?}"),
            Data::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => write!(
                f,
                "SOA {mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
            ),
        }
    }
}

/// A record as answered: owner name (as asked), TTL, data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.name, self.ttl, self.data)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    /// Not a name of the zones weft serves.
    Refused,
}

/// The answer to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    pub answers: Vec<Record>,
    /// The SOA, with a negative answer.
    pub authority: Vec<Record>,
}

/// The compiled records of the cluster.
#[derive(Clone, Debug)]
pub struct Zone {
    config: ZoneConfig,
    /// Lowercased absolute name (with the final dot) -> its records.
    records: HashMap<String, Owner>,
    /// Every name that exists: owners and the names between them and their zone's apex.
    existing: HashSet<String>,
    apex: String,
    soa: Data,
    /// The SOA record in wire form, owner written out (None: the apex is not plain labels).
    soa_wire: Option<Box<[u8]>>,
    /// `pod.<zone>`, the parent of the synthesised pod names.
    pods: String,
}

/// One owner name's records, and their wire form per type (filled in when compiled).
#[derive(Clone, Debug, Default)]
pub(crate) struct Owner {
    data: Vec<Data>,
    /// Whether the name is a CNAME's (then it has nothing else).
    cname: bool,
    sets: wire::Sets,
}

impl Owner {
    /// The encoded records of type `kind` (None: some record of them has no plain wire form;
    /// an empty set when there are none).
    pub(crate) fn set(&self, kind: Qtype) -> Option<(u16, &[u8])> {
        self.sets.get(kind)
    }
}

/// What a name holds for a question, as [`Zone::find`] finds it: borrowed from the zone.
pub(crate) enum Found<'z> {
    /// Not a name of the zones weft serves.
    Refused,
    NxDomain,
    /// NOERROR: the records of type `wanted` among `records` answer (none: no data).
    NoError {
        wanted: Option<Qtype>,
        records: Records<'z>,
    },
}

/// The records of a name that exists.
pub(crate) enum Records<'z> {
    Stored(&'z Owner),
    /// A synthesised pod address.
    Pod(Data),
    /// An empty non-terminal, or a name with no records yet.
    Nothing,
}

impl Records<'_> {
    fn data(&self) -> &[Data] {
        match self {
            Records::Stored(owner) => &owner.data,
            Records::Pod(data) => std::slice::from_ref(data),
            Records::Nothing => &[],
        }
    }
}

/// `name` made absolute and lowercase (copied only when it is not already).
fn absolute(name: &str) -> Cow<'_, str> {
    let lower = !name.bytes().any(|b| b.is_ascii_uppercase());
    match (lower, name.ends_with('.')) {
        (true, true) => Cow::Borrowed(name),
        (true, false) => Cow::Owned(format!("{name}.")),
        (false, _) => {
            let mut n = name.to_ascii_lowercase();
            if !n.ends_with('.') {
                n.push('.');
            }
            Cow::Owned(n)
        }
    }
}

/// The reverse name of an address: `5.1.244.10.in-addr.arpa.`, or the nibbles for IPv6.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::new();
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out.push_str("ip6.arpa.");
            out
        }
    }
}

/// Whether `name` is `apex` or a name under it (both lowercase, absolute, in the presentation
/// form hickory writes, where a dot inside a label is `\.` and a backslash `\\`): `a\.b.` is
/// one label, so `x\.cluster.local.` is under `local.`, not under `cluster.local.`.
fn is_under(name: &str, apex: &str) -> bool {
    if name == apex {
        return true;
    }
    let Some(rest) = name.strip_suffix(apex) else {
        return false;
    };
    let Some(label) = rest.strip_suffix('.') else {
        return false;
    };
    // The dot ends a label unless an odd number of backslashes escapes it.
    let slashes = label.bytes().rev().take_while(|b| *b == b'\\').count();
    slashes % 2 == 0
}

/// A label as Kubernetes names a namespace (RFC 1123): letters, digits and dashes.
fn is_ldh(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The address a four-label `in-addr.arpa.` name stands for.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa.")?;
    let mut parts = rest.split('.').map(|p| p.parse::<u8>().ok());
    let mut octets = [0u8; 4];
    for o in octets.iter_mut().rev() {
        *o = parts.next()??;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn address(ip: IpAddr) -> Data {
    match ip {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    }
}

impl Zone {
    /// Compiles the zone of `services` and `slices` (each slice belongs to the Service its
    /// `kubernetes.io/service-name` label names). `serial` is the SOA's (any number that grows).
    pub fn compile(
        config: ZoneConfig,
        services: &[&Service],
        slices: &[&EndpointSlice],
        serial: u32,
    ) -> Zone {
        let apex = absolute(&config.domain).into_owned();
        let soa = Data::Soa {
            mname: format!("ns.dns.{apex}"),
            rname: format!("hostmaster.{apex}"),
            serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: config.ttl,
        };
        let mut zone = Zone {
            // About four names per Service (its name, an SRV, a PTR, their parents): growing
            // the tables would hash every name again.
            records: HashMap::with_capacity(4 * services.len()),
            existing: HashSet::with_capacity(4 * services.len()),
            apex: apex.clone(),
            soa_wire: wire::full_record(&apex, &soa, config.ttl),
            soa: soa.clone(),
            pods: format!("pod.{apex}"),
            config,
        };
        zone.add(&apex, soa);
        zone.add(
            &format!("dns-version.{apex}"),
            Data::Txt(SCHEMA_VERSION.to_string()),
        );
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            if let Some(svc) = weft_model::endpoints::service_name(s) {
                let ns = s.metadata.namespace.as_deref().unwrap_or("default");
                by_service.entry((ns, svc)).or_default().push(s);
            }
        }
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            let name = svc.metadata.name.as_deref().unwrap_or_default();
            let slices = by_service.remove(&(ns, name)).unwrap_or_default();
            zone.service(svc, ns, name, &slices);
        }
        let ttl = zone.config.ttl;
        for owner in zone.records.values_mut() {
            owner.sets = wire::Sets::encode(&owner.data, ttl);
            owner.cname = owner.data.iter().any(|d| matches!(d, Data::Cname(_)));
        }
        zone
    }

    fn add(&mut self, name: &str, data: Data) {
        let name = absolute(name).into_owned();
        let list = &mut self.records.entry(name.clone()).or_default().data;
        if !list.contains(&data) {
            list.push(data);
        }
        self.existing_name(&name);
    }

    fn service(&mut self, svc: &Service, ns: &str, name: &str, slices: &[&EndpointSlice]) {
        let Some(spec) = &svc.spec else { return };
        let fqdn = format!("{name}.{ns}.svc.{}", self.apex);
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().filter(|t| !t.is_empty()) {
                self.add(&fqdn, Data::Cname(absolute(target).into_owned()));
            }
            return;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips: Vec<IpAddr> = spec
                .cluster_ips
                .clone()
                .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                .unwrap_or_default()
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if ips.is_empty() {
                return;
            }
            for ip in &ips {
                self.add(&fqdn, address(*ip));
                self.add(&reverse_name(*ip), Data::Ptr(fqdn.clone()));
            }
            for port in spec.ports.iter().flatten() {
                let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let proto = port
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .to_ascii_lowercase();
                self.add(
                    &format!("_{port_name}._{proto}.{fqdn}"),
                    Data::Srv {
                        priority: 0,
                        weight: 100,
                        port: u16::try_from(port.port).unwrap_or(0),
                        target: fqdn.clone(),
                    },
                );
            }
            // The Service's name exists even before it has records of every kind.
            return;
        }
        let publish_all = spec.publish_not_ready_addresses == Some(true);
        // (endpoint name, address) of every endpoint that is published.
        let mut endpoints: Vec<(String, IpAddr)> = Vec::new();
        let mut ports: BTreeSet<(String, String, u16)> = BTreeSet::new();
        for slice in slices {
            for p in slice.ports.iter().flatten() {
                if let (Some(n), Some(port)) = (p.name.as_deref(), p.port) {
                    if !n.is_empty() {
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                        ports.insert((n.to_string(), proto, u16::try_from(port).unwrap_or(0)));
                    }
                }
            }
            for e in &slice.endpoints {
                if !publish_all && !weft_model::endpoints::is_ready(e) {
                    continue;
                }
                for a in &e.addresses {
                    let Ok(ip) = a.parse::<IpAddr>() else {
                        continue;
                    };
                    let host = e.hostname.clone().unwrap_or_else(|| dashed(ip));
                    endpoints.push((host, ip));
                }
            }
        }
        endpoints.sort();
        endpoints.dedup();
        // The name exists even with no endpoint (NOERROR, no data).
        self.existing_name(&fqdn);
        let weight = if endpoints.is_empty() {
            0
        } else {
            u16::try_from(100 / endpoints.len()).unwrap_or(1).max(1)
        };
        for (host, ip) in &endpoints {
            let own = format!("{host}.{fqdn}");
            self.add(&fqdn, address(*ip));
            self.add(&own, address(*ip));
            self.add(&reverse_name(*ip), Data::Ptr(own.clone()));
            for (port_name, proto, port) in &ports {
                self.add(
                    &format!("_{port_name}._{proto}.{fqdn}"),
                    Data::Srv {
                        priority: 0,
                        weight,
                        port: *port,
                        target: own.clone(),
                    },
                );
            }
        }
    }

    /// Makes `name` exist, and every name between it and the root (empty non-terminals).
    fn existing_name(&mut self, name: &str) {
        let name = absolute(name);
        let mut n: &str = &name;
        while !n.is_empty() && self.existing.insert(n.to_string()) {
            n = n.split_once('.').map_or("", |(_, rest)| rest);
        }
    }

    /// Whether weft answers for `name` (lowercase, absolute), when it owns no records.
    fn serves(&self, name: &str) -> bool {
        // The compiled reverse names of IPv6 addresses and of addresses outside the configured
        // ranges are weft's too (they own records): no upstream knows them.
        if is_under(name, &self.apex) {
            return true;
        }
        match reverse_v4(name) {
            Some(ip) => self.config.reverse.iter().any(|c| c.contains(ip)),
            None => false,
        }
    }

    /// The SOA record, as the authority of a negative answer.
    fn soa_record(&self) -> Record {
        Record {
            name: self.apex.clone(),
            ttl: self.config.ttl,
            data: self.soa.clone(),
        }
    }

    /// The SOA record in wire form, for the authority section of a negative answer.
    pub(crate) fn soa_wire(&self) -> Option<&[u8]> {
        self.soa_wire.as_deref()
    }

    /// The TTL of every record.
    pub(crate) fn ttl(&self) -> u32 {
        self.config.ttl
    }

    /// How many records the zone holds.
    pub fn record_count(&self) -> usize {
        self.records.values().map(|o| o.data.len()).sum()
    }

    /// The answer to `qname`/`qtype`. Answer records carry the name as asked.
    pub fn lookup(&self, qname: &str, qtype: Qtype) -> Answer {
        let (records, wanted) = match self.find(&absolute(qname), qtype) {
            Found::Refused => {
                return Answer {
                    rcode: Rcode::Refused,
                    answers: Vec::new(),
                    authority: Vec::new(),
                }
            }
            Found::NxDomain => {
                return Answer {
                    rcode: Rcode::NxDomain,
                    answers: Vec::new(),
                    authority: vec![self.soa_record()],
                }
            }
            Found::NoError { wanted, records } => (records, wanted),
        };
        let owner = if qname.ends_with('.') {
            qname.to_string()
        } else {
            format!("{qname}.")
        };
        let ttl = self.config.ttl;
        let answers: Vec<Record> = records
            .data()
            .iter()
            .filter(|d| Some(d.kind()) == wanted)
            .map(|d| Record {
                name: owner.clone(),
                ttl,
                data: d.clone(),
            })
            .collect();
        let authority = if answers.is_empty() {
            vec![self.soa_record()]
        } else {
            Vec::new()
        };
        Answer {
            rcode: Rcode::NoError,
            answers,
            authority,
        }
    }

    /// What `name` (lowercase, absolute) holds for `qtype`, without copying anything.
    pub(crate) fn find(&self, name: &str, qtype: Qtype) -> Found<'_> {
        let records = match self.records.get(name) {
            Some(owner) => Records::Stored(owner),
            None if !self.serves(name) => return Found::Refused,
            None => match self.pod_record(name) {
                Some(data) => Records::Pod(data),
                None if self.exists(name) => Records::Nothing,
                None => return Found::NxDomain,
            },
        };
        // Read from the owner, not its records: one memory access fewer per question.
        let cname = matches!(records, Records::Stored(owner) if owner.cname);
        // A CNAME owner has nothing else: every question gets the CNAME.
        let wanted = match cname {
            true => Some(Qtype::Cname),
            // RFC 8482: one RRset, the first of the name's types.
            false if qtype == Qtype::Any => records.data().iter().min().map(Data::kind),
            false => Some(qtype),
        };
        Found::NoError { wanted, records }
    }

    fn exists(&self, name: &str) -> bool {
        if self.existing.contains(name) {
            return true;
        }
        // `pod.<zone>` and `<ns>.pod.<zone>` exist for the synthesised pod names.
        name == self.pods
            || name
                .strip_suffix(self.pods.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(is_ldh)
    }

    /// `a-b-c-d.<ns>.pod.<zone>`: the address a-b-c-d (CoreDNS's `pods insecure`).
    fn pod_record(&self, name: &str) -> Option<Data> {
        let rest = name.strip_suffix(self.pods.as_str())?.strip_suffix('.')?;
        let (host, ns) = rest.split_once('.')?;
        if !is_ldh(ns) {
            return None;
        }
        if let Ok(v4) = host.replace('-', ".").parse::<Ipv4Addr>() {
            if host.split('-').count() == 4 {
                return Some(Data::A(v4));
            }
        }
        host.replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .map(Data::Aaaa)
    }

    /// Every stored record, for tests and dumps.
    pub fn records(&self) -> impl Iterator<Item = (&str, &Data)> {
        let mut owners: Vec<(&String, &Owner)> = self.records.iter().collect();
        owners.sort_unstable_by_key(|(name, _)| *name);
        owners
            .into_iter()
            .flat_map(|(n, owner)| owner.data.iter().map(move |d| (n.as_str(), d)))
    }
}

#[cfg(test)]
mod tests;
pub(crate) mod wire;
