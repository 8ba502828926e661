//! PORT of `weft policy check` and `--port` of `matrix`: parsed from the command line, then
//! resolved on the destination to the port the traffic is really sent to (a number, a pod's
//! named container port, a Service port mapped to each endpoint's target port).

use std::fmt;

use anyhow::{anyhow, bail, Result};
use k8s_openapi::api::core::v1::Pod;
use weft_dataplane::nft::L4Proto;
use weft_policy::resolve::{named_port, pod_key};
use weft_view::{ClusterView, NsName};

use super::ends::{End, Member};

/// PORT as given: a number or a container/Service port name, and maybe a protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub port: PortRef,
    /// None: TCP for a number, whatever the name is declared with for a name.
    pub proto: Option<L4Proto>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortRef::Number(n) => write!(f, "{n}")?,
            PortRef::Name(n) => write!(f, "{n}")?,
        }
        match self.proto {
            Some(p) => write!(f, "/{}", proto_name(p)),
            None => Ok(()),
        }
    }
}

/// `tcp`, `udp`, `sctp`.
pub fn proto_name(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "tcp",
        L4Proto::Udp => "udp",
        L4Proto::Sctp => "sctp",
    }
}

pub fn parse_proto(text: &str) -> Option<L4Proto> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Some(L4Proto::Tcp),
        "udp" => Some(L4Proto::Udp),
        "sctp" => Some(L4Proto::Sctp),
        _ => None,
    }
}

/// `80`, `80/tcp`, `53/udp`, `http`, `dns/udp` (the protocol in any case).
pub fn parse_port(text: &str) -> Result<PortSpec> {
    let bad = |why: &str| {
        anyhow!("bad port {text:?}: {why} (give PORT[/PROTO], e.g. 80, 53/udp or http)")
    };
    let (port, proto) = match text.split_once('/') {
        Some((p, proto)) => (
            p,
            Some(parse_proto(proto).ok_or_else(|| bad("the protocol is tcp, udp or sctp"))?),
        ),
        None => (text, None),
    };
    if port.is_empty() {
        return Err(bad("no port"));
    }
    let port = if port.chars().all(|c| c.is_ascii_digit()) {
        match port.parse::<u16>() {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => return Err(bad("a port number is 1 to 65535")),
        }
    } else if port.len() <= 15
        && port
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && port.chars().any(|c| c.is_ascii_lowercase())
    {
        PortRef::Name(port.to_string())
    } else {
        return Err(bad(
            "a port name is up to 15 lowercase letters, digits and dashes",
        ));
    };
    Ok(PortSpec { port, proto })
}

/// One port the traffic is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DstPort {
    pub proto: L4Proto,
    pub port: u16,
    /// How the port was found: `80/tcp`, `http (8080/tcp)`, `svc port 80/tcp (http) -> 8080`.
    pub label: String,
}

/// The ports of `member` of `to` that `spec` means: for a Service, its ports (by number or
/// name) mapped to the endpoint's target ports; for a pod, a number, or a name declared by its
/// containers; without PORT, every port the Service or pod declares.
pub fn dst_ports(
    view: &ClusterView,
    to: &End,
    member: &Member,
    spec: Option<&PortSpec>,
) -> Result<Vec<DstPort>> {
    if let Some(svc_key) = &to.service {
        return service_ports(view, svc_key, member, spec);
    }
    let pod = member.pod.as_ref().and_then(|k| view.pod(k));
    match (spec, pod) {
        (
            Some(PortSpec {
                port: PortRef::Number(n),
                proto,
            }),
            _,
        ) => {
            let proto = proto.unwrap_or(L4Proto::Tcp);
            Ok(vec![DstPort {
                proto,
                port: *n,
                label: format!("{n}/{}", proto_name(proto)),
            }])
        }
        (
            Some(PortSpec {
                port: PortRef::Name(name),
                proto,
            }),
            Some(pod),
        ) => {
            let protos = match proto {
                Some(p) => vec![*p],
                None => vec![L4Proto::Tcp, L4Proto::Udp, L4Proto::Sctp],
            };
            let found: Vec<DstPort> = protos
                .into_iter()
                .filter_map(|p| {
                    named_port(pod, name, p).map(|n| DstPort {
                        proto: p,
                        port: n,
                        label: format!("{name} ({n}/{})", proto_name(p)),
                    })
                })
                .collect();
            if found.is_empty() {
                bail!("pod {} declares no port named {name:?}", pod_key(pod));
            }
            Ok(found)
        }
        (
            Some(PortSpec {
                port: PortRef::Name(name),
                ..
            }),
            None,
        ) => bail!(
            "port {name:?} is a name, and {} is not a pod to look it up on: give a number",
            member.name()
        ),
        (None, Some(pod)) => {
            let declared = declared_ports(pod);
            if declared.is_empty() {
                bail!(
                    "pod {} declares no container ports: give PORT[/PROTO], e.g. 80/tcp",
                    pod_key(pod)
                );
            }
            Ok(declared)
        }
        (None, None) => bail!("give PORT[/PROTO] for traffic to {}", member.name()),
    }
}

