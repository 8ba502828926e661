//! `weft observe`: the cluster's flow log, as Hubble's CLI shows Cilium's. Every node's agent
//! keeps the connections its kernel saw start and end, and the packets its policy table
//! dropped ([`weft_agent::flows`]); this asks each agent for its records, names every address
//! as a workload (namespace/pod, a Service, a node, or `world`) from the API, filters, and
//! prints one line per record (`-o json`: one JSON object per line), the last N, then with
//! `-f` new ones as they come.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde::Serialize;
use weft_agent::flows::Flow;

use crate::agents;
use crate::client::{Cluster, Target};
use crate::resources;

/// How long the names read from the API are used before they are read again.
const NAMES_AGE: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct ObserveArgs {
    /// Keep printing new records until Ctrl-C.
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// How many of the latest records to print first.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// Records to or from this pod (NAME in --namespace or "default", or NAMESPACE/NAME).
    #[arg(long)]
    pod: Option<String>,
    /// Records to or from pods of this namespace.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Records from this workload: a pod (NAMESPACE/NAME), a namespace's pods (NAMESPACE/),
    /// an address, `world` or `node`.
    #[arg(long)]
    from: Option<String>,
    /// Records to this workload (the Service's address or the endpoint it chose), as --from,
    /// or to the DNS name the client looked up (`example.org`).
    #[arg(long)]
    to: Option<String>,
    /// FORWARDED, DROPPED or REJECTED.
    #[arg(long)]
    verdict: Option<String>,
    /// Records sent to this Service (NAMESPACE/NAME, or NAME in "default").
    #[arg(long)]
    service: Option<String>,
    /// Records to this destination port (the Service's or the endpoint's).
    #[arg(long)]
    port: Option<u16>,
    /// tcp, udp, icmp or sctp.
    #[arg(long)]
    protocol: Option<String>,
    /// json: one JSON object per record and line.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
}

/// What an address is in the cluster.
#[derive(Clone, Debug, Default)]
struct Names {
    pods: BTreeMap<IpAddr, (String, String)>,
    services: BTreeMap<IpAddr, (String, String)>,
    nodes: BTreeMap<IpAddr, String>,
}

impl Names {
    async fn read(cluster: &Cluster) -> Result<Names> {
        let mut names = Names::default();
        let list = |name: &'static str| async move {
            let resource = resources::builtin_named(name).expect("a built-in resource");
            cluster
                .list(&resource, None, None)
                .await
                .map(|(items, _)| items)
        };
        for item in list("pods").await? {
            let pod: Pod = serde_json::from_value(item)?;
            let (Some(ip), false) = (
                pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
                pod.spec.as_ref().and_then(|s| s.host_network) == Some(true),
            ) else {
                continue;
            };
            if let Ok(ip) = ip.parse() {
                let meta = &pod.metadata;
                names.pods.insert(
                    ip,
                    (
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                    ),
                );
            }
        }
        for item in list("services").await? {
            let svc: Service = serde_json::from_value(item)?;
            let spec = svc.spec.clone().unwrap_or_default();
            let key = (
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            let lbs = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.clone())
                .unwrap_or_default();
            let addresses = spec
                .cluster_ips
                .unwrap_or_default()
                .into_iter()
                .chain(lbs.into_iter().filter_map(|i| i.ip));
            for ip in addresses.filter_map(|a| a.parse().ok()) {
                names.services.insert(ip, key.clone());
            }
        }
        for item in list("nodes").await? {
            let node: Node = serde_json::from_value(item)?;
            if let Some(ip) = weft_model::node::internal_ip(&node) {
                names
                    .nodes
                    .insert(ip.into(), node.metadata.name.clone().unwrap_or_default());
            }
        }
        Ok(names)
    }

    /// `namespace/pod`, `service namespace/name`, `node NAME` or `world`.
    fn of(&self, ip: IpAddr) -> Identity {
        if let Some((ns, name)) = self.pods.get(&ip) {
            return Identity::Pod(ns.clone(), name.clone());
        }
        if let Some((ns, name)) = self.services.get(&ip) {
            return Identity::Service(ns.clone(), name.clone());
        }
        if let Some(node) = self.nodes.get(&ip) {
            return Identity::Node(node.clone());
        }
        Identity::World
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Identity {
    Pod(String, String),
    Service(String, String),
    Node(String),
    World,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Pod(ns, name) => write!(f, "{ns}/{name}"),
            Identity::Service(ns, name) => write!(f, "service {ns}/{name}"),
            Identity::Node(name) => write!(f, "node {name}"),
            Identity::World => f.write_str("world"),
        }
    }
}

