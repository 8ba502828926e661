//! What the policies mean on one node, in addresses: which of the node's pods each policy
//! selects (and so isolates), and for each rule of those policies the peer addresses and the
//! named ports it resolves to. Everything here reads the cluster view and nothing else; the
//! compiler turns the result into nftables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use weft_dataplane::nft::L4Proto;
use weft_model::cidr::Ipv4Cidr;
use weft_view::{ClusterView, NsName};

use crate::spec::{Direction, Peer, Policy, PortMatch, Rule};

/// A pod that takes part in policy: it has an address of its own (not the node's network)
/// and has not finished (a finished pod's address may already be someone else's).
pub fn member_ip(pod: &Pod) -> Option<Ipv4Addr> {
    member_ip_or(pod, &Announced::new())
}

/// Addresses the CNI plugin announced for pods whose status may not carry them yet.
pub type Announced = BTreeMap<NsName, Ipv4Addr>;

/// [`member_ip`], falling back to an announced address.
pub(crate) fn member_ip_or(pod: &Pod, announced: &Announced) -> Option<Ipv4Addr> {
    if weft_model::pod::host_network(pod) {
        return None;
    }
    if matches!(weft_model::pod::phase(pod), "Succeeded" | "Failed") {
        return None;
    }
    weft_model::pod::pod_ip(pod).or_else(|| announced.get(&pod_key(pod)).copied())
}

/// The key of a pod in the view.
pub fn pod_key(pod: &Pod) -> NsName {
    NsName::new(
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The number a container port name stands for on `pod`, for `protocol` (the first container
/// declaring it, as the kubelet would resolve it).
pub fn named_port(pod: &Pod, name: &str, protocol: L4Proto) -> Option<u16> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && p.protocol.as_deref().unwrap_or("TCP") == protocol_name(protocol)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn protocol_name(p: L4Proto) -> &'static str {
    match p {
        L4Proto::Tcp => "TCP",
        L4Proto::Udp => "UDP",
        L4Proto::Sctp => "SCTP",
    }
}

/// One rule of an active policy, in addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Every peer (`from`/`to` missing or empty).
    pub any_peer: bool,
    /// Addresses of the pods the rule's pod peers select.
    pub pod_peers: BTreeSet<Ipv4Addr>,
    /// The rule's blocks: `(cidr, except)`.
    pub blocks: Vec<(Ipv4Cidr, Vec<Ipv4Cidr>)>,
    /// Every port (`ports` missing or empty).
    pub any_port: bool,
    /// Numbered ports and ranges, and whole protocols (`(proto, None)`).
    pub ports: BTreeSet<(L4Proto, Option<(u16, u16)>)>,
    /// Named ports, resolved on the destination pods: `(pod address, protocol, port)`.
    pub named: BTreeSet<(Ipv4Addr, L4Proto, u16)>,
    /// Whether the rule has named ports at all (they may resolve to nothing).
    pub has_named: bool,
}

impl ResolvedRule {
    /// Whether the rule can allow anything.
    pub fn allows_something(&self) -> bool {
        (self.any_peer || !self.pod_peers.is_empty() || !self.blocks.is_empty())
            && (self.any_port || !self.ports.is_empty() || !self.named.is_empty())
    }
}

/// A policy that selects at least one pod of this node, in addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    pub policy: Policy,
    /// The addresses of this node's pods it selects.
    pub selected: Vec<Ipv4Addr>,
    /// The rules per direction the policy isolates.
    pub rules: BTreeMap<Direction, Vec<ResolvedRule>>,
}

/// The policies of one node, resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePolicies {
    /// By policy key.
    pub active: BTreeMap<NsName, Active>,
    /// This node's isolated pods: address -> the policies isolating it, per direction
    /// (a pod missing from a direction's map is not isolated for it).
    pub isolated: BTreeMap<Direction, BTreeMap<Ipv4Addr, Vec<NsName>>>,
    /// This node's pods taking part in policy (isolated or not): address -> pod.
    pub local: BTreeMap<Ipv4Addr, NsName>,
}

/// Resolves every policy against the view for the pods of `node`; `announced` holds addresses
/// the node's CNI plugin gave pods whose status does not show them yet.
pub fn resolve(view: &ClusterView, node: &str, announced: &Announced) -> NodePolicies {
    let policies: Vec<Policy> = view.network_policies().map(Policy::from_k8s).collect();
    let dirty: Vec<(NsName, Option<&Policy>)> =
        policies.iter().map(|p| (p.key.clone(), Some(p))).collect();
    re_resolve(view, node, announced, NodePolicies::default(), &dirty)
}

