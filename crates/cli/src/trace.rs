//! `weft trace FROM TO[:PORT[/PROTO]]`: why can (or can't) A reach B, hop by hop, as weft itself
//! decides it. The path is walked over a snapshot of the API's objects with weft's own pieces:
//! the name through the DNS zone the cluster DNS compiles (`weft_dns::Zone`, with the pod's
//! search path), the Service's port and its EndpointSlices (each endpoint ready or not, and why
//! from its pod's status), the route between the two nodes, the policies at egress and at
//! ingress through the agents' own compiled tables (`weft policy check`'s simulation), and,
//! for a lab on this machine, whether anything listens on the port inside the destination pod.
//! The first hop that fails is marked, with what to change. `--probe` then makes the
//! connection for real from FROM and shows the flow log's records of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use serde_json::json;
use weft_dataplane::nft::L4Proto;
use weft_dns::zone::{Qtype, Rcode};
use weft_dns::{Data, Zone, ZoneConfig};
use weft_policy::Direction;
use weft_view::{ClusterView, NsName};

use crate::client::{Cluster, Target};
use crate::policy::ends::{self, End, Member};
use crate::policy::ports::{parse_port, parse_proto, proto_name, PortRef, PortSpec};
use crate::policy::{render, verdict, Snapshot};

#[derive(Args)]
pub struct TraceArgs {
    /// The client: POD or NS/POD.
    from: String,
    /// The server: a pod (POD, NS/POD), a Service (svc/NAME, NS/svc/NAME), a DNS name
    /// (web, web.shop, web.shop.svc.cluster.local) or an IPv4 address, then :PORT[/PROTO].
    to: String,
    /// The namespace of names without one (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// Also connect for real from FROM, and show the flow log's records of the connection.
    #[arg(long)]
    probe: bool,
    /// Seconds the probe waits for a connection or an answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    timeout: u64,
    /// Output format: json.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    output: Option<String>,
}

pub const AFTER_HELP: &str = "Examples:
  weft trace client web:80                        # a Service by its DNS name, from pod client
  weft trace client web.shop.svc.cluster.local:80 # a full name
  weft trace x/a svc/y/web:http                   # a Service port by name
  weft trace client db:5432 --probe               # and connect for real, with the flow log's records

Hops: the name (the cluster DNS's answer, with the pod's search path) -> the Service (its port,
its endpoints, ready or not and why) -> the route (same node, or across the overlay) -> the
policies at egress and ingress (which one decides, from the agents' own compiled tables) -> the
workload (something listening on the port: checked inside the pod for a lab on this machine).
The first hop that fails is marked with what to change; the exit code is 1 then.";

/// One hop's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Not checked (e.g. listening sockets on a remote cluster).
    Unknown,
}

/// One hop of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// `dns`, `service`, `endpoints`, `route`, `egress`, `ingress`, `listen`.
    pub kind: &'static str,
    pub outcome: Outcome,
    pub text: String,
    /// What to change, for a failed hop.
    pub fix: Option<String>,
}

impl Hop {
    fn ok(kind: &'static str, text: impl Into<String>) -> Hop {
        Hop {
            kind,
            outcome: Outcome::Ok,
            text: text.into(),
            fix: None,
        }
    }

    fn failed(kind: &'static str, text: impl Into<String>, fix: Option<String>) -> Hop {
        Hop {
            kind,
            outcome: Outcome::Failed,
            text: text.into(),
            fix,
        }
    }
}

/// What a pod listens on, if that can be seen from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sockets {
    pub tcp: BTreeSet<u16>,
    pub udp: BTreeSet<u16>,
}

/// The walked path.
#[derive(Clone, Debug)]
pub struct Traced {
    pub from: String,
    pub to: String,
    pub hops: Vec<Hop>,
    /// The connection the probe makes: the source pod and its address, where it connects
    /// (a Service's cluster IP and port, else the pod's address and port), the protocol.
    pub connection: Option<Connection>,
}