/// A record with its addresses named.
#[derive(Serialize)]
struct Named<'a> {
    #[serde(flatten)]
    flow: &'a Flow,
    source: String,
    destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
}

/// Whether `who` is what a --from/--to/--pod filter names.
fn names(filter: &str, who: &Identity, ip: IpAddr) -> bool {
    if filter.parse::<IpAddr>().ok() == Some(ip) {
        return true;
    }
    match who {
        Identity::Pod(ns, name) => match filter.split_once('/') {
            Some((fns, "")) => fns == ns,
            Some((fns, fname)) => fns == ns && fname == name,
            None => filter == name && ns == "default",
        },
        Identity::Service(ns, name) => {
            filter == format!("{ns}/{name}") || (filter == name && ns == "default")
        }
        Identity::Node(_) => filter == "node",
        Identity::World => filter == "world",
    }
}

impl ObserveArgs {
    /// `--pod NAME` as `NAMESPACE/NAME` (its `--namespace`, else "default"), once rather than
    /// for every record.
    fn normalized(mut self) -> ObserveArgs {
        if let Some(p) = self.pod.take() {
            self.pod = Some(match (p.contains('/'), &self.namespace) {
                (true, _) => p,
                (false, Some(ns)) => format!("{ns}/{p}"),
                (false, None) => format!("default/{p}"),
            });
        }
        self
    }

    /// Whether record `f` passes the filters (of [`ObserveArgs::normalized`] arguments).
    fn keeps(&self, f: &Flow, names_: &Names) -> bool {
        let (src, dst) = (names_.of(f.src), names_.of(f.dst));
        let endpoint = f.nat_dst.map(|ip| (names_.of(ip), ip));
        let to_matches = |filter: &str| {
            names(filter, &dst, f.dst)
                || f.dns
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(filter.trim_end_matches('.')))
                || endpoint
                    .as_ref()
                    .is_some_and(|(who, ip)| names(filter, who, *ip))
        };
        let in_ns = |who: &Identity, ns: &str| matches!(who, Identity::Pod(n, _) | Identity::Service(n, _) if n == ns);
        self.pod
            .as_ref()
            .is_none_or(|p| names(p, &src, f.src) || to_matches(p))
            && (self.pod.is_some()
                || self.namespace.as_ref().is_none_or(|ns| {
                    in_ns(&src, ns)
                        || in_ns(&dst, ns)
                        || endpoint.as_ref().is_some_and(|(w, _)| in_ns(w, ns))
                }))
            && self.from.as_ref().is_none_or(|x| names(x, &src, f.src))
            && self.to.as_ref().is_none_or(|x| to_matches(x))
            && self
                .verdict
                .as_ref()
                .is_none_or(|v| v.eq_ignore_ascii_case(&f.verdict))
            && self
                .service
                .as_ref()
                .is_none_or(|s| matches!(&dst, Identity::Service(..)) && names(s, &dst, f.dst))
            && self
                .port
                .is_none_or(|p| f.dst_port == Some(p) || f.nat_dst_port == Some(p))
            && self
                .protocol
                .as_ref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&f.protocol))
    }
}

