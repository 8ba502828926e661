//! The policy reconciler's own change tracking (kube-proxy's proxier keeps its change trackers
//! the same way): from the changes the view delivered since the last sync, which policies and
//! which pod peers must be resolved again. A policy depends on its own object, on the labels of
//! its namespace's pods (selection) and, for named ports, on the ports pods declare; a pod peer
//! (shared by every rule naming it) on the pods and namespaces it can match. A pod's change
//! makes dirty exactly the policies that could select it and the peers that could match it,
//! before or after the change, judged on the facts kept from the last sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use weft_model::selector::matches;
use weft_view::{Change, ClusterView, NsName, Wake};

use crate::resolve::{member_ip_or, Announced, PeerKey, PeerSel};
use crate::spec::{Direction, Peer, Policy, PortMatch};

/// What a pod was, as far as policies can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodFacts {
    labels: BTreeMap<String, String>,
    ip: Option<Ipv4Addr>,
    has_ports: bool,
}

impl PodFacts {
    fn of(pod: &Pod, announced: &Announced) -> PodFacts {
        PodFacts {
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ip: member_ip_or(pod, announced),
            has_ports: pod
                .spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.ports.is_some())),
        }
    }
}

/// What the next sync has to do.
pub enum Dirty {
    /// Resolve everything (first sync, a relist, a node change, or nothing tracked: resync).
    All,
    /// Resolve these policies (None: the policy is gone) and pod peers again.
    Some {
        policies: Vec<(NsName, Option<Policy>)>,
        peers: BTreeSet<PeerKey>,
        /// Every pod noted as changed (whether or not it concerns a policy: it may have come
        /// to or left the node).
        pods: BTreeSet<NsName>,
    },
}