impl Traced {
    pub fn failed(&self) -> bool {
        self.hops.iter().any(|h| h.outcome == Outcome::Failed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub pod: NsName,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: L4Proto,
    pub port: u16,
}

/// TO without its port, and the port.
fn split_port(to: &str) -> Result<(&str, Option<PortSpec>)> {
    match to.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() => Ok((name, Some(parse_port(port)?))),
        Some(_) => bail!("{to:?}: nothing before the port"),
        None => Ok((to, None)),
    }
}

/// Walks the path from `from` to `to` (pure: the snapshot in; `sockets` tells what a pod
/// listens on where that can be seen).
pub fn compute(
    snapshot: &Snapshot,
    from: &str,
    to: &str,
    namespace: &str,
    explicit: bool,
    sockets: &dyn Fn(&NsName) -> Option<Sockets>,
) -> Result<Traced> {
    let view = &snapshot.view;
    let source = ends::resolve_end(view, from, namespace, explicit)?;
    let Some(client) = source.members.first().filter(|m| m.pod.is_some()).cloned() else {
        bail!("FROM must be a pod (POD or NS/POD), not {}", source.label);
    };
    let client_ns = client
        .pod
        .as_ref()
        .map_or(namespace.to_string(), |p| p.namespace.clone());
    let (name, port) = split_port(to)?;
    let mut traced = Traced {
        from: source.label.clone(),
        to: to.to_string(),
        hops: Vec::new(),
        connection: None,
    };
    // What TO is: a pod or Service given as such (`pod/web`, `svc/web`, `ns/web`), an address,
    // or a name as the client would look it up; a bare name the DNS does not know may still
    // be a pod's.
    let bare = !name.contains('/') && name.parse::<Ipv4Addr>().is_err();
    let target = if bare {
        None
    } else {
        Some(
            ends::resolve_end(view, name, &client_ns, true)
                .or_else(|_| ends::resolve_end(view, name, namespace, explicit))?,
        )
    };
    let (service, mut members) = match target {
        Some(end) => match (&end.service, end.members.first()) {
            (Some(svc), _) => (Some(svc.clone()), Vec::new()),
            (None, Some(m)) => match service_by_ip(view, m.ip) {
                Some(svc) => (Some(svc), Vec::new()),
                None => (None, end.members.clone()),
            },
            (None, None) => bail!("{} resolves to nothing", end.label),
        },
        None => {
            let (hop, answer) = dns(snapshot, name, &client_ns);
            if hop.outcome == Outcome::Unknown {
                traced.hops.push(hop);
                return Ok(traced);
            }
            if hop.outcome == Outcome::Failed {
                let pod = ends::resolve_end(view, name, &client_ns, true)
                    .ok()
                    .filter(|e| e.service.is_none() && !name.contains('.'));
                match pod {
                    Some(end) => (None, end.members),
                    None => {
                        traced.hops.push(hop);
                        return Ok(traced);
                    }
                }
            } else {
                traced.hops.push(hop);
                match answer {
                    Answer::Service(svc) => (Some(svc), Vec::new()),
                    Answer::Addrs(addrs) => {
                        let mut members = Vec::new();
                        for a in addrs {
                            members.extend(
                                ends::resolve_end(view, &a.to_string(), namespace, true)?.members,
                            );
                        }
                        (None, members)
                    }
                }
            }
        }
    };
    // The Service: its port, and its endpoints.
    let mut wanted: Vec<(L4Proto, u16)>;
    if let Some(svc_key) = &service {
        let Some(svc) = view.service(svc_key) else {
            bail!("unknown Service {svc_key}");
        };
        let (hop, chosen) = service_port(svc_key, svc, port.as_ref());
        let failed = hop.outcome == Outcome::Failed;
        traced.hops.push(hop);
        let Some(sp) = chosen else {
            return Ok(traced);
        };
        if failed {
            return Ok(traced);
        }
        let (hop, ready) = endpoints(view, svc_key, svc, &sp);
        let failed = hop.outcome == Outcome::Failed;
        traced.hops.push(hop);
        if failed {
            return Ok(traced);
        }
        members = ready.iter().map(|(m, _)| m.clone()).collect();
        wanted = ready.iter().map(|(_, p)| (p.0, p.1)).collect();
        let cluster_ip = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|c| c.parse::<Ipv4Addr>().ok());
        let proto = parse_proto(sp.protocol.as_deref().unwrap_or("TCP")).unwrap_or(L4Proto::Tcp);
        if let (Some(ip), Ok(port), Some(pod)) = (cluster_ip, u16::try_from(sp.port), &client.pod) {
            traced.connection = Some(Connection {
                pod: pod.clone(),
                src: client.ip,
                dst: ip,
                proto,
                port,
            });
        }
    } else {
        let member = members.first().cloned();
        match (port.as_ref(), member) {
            (Some(spec), Some(m)) => {
                let end = End {
                    label: m.name(),
                    service: None,
                    members: vec![m.clone()],
                };
                let ports = crate::policy::ports::dst_ports(view, &end, &m, Some(spec))?;
                wanted = ports.iter().map(|p| (p.proto, p.port)).collect();
            }
            (None, Some(m)) => {
                let end = End {
                    label: m.name(),
                    service: None,
                    members: vec![m.clone()],
                };
                let ports = crate::policy::ports::dst_ports(view, &end, &m, None)?;
                wanted = ports.iter().take(1).map(|p| (p.proto, p.port)).collect();
            }
            (_, None) => bail!("{name} resolves to no address"),
        }
        wanted.truncate(1);
        wanted = std::iter::repeat_n(wanted[0], members.len()).collect();
    }
    // Each endpoint: the route there, the policies on the way, and the listener.
    let mut tables = verdict::Tables::new(view, snapshot.vxlan_port);
    for (dst, (proto, port)) in members.iter().zip(wanted) {
        if traced.connection.is_none() {
            if let Some(p) = &client.pod {
                traced.connection = Some(Connection {
                    pod: p.clone(),
                    src: client.ip,
                    dst: dst.ip,
                    proto,
                    port,
                });
            }
        }
        let hops = [
            route(snapshot, &client, dst),
            policies(
                view,
                &mut tables,
                &client,
                dst,
                proto,
                port,
                service.is_some(),
            )?,
            listen(dst, proto, port, service.is_some(), sockets),
        ];
        for hop in hops.into_iter().flatten() {
            let failed = hop.outcome == Outcome::Failed;
            traced.hops.push(hop);
            if failed {
                return Ok(traced);
            }
        }
    }
    Ok(traced)
}