fn declared_ports(pod: &Pod) -> Vec<DstPort> {
    let mut out: Vec<DstPort> = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let (Some(proto), Ok(n)) = (
                parse_proto(p.protocol.as_deref().unwrap_or("TCP")),
                u16::try_from(p.container_port),
            ) else {
                continue;
            };
            let label = match &p.name {
                Some(name) => format!("{name} ({n}/{})", proto_name(proto)),
                None => format!("{n}/{}", proto_name(proto)),
            };
            if !out.iter().any(|d| d.proto == proto && d.port == n) {
                out.push(DstPort {
                    proto,
                    port: n,
                    label,
                });
            }
        }
    }
    out
}

fn service_ports(
    view: &ClusterView,
    svc_key: &NsName,
    member: &Member,
    spec: Option<&PortSpec>,
) -> Result<Vec<DstPort>> {
    let svc = view
        .service(svc_key)
        .ok_or_else(|| anyhow!("unknown Service {svc_key}"))?;
    let ports: Vec<(String, L4Proto, u16)> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let proto = parse_proto(p.protocol.as_deref().unwrap_or("TCP"))?;
            Some((
                p.name.clone().unwrap_or_default(),
                proto,
                u16::try_from(p.port).ok()?,
            ))
        })
        .collect();
    let chosen: Vec<&(String, L4Proto, u16)> = ports
        .iter()
        .filter(|(name, proto, port)| match spec {
            None => true,
            Some(s) => {
                let by = match &s.port {
                    PortRef::Number(n) => port == n,
                    PortRef::Name(want) => name == want,
                };
                let proto_ok = match (&s.port, s.proto) {
                    (_, Some(p)) => *proto == p,
                    (PortRef::Number(_), None) => *proto == L4Proto::Tcp,
                    (PortRef::Name(_), None) => true,
                };
                by && proto_ok
            }
        })
        .collect();
    if chosen.is_empty() {
        let have: Vec<String> = ports
            .iter()
            .map(|(n, proto, p)| match n.as_str() {
                "" => format!("{p}/{}", proto_name(*proto)),
                n => format!("{p}/{} ({n})", proto_name(*proto)),
            })
            .collect();
        let want = spec.map(|s| s.to_string()).unwrap_or_default();
        bail!(
            "Service {svc_key} has no port {want}; its ports: {}",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        );
    }
    Ok(chosen
        .into_iter()
        .filter_map(|(name, proto, port)| {
            let target = member
                .slice_ports
                .iter()
                .find(|(n, p, _)| n == name && p == proto)
                .map(|(_, _, t)| *t)?;
            let named = if name.is_empty() {
                String::new()
            } else {
                format!(" ({name})")
            };
            Some(DstPort {
                proto: *proto,
                port: target,
                label: format!("svc port {port}/{}{named} -> {target}", proto_name(*proto)),
            })
        })
        .collect())
}
