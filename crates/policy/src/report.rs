//! What the policies did on this node: for each NetworkPolicy active here, the pods it selects
//! and, per direction it isolates, what it allowed and what was dropped, from the counters of
//! the policy table; plus the pod network's own drops. The agent serves it as JSON at
//! `GET /policy` on its health port, and `weft describe netpol` shows it per node.
//!
//! - **allowed** is the sum of the counters of the policy's chain (`ingress/<ns>/<name>`):
//!   every rule there counts what it accepts. Only a connection's first packet meets the
//!   policies (replies and later packets pass before them), so this counts connections, and
//!   a packet two policies both allow counts for the first one the profile tries only.
//! - **dropped** is the sum of the drop counters of the profile chains (one per set of
//!   policies isolating a pod) that include the policy. A drop of a pod isolated by several
//!   policies was allowed by none of them, and counts for each of them.
//!
//! Counters start from zero when their chain is created: a policy that starts selecting pods
//! here, a pod whose set of isolating policies changes, or a policy whose rules change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use weft_dataplane::nft::{self, Counter};
use weft_view::NsName;

use crate::compile::{policy_chain, profile_chain, SPOOFED, TABLE, VXLAN_FOREIGN, VXLAN_FROM_POD};
use crate::resolve::NodePolicies;
use crate::spec::Direction;

/// The path the agent serves the report at.
pub const PATH: &str = "/policy";

/// One node's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    pub node: String,
    /// The policies selecting pods of this node, by namespace and name.
    pub policies: Vec<PolicyReport>,
    pub pod_network: PodNetworkDrops,
}

/// One policy on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    pub namespace: String,
    pub name: String,
    /// The node's pods it selects now.
    pub pods: Vec<SelectedPod>,
    /// Present when the policy isolates ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Traffic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Traffic>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedPod {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// What one direction of a policy let through and what its pods' profiles dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    pub allowed: Count,
    pub dropped: Count,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// The isolation every pod gets whatever the policies say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodNetworkDrops {
    /// Packets from a pod with a source address that is not its own.
    pub spoofed: Count,
    /// Packets from a pod to the overlay's port on a node.
    pub vxlan_from_pod: Count,
    /// Overlay packets from an address that is not a node's.
    pub vxlan_foreign: Count,
}

impl Count {
    fn add(&mut self, c: &Counter) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// Chain name -> its rules' counters, as [`nft::counters`] reads them.
pub type Counters = BTreeMap<String, Vec<Option<Counter>>>;

/// The sum of every counter of `chain` (zero for a chain without counted rules).
fn sum(counters: &Counters, chain: &str) -> Count {
    let mut total = Count::default();
    for c in counters.get(chain).into_iter().flatten().flatten() {
        total.add(c);
    }
    total
}

/// The report for `policies` (what the reconciler last loaded) and the table's `counters`.
pub fn report(node: &str, policies: &NodePolicies, counters: &Counters) -> NodeReport {
    // The profiles as the compiler names them: each pod's isolating policies, sorted, once.
    let mut profiles: BTreeSet<(Direction, Vec<NsName>)> = BTreeSet::new();
    for (direction, pods) in &policies.isolated {
        for isolating in pods.values() {
            let mut set = isolating.clone();
            set.sort();
            set.dedup();
            profiles.insert((*direction, set));
        }
    }
    let mut out = NodeReport {
        node: node.to_string(),
        policies: Vec::new(),
        pod_network: PodNetworkDrops {
            spoofed: sum(counters, SPOOFED),
            vxlan_from_pod: sum(counters, VXLAN_FROM_POD),
            vxlan_foreign: sum(counters, VXLAN_FOREIGN),
        },
    };
    for (key, active) in &policies.active {
        let pods: BTreeSet<SelectedPod> = active
            .selected
            .iter()
            .filter_map(|ip| {
                let pod = policies.local.get(ip)?;
                Some(SelectedPod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    ip: *ip,
                })
            })
            .collect();
        let traffic = |direction: Direction| {
            active.rules.contains_key(&direction).then(|| {
                let mut dropped = Count::default();
                for (d, set) in &profiles {
                    if *d == direction && set.contains(key) {
                        let c = sum(counters, &profile_chain(direction, set));
                        dropped.packets += c.packets;
                        dropped.bytes += c.bytes;
                    }
                }
                Traffic {
                    allowed: sum(counters, &policy_chain(direction, key)),
                    dropped,
                }
            })
        };
        out.policies.push(PolicyReport {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            pods: pods.into_iter().collect(),
            ingress: traffic(Direction::Ingress),
            egress: traffic(Direction::Egress),
        });
    }
    out
}

