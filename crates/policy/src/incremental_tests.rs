//! Incremental updates add up to the whole: after any sequence of changes to pods,
//! namespaces and policies, the parts kept up to date by the tracker, `re_resolve` and
//! `Parts::update` equal the parts compiled from scratch, and the transactions, applied one
//! after the other to the first table, give the table compiled from scratch.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use weft_view::{ClusterView, Event, NsName, Wake};

use crate::compile::{NodeContext, Parts};
use crate::resolve::{re_resolve, resolve};
use crate::spec::Policy;
use crate::tests::{
    labels_strategy, namespace, node, pod, pod_strategy, policy_strategy, view_of, NODES,
};
use crate::track::{Dirty, Tracker};

#[derive(Clone, Debug)]
enum Step {
    RelabelPod(usize, Json),
    MovePod(usize, u8),
    DeletePod(usize),
    RelabelNamespace(usize, Json),
    ReplacePolicy(usize, Json),
    DeletePolicy(usize),
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..6usize, labels_strategy()).prop_map(|(i, l)| Step::RelabelPod(i, l)),
        (0..6usize, 100u8..110).prop_map(|(i, o)| Step::MovePod(i, o)),
        (0..6usize).prop_map(Step::DeletePod),
        (0..3usize, labels_strategy()).prop_map(|(i, l)| Step::RelabelNamespace(i, l)),
        (0..4usize, policy_strategy()).prop_map(|(i, p)| Step::ReplacePolicy(i, p)),
        (0..4usize).prop_map(Step::DeletePolicy),
    ]
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn incremental_updates_equal_a_whole_compile(
        ns_labels in prop::collection::vec(labels_strategy(), 3),
        pod_specs in prop::collection::vec(pod_strategy(), 1..=6),
        policy_specs in prop::collection::vec(policy_strategy(), 0..=4),
        steps in prop::collection::vec(step_strategy(), 1..=12),
    ) {
        let nodes: Vec<Node> = NODES.iter().enumerate().map(|(i, n)| node(n, i as u8)).collect();
        let namespaces: Vec<Namespace> = NAMESPACES.iter().zip(&ns_labels)
            .map(|(n, l)| namespace(n, l.clone())).collect();
        let pods: Vec<Pod> = pod_specs.iter().enumerate().map(|(i, (ns, labels, ports, n))| {
            pod(ns, &format!("p{i}"), NODES[*n], Ipv4Addr::new(10, 244, *n as u8 + 1, i as u8 + 2), labels.clone(), ports.clone())
        }).collect();
        let policies: Vec<NetworkPolicy> = policy_specs.iter().enumerate().map(|(i, p)| named_policy(p, i)).collect();
        let mut view = view_of(&nodes, &namespaces, &pods, &policies);
        let ctx = NodeContext {
            node_ips: view.nodes().filter_map(weft_model::node::internal_ip).collect::<BTreeSet<_>>(),
            vxlan_port: 4789,
        };
        let none = Default::default();
        let mut tracker = Tracker::new();
        prop_assert!(matches!(tracker.take(&view, &none), Dirty::All));
        let mut resolved = resolve(&view, "n1", &none);
        let mut parts = Parts::of(&resolved);
        let mut table = parts.table(&ctx);
        for step in steps {
            let changes = apply(&mut view, &pods, &namespaces, step);
            if changes.is_empty() {
                continue;
            }
            tracker.note(&Wake { changes, relisted: false });
            let Dirty::Some { policies: dirty, peers, pods: changed_pods } = tracker.take(&view, &none) else {
                panic!("a change made everything dirty");
            };
            let refs: Vec<(NsName, Option<&Policy>)> = dirty.iter().map(|(k, p)| (k.clone(), p.as_ref())).collect();
            let changed;
            (resolved, changed) = re_resolve(&view, "n1", &none, resolved, &refs, &peers, Some(&changed_pods));
            let tx = parts.update(&resolved, &changed);
            tx.apply_to(&mut table);
            let whole_resolved = resolve(&view, "n1", &none);
            prop_assert_eq!(&resolved, &whole_resolved);
            let whole = Parts::of(&whole_resolved);
            prop_assert_eq!(&parts, &whole);
            prop_assert_eq!(&table, &whole.table(&ctx));
        }
    }
}

fn named_policy(spec: &Json, i: usize) -> NetworkPolicy {
    let mut p = spec.clone();
    p["metadata"]["name"] = json!(format!("p{i}"));
    serde_json::from_value(p).unwrap()
}

/// Applies one step to the view (pods keep their first namespace and node).
fn apply(
    view: &mut ClusterView,
    pods: &[Pod],
    namespaces: &[Namespace],
    step: Step,
) -> Vec<weft_view::Change> {
    let pod_at = |i: usize| pods.get(i % pods.len()).cloned();
    match step {
        Step::RelabelPod(i, labels) => {
            let Some(mut p) = pod_at(i) else {
                return vec![];
            };
            let key = NsName::new(
                p.metadata.namespace.clone().unwrap(),
                p.metadata.name.clone().unwrap(),
            );
            let Some(now) = view.pod(&key) else {
                return vec![];
            };
            p = now.clone();
            p.metadata.labels = serde_json::from_value(labels).unwrap();
            p.metadata.resource_version = Some(format!("{}", rand_version()));
            view.apply(Event::Apply(p))
        }
        Step::MovePod(i, octet) => {
            let Some(p) = pod_at(i) else { return vec![] };
            let key = NsName::new(
                p.metadata.namespace.clone().unwrap(),
                p.metadata.name.clone().unwrap(),
            );
            let Some(now) = view.pod(&key) else {
                return vec![];
            };
            let mut p = now.clone();
            let ip: Ipv4Addr = p
                .status
                .as_ref()
                .unwrap()
                .pod_ip
                .as_deref()
                .unwrap()
                .parse()
                .unwrap();
            let o = ip.octets();
            p.status.as_mut().unwrap().pod_ip =
                Some(Ipv4Addr::new(o[0], o[1], o[2], octet).to_string());
            p.metadata.resource_version = Some(format!("{}", rand_version()));
            view.apply(Event::Apply(p))
        }
        Step::DeletePod(i) => {
            let Some(p) = pod_at(i) else { return vec![] };
            view.apply(Event::Delete(p))
        }
        Step::RelabelNamespace(i, labels) => {
            let mut n = namespaces[i % namespaces.len()].clone();
            n.metadata.labels = serde_json::from_value(labels).unwrap();
            n.metadata.resource_version = Some(format!("{}", rand_version()));
            view.apply(Event::Apply(n))
        }
        Step::ReplacePolicy(i, spec) => {
            let mut p = named_policy(&spec, i);
            p.metadata.resource_version = Some(format!("{}", rand_version()));
            view.apply(Event::Apply(p))
        }
        Step::DeletePolicy(i) => {
            let ns = NAMESPACES.iter().find_map(|ns| {
                view.network_policy(&NsName::new(*ns, format!("p{i}")))
                    .cloned()
            });
            match ns {
                Some(p) => view.apply(Event::Delete(p)),
                None => vec![],
            }
        }
    }
}

/// A new resourceVersion each time (the view ignores an object at the version it holds).
fn rand_version() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}
