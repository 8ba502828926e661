//! What the policies mean on one node, in addresses: which of the node's pods each policy
//! selects (and so isolates), for each rule of those policies its peers and the named ports it
//! resolves to, and the addresses of every pod peer. Everything here reads the cluster view and
//! nothing else; the compiler turns the result into nftables.
//!
//! A pod peer (a namespace scope and a pod selector) is resolved once however many rules name
//! it, and kept as one set of addresses that those rules share, as Calico shares IP sets by
//! selector: a pod relabelled into or out of a selector used by 250 policies changes one set,
//! not 250 (see [`PeerKey`]).

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

/// A pod peer, by what it means: its namespace scope and its pod selector, in a canonical
/// text (selectors that differ only in the order of their terms are one peer). Rules of any
/// policy naming the same peer share its address set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(String);

impl PeerKey {
    /// The peer `Peer::Pods { namespaces, pods }` of a policy in `namespace`.
    pub fn of(
        namespace: &str,
        namespaces: &Option<LabelSelector>,
        pods: &Option<LabelSelector>,
    ) -> PeerKey {
        let scope = match namespaces {
            None => format!("namespace {namespace}"),
            Some(sel) => format!("namespaces {{{}}}", canonical(sel)),
        };
        let pods = pods.as_ref().map(canonical).unwrap_or_default();
        PeerKey(format!("{scope} pods {{{pods}}}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// kubectl's selector syntax with terms and values sorted.
fn canonical(selector: &LabelSelector) -> String {
    let mut sel = selector.clone();
    if let Some(exprs) = sel.match_expressions.as_mut() {
        for e in exprs.iter_mut() {
            if let Some(v) = e.values.as_mut() {
                v.sort();
                v.dedup();
            }
        }
        exprs.sort_by(|a, b| {
            (&a.key, &a.operator, &a.values).cmp(&(&b.key, &b.operator, &b.values))
        });
        exprs.dedup();
    }
    weft_model::selector::format(&sel)
}

/// A pod peer's selectors.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSel {
    /// The policy's namespace when the peer has no namespace selector.
    pub namespace: Option<String>,
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<LabelSelector>,
}

impl PeerSel {
    /// The peer's key and selectors, for a policy in `namespace`.
    pub fn of(
        namespace: &str,
        namespaces: &Option<LabelSelector>,
        pods: &Option<LabelSelector>,
    ) -> (PeerKey, PeerSel) {
        (
            PeerKey::of(namespace, namespaces, pods),
            PeerSel {
                namespace: namespaces.is_none().then(|| namespace.to_string()),
                namespaces: namespaces.clone(),
                pods: pods.clone(),
            },
        )
    }

    /// Whether a pod of `namespace` with `labels` (its namespace having `ns_labels`) is one.
    pub fn matches(
        &self,
        namespace: &str,
        ns_labels: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_ok = match (&self.namespace, &self.namespaces) {
            (Some(own), _) => own == namespace,
            (None, Some(sel)) => weft_model::selector::matches(sel, ns_labels),
            (None, None) => false,
        };
        ns_ok
            && self
                .pods
                .as_ref()
                .is_none_or(|sel| weft_model::selector::matches(sel, labels))
    }

    /// The addresses of the pods it matches now.
    fn resolve(&self, view: &ClusterView, announced: &Announced) -> BTreeSet<Ipv4Addr> {
        let everything = LabelSelector::default();
        let pod_selector = self.pods.as_ref().unwrap_or(&everything);
        let pods = match (&self.namespace, &self.namespaces) {
            (Some(own), _) => view.select_pods(Some(own), pod_selector),
            (None, Some(ns_selector)) => view
                .select_namespaces(ns_selector)
                .iter()
                .flat_map(|ns| view.select_pods(Some(ns), pod_selector))
                .collect(),
            (None, None) => Vec::new(),
        };
        pods.iter()
            .filter_map(|p| member_ip_or(p, announced))
            .collect()
    }
}

/// A pod peer in addresses, shared by the rules naming it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerSet {
    pub sel: PeerSel,
    /// The addresses of the pods it matches.
    pub members: BTreeSet<Ipv4Addr>,
    /// How many rules of active policies name it (it is dropped at zero).
    pub users: usize,
}

/// One rule of an active policy, in addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Every peer (`from`/`to` missing or empty).
    pub any_peer: bool,
    /// The rule's pod peers (their addresses are in [`NodePolicies::peers`]).
    pub pod_peers: BTreeSet<PeerKey>,
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
    /// Whether the rule can allow anything whatever its pod peers' members (a pod peer
    /// matching nobody now still has its set, which a pod may join without the rule changing).
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
    /// This node's isolated pods: address -> the policies isolating it (sorted), per
    /// direction (a pod missing from a direction's map is not isolated for it).
    pub isolated: BTreeMap<Direction, BTreeMap<Ipv4Addr, Vec<NsName>>>,
    /// This node's pods taking part in policy (isolated or not): address -> pod.
    pub local: BTreeMap<Ipv4Addr, NsName>,
    /// Every pod peer the active policies' rules name.
    pub peers: BTreeMap<PeerKey, PeerSet>,
    /// Whether two of the node's pods claim one address (a pod's address reused while the old
    /// pod is still listed): then `local` keeps the last of them by key, found by listing
    /// them all, until the clash is gone.
    pub clashing: bool,
}

/// What [`re_resolve`] changed, for the compiler to change no more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// The policies resolved again.
    pub policies: Vec<NsName>,
    /// Pod peers resolved again, added or dropped.
    pub peers: BTreeSet<PeerKey>,
    /// Pods whose isolation may have changed (old and new addresses), per direction.
    pub pods: BTreeMap<Direction, BTreeSet<Ipv4Addr>>,
    /// Addresses that became (true) or stopped being (false) a local pod's.
    pub locals: Vec<(Ipv4Addr, bool)>,
}