/// The report with the counters of the table in the calling thread's network namespace.
pub fn read(node: &str, policies: &NodePolicies) -> Result<NodeReport, weft_dataplane::Error> {
    let counters = nft::counters(nft::Family::Ip, TABLE)?;
    Ok(report(node, policies, &counters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Active;
    use crate::spec::Policy;

    fn active(key: &NsName, selected: &[Ipv4Addr], directions: &[Direction]) -> Active {
        Active {
            selected: selected.to_vec(),
            policy: Policy {
                key: key.clone(),
                pod_selector: Default::default(),
                ingress: None,
                egress: None,
            },
            rules: directions.iter().map(|d| (*d, Vec::new())).collect(),
        }
    }

    fn c(packets: u64, bytes: u64) -> Option<Counter> {
        Some(Counter { packets, bytes })
    }

    /// Two pods: db isolated for ingress by deny-db and allow-web, web by allow-web only
    /// (ingress and egress).
    #[test]
    fn counts_are_summed_per_policy_and_direction() {
        let deny = NsName::new("default", "deny-db");
        let web = NsName::new("default", "allow-web");
        let (db_ip, web_ip) = (Ipv4Addr::new(10, 244, 0, 3), Ipv4Addr::new(10, 244, 0, 4));
        let mut p = NodePolicies::default();
        p.active
            .insert(deny.clone(), active(&deny, &[db_ip], &[Direction::Ingress]));
        p.active.insert(
            web.clone(),
            active(
                &web,
                &[db_ip, web_ip],
                &[Direction::Ingress, Direction::Egress],
            ),
        );
        // Unsorted, as resolve may list them: the profile's name is of the sorted set.
        p.isolated.entry(Direction::Ingress).or_default().extend([
            (db_ip, vec![web.clone(), deny.clone()]),
            (web_ip, vec![web.clone()]),
        ]);
        p.isolated
            .entry(Direction::Egress)
            .or_default()
            .insert(web_ip, vec![web.clone()]);
        p.local.insert(db_ip, NsName::new("default", "db"));
        p.local.insert(web_ip, NsName::new("default", "web"));
        p.local
            .insert(Ipv4Addr::new(10, 244, 0, 9), NsName::new("default", "free"));

        let both = profile_chain(Direction::Ingress, &[web.clone(), deny.clone()]);
        let mut counters = Counters::new();
        counters.insert(policy_chain(Direction::Ingress, &deny), vec![c(2, 120)]);
        counters.insert(
            policy_chain(Direction::Ingress, &web),
            vec![c(1, 60), None, c(4, 240)],
        );
        // A profile: jumps (no counter), the log rule (none), the counted drop.
        counters.insert(both, vec![None, None, None, c(3, 180)]);
        counters.insert(
            profile_chain(Direction::Ingress, std::slice::from_ref(&web)),
            vec![None, None, c(5, 300)],
        );
        counters.insert(
            profile_chain(Direction::Egress, std::slice::from_ref(&web)),
            vec![None, None, c(7, 420)],
        );
        counters.insert(SPOOFED.into(), vec![None, c(1, 84)]);
        let r = report("n1", &p, &counters);
        insta::assert_snapshot!(serde_json::to_string_pretty(&r).unwrap());
        // deny-db's drops are the two-policy profile's; allow-web's are both profiles'.
        let get = |name: &str| r.policies.iter().find(|x| x.name == name).unwrap();
        assert_eq!(get("deny-db").ingress.unwrap().dropped.packets, 3);
        assert_eq!(get("allow-web").ingress.unwrap().dropped.packets, 8);
        assert_eq!(get("allow-web").ingress.unwrap().allowed.packets, 5);
        assert_eq!(get("deny-db").egress, None);
        assert_eq!(get("deny-db").pods.len(), 1);
        assert_eq!(get("allow-web").pods.len(), 2);
        // What the CLI reads back is what was sent.
        let back: NodeReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_table_without_counts_reports_zeros() {
        let key = NsName::new("ns", "p");
        let mut p = NodePolicies::default();
        p.active
            .insert(key.clone(), active(&key, &[], &[Direction::Egress]));
        let r = report("n", &p, &Counters::new());
        assert_eq!(r.policies[0].egress, Some(Traffic::default()));
        assert_eq!(r.policies[0].ingress, None);
        assert!(r.policies[0].pods.is_empty());
        assert_eq!(r.pod_network, PodNetworkDrops::default());
    }
}
