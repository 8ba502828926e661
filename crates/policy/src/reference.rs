//! The `networking.k8s.io/v1` semantics written as plainly as possible, for one connection at
//! a time, straight from the objects: the yardstick the compiled table is checked against. It
//! shares nothing with `resolve` or `compile` but the typed [`Policy`], the one selector
//! matcher and the lookup of a container port by name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use weft_dataplane::nft::L4Proto;
use weft_model::selector::matches;

use crate::resolve::named_port;
use crate::spec::{Direction, Peer, Policy, PortMatch};

/// A cluster as the reference sees it.
pub struct Cluster<'a> {
    pub namespaces: Vec<&'a Namespace>,
    pub policies: Vec<Policy>,
}

/// One end of a connection: a pod, or an address outside the cluster's pods.
#[derive(Clone, Copy, Debug)]
pub enum End<'a> {
    Pod(&'a Pod),
    Addr(Ipv4Addr),
}

fn labels(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

impl Cluster<'_> {
    fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .map(|n| labels(&n.metadata))
    }

    fn address(end: End) -> Option<Ipv4Addr> {
        match end {
            End::Pod(p) => weft_model::pod::pod_ip(p),
            End::Addr(a) => Some(a),
        }
    }

    /// Whether `policy` selects `pod`.
    fn selects(policy: &Policy, pod: &Pod) -> bool {
        pod.metadata.namespace.as_deref() == Some(policy.key.namespace.as_str())
            && matches(&policy.pod_selector, &labels(&pod.metadata))
    }

    fn peer_matches(&self, policy: &Policy, peer: &Peer, other: End) -> bool {
        match peer {
            Peer::Nothing => false,
            Peer::Block { cidr, except } => {
                Cluster::address(other).is_some_and(|a| Peer::block_contains(cidr, except, a))
            }
            Peer::Pods { namespaces, pods } => {
                let End::Pod(pod) = other else {
                    return false;
                };
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                let ns_ok = match namespaces {
                    None => ns == policy.key.namespace,
                    Some(sel) => self.namespace_labels(ns).is_some_and(|l| matches(sel, &l)),
                };
                let everything = LabelSelector::default();
                ns_ok && matches(pods.as_ref().unwrap_or(&everything), &labels(&pod.metadata))
            }
        }
    }

    /// Whether traffic of `direction` between the selected `pod` and `other`, to `dst`'s
    /// `port`, is allowed by the policies (the pod not isolated: allowed).
    fn allowed_at(
        &self,
        direction: Direction,
        pod: &Pod,
        other: End,
        dst: End,
        proto: L4Proto,
        port: u16,
    ) -> bool {
        let mut isolated = false;
        for policy in &self.policies {
            if !Cluster::selects(policy, pod) {
                continue;
            }
            let Some(rules) = policy.rules(direction) else {
                continue;
            };
            isolated = true;
            for rule in rules {
                let peer_ok = match &rule.peers {
                    None => true,
                    Some(peers) => peers.iter().any(|p| self.peer_matches(policy, p, other)),
                };
                let port_ok = match &rule.ports {
                    None => true,
                    Some(ports) => ports.iter().any(|p| {
                        p.protocol == proto
                            && match &p.port {
                                PortMatch::Any => true,
                                PortMatch::Range(a, b) => (*a..=*b).contains(&port),
                                PortMatch::Named(name) => match dst {
                                    End::Pod(d) => named_port(d, name, proto) == Some(port),
                                    End::Addr(_) => false,
                                },
                            }
                    }),
                };
                if peer_ok && port_ok {
                    return true;
                }
            }
        }
        !isolated
    }

    /// Whether `src`'s pod may send it (egress) and `dst`'s pod may receive it (ingress). A
    /// pod may always reach itself (directly it never leaves the pod; through a Service it is
    /// exempt, as Cilium exempts service loopback).
    pub fn verdict(&self, src: End, dst: End, proto: L4Proto, port: u16) -> (bool, bool) {
        if let (End::Pod(a), End::Pod(b)) = (src, dst) {
            if std::ptr::eq(a, b) {
                return (true, true);
            }
        }
        let egress = match src {
            End::Pod(p) => self.allowed_at(Direction::Egress, p, dst, dst, proto, port),
            End::Addr(_) => true,
        };
        let ingress = match dst {
            End::Pod(p) => self.allowed_at(Direction::Ingress, p, src, dst, proto, port),
            End::Addr(_) => true,
        };
        (egress, ingress)
    }
}