/// Resolves every policy against the view for the pods of `node`; `announced` holds addresses
/// the node's CNI plugin gave pods whose status does not show them yet.
pub fn resolve(view: &ClusterView, node: &str, announced: &Announced) -> NodePolicies {
    let policies: Vec<Policy> = view.network_policies().map(Policy::from_k8s).collect();
    let dirty: Vec<(NsName, Option<&Policy>)> =
        policies.iter().map(|p| (p.key.clone(), Some(p))).collect();
    let (out, _) = re_resolve(
        view,
        node,
        announced,
        NodePolicies::default(),
        &dirty,
        &BTreeSet::new(),
        None,
    );
    out
}

/// `old` with the policies in `dirty` resolved again (None: the policy is gone; those now
/// selecting none of the node's pods drop out too) and the pod peers in `dirty_peers`
/// resolved again; the others are kept as they were, and so is the isolation of pods no dirty
/// policy selects or selected. The node's pods are looked at again where `pods` changed
/// (None: all of them). Returns what changed.
pub fn re_resolve(
    view: &ClusterView,
    node: &str,
    announced: &Announced,
    old: NodePolicies,
    dirty: &[(NsName, Option<&Policy>)],
    dirty_peers: &BTreeSet<PeerKey>,
    pods: Option<&BTreeSet<NsName>>,
) -> (NodePolicies, Changed) {
    let mut out = old;
    let mut changed = Changed {
        policies: dirty.iter().map(|(k, _)| k.clone()).collect(),
        ..Changed::default()
    };
    let local = |p: &Pod| {
        (weft_model::pod::node_name(p) == Some(node))
            .then(|| member_ip_or(p, announced))
            .flatten()
    };
    // A clash of addresses (rare) is settled by listing every pod, as a whole resolve does.
    let mut pods = pods.filter(|_| !out.clashing);
    if let Some(keys) = pods {
        let mine: Vec<Ipv4Addr> = keys
            .iter()
            .filter_map(|k| view.pod(k).and_then(local))
            .collect();
        let distinct: BTreeSet<&Ipv4Addr> = mine.iter().collect();
        let taken = mine
            .iter()
            .any(|ip| out.local.get(ip).is_some_and(|k| !keys.contains(k)));
        if taken || distinct.len() != mine.len() {
            pods = None;
        }
    }
    let before: BTreeSet<Ipv4Addr> = match pods {
        None => {
            let was = std::mem::take(&mut out.local);
            let mut members = 0;
            out.local = view
                .pods_on(node)
                .filter_map(|p| local(p).map(|ip| (ip, pod_key(p))))
                .inspect(|_| members += 1)
                .collect();
            out.clashing = members != out.local.len();
            changed.locals = was
                .keys()
                .filter(|ip| !out.local.contains_key(ip))
                .map(|ip| (*ip, false))
                .chain(
                    out.local
                        .keys()
                        .filter(|ip| !was.contains_key(ip))
                        .map(|ip| (*ip, true)),
                )
                .collect();
            BTreeSet::new()
        }
        Some(keys) if !keys.is_empty() => {
            let gone: Vec<Ipv4Addr> = out
                .local
                .iter()
                .filter(|(_, k)| keys.contains(*k))
                .map(|(ip, _)| *ip)
                .collect();
            for ip in &gone {
                out.local.remove(ip);
            }
            for key in keys {
                if let Some(ip) = view.pod(key).and_then(local) {
                    out.local.insert(ip, key.clone());
                }
            }
            gone.into_iter().collect()
        }
        Some(_) => BTreeSet::new(),
    };
    if pods.is_some() {
        for ip in &before {
            if !out.local.contains_key(ip) {
                changed.locals.push((*ip, false));
            }
        }
        for key in pods.into_iter().flatten() {
            if let Some(ip) = view.pod(key).and_then(local) {
                if !before.contains(&ip) {
                    changed.locals.push((ip, true));
                }
            }
        }
    }
    // Policies: out with the old resolution (its peers lose a user, its pods a policy), in
    // with the new; a peer new to the node is resolved once, however many rules name it.
    let mut fresh: BTreeSet<PeerKey> = BTreeSet::new();
    for (key, policy) in dirty {
        if let Some(was) = out.active.remove(key) {
            for (direction, rules) in &was.rules {
                let pods = changed.pods.entry(*direction).or_default();
                for ip in &was.selected {
                    pods.insert(*ip);
                    if let Some(list) = out.isolated.get_mut(direction) {
                        if let Some(isolating) = list.get_mut(ip) {
                            isolating.retain(|k| k != key);
                            if isolating.is_empty() {
                                list.remove(ip);
                            }
                        }
                    }
                }
                for peer in rules.iter().flat_map(|r| &r.pod_peers) {
                    if let Some(set) = out.peers.get_mut(peer) {
                        set.users -= 1;
                    }
                    changed.peers.insert(peer.clone());
                }
            }
        }
        let Some(active) = policy.and_then(|p| resolve_one(view, node, p, announced)) else {
            continue;
        };
        for (direction, rules) in &active.rules {
            let pods = changed.pods.entry(*direction).or_default();
            let list = out.isolated.entry(*direction).or_default();
            for ip in &active.selected {
                pods.insert(*ip);
                let isolating = list.entry(*ip).or_default();
                if let Err(at) = isolating.binary_search(key) {
                    isolating.insert(at, key.clone());
                }
            }
            for rule in rules {
                for peer in &rule.pod_peers {
                    changed.peers.insert(peer.clone());
                    match out.peers.get_mut(peer) {
                        Some(set) => set.users += 1,
                        None => {
                            let sel = rule_peer_sel(&active.policy, peer)
                                .expect("a rule's pod peer comes from its policy");
                            let members = sel.resolve(view, announced);
                            out.peers.insert(
                                peer.clone(),
                                PeerSet {
                                    sel,
                                    members,
                                    users: 1,
                                },
                            );
                            fresh.insert(peer.clone());
                        }
                    }
                }
            }
        }
        out.active.insert(key.clone(), active);
    }
    for peer in dirty_peers {
        if fresh.contains(peer) {
            continue;
        }
        if let Some(set) = out.peers.get_mut(peer) {
            let members = set.sel.resolve(view, announced);
            if members != set.members {
                set.members = members;
                changed.peers.insert(peer.clone());
            }
        }
    }
    out.peers.retain(|_, set| set.users > 0);
    out.isolated.retain(|_, pods| !pods.is_empty());
    (out, changed)
}