/// The Service whose cluster IP is `ip`.
fn service_by_ip(view: &ClusterView, ip: Ipv4Addr) -> Option<NsName> {
    view.services()
        .find(|(_, s)| {
            s.spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .and_then(|c| c.parse::<Ipv4Addr>().ok())
                == Some(ip)
        })
        .map(|(k, _)| k.clone())
}

enum Answer {
    Service(NsName),
    Addrs(Vec<Ipv4Addr>),
}

/// The cluster DNS's answer for `name` asked from a pod of `namespace` (its search path: the
/// namespace's, `svc.`, the cluster domain; ndots 5).
fn dns(snapshot: &Snapshot, name: &str, namespace: &str) -> (Hop, Answer) {
    let view = &snapshot.view;
    let domain = snapshot.config.cluster_domain.trim_end_matches('.');
    let services: Vec<&Service> = view.services().map(|(_, s)| s).collect();
    let slices: Vec<_> = view.slices().collect();
    let zone = Zone::compile(ZoneConfig::of(&snapshot.config), &services, &slices, 1);
    let mut tried = Vec::new();
    if name.ends_with('.') {
        tried.push(name.to_string());
    } else {
        if name.matches('.').count() >= 5 {
            tried.push(format!("{name}."));
        }
        for suffix in [
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_string(),
        ] {
            tried.push(format!("{name}.{suffix}."));
        }
        if name.matches('.').count() < 5 {
            tried.push(format!("{name}."));
        }
    }
    let mut outside = None;
    for q in &tried {
        let answer = zone.lookup(q, Qtype::A);
        match answer.rcode {
            Rcode::NoError => {
                let addrs: Vec<Ipv4Addr> = answer
                    .answers
                    .iter()
                    .filter_map(|r| match r.data {
                        Data::A(a) => Some(a),
                        _ => None,
                    })
                    .collect();
                if addrs.is_empty() {
                    continue;
                }
                let list = addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let [one] = addrs.as_slice() {
                    if let Some(svc) = service_by_ip(view, *one) {
                        let text = format!("{q} -> {list} (Service {svc}'s cluster IP)");
                        return (Hop::ok("dns", text), Answer::Service(svc));
                    }
                }
                let text = format!("{q} -> {list}");
                return (Hop::ok("dns", text), Answer::Addrs(addrs));
            }
            Rcode::Refused => {
                outside.get_or_insert_with(|| q.clone());
            }
            Rcode::NxDomain => {}
        }
    }
    if let Some(q) = outside.filter(|_| name.contains('.')) {
        let text = format!(
            "{q} is outside the cluster domain {domain}: the cluster DNS forwards it upstream; the path beyond is not weft's"
        );
        let hop = Hop {
            kind: "dns",
            outcome: Outcome::Unknown,
            text,
            fix: None,
        };
        return (hop, Answer::Addrs(Vec::new()));
    }
    // No record: which Services are there to be named instead?
    let first = name.split('.').next().unwrap_or(name);
    let ns_of_name = name
        .split('.')
        .nth(1)
        .filter(|n| view.namespace(n).is_some());
    let ns = ns_of_name.unwrap_or(namespace);
    let names: Vec<&str> = view
        .services()
        .filter(|(k, _)| k.namespace == ns)
        .map(|(k, _)| k.name.as_str())
        .collect();
    let near: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| distance(n, first) <= 2.max(first.len() / 4))
        .collect();
    let fix = match (near.as_slice(), names.is_empty()) {
        ([], true) => format!("namespace {ns} has no Services: create one named {first}"),
        ([], false) => format!("Services in {ns}: {}", names.join(", ")),
        (near, _) => format!(
            "did you mean {}? (Services in {ns}: {})",
            near.join(" or "),
            names.join(", ")
        ),
    };
    let text = format!("no DNS record for {name} (asked: {})", tried.join(", "));
    (
        Hop::failed("dns", text, Some(fix)),
        Answer::Addrs(Vec::new()),
    )
}

