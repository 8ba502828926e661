//! FROM and TO of `weft policy check`: parsed from the command line, then resolved against the
//! cluster view to what the traffic really flows between (a pod, a Service's ready endpoint
//! pods, an address).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::Pod;
use weft_dataplane::nft::L4Proto;
use weft_policy::resolve::member_ip;

use super::ports::parse_proto;
use weft_view::{ClusterView, NsName};

/// One way to read FROM or TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A pod; `namespace` None: the default namespace.
    Pod {
        namespace: Option<String>,
        name: String,
    },
    Service {
        namespace: Option<String>,
        name: String,
    },
    Addr(Ipv4Addr),
}

fn is_service_word(w: &str) -> bool {
    matches!(w, "svc" | "service" | "services")
}

fn is_pod_word(w: &str) -> bool {
    matches!(w, "po" | "pod" | "pods")
}

/// The readings of `text` (`pod`, `ns/pod`, `svc/name`, `ns/svc/name`, an IPv4 address), in
/// order of preference; more than one where the text is ambiguous until the cluster is known
/// (`svc/web` is also pod `web` of a namespace called `svc`).
pub fn parse_end(text: &str) -> Result<Vec<Spec>> {
    if text.is_empty() {
        bail!("an empty pod, Service or address");
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return match addr {
            IpAddr::V4(a) => Ok(vec![Spec::Addr(a)]),
            IpAddr::V6(_) => bail!("{text}: an IPv6 address; weft's pod network is IPv4"),
        };
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        bail!("{text:?} is not an IPv4 address");
    }
    let parts: Vec<&str> = text.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("{text:?}: an empty name (give pod, ns/pod, svc/name, ns/svc/name or an address)");
    }
    let pod = |ns: Option<&str>, name: &str| Spec::Pod {
        namespace: ns.map(str::to_string),
        name: name.to_string(),
    };
    let service = |ns: Option<&str>, name: &str| Spec::Service {
        namespace: ns.map(str::to_string),
        name: name.to_string(),
    };
    Ok(match parts.as_slice() {
        [name] => vec![pod(None, name)],
        [word, name] if is_service_word(word) => vec![service(None, name), pod(Some(word), name)],
        [word, name] if is_pod_word(word) => vec![pod(None, name), pod(Some(word), name)],
        [ns, name] => vec![pod(Some(ns), name)],
        [ns, word, name] if is_service_word(word) => vec![service(Some(ns), name)],
        [ns, word, name] if is_pod_word(word) => vec![pod(Some(ns), name)],
        [_, word, _] => {
            bail!("{text:?}: unknown kind {word:?} (give ns/pod, ns/svc/name or ns/pod/name)")
        }
        _ => bail!(
            "{text:?}: too many parts (give pod, ns/pod, svc/name, ns/svc/name or an address)"
        ),
    })
}

/// One sender or receiver of the traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The pod, if the address is a pod's.
    pub pod: Option<NsName>,
    pub ip: Ipv4Addr,
    /// The node the address is on (a pod's node, or the node the address belongs to).
    pub node: Option<String>,
    /// Whether the address is a node's own (a hostNetwork pod, or a node): its traffic is the
    /// node's, and NetworkPolicy does not apply to it.
    pub host: bool,
    /// For a Service's endpoint: the slice's ports (name, protocol, number).
    pub slice_ports: Vec<(String, L4Proto, u16)>,
}

impl Member {
    /// `ns/pod`, or the address.
    pub fn name(&self) -> String {
        match &self.pod {
            Some(p) => p.to_string(),
            None => self.ip.to_string(),
        }
    }
}

/// FROM or TO, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// What the user gave, made explicit (`x/a`, `svc/x/web`, `10.0.0.1`).
    pub label: String,
    pub service: Option<NsName>,
    pub members: Vec<Member>,
}

