//! Where each nft rule of a policy chain came from: the policy and the index of its rule (in
//! `spec.ingress` / `spec.egress`). A tool that traces a packet through the compiled table
//! (`weft policy check`) reads the deciding rule from the trace and names the policy rule with
//! this, so its explanation comes from the same compiler as the kernel's rules.
//!
//! The origins are found with [`compile`] itself rather than a second copy of its rule layout:
//! a policy's chain is compiled with its first k rules for every k, and the nft rules that
//! appear when rule k is added are rule k's. The chain of one policy depends only on that
//! policy's resolved rules, so what comes out holds for the node's whole table.

use std::collections::BTreeMap;

use weft_view::NsName;

use crate::compile::{compile, policy_chain, NodeContext};
use crate::resolve::{Active, NodePolicies};
use crate::spec::Direction;

/// One policy chain's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOrigin {
    pub direction: Direction,
    pub policy: NsName,
    /// Per nft rule of the chain, the index of the policy rule it implements (None: a rule
    /// of the chain's own, or a layout this module could not attribute).
    pub rules: Vec<Option<usize>>,
}

impl ChainOrigin {
    /// The policy rule behind the chain's nft rule `rule`.
    pub fn rule(&self, rule: usize) -> Option<usize> {
        self.rules.get(rule).copied().flatten()
    }
}

/// For every policy chain of the table [`compile`] makes from `policies`, its policy and the
/// policy rule of each of its nft rules, by chain name.
pub fn rule_origins(policies: &NodePolicies, ctx: &NodeContext) -> BTreeMap<String, ChainOrigin> {
    let mut out = BTreeMap::new();
    for (key, active) in &policies.active {
        for (direction, rules) in &active.rules {
            let chain = policy_chain(*direction, key);
            // The chain as compiled with the policy's first k rules, k = 0..=len.
            let prefixes: Vec<Vec<weft_dataplane::nft::Rule>> = (0..=rules.len())
                .map(|k| {
                    let mut one = NodePolicies {
                        peers: policies.peers.clone(),
                        ..NodePolicies::default()
                    };
                    one.active.insert(
                        key.clone(),
                        Active {
                            policy: active.policy.clone(),
                            selected: active.selected.clone(),
                            rules: BTreeMap::from([(*direction, rules[..k].to_vec())]),
                        },
                    );
                    compile(&one, ctx)
                        .chains
                        .get(&chain)
                        .map(|c| c.rules.clone())
                        .unwrap_or_default()
                })
                .collect();
            let full = prefixes.last().cloned().unwrap_or_default();
            let mut origins = vec![None; full.len()];
            let layered = prefixes
                .windows(2)
                .all(|w| w[1].len() >= w[0].len() && w[1][..w[0].len()] == w[0][..]);
            if layered {
                for (k, w) in prefixes.windows(2).enumerate() {
                    for origin in &mut origins[w[0].len()..w[1].len()] {
                        *origin = Some(k);
                    }
                }
            }
            out.insert(
                chain,
                ChainOrigin {
                    direction: *direction,
                    policy: key.clone(),
                    rules: origins,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use serde_json::json;
    use weft_view::{ClusterView, Event};

    use super::*;
    use crate::resolve::resolve;

    fn view() -> ClusterView {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.10"}]}}))
        .unwrap();
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        let pod = |name: &str, ip: &str, app: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "x", "labels": {"app": app}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                    "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": ip, "phase": "Running"}
            }))
            .unwrap()
        };
        let policy: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"namespace": "x", "name": "web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
                // Two peer forms times two port forms: four nft rules.
                {"from": [{"podSelector": {"matchLabels": {"app": "a"}}},
                          {"ipBlock": {"cidr": "10.0.0.0/8"}}],
                 "ports": [{"port": 80}, {"port": "http"}]},
                // Its peer matches no pod yet: one nft rule on the peer's (empty) set, which
                // a pod joins without the policy's chain changing.
                {"from": [{"podSelector": {"matchLabels": {"app": "none"}}}]},
                {"ports": [{"protocol": "UDP"}]}
            ]}
        }))
        .unwrap();
        let mut v = ClusterView::new();
        v.apply(Event::Relisted(vec![node]));
        v.apply(Event::Relisted(vec![ns]));
        v.apply(Event::Relisted(vec![
            pod("web", "10.244.1.2", "web"),
            pod("a", "10.244.1.3", "a"),
        ]));
        v.apply(Event::Relisted(vec![policy]));
        v
    }

    #[test]
    fn every_nft_rule_of_a_policy_chain_names_its_policy_rule() {
        let view = view();
        let policies = resolve(&view, "n1", &Default::default());
        let ctx = NodeContext {
            node_ips: BTreeSet::from(["172.18.0.10".parse().unwrap()]),
            vxlan_port: 4789,
        };
        let table = compile(&policies, &ctx);
        let origins = rule_origins(&policies, &ctx);
        let chain = "ingress/x/web";
        let origin = &origins[chain];
        assert_eq!(origin.policy, NsName::new("x", "web"));
        assert_eq!(origin.direction, Direction::Ingress);
        assert_eq!(
            origin.rules,
            vec![Some(0), Some(0), Some(0), Some(0), Some(1), Some(2)]
        );
        assert_eq!(origin.rules.len(), table.chains[chain].rules.len());
        assert_eq!(origin.rule(5), Some(2));
        assert_eq!(origin.rule(9), None);
    }
}