/// Edit distance of two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

fn port_text(p: &ServicePort) -> String {
    let proto = p.protocol.as_deref().unwrap_or("TCP");
    match &p.name {
        Some(n) if !n.is_empty() => format!("{}/{proto} ({n})", p.port),
        _ => format!("{}/{proto}", p.port),
    }
}

/// The Service's port `spec` means (its only port when none is given).
fn service_port(
    key: &NsName,
    svc: &Service,
    spec: Option<&PortSpec>,
) -> (Hop, Option<ServicePort>) {
    let spec_s = svc.spec.as_ref();
    let ports: Vec<ServicePort> = spec_s.and_then(|s| s.ports.clone()).unwrap_or_default();
    let all = ports.iter().map(port_text).collect::<Vec<_>>().join(", ");
    if spec_s.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let to = spec_s
            .and_then(|s| s.external_name.clone())
            .unwrap_or_default();
        let text = format!("Service {key} is of type ExternalName: the cluster DNS answers {to} (CNAME); the path beyond is not weft's");
        return (Hop::ok("service", text), None);
    }
    let found = ports.iter().find(|p| {
        let proto = parse_proto(p.protocol.as_deref().unwrap_or("TCP"));
        match spec {
            None => true,
            Some(PortSpec { port, proto: want }) => {
                want.is_none_or(|w| Some(w) == proto)
                    && match port {
                        PortRef::Number(n) => p.port == i32::from(*n),
                        PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
                    }
            }
        }
    });
    let cluster_ip = spec_s
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("None");
    match found {
        Some(p) => {
            let target = match &p.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                    n.to_string()
                }
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                    format!("the pods' port named {s:?}")
                }
                None => p.port.to_string(),
            };
            let mut text = format!(
                "Service {key} (cluster IP {cluster_ip}) port {} -> target port {target}",
                port_text(p)
            );
            if spec.is_none() && ports.len() > 1 {
                text.push_str(&format!(" (it has {all}: give :PORT for another)"));
            }
            (Hop::ok("service", text), Some(p.clone()))
        }
        None => {
            let asked = match spec {
                Some(PortSpec {
                    port: PortRef::Number(n),
                    proto,
                }) => {
                    format!(
                        "{n}/{}",
                        proto_name(proto.unwrap_or(L4Proto::Tcp)).to_uppercase()
                    )
                }
                Some(PortSpec {
                    port: PortRef::Name(n),
                    ..
                }) => format!("{n:?}"),
                None => "any port".into(),
            };
            let text = format!("Service {key} has no port {asked}");
            let fix = if ports.is_empty() {
                "the Service declares no ports: add one to spec.ports".to_string()
            } else {
                format!("its ports are {all}: connect to one of them, or add {asked} to spec.ports")
            };
            (Hop::failed("service", text, Some(fix)), None)
        }
    }
}