/// One person-readable line.
fn line(f: &Flow, names_: &Names) -> String {
    let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
    let time = weft_model::time::nginx_time_local(i64::try_from(f.time_ms / 1000).unwrap_or(0));
    let mut out = format!(
        "{}.{:03} [{}] {}{} -> {}{}",
        &time[12..20],
        f.time_ms % 1000,
        f.node,
        names_.of(f.src),
        port(f.src_port),
        names_.of(f.dst),
        port(f.dst_port),
    );
    if let Some(name) = &f.dns {
        out += &format!(" (dns {name})");
    }
    if let Some(ip) = f.nat_dst {
        out += &format!(" => {}{}", names_.of(ip), port(f.nat_dst_port));
    }
    if let Some(ip) = f.nat_src {
        out += &format!(
            " (masqueraded as {}{})",
            names_.of(ip),
            port(f.nat_src_port)
        );
    }
    out += &format!(" {} {}", f.protocol, f.verdict);
    if let Some(by) = &f.by {
        out += &format!(" by {by}");
    }
    out += &format!(" ({})", f.event);
    if let (Some(p), Some(b)) = (f.packets, f.bytes) {
        out += &format!(" {}/{} packets {}/{} bytes", p[0], p[1], b[0], b[1]);
    }
    out
}

/// Every agent's records after those `seen` has from it, oldest first, advancing `seen`; and
/// for each node whose agent could not be read, why (agents without an address are skipped).
/// A malformed answer is an error, and then nothing is advanced.
async fn read_agents(
    target: &Target,
    agents_: &BTreeMap<String, Result<SocketAddr>>,
    seen: &mut BTreeMap<String, u64>,
) -> Result<(Vec<Flow>, Vec<String>)> {
    let mut flows = Vec::new();
    let mut problems = Vec::new();
    let mut last = Vec::new();
    for (node, addr) in agents_ {
        let Ok(addr) = addr else { continue };
        let addr: SocketAddr = *addr;
        let since = seen.get(node).copied().unwrap_or(0);
        let (target, path) = (
            target.clone(),
            format!("{}?since={since}", weft_agent::flows::PATH),
        );
        let answer = tokio::task::spawn_blocking(move || agents::get(&target, addr, &path)).await?;
        match answer {
            Ok((200, body)) => {
                let got: Vec<Flow> = serde_json::from_str(&body)?;
                if let Some(f) = got.last() {
                    last.push((node.clone(), f.seq));
                }
                flows.extend(got);
            }
            Ok((status, body)) => {
                problems.push(format!("{node}: status {status}: {}", body.trim()))
            }
            Err(e) => problems.push(format!("{node}: {e:#}")),
        }
    }
    seen.extend(last);
    flows.sort_by(|a, b| (a.time_ms, &a.node, a.seq).cmp(&(b.time_ms, &b.node, b.seq)));
    Ok((flows, problems))
}

/// A record with its addresses named.
fn named<'a>(f: &'a Flow, names_: &Names) -> Named<'a> {
    Named {
        flow: f,
        source: names_.of(f.src).to_string(),
        destination: names_.of(f.dst).to_string(),
        endpoint: f.nat_dst.map(|ip| names_.of(ip).to_string()),
    }
}

/// Reads the flow log as it grows, for `weft ui`: each call returns every node's records newer
/// than the last call's, oldest first, as JSON with the addresses named.
pub struct Follower {
    cluster: Cluster,
    target: Target,
    names: Names,
    agents: BTreeMap<String, Result<SocketAddr>>,
    /// When the names and the agents were read.
    read_at: std::time::Instant,
    seen: BTreeMap<String, u64>,
}

impl Follower {
    pub async fn new(cluster: Cluster, target: Target) -> Result<Follower> {
        let names = Names::read(&cluster).await?;
        let agents = agents::all(&cluster).await?;
        Ok(Follower {
            cluster,
            target,
            names,
            agents,
            read_at: std::time::Instant::now(),
            seen: BTreeMap::new(),
        })
    }

