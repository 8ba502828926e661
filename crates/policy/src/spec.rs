//! A NetworkPolicy as the compiler reads it: `networking.k8s.io/v1` with its defaults made
//! explicit (policy types inferred, missing lists meaning "everything", the default protocol),
//! parsed once at the edge so the compiler works with valid values.

use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_dataplane::nft::L4Proto;
use weft_model::cidr::Ipv4Cidr;
use weft_view::NsName;

/// One policy, normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub key: NsName,
    /// Selects pods of the policy's own namespace.
    pub pod_selector: LabelSelector,
    /// None: the policy does not isolate ingress. Some(rules): selected pods are isolated for
    /// ingress and this policy allows what any of the rules allows (none: nothing).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

/// Traffic directions, as seen from the selected pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ingress (`from`) or egress (`to`) rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// None: every peer (the field missing or empty).
    pub peers: Option<Vec<Peer>>,
    /// None: every port and protocol (the field missing or empty).
    pub ports: Option<Vec<Port>>,
}

/// The other end of the traffic a rule allows.
#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// Pods chosen by labels: in the policy's namespace (`namespaces` None), or in the
    /// namespaces a selector chooses; `pods` None means every pod there.
    Pods {
        namespaces: Option<LabelSelector>,
        pods: Option<LabelSelector>,
    },
    /// Addresses in `cidr` but in none of `except`.
    Block {
        cidr: Ipv4Cidr,
        except: Vec<Ipv4Cidr>,
    },
    /// A peer that can match nothing: an IPv6 block (this is an IPv4 network), or a peer with
    /// no selector and no block, which the API refuses but an old object may carry.
    Nothing,
}

/// One entry of `ports`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub protocol: L4Proto,
    pub port: PortMatch,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortMatch {
    /// Every port of the protocol.
    Any,
    /// `port` to `end` inclusive (`endPort`; equal for a single port).
    Range(u16, u16),
    /// A container port name, resolved on the destination pod.
    Named(String),
}

impl Peer {
    /// Whether `addr` is in the block (a [`Peer::Block`]).
    pub fn block_contains(cidr: &Ipv4Cidr, except: &[Ipv4Cidr], addr: Ipv4Addr) -> bool {
        cidr.contains(addr) && !except.iter().any(|e| e.contains(addr))
    }
}

impl Policy {
    /// The policy as the compiler reads it. `policyTypes` missing: Ingress, plus Egress when
    /// the policy has egress rules (the API server's defaulting).
    pub fn from_k8s(np: &NetworkPolicy) -> Policy {
        let meta = &np.metadata;
        let key = NsName::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let spec = np.spec.clone().unwrap_or_default();
        let types: Vec<String> = match spec.policy_types.as_deref() {
            Some(t) if !t.is_empty() => t.to_vec(),
            _ => {
                let mut t = vec!["Ingress".to_string()];
                if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                    t.push("Egress".to_string());
                }
                t
            }
        };
        let has = |name: &str| types.iter().any(|t| t == name);
        let ingress = has("Ingress").then(|| {
            spec.ingress
                .unwrap_or_default()
                .into_iter()
                .map(|r| Rule::new(r.from, r.ports))
                .collect()
        });
        let egress = has("Egress").then(|| {
            spec.egress
                .unwrap_or_default()
                .into_iter()
                .map(|r| Rule::new(r.to, r.ports))
                .collect()
        });
        Policy {
            key,
            pod_selector: spec.pod_selector.unwrap_or_default(),
            ingress,
            egress,
        }
    }

    /// The rules of `direction`, if the policy isolates it.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

impl Rule {
    fn new(peers: Option<Vec<NetworkPolicyPeer>>, ports: Option<Vec<NetworkPolicyPort>>) -> Rule {
        Rule {
            peers: peers
                .filter(|p| !p.is_empty())
                .map(|p| p.into_iter().map(Peer::from_k8s).collect()),
            ports: ports
                .filter(|p| !p.is_empty())
                .map(|p| p.iter().filter_map(Port::from_k8s).collect()),
        }
    }
}

impl Peer {
    fn from_k8s(p: NetworkPolicyPeer) -> Peer {
        if let Some(block) = p.ip_block {
            let Some(cidr) = parse_cidr(&block.cidr) else {
                return Peer::Nothing;
            };
            let except = block
                .except
                .unwrap_or_default()
                .iter()
                .filter_map(|e| parse_cidr(e))
                .collect();
            return Peer::Block { cidr, except };
        }
        if p.pod_selector.is_none() && p.namespace_selector.is_none() {
            return Peer::Nothing;
        }
        Peer::Pods {
            namespaces: p.namespace_selector,
            pods: p.pod_selector,
        }
    }
}