/// The selectors of pod peer `key` as `policy` names it.
fn rule_peer_sel(policy: &Policy, key: &PeerKey) -> Option<PeerSel> {
    Direction::BOTH
        .into_iter()
        .filter_map(|d| policy.rules(d))
        .flatten()
        .filter_map(|r| r.peers.as_deref())
        .flatten()
        .find_map(|peer| match peer {
            Peer::Pods { namespaces, pods } => {
                let (k, sel) = PeerSel::of(&policy.key.namespace, namespaces, pods);
                (&k == key).then_some(sel)
            }
            _ => None,
        })
}

/// One policy against this node's pods: None if it selects none of them.
fn resolve_one(
    view: &ClusterView,
    node: &str,
    policy: &Policy,
    announced: &Announced,
) -> Option<Active> {
    let selected: Vec<(&Pod, Ipv4Addr)> = view
        .select_pods(Some(&policy.key.namespace), &policy.pod_selector)
        .into_iter()
        .filter(|p| weft_model::pod::node_name(p) == Some(node))
        .filter_map(|p| member_ip_or(p, announced).map(|ip| (p, ip)))
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
    match &rule.peers {
        None => out.any_peer = true,
        Some(peers) => {
            for peer in peers {
                match peer {
                    Peer::Pods { namespaces, pods } => {
                        out.pod_peers
                            .insert(PeerKey::of(&policy.key.namespace, namespaces, pods));
                    }
                    Peer::Block { cidr, except } => out.blocks.push((*cidr, except.clone())),
                    Peer::Nothing => {}
                }
            }
        }
    }
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