#[derive(Default)]
pub struct Tracker {
    /// Every policy of the view, parsed.
    policies: BTreeMap<NsName, Policy>,
    /// Every pod peer those policies name, with how many rules name it.
    peers: BTreeMap<PeerKey, (PeerSel, usize)>,
    /// Every pod as of the last sync.
    pods: BTreeMap<NsName, PodFacts>,
    all: bool,
    changed_pods: BTreeSet<NsName>,
    changed_namespaces: BTreeSet<String>,
    changed_policies: BTreeSet<NsName>,
    /// Whether anything was noted since the last sync.
    noted: bool,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            all: true,
            ..Tracker::default()
        }
    }

    pub fn note(&mut self, wake: &Wake) {
        self.all |= wake.relisted;
        for change in &wake.changes {
            self.noted = true;
            match change {
                Change::Pod(k) => {
                    self.changed_pods.insert(k.clone());
                }
                Change::Namespace(n) => {
                    self.changed_namespaces.insert(n.clone());
                }
                Change::NetworkPolicy(k) => {
                    self.changed_policies.insert(k.clone());
                }
                Change::Node(_) => self.all = true,
                _ => {}
            }
        }
    }

    /// Forgets the facts, so the next sync resolves everything (after a failed apply).
    pub fn reset(&mut self) {
        self.all = true;
    }

    /// Takes what was noted and says what to resolve again; the facts are brought up to date.
    pub fn take(&mut self, view: &ClusterView, announced: &Announced) -> Dirty {
        let all = self.all || !self.noted;
        let pods = std::mem::take(&mut self.changed_pods);
        let namespaces = std::mem::take(&mut self.changed_namespaces);
        let policies = std::mem::take(&mut self.changed_policies);
        self.all = false;
        self.noted = false;
        if all {
            self.policies = view
                .network_policies()
                .map(Policy::from_k8s)
                .map(|p| (p.key.clone(), p))
                .collect();
            self.peers.clear();
            for p in self.policies.values() {
                count_peers(&mut self.peers, p, true);
            }
            self.pods = view
                .pods()
                .map(|p| (crate::resolve::pod_key(p), PodFacts::of(p, announced)))
                .collect();
            return Dirty::All;
        }
        let mut dirty: BTreeSet<NsName> = BTreeSet::new();
        let mut dirty_peers: BTreeSet<PeerKey> = BTreeSet::new();
        for key in policies {
            let new = view.network_policy(&key).map(Policy::from_k8s);
            if let Some(old) = self.policies.remove(&key) {
                count_peers(&mut self.peers, &old, false);
            }
            if let Some(new) = new {
                count_peers(&mut self.peers, &new, true);
                self.policies.insert(key.clone(), new);
            }
            dirty.insert(key);
        }
        if !namespaces.is_empty() {
            for (key, (sel, _)) in &self.peers {
                if sel.namespaces.is_some() {
                    dirty_peers.insert(key.clone());
                }
            }
        }
        for key in &pods {
            let key = key.clone();
            let old = self.pods.remove(&key);
            let new = view.pod(&key).map(|p| PodFacts::of(p, announced));
            if let Some(n) = &new {
                self.pods.insert(key.clone(), n.clone());
            }
            if old == new {
                continue;
            }
            // Only a change of what the policy makes of the pod concerns it: being selected
            // or matched by a rule's peers, or not, and the address (and ports) of a pod it
            // selects or matches. A relabelled pod that stays out (or in) changes nothing.
            let ns_labels = view
                .namespace(&key.namespace)
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default();
            let moved = old.as_ref().map(|f| (f.ip, f.has_ports))
                != new.as_ref().map(|f| (f.ip, f.has_ports));
            let readdressed = old.as_ref().map(|f| f.ip) != new.as_ref().map(|f| f.ip);
            for (peer, (sel, _)) in &self.peers {
                if dirty_peers.contains(peer) {
                    continue;
                }
                let matched = |f: &Option<PodFacts>| {
                    f.as_ref()
                        .is_some_and(|f| sel.matches(&key.namespace, &ns_labels, &f.labels))
                };
                let (before, after) = (matched(&old), matched(&new));
                if before != after || ((before || after) && readdressed) {
                    dirty_peers.insert(peer.clone());
                }
            }
            for (pkey, p) in &self.policies {
                if dirty.contains(pkey) {
                    continue;
                }
                let before = old.as_ref().map(|f| relation(p, &key, f));
                let after = new.as_ref().map(|f| relation(p, &key, f));
                let involved = before.as_ref().is_some_and(Relation::any)
                    || after.as_ref().is_some_and(Relation::any);
                let changed = before.unwrap_or_default() != after.unwrap_or_default();
                if changed || (involved && moved) {
                    dirty.insert(pkey.clone());
                }
            }
        }
        Dirty::Some {
            policies: dirty
                .into_iter()
                .map(|k| {
                    let p = self.policies.get(&k).cloned();
                    (k, p)
                })
                .collect(),
            peers: dirty_peers,
            pods,
        }
    }
}

/// Adds (or takes away) the pod peers of `policy`'s rules, one per rule naming each.
fn count_peers(peers: &mut BTreeMap<PeerKey, (PeerSel, usize)>, policy: &Policy, add: bool) {
    for rule in Direction::BOTH
        .into_iter()
        .filter_map(|d| policy.rules(d))
        .flatten()
    {
        let mut keys = BTreeSet::new();
        for peer in rule.peers.iter().flatten() {
            if let Peer::Pods { namespaces, pods } = peer {
                let (key, sel) = PeerSel::of(&policy.key.namespace, namespaces, pods);
                if !keys.insert(key.clone()) {
                    continue;
                }
                if add {
                    peers.entry(key).or_insert((sel, 0)).1 += 1;
                } else if let Some(entry) = peers.get_mut(&key) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        peers.remove(&key);
                    }
                }
            }
        }
    }
}

/// What a policy itself makes of one pod: whether it selects it, and whether it declares
/// egress named ports it may resolve on it (its peers are tracked apart, being shared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Relation {
    selected: bool,
    named_ports: bool,
}

impl Relation {
    fn any(&self) -> bool {
        self.selected || self.named_ports
    }
}

fn relation(policy: &Policy, pod: &NsName, facts: &PodFacts) -> Relation {
    let selected =
        pod.namespace == policy.key.namespace && matches(&policy.pod_selector, &facts.labels);
    let egress_named = policy.egress.iter().flatten().any(|r| {
        r.ports
            .iter()
            .flatten()
            .any(|p| matches!(p.port, PortMatch::Named(_)))
    });
    Relation {
        selected,
        named_ports: egress_named && facts.has_ports,
    }
}