    pub async fn next(&mut self) -> Vec<serde_json::Value> {
        // New pods, Services and nodes: the API is read again at most every NAMES_AGE.
        if self.read_at.elapsed() > NAMES_AGE {
            if let Ok(n) = Names::read(&self.cluster).await {
                self.names = n;
            }
            if let Ok(a) = agents::all(&self.cluster).await {
                self.agents = a;
            }
            self.read_at = std::time::Instant::now();
        }
        let Ok((flows, _)) = read_agents(&self.target, &self.agents, &mut self.seen).await else {
            return Vec::new();
        };
        flows
            .iter()
            .filter_map(|f| serde_json::to_value(named(f, &self.names)).ok())
            .collect()
    }
}

/// The flow log's records, from every node, of connections from `src` to `dst`:`port` (sent
/// there, or NATed there), person-readable, oldest first.
pub async fn flows_of(
    cluster: &Cluster,
    target: &Target,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
) -> Vec<String> {
    let Ok(names_) = Names::read(cluster).await else {
        return Vec::new();
    };
    let Ok(agents_) = agents::all(cluster).await else {
        return Vec::new();
    };
    let Ok((mut flows, _)) = read_agents(target, &agents_, &mut BTreeMap::new()).await else {
        return Vec::new();
    };
    flows.retain(|f| {
        f.src == src
            && ((f.dst == dst && f.dst_port == Some(port))
                || (f.nat_dst == Some(dst) && f.nat_dst_port == Some(port)))
    });
    flows.iter().map(|f| line(f, &names_)).collect()
}

