//! The policy reconciler's own change tracking (kube-proxy's proxier keeps its change trackers
//! the same way): from the changes the view delivered since the last sync, which policies must
//! be resolved again. A policy depends on its own object, on the labels of its namespace's
//! pods (selection), on the pods and namespaces its peers can match, and, for named ports,
//! on the ports pods declare. A pod's change makes dirty exactly the policies that could select
//! or match it before or after the change, judged on the facts kept from the last sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use weft_model::selector::matches;
use weft_view::{Change, ClusterView, NsName, Wake};

use crate::resolve::{member_ip_or, Announced};
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
    /// Resolve these policies again (None: the policy is gone).
    Some(Vec<(NsName, Option<Policy>)>),
}

#[derive(Default)]
pub struct Tracker {
    /// Every policy of the view, parsed.
    policies: BTreeMap<NsName, Policy>,
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
            self.pods = view
                .pods()
                .map(|p| (crate::resolve::pod_key(p), PodFacts::of(p, announced)))
                .collect();
            return Dirty::All;
        }
        let mut dirty: BTreeSet<NsName> = BTreeSet::new();
        for key in policies {
            match view.network_policy(&key) {
                Some(np) => {
                    self.policies.insert(key.clone(), Policy::from_k8s(np));
                }
                None => {
                    self.policies.remove(&key);
                }
            }
            dirty.insert(key);
        }
        if !namespaces.is_empty() {
            for (key, p) in &self.policies {
                if peers(p).any(|peer| {
                    matches!(
                        peer,
                        Peer::Pods {
                            namespaces: Some(_),
                            ..
                        }
                    )
                }) {
                    dirty.insert(key.clone());
                }
            }
        }
        for key in pods {
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
            for (pkey, p) in &self.policies {
                if dirty.contains(pkey) {
                    continue;
                }
                let before = old.as_ref().map(|f| relation(p, &key, &ns_labels, f));
                let after = new.as_ref().map(|f| relation(p, &key, &ns_labels, f));
                let involved = before.as_ref().is_some_and(Relation::any)
                    || after.as_ref().is_some_and(Relation::any);
                let changed = before.unwrap_or_default() != after.unwrap_or_default();
                if changed || (involved && moved) {
                    dirty.insert(pkey.clone());
                }
            }
        }
        Dirty::Some(
            dirty
                .into_iter()
                .map(|k| {
                    let p = self.policies.get(&k).cloned();
                    (k, p)
                })
                .collect(),
        )
    }
}

fn peers(p: &Policy) -> impl Iterator<Item = &Peer> {
    Direction::BOTH
        .into_iter()
        .filter_map(|d| p.rules(d))
        .flatten()
        .filter_map(|r| r.peers.as_deref())
        .flatten()
}

/// What a policy makes of one pod: whether it selects it, declares egress named ports it may
/// resolve on it, and which of its rules' pod peers match it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Relation {
    selected: bool,
    named_ports: bool,
    peers: Vec<bool>,
}

impl Relation {
    fn any(&self) -> bool {
        self.selected || self.named_ports || self.peers.iter().any(|p| *p)
    }
}

fn relation(
    policy: &Policy,
    pod: &NsName,
    ns_labels: &BTreeMap<String, String>,
    facts: &PodFacts,
) -> Relation {
    let selected =
        pod.namespace == policy.key.namespace && matches(&policy.pod_selector, &facts.labels);
    let egress_named = policy.egress.iter().flatten().any(|r| {
        r.ports
            .iter()
            .flatten()
            .any(|p| matches!(p.port, PortMatch::Named(_)))
    });
    let everything = Default::default();
    // Each rule's pod peers (a rule with no peers matches every pod without naming any;
    // blocks compile to address matches that no pod changes).
    let peers = Direction::BOTH
        .into_iter()
        .filter_map(|d| policy.rules(d))
        .flatten()
        .map(|rule| match &rule.peers {
            None => false,
            Some(peers) => peers.iter().any(|peer| match peer {
                Peer::Nothing | Peer::Block { .. } => false,
                Peer::Pods { namespaces, pods } => {
                    let ns_ok = match namespaces {
                        None => pod.namespace == policy.key.namespace,
                        Some(sel) => matches(sel, ns_labels),
                    };
                    ns_ok && matches(pods.as_ref().unwrap_or(&everything), &facts.labels)
                }
            }),
        })
        .collect();
    Relation {
        selected,
        named_ports: egress_named && facts.has_ports,
        peers,
    }
}