/// An IPv4 CIDR as the API accepts it (host bits allowed, as Go's `net.ParseCIDR`); None for
/// IPv6 or anything unparseable, which then matches no IPv4 address.
fn parse_cidr(text: &str) -> Option<Ipv4Cidr> {
    let (addr, len) = text.trim().split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some(Ipv4Cidr::containing(addr, len))
}

impl Port {
    /// None for an entry that can match nothing this network carries (an unknown protocol, or
    /// a port number out of range, which the API refuses).
    fn from_k8s(p: &NetworkPolicyPort) -> Option<Port> {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => L4Proto::Tcp,
            "UDP" => L4Proto::Udp,
            "SCTP" => L4Proto::Sctp,
            _ => return None,
        };
        let port = match &p.port {
            None => PortMatch::Any,
            Some(IntOrString::String(name)) => match name.parse::<u16>() {
                // A number written as a string, as some manifests do.
                Ok(n) => PortMatch::Range(n, n),
                Err(_) => PortMatch::Named(name.clone()),
            },
            Some(IntOrString::Int(n)) => {
                let start = u16::try_from(*n).ok().filter(|n| *n > 0)?;
                let end = match p.end_port {
                    Some(e) => u16::try_from(e).ok().filter(|e| *e >= start)?,
                    None => start,
                };
                PortMatch::Range(start, end)
            }
        };
        Some(Port { protocol, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: serde_json::Value) -> Policy {
        Policy::from_k8s(&serde_json::from_value(yaml).unwrap())
    }

    #[test]
    fn policy_types_are_inferred_like_the_api_server_does() {
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}}
        }));
        assert_eq!(p.ingress, Some(vec![]));
        assert_eq!(p.egress, None);
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "egress": [{}]}
        }));
        assert!(p.ingress.is_some() && p.egress.is_some());
        // An empty egress list infers nothing: ingress only.
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "egress": []}
        }));
        assert_eq!(p.egress, None);
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}
        }));
        assert_eq!(p.ingress, None);
        assert_eq!(p.egress, Some(vec![]));
    }

    #[test]
    fn empty_lists_mean_everything_and_ports_default_to_tcp() {
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [
                {"from": [], "ports": []},
                {"ports": [{"port": 80}, {"protocol": "UDP", "port": 53, "endPort": 60},
                           {"port": "http"}, {"port": "8080"}, {"protocol": "SCTP"}]}
            ]}
        }));
        let rules = p.ingress.unwrap();
        assert_eq!(
            rules[0],
            Rule {
                peers: None,
                ports: None
            }
        );
        assert_eq!(
            rules[1].ports.clone().unwrap(),
            vec![
                Port {
                    protocol: L4Proto::Tcp,
                    port: PortMatch::Range(80, 80)
                },
                Port {
                    protocol: L4Proto::Udp,
                    port: PortMatch::Range(53, 60)
                },
                Port {
                    protocol: L4Proto::Tcp,
                    port: PortMatch::Named("http".into())
                },
                Port {
                    protocol: L4Proto::Tcp,
                    port: PortMatch::Range(8080, 8080)
                },
                Port {
                    protocol: L4Proto::Sctp,
                    port: PortMatch::Any
                },
            ]
        );
    }

    #[test]
    fn peers_are_typed() {
        let p = parse(serde_json::json!({
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"app": "web"}}},
                {"namespaceSelector": {}, "podSelector": {}},
                {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.1.0/24", "fd00::/8"]}},
                {"ipBlock": {"cidr": "fd00::/8"}},
                {}
            ]}]}
        }));
        let peers = p.ingress.unwrap()[0].peers.clone().unwrap();
        assert!(matches!(
            &peers[0],
            Peer::Pods {
                namespaces: None,
                pods: Some(_)
            }
        ));
        assert!(matches!(
            &peers[1],
            Peer::Pods {
                namespaces: Some(_),
                pods: Some(_)
            }
        ));
        assert_eq!(
            peers[2],
            Peer::Block {
                cidr: "10.1.0.0/16".parse().unwrap(),
                except: vec!["10.1.1.0/24".parse().unwrap()]
            }
        );
        assert_eq!(peers[3], Peer::Nothing);
        assert_eq!(peers[4], Peer::Nothing);
    }
}