/// A ready endpoint, and the protocol and port the Service's port maps to there.
type Reached = (Member, (L4Proto, u16));

/// The Service's endpoints for port `sp`: every one, ready or not (and why not), and the ready
/// ones with their target port.
fn endpoints(
    view: &ClusterView,
    key: &NsName,
    svc: &Service,
    sp: &ServicePort,
) -> (Hop, Vec<Reached>) {
    let proto = parse_proto(sp.protocol.as_deref().unwrap_or("TCP")).unwrap_or(L4Proto::Tcp);
    let mut ready = Vec::new();
    let mut lines = Vec::new();
    let mut not_ready = Vec::new();
    let mut seen = BTreeSet::new();
    for slice in view.slices_of(key) {
        // The slice's number for this Service port (matched by name, as the controller does).
        let number = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or(""))
                .then_some(p.port)
                .flatten()
        });
        for ep in &slice.endpoints {
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            if !seen.insert(ip) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| view.pod(&NsName::new(key.namespace.clone(), r.name.clone()?)));
            let name = pod
                .and_then(|p| ends::pod_member(p).ok())
                .map_or(String::new(), |m| format!("{} ", m.name()));
            let is_ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            let Some(port) = number.and_then(|n| u16::try_from(n).ok()) else {
                lines.push(format!(
                    "{name}{ip}: the slice has no port for {}",
                    port_text(sp)
                ));
                continue;
            };
            if is_ready {
                let member = ends::endpoint_member(pod, ip, ep.node_name.clone());
                lines.push(format!("{name}{ip}:{port} ready"));
                ready.push((member, (proto, port)));
            } else {
                let why = pod.map_or_else(|| "not ready".to_string(), why_not_ready);
                lines.push(format!("{name}{ip}:{port} NOT ready: {why}"));
                not_ready.push((name.trim_end().to_string(), why));
            }
        }
    }
    if !ready.is_empty() {
        return (
            Hop::ok("endpoints", format!("endpoints: {}", lines.join("; "))),
            ready,
        );
    }
    if !not_ready.is_empty() {
        let text = format!("no ready endpoint: {}", lines.join("; "));
        let fix = format!(
            "the Service answers only through ready pods: make {} ready ({})",
            not_ready
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            not_ready[0].1
        );
        return (Hop::failed("endpoints", text, Some(fix)), Vec::new());
    }
    // No endpoints at all: what the selector matches.
    let selector: BTreeMap<String, String> = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    if selector.is_empty() {
        let text = format!("Service {key} has no selector and no endpoints");
        let fix =
            "give it a selector, or EndpointSlices of your own (label kubernetes.io/service-name)"
                .to_string();
        return (Hop::failed("endpoints", text, Some(fix)), Vec::new());
    }
    let sel_text = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let in_ns: Vec<&Pod> = view
        .pods()
        .filter(|p| p.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
        .collect();
    let labels = |p: &Pod| p.metadata.labels.clone().unwrap_or_default();
    let matching: Vec<&Pod> = in_ns
        .iter()
        .copied()
        .filter(|p| {
            let l = labels(p);
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .collect();
    if let Some(p) = matching.first() {
        let text = format!(
            "selector {sel_text} matches pod {} but it is no endpoint yet ({})",
            p.metadata.name.as_deref().unwrap_or(""),
            why_not_ready(p)
        );
        return (Hop::failed("endpoints", text, None), Vec::new());
    }
    // Pods with the same label keys: the values they have instead.
    let mut near: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &in_ns {
        let l = labels(p);
        for k in selector.keys() {
            if let Some(v) = l.get(k) {
                near.entry(format!("{k}={v}"))
                    .or_default()
                    .insert(p.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    let text = format!(
        "selector {sel_text} matches no pods in namespace {}",
        key.namespace
    );
    let fix = if near.is_empty() {
        format!(
            "no pod in {} has the label keys {}: label the pods, or fix the selector",
            key.namespace,
            selector.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        // The values nearest the selector's first.
        let mut near: Vec<(String, BTreeSet<String>)> = near.into_iter().collect();
        near.sort_by_key(|(kv, _)| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            distance(v, selector.get(k).map_or("", String::as_str))
        });
        let have: Vec<String> = near
            .iter()
            .take(3)
            .map(|(kv, pods)| {
                format!(
                    "pods with {kv} exist ({})",
                    pods.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        format!("{}: change the selector to match them", have.join("; "))
    };
    (Hop::failed("endpoints", text, Some(fix)), Vec::new())
}

/// Why a pod is not ready, from its status.
fn why_not_ready(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let phase = weft_model::pod::phase(pod);
    if weft_model::pod::node_name(pod).is_none() {
        return "not scheduled to a node".into();
    }
    for cs in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            return format!(
                "container {} waiting: {}",
                cs.name,
                w.reason.as_deref().unwrap_or("?")
            );
        }
        if cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some()
        {
            return format!("container {} terminated", cs.name);
        }
        if !cs.ready {
            return format!(
                "container {} running but not ready (its readiness probe fails)",
                cs.name
            );
        }
    }
    let cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match cond {
        Some(c) if c.status != "True" => format!(
            "Ready is {}{}",
            c.status,
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        _ => format!("phase {phase}"),
    }
}

/// The route from `src` to `dst`: the same node, or across the pod network.
fn route(snapshot: &Snapshot, src: &Member, dst: &Member) -> Option<Hop> {
    let view = &snapshot.view;
    let (Some(from), Some(to)) = (&src.node, &dst.node) else {
        let through = src.node.as_deref().unwrap_or("its node");
        let pods = snapshot.config.pod_cidr;
        // The nodes the agents route to (`weft_net`'s reconciler takes the same).
        let held = view.nodes().any(|n| {
            weft_net::NodeInfo::from_node(n).is_ok_and(|info| info.pod_cidr.contains(dst.ip))
        });
        if pods.contains(dst.ip) && !held {
            return Some(Hop::failed(
                "route",
                format!(
                    "no route: {} is in the pod network ({pods}) but no node's pod CIDR holds it; \
                     {through} refuses it (network unreachable)",
                    dst.ip
                ),
                Some("send to a pod's or a Service's address (kubectl get pods -o wide)".into()),
            ));
        }
        let text = if snapshot.config.node_network.contains(dst.ip) {
            format!(
                "{} is on the node network: sent from {through}, masqueraded as it",
                dst.ip
            )
        } else {
            format!(
                "{} is outside the cluster: leaves through {through}, masqueraded as it",
                dst.ip
            )
        };
        return Some(Hop::ok("route", text));
    };
    let Some(to_node) = view.node(to) else {
        return Some(Hop::failed(
            "route",
            format!(
                "{} is on node {to}, which the API does not know",
                dst.name()
            ),
            None,
        ));
    };
    if !weft_model::node::is_ready(to_node) {
        return Some(Hop::failed(
            "route",
            format!("{} is on node {to}, which is NotReady", dst.name()),
            Some(format!("bring node {to} back (its kubelet and weft agent)")),
        ));
    }
    if from == to {
        return Some(Hop::ok(
            "route",
            format!("same node {from}: through the node's bridge"),
        ));
    }
    let cidr = weft_model::node::pod_cidr(to_node).unwrap_or("?");
    let via = match snapshot.config.network_mode {
        weft_model::config::NetworkMode::Vxlan => "over the VXLAN overlay",
        weft_model::config::NetworkMode::Direct => "by a direct route",
    };
    let node_ip = weft_model::node::internal_ip(to_node).map_or("?".into(), |i| i.to_string());
    Some(Hop::ok(
        "route",
        format!("node {from} -> node {to} ({node_ip}) {via}: {cidr} is {to}'s"),
    ))
}

/// The policies at the source (egress) and at the destination (ingress), one hop each.
fn policies(
    view: &ClusterView,
    tables: &mut verdict::Tables<'_>,
    src: &Member,
    dst: &Member,
    proto: L4Proto,
    port: u16,
    through_service: bool,
) -> Result<Option<Hop>> {
    let hairpin = through_service && src.pod.is_some() && src.pod == dst.pod;
    let v = verdict::judge(tables, src, dst, proto, port, hairpin)?;
    for (direction, hop, kind) in [
        (Direction::Egress, &v.egress, "egress"),
        (Direction::Ingress, &v.ingress, "ingress"),
    ] {
        if hop.allowed {
            continue;
        }
        let (word, peer, this) = match direction {
            Direction::Egress => ("to", dst.name(), src.name()),
            Direction::Ingress => ("from", src.name(), dst.name()),
        };
        let text = format!("{this}: {}", render::reason_text(view, &v, direction));
        let fix = match &hop.reason {
            verdict::Reason::Dropped { isolating } => format!(
                "add an {kind} rule allowing {}/{port} {word} {peer} to one of: {}",
                proto_name(proto).to_uppercase(),
                isolating
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                "see weft policy check {} {} {port}/{}",
                src.name(),
                dst.name(),
                proto_name(proto)
            ),
        };
        return Ok(Some(Hop::failed(kind, text, Some(fix))));
    }
    let egress = render::reason_text(view, &v, Direction::Egress);
    let ingress = render::reason_text(view, &v, Direction::Ingress);
    Ok(Some(Hop::ok(
        "policy",
        format!("egress: {egress}; ingress: {ingress}"),
    )))
}

/// Whether the destination pod listens on the port (when that can be seen).
fn listen(
    dst: &Member,
    proto: L4Proto,
    port: u16,
    through_service: bool,
    sockets: &dyn Fn(&NsName) -> Option<Sockets>,
) -> Option<Hop> {
    let pod = dst.pod.as_ref()?;
    let what = format!("{port}/{}", proto_name(proto).to_uppercase());
    let Some(s) = sockets(pod) else {
        return Some(Hop {
            kind: "listen",
            outcome: Outcome::Unknown,
            text: format!("{pod} {what}: not checked here (no lab on this machine): --probe connects for real"),
            fix: None,
        });
    };
    let set = match proto {
        L4Proto::Udp => &s.udp,
        _ => &s.tcp,
    };
    if set.contains(&port) {
        return Some(Hop::ok("listen", format!("{pod} listens on {what}")));
    }
    let others = set
        .iter()
        .map(|p| format!("{p}/{}", proto_name(proto).to_uppercase()))
        .collect::<Vec<_>>();
    let fix = if others.is_empty() {
        format!("nothing in {pod} listens on {}: start the server, or check its logs (weft logs -n {} {})", proto_name(proto).to_uppercase(), pod.namespace, pod.name)
    } else {
        let change = if through_service {
            "set the Service's targetPort to it"
        } else {
            "connect there"
        };
        format!("it listens on {}: {change}", others.join(", "))
    };
    Some(Hop::failed(
        "listen",
        format!("nothing listens on {what} in {pod}"),
        Some(fix),
    ))
}

/// What a lab's pod listens on: its network namespace's TCP listeners and bound UDP ports.
fn lab_sockets(lab: &weft_model::ClusterName, view: &ClusterView, pod: &NsName) -> Option<Sockets> {
    let p = view.pod(pod)?;
    let layout = weft_lab::layout::Layout::new(
        lab.clone(),
        &weft_lab::layout::Layout::state_root_from_env(),
    );
    let name = if weft_model::pod::host_network(p) {
        layout.node_netns(weft_model::pod::node_name(p)?)
    } else {
        layout.pod_netns(p.metadata.uid.as_deref()?)
    };
    let ns = weft_dataplane::NetNs::open_named(&name).ok()?;
    // /proc/thread-self: this thread's namespace (/proc/self/net is the main thread's).
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap_or_default()
    };
    let (tcp, udp) = std::thread::scope(|s| {
        s.spawn(|| {
            ns.run(|| {
                let tcp = read("tcp") + &read("tcp6");
                let udp = read("udp") + &read("udp6");
                (tcp, udp)
            })
        })
        .join()
    })
    .ok()?
    .ok()?;
    Some(Sockets {
        tcp: ports_in(&tcp, Some("0A")),
        udp: ports_in(&udp, None),
    })
}

/// The local ports of a /proc/net/{tcp,udp} table, of sockets in `state` (hex) if given.
fn ports_in(table: &str, state: Option<&str>) -> BTreeSet<u16> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            if let Some(st) = state {
                if f.get(3) != Some(&st) {
                    return None;
                }
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

pub async fn trace(target: &Target, args: TraceArgs) -> Result<i32> {
    let cluster = Cluster::connect(target).await?;
    let snapshot = Snapshot::fetch(&cluster).await?;
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let lab = match target {
        Target::Lab(name) => Some(name.clone()),
        Target::Kubeconfig { .. } => None,
    };
    let view = &snapshot.view;
    let sockets = |pod: &NsName| lab.as_ref().and_then(|l| lab_sockets(l, view, pod));
    let traced = compute(
        &snapshot,
        &args.from,
        &args.to,
        &namespace,
        args.namespace.is_some(),
        &sockets,
    )?;
    let mut probed = None;
    if args.probe {
        if let Some(c) = &traced.connection {
            let observed = crate::policy::probe::probe(
                &cluster,
                Some(&c.pod),
                c.dst,
                c.proto,
                c.port,
                Duration::from_secs(args.timeout),
            )
            .await;
            // The records come within the agents' batching (20 ms) and a poll.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let flows =
                crate::observe::flows_of(&cluster, target, c.src.into(), c.dst.into(), c.port)
                    .await;
            probed = Some((c.clone(), observed, flows));
        }
    }
    if args.output.is_some() {
        let out = json!({
            "from": traced.from,
            "to": traced.to,
            "ok": !traced.failed(),
            "hops": traced.hops.iter().map(|h| json!({
                "hop": h.kind,
                "outcome": match h.outcome { Outcome::Ok => "ok", Outcome::Failed => "failed", Outcome::Unknown => "unknown" },
                "text": h.text,
                "fix": h.fix,
            })).collect::<Vec<_>>(),
            "probe": probed.as_ref().map(|(c, o, flows)| json!({
                "to": format!("{}:{}/{}", c.dst, c.port, proto_name(c.proto)),
                "observed": o.word(),
                "flows": flows,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_text(&traced));
        if let Some((c, observed, flows)) = &probed {
            println!(
                "probe from {} to {}:{}/{}: {}",
                c.pod,
                c.dst,
                c.port,
                proto_name(c.proto),
                observed.word()
            );
            if flows.is_empty() {
                println!("  the flow log has no record of it (yet)");
            }
            for f in flows {
                println!("  {f}");
            }
        }
    }
    Ok(if traced.failed() { 1 } else { 0 })
}

/// The trace as a person reads it: one line per hop, the failed one marked, its fix under it.
pub fn render_text(t: &Traced) -> String {
    let mut out = format!("trace {} -> {}\n", t.from, t.to);
    for h in &t.hops {
        let mark = match h.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Failed => "FAIL",
            Outcome::Unknown => "?   ",
        };
        out.push_str(&format!("  {mark} {:<9} {}\n", h.kind, h.text));
        if let Some(fix) = &h.fix {
            out.push_str(&format!("       {:<9} fix: {fix}\n", ""));
        }
    }
    if t.failed() {
    } else if t.hops.iter().any(|h| h.outcome == Outcome::Unknown) {
        out.push_str("  no hop fails; those marked ? were not checked\n");
    } else {
        out.push_str("  every hop passes\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_near() {
        assert_eq!(distance("web", "web"), 0);
        assert_eq!(distance("wbe", "web"), 2);
        assert_eq!(distance("web-typo", "web"), 5);
        assert_eq!(distance("", "db"), 2);
    }

    #[test]
    fn ports_come_from_the_socket_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2\n";
        assert_eq!(ports_in(tcp, Some("0A")), BTreeSet::from([80]));
        assert_eq!(ports_in(tcp, None), BTreeSet::from([80, 8080]));
        let tcp6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n";
        assert_eq!(ports_in(tcp6, Some("0A")), BTreeSet::from([8080]));
    }

    #[test]
    fn the_port_is_split_off_the_target() {
        let (name, port) = split_port("web.shop:8080/udp").unwrap();
        assert_eq!(name, "web.shop");
        assert_eq!(
            port,
            Some(PortSpec {
                port: PortRef::Number(8080),
                proto: Some(L4Proto::Udp)
            })
        );
        assert_eq!(split_port("svc/web").unwrap(), ("svc/web", None));
        let (name, port) = split_port("10.96.0.10:dns/udp").unwrap();
        assert_eq!(name, "10.96.0.10");
        assert_eq!(port.unwrap().port, PortRef::Name("dns".into()));
        assert!(split_port(":80").is_err());
    }
}