/// `old` with the policies in `dirty` resolved again (None: the policy is gone; those now
/// selecting none of the node's pods drop out too); the others are kept as they were. The
/// node's pods and their isolation are recomputed (one entry per local pod).
pub fn re_resolve(
    view: &ClusterView,
    node: &str,
    announced: &Announced,
    old: NodePolicies,
    dirty: &[(NsName, Option<&Policy>)],
) -> NodePolicies {
    let local: Vec<(&Pod, Ipv4Addr)> = view
        .pods_on(node)
        .filter_map(|p| member_ip_or(p, announced).map(|ip| (p, ip)))
        .collect();
    let mut out = NodePolicies {
        active: old.active,
        ..NodePolicies::default()
    };
    for (pod, ip) in &local {
        out.local.insert(*ip, pod_key(pod));
    }
    for (key, policy) in dirty {
        out.active.remove(key);
        if let Some(active) = policy.and_then(|p| resolve_one(view, p, &local, announced)) {
            out.active.insert(key.clone(), active);
        }
    }
    for (key, active) in &out.active {
        for direction in active.rules.keys() {
            for ip in &active.selected {
                out.isolated
                    .entry(*direction)
                    .or_default()
                    .entry(*ip)
                    .or_default()
                    .push(key.clone());
            }
        }
    }
    out
}

/// One policy against this node's pods: None if it selects none of them.
fn resolve_one(
    view: &ClusterView,
    policy: &Policy,
    local: &[(&Pod, Ipv4Addr)],
    announced: &Announced,
) -> Option<Active> {
    let empty = BTreeMap::new();
    let selected: Vec<(&Pod, Ipv4Addr)> = local
        .iter()
        .filter(|(p, _)| {
            p.metadata.namespace.as_deref() == Some(policy.key.namespace.as_str())
                && weft_model::selector::matches(
                    &policy.pod_selector,
                    p.metadata.labels.as_ref().unwrap_or(&empty),
                )
        })
        .copied()
        .collect();
    if selected.is_empty() {
        return None;
    }
    let mut rules = BTreeMap::new();
    for direction in Direction::BOTH {
        let Some(list) = policy.rules(direction) else {
            continue;
        };
        let resolved = list
            .iter()
            .map(|r| resolve_rule(view, policy, r, direction, &selected, announced))
            .collect();
        rules.insert(direction, resolved);
    }
    Some(Active {
        policy: policy.clone(),
        selected: selected.iter().map(|(_, ip)| *ip).collect(),
        rules,
    })
}

fn resolve_rule(
    view: &ClusterView,
    policy: &Policy,
    rule: &Rule,
    direction: Direction,
    selected: &[(&Pod, Ipv4Addr)],
    announced: &Announced,
) -> ResolvedRule {
    let mut out = ResolvedRule::default();
    let mut peer_pods: Vec<&Pod> = Vec::new();
    match &rule.peers {
        None => out.any_peer = true,
        Some(peers) => {
            for peer in peers {
                match peer {
                    Peer::Pods { namespaces, pods } => {
                        peer_pods.extend(select_peer_pods(view, policy, namespaces, pods));
                    }
                    Peer::Block { cidr, except } => out.blocks.push((*cidr, except.clone())),
                    Peer::Nothing => {}
                }
            }
        }
    }
    out.pod_peers = peer_pods
        .iter()
        .filter_map(|p| member_ip_or(p, announced))
        .collect();
    match &rule.ports {
        None => out.any_port = true,
        Some(ports) => {
            for port in ports {
                match &port.port {
                    PortMatch::Any => {
                        out.ports.insert((port.protocol, None));
                    }
                    PortMatch::Range(a, b) => {
                        out.ports.insert((port.protocol, Some((*a, *b))));
                    }
                    PortMatch::Named(name) => {
                        out.has_named = true;
                        // The name is resolved on the destination: the selected pods for
                        // ingress; for egress any pod the traffic may go to (the peer match
                        // narrows it), so every member pod of the cluster declaring the name.
                        let destinations: Box<dyn Iterator<Item = (&Pod, Ipv4Addr)>> =
                            match direction {
                                Direction::Ingress => Box::new(selected.iter().copied()),
                                Direction::Egress => {
                                    Box::new(view.pods().filter_map(|p| {
                                        member_ip_or(p, announced).map(|ip| (p, ip))
                                    }))
                                }
                            };
                        for (pod, ip) in destinations {
                            if let Some(n) = named_port(pod, name, port.protocol) {
                                out.named.insert((ip, port.protocol, n));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The pods a pod peer selects: `pods` in the policy's namespace, or in every namespace
/// `namespaces` selects.
fn select_peer_pods<'a>(
    view: &'a ClusterView,
    policy: &Policy,
    namespaces: &Option<LabelSelector>,
    pods: &Option<LabelSelector>,
) -> Vec<&'a Pod> {
    let everything = LabelSelector::default();
    let pod_selector = pods.as_ref().unwrap_or(&everything);
    match namespaces {
        None => view.select_pods(Some(&policy.key.namespace), pod_selector),
        Some(ns_selector) => view
            .select_namespaces(ns_selector)
            .iter()
            .flat_map(|ns| view.select_pods(Some(ns), pod_selector))
            .collect(),
    }
}