pub async fn observe(target: &Target, args: ObserveArgs) -> Result<()> {
    let args = args.normalized();
    let json = match args.output.as_deref() {
        None => false,
        Some("json") => true,
        Some(other) => anyhow::bail!("-o {other}: only json is supported"),
    };
    let cluster = Cluster::connect(target).await?;
    let mut names_ = Names::read(&cluster).await?;
    let mut named_at = std::time::Instant::now();
    let agents_ = agents::all(&cluster).await?;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut first = true;
    loop {
        for (node, addr) in &agents_ {
            if let Err(e) = addr {
                eprintln!("{node}: {e}");
            }
        }
        let (flows, problems) = read_agents(target, &agents_, &mut seen).await?;
        if first {
            for p in problems {
                eprintln!("{p}");
            }
        }
        // Pods and Services new since the last look get their names: the API is read again
        // when an address has none, at most every NAMES_AGE.
        let unnamed = |ip: IpAddr| names_.of(ip) == Identity::World;
        if !first
            && named_at.elapsed() > NAMES_AGE
            && flows.iter().any(|f| unnamed(f.src) || unnamed(f.dst))
        {
            names_ = Names::read(&cluster).await.unwrap_or(names_);
            named_at = std::time::Instant::now();
        }
        let kept: Vec<&Flow> = flows.iter().filter(|f| args.keeps(f, &names_)).collect();
        let shown = if first {
            &kept[kept.len().saturating_sub(args.last)..]
        } else {
            &kept[..]
        };
        // One write per batch, not per line (standard output is line-buffered).
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for f in shown {
            if json {
                serde_json::to_writer(&mut out, &named(f, &names_))?;
                out.write_all(b"\n")?;
            } else {
                writeln!(out, "{}", line(f, &names_))?;
            }
        }
        out.flush()?;
        drop(out);
        if !args.follow {
            return Ok(());
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str, nat: Option<&str>, verdict: &str) -> Flow {
        Flow {
            seq: 1,
            time_ms: 1_796_071_501_250,
            node: "n1".into(),
            event: "start".into(),
            protocol: "tcp".into(),
            src: src.parse().unwrap(),
            src_port: Some(40000),
            dst: dst.parse().unwrap(),
            dst_port: Some(80),
            nat_dst: nat.map(|n| n.parse().unwrap()),
            nat_dst_port: nat.map(|_| 8080),
            nat_src: None,
            nat_src_port: None,
            verdict: verdict.to_string().into(),
            by: (verdict == "DROPPED").then(|| "ingress default/deny-web".into()),
            packets: None,
            bytes: None,
            dns: None,
        }
    }

    fn names_() -> Names {
        let mut n = Names::default();
        n.pods.insert(
            "10.244.1.5".parse().unwrap(),
            ("default".into(), "client".into()),
        );
        n.pods.insert(
            "10.244.0.7".parse().unwrap(),
            ("shop".into(), "web-1".into()),
        );
        n.services
            .insert("10.96.0.20".parse().unwrap(), ("shop".into(), "web".into()));
        n.nodes.insert("172.20.0.2".parse().unwrap(), "n1".into());
        n
    }

    fn args(f: impl FnOnce(&mut ObserveArgs)) -> ObserveArgs {
        let mut a = ObserveArgs {
            follow: false,
            last: 20,
            pod: None,
            namespace: None,
            from: None,
            to: None,
            verdict: None,
            service: None,
            port: None,
            protocol: None,
            output: None,
        };
        f(&mut a);
        a.normalized()
    }

    #[test]
    fn lines_name_workloads_services_and_endpoints() {
        let n = names_();
        assert_eq!(
            line(&flow("10.244.1.5", "10.96.0.20", Some("10.244.0.7"), "FORWARDED"), &n),
            "20:45:01.250 [n1] default/client:40000 -> service shop/web:80 => shop/web-1:8080 tcp FORWARDED (start)"
        );
        assert_eq!(
            line(&flow("203.0.113.10", "10.244.0.7", None, "DROPPED"), &n),
            "20:45:01.250 [n1] world:40000 -> shop/web-1:80 tcp DROPPED by ingress default/deny-web (start)"
        );
        let looked_up = Flow {
            dns: Some("web.shop.svc.cluster.local".into()),
            ..flow("10.244.1.5", "10.96.0.20", Some("10.244.0.7"), "FORWARDED")
        };
        assert_eq!(
            line(&looked_up, &n),
            "20:45:01.250 [n1] default/client:40000 -> service shop/web:80 (dns web.shop.svc.cluster.local) => shop/web-1:8080 tcp FORWARDED (start)"
        );
        // --to takes the name too.
        assert!(args(|a| a.to = Some("web.shop.svc.cluster.local".into())).keeps(&looked_up, &n));
        assert!(!args(|a| a.to = Some("web.other.svc.cluster.local".into())).keeps(&looked_up, &n));
    }

    #[test]
    fn filters_select_by_workload_service_verdict_and_port() {
        let n = names_();
        let via_service = flow("10.244.1.5", "10.96.0.20", Some("10.244.0.7"), "FORWARDED");
        let dropped = flow("203.0.113.10", "10.244.0.7", None, "DROPPED");
        let keeps = |a: ObserveArgs, f: &Flow| a.keeps(f, &n);
        assert!(keeps(args(|a| a.pod = Some("client".into())), &via_service));
        assert!(keeps(
            args(|a| a.pod = Some("shop/web-1".into())),
            &via_service
        ));
        assert!(!keeps(args(|a| a.pod = Some("web-1".into())), &via_service));
        assert!(keeps(
            args(|a| a.namespace = Some("shop".into())),
            &via_service
        ));
        assert!(keeps(
            args(|a| a.service = Some("shop/web".into())),
            &via_service
        ));
        assert!(!keeps(
            args(|a| a.service = Some("shop/web".into())),
            &dropped
        ));
        assert!(keeps(
            args(|a| a.verdict = Some("dropped".into())),
            &dropped
        ));
        assert!(!keeps(
            args(|a| a.verdict = Some("DROPPED".into())),
            &via_service
        ));
        assert!(keeps(args(|a| a.from = Some("world".into())), &dropped));
        assert!(keeps(args(|a| a.to = Some("shop/".into())), &dropped));
        assert!(keeps(args(|a| a.port = Some(8080)), &via_service));
        assert!(!keeps(args(|a| a.port = Some(8080)), &dropped));
        assert!(keeps(args(|a| a.protocol = Some("TCP".into())), &dropped));
        assert!(!keeps(args(|a| a.protocol = Some("udp".into())), &dropped));
    }
}