/// Resolves `text`: bare names in `namespace`; when `namespace` was not chosen explicitly, a
/// bare pod name missing there is looked for in every namespace (one match is used).
pub fn resolve_end(view: &ClusterView, text: &str, namespace: &str, explicit: bool) -> Result<End> {
    let specs = parse_end(text)?;
    let mut found = Vec::new();
    for spec in &specs {
        if let Some(end) = lookup(view, spec, namespace)? {
            found.push(end);
        }
    }
    match found.len() {
        1 => return Ok(found.remove(0)),
        0 => {}
        _ => bail!(
            "ambiguous name {text:?}: it is {} (say which: ns/svc/name or ns/pod)",
            found
                .iter()
                .map(|e| e.label.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    }
    if let [Spec::Pod {
        namespace: None,
        name,
    }] = specs.as_slice()
    {
        if !explicit {
            let elsewhere: Vec<&Pod> = view
                .pods()
                .filter(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                .collect();
            match elsewhere.as_slice() {
                [pod] => return pod_end(pod),
                [] => {}
                many => bail!(
                    "ambiguous name {text:?}: no pod {name} in namespace {namespace}, and pods {} (give ns/pod)",
                    many.iter().map(|p| key(p).to_string()).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
    bail!("{}", not_found(&specs[0], namespace))
}

fn not_found(spec: &Spec, namespace: &str) -> String {
    match spec {
        Spec::Pod {
            namespace: ns,
            name,
        } => format!(
            "unknown pod {name:?} in namespace {}",
            ns.as_deref().unwrap_or(namespace)
        ),
        Spec::Service {
            namespace: ns,
            name,
        } => format!(
            "unknown Service {name:?} in namespace {}",
            ns.as_deref().unwrap_or(namespace)
        ),
        Spec::Addr(a) => format!("unknown address {a}"),
    }
}

fn key(pod: &Pod) -> NsName {
    weft_policy::resolve::pod_key(pod)
}

fn lookup(view: &ClusterView, spec: &Spec, default_ns: &str) -> Result<Option<End>> {
    match spec {
        Spec::Addr(a) => Ok(Some(addr_end(view, *a))),
        Spec::Pod { namespace, name } => {
            let k = NsName::new(namespace.as_deref().unwrap_or(default_ns), name);
            view.pod(&k).map(pod_end).transpose()
        }
        Spec::Service { namespace, name } => {
            let k = NsName::new(namespace.as_deref().unwrap_or(default_ns), name);
            if view.service(&k).is_none() {
                return Ok(None);
            }
            Ok(Some(service_end(view, &k)))
        }
    }
}

/// A Service endpoint as a member: its pod when the slice names one that is there, else the
/// address on the node the slice gives.
pub fn endpoint_member(pod: Option<&Pod>, ip: Ipv4Addr, node: Option<String>) -> Member {
    match pod.and_then(|p| pod_member(p).ok()) {
        Some(m) => m,
        None => Member {
            pod: None,
            ip,
            node,
            host: false,
            slice_ports: Vec::new(),
        },
    }
}

/// A pod as a member: its address, or the node's for a hostNetwork pod.
pub fn pod_member(pod: &Pod) -> Result<Member> {
    let k = key(pod);
    let node = weft_model::pod::node_name(pod).map(str::to_string);
    let host = weft_model::pod::host_network(pod);
    let ip = match (member_ip(pod), host) {
        (Some(ip), _) => ip,
        (None, true) => weft_model::pod::pod_ip(pod).ok_or_else(|| {
            anyhow!(
                "pod {k} has no address yet (phase {})",
                weft_model::pod::phase(pod)
            )
        })?,
        (None, false) => match weft_model::pod::phase(pod) {
            p @ ("Succeeded" | "Failed") => bail!("pod {k} has finished ({p}): it has no address"),
            p => bail!("pod {k} has no address yet (phase {p})"),
        },
    };
    Ok(Member {
        pod: Some(k),
        ip,
        node,
        host,
        slice_ports: Vec::new(),
    })
}

fn pod_end(pod: &Pod) -> Result<End> {
    let member = pod_member(pod)?;
    Ok(End {
        label: key(pod).to_string(),
        service: None,
        members: vec![member],
    })
}

/// An address: a pod's (it is that pod), a node's, or outside the pod network.
fn addr_end(view: &ClusterView, addr: Ipv4Addr) -> End {
    let pods: Vec<&Pod> = view.pods().filter(|p| member_ip(p) == Some(addr)).collect();
    let node = view
        .nodes()
        .find(|n| weft_model::node::internal_ip(n) == Some(addr))
        .and_then(|n| n.metadata.name.clone());
    let member = match (pods.as_slice(), node) {
        ([pod], _) => Member {
            pod: Some(key(pod)),
            ip: addr,
            node: weft_model::pod::node_name(pod).map(str::to_string),
            host: false,
            slice_ports: Vec::new(),
        },
        (_, node) => Member {
            pod: None,
            ip: addr,
            host: node.is_some(),
            node,
            slice_ports: Vec::new(),
        },
    };
    let label = match &member.pod {
        Some(p) => format!("{addr} ({p})"),
        None if member.host => format!("{addr} (node {})", member.node.as_deref().unwrap_or("")),
        None => addr.to_string(),
    };
    End {
        label,
        service: None,
        members: vec![member],
    }
}

/// A Service: its ready endpoints (EndpointSlice conditions; a missing `ready` means ready),
/// as pods where the endpoint names one.
fn service_end(view: &ClusterView, svc: &NsName) -> End {
    let mut members: BTreeMap<Ipv4Addr, Member> = BTreeMap::new();
    for slice in view.slices_of(svc) {
        let ports: Vec<(String, L4Proto, u16)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = parse_proto(p.protocol.as_deref().unwrap_or("TCP"))?;
                let port = u16::try_from(p.port?).ok()?;
                Some((p.name.clone().unwrap_or_default(), proto, port))
            })
            .collect();
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.clone().unwrap_or_else(|| svc.namespace.clone());
                    view.pod(&NsName::new(ns, r.name.clone()?))
                });
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                    continue;
                };
                let mut member = endpoint_member(pod, ip, ep.node_name.clone());
                member.slice_ports.extend(ports.iter().cloned());
                members.entry(ip).or_insert(member);
            }
        }
    }
    End {
        label: format!("svc/{svc}"),
        service: Some(svc.clone()),
        members: members.into_values().collect(),
    }
}
