//! The DaemonSet controller's decision, pure: one pod of the current template on every node the
//! DaemonSet's `nodeSelector` matches, pods on nodes that are gone (or no longer match) deleted,
//! and a rolling update that replaces one outdated pod at a time, only while every other pod is
//! ready (`maxUnavailable: 1`, the default). Pods are bound to their node at creation, as the
//! DaemonSet controller does; the scheduler never sees them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::Resource;

use crate::deployment::{pod_template_hash, random_suffix};
use crate::object::ObjectKey;

/// The label carrying the template hash of a DaemonSet's pods (the controller's own name for it).
pub const TEMPLATE_HASH_LABEL: &str = "controller-revision-hash";

/// What to do for one DaemonSet.
#[derive(Debug, Default, PartialEq)]
pub struct DaemonSetPlan {
    pub create: Vec<Pod>,
    pub delete: Vec<ObjectKey>,
    pub status: DaemonSetStatus,
}

/// Whether `pod` is one of `ds`'s: same namespace and a DaemonSet owner reference with its name
/// (and uid, when both carry one).
pub fn owns(ds: &DaemonSet, pod: &Pod) -> bool {
    pod.metadata.namespace == ds.metadata.namespace
        && pod.metadata.owner_references.iter().flatten().any(|r| {
            r.kind == DaemonSet::KIND
                && Some(&r.name) == ds.metadata.name.as_ref()
                && (r.uid.is_empty() || ds.metadata.uid.as_deref().is_none_or(|u| u == r.uid))
        })
}

fn key(pod: &Pod) -> ObjectKey {
    ObjectKey::namespaced(
        Pod::KIND,
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// The plan for `ds` given the cluster's nodes and pods.
pub fn reconcile(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    rng: &mut impl rand::Rng,
) -> DaemonSetPlan {
    let mut plan = DaemonSetPlan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return plan;
    };
    let hash = pod_template_hash(&spec.template);
    let selector = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let eligible: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| {
            crate::selector::map_matches(
                &selector,
                n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();

    let mut on_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| owns(ds, p)) {
        match crate::pod::node_name(pod).filter(|n| eligible.contains(n)) {
            Some(node) => on_node.entry(node).or_default().push(pod),
            None => plan.delete.push(key(pod)),
        }
    }
    let current = |p: &&Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
            == Some(&hash)
    };
    let mut missing = Vec::new();
    let mut outdated = Vec::new();
    let (mut ready, mut updated, mut scheduled) = (0i32, 0i32, 0i32);
    for node in &eligible {
        let mine = on_node.get(node).cloned().unwrap_or_default();
        // More than one pod on a node (a race, or a restart mid-update): keep the best one.
        let mut mine = mine;
        mine.sort_by_key(|p| (!current(p), !crate::pod::is_ready(p)));
        if let Some((keep, extra)) = mine.split_first() {
            plan.delete.extend(extra.iter().map(|p| key(p)));
            scheduled += 1;
            if crate::pod::is_ready(keep) {
                ready += 1;
            }
            if current(keep) {
                updated += 1;
            } else {
                outdated.push(*keep);
            }
        } else {
            missing.push(*node);
        }
    }
    // Rolling update, one node at a time: only when every other pod is there and ready.
    if missing.is_empty() && usize::try_from(ready) == Ok(eligible.len()) {
        if let Some(old) = outdated.first() {
            plan.delete.push(key(old));
        }
    }

    let name = ds.metadata.name.clone().unwrap_or_default();
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.to_string(), hash);
    let owner = OwnerReference {
        api_version: DaemonSet::API_VERSION.to_string(),
        kind: DaemonSet::KIND.to_string(),
        name: name.clone(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut taken: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for node in missing {
        let pod_name = loop {
            let candidate = format!("{name}-{}", random_suffix(rng));
            if taken.insert(candidate.clone()) {
                break candidate;
            }
        };
        let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
        pod_spec.node_name = Some(node.to_string());
        plan.create.push(Pod {
            metadata: ObjectMeta {
                name: Some(pod_name),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                annotations: template_meta.annotations.clone(),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(pod_spec),
            status: None,
        });
    }
    let desired = i32::try_from(eligible.len()).unwrap_or(i32::MAX);
    plan.status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: scheduled,
        number_ready: ready,
        number_available: Some(ready),
        number_unavailable: Some(desired - ready).filter(|n| *n > 0),
        updated_number_scheduled: Some(updated),
        number_misscheduled: 0,
        observed_generation: ds.metadata.generation,
        ..DaemonSetStatus::default()
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(selector: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u1", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": selector, "containers": [{"name": "a", "image": "weft"}]}}}
        }))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn ready(mut p: Pod) -> Pod {
        p.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True"}]}))
                .unwrap(),
        );
        p
    }

    fn names(keys: &[ObjectKey]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn one_pod_per_matching_node_bound_to_it() {
        let ds = ds(json!({"role": "worker"}));
        let nodes = [
            node("n1", json!({"role": "worker"})),
            node("n2", json!({})),
            node("n3", json!({"role": "worker"})),
        ];
        let plan = reconcile(&ds, &nodes, &[], &mut rand::thread_rng());
        let bound: Vec<_> = plan
            .create
            .iter()
            .map(|p| crate::pod::node_name(p).unwrap())
            .collect();
        assert_eq!(bound, ["n1", "n3"]);
        let p = &plan.create[0];
        assert!(p.metadata.name.as_ref().unwrap().starts_with("agent-"));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "DaemonSet"
        );
        assert!(p
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key(TEMPLATE_HASH_LABEL));
        assert_eq!(plan.status.desired_number_scheduled, 2);
        assert_eq!(plan.status.current_number_scheduled, 0);
        assert_eq!(plan.status.observed_generation, Some(2));
    }

    #[test]
    fn steady_state_changes_nothing_and_counts_ready() {
        let ds = ds(json!({}));
        let nodes = [node("n1", json!({})), node("n2", json!({}))];
        let first = reconcile(&ds, &nodes, &[], &mut rand::thread_rng());
        let pods: Vec<Pod> = first.create.into_iter().map(ready).collect();
        let plan = reconcile(&ds, &nodes, &pods, &mut rand::thread_rng());
        assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
        assert_eq!(plan.status.number_ready, 2);
        assert_eq!(plan.status.updated_number_scheduled, Some(2));
        // A node leaving takes its pod; a new node gets one.
        let nodes = [node("n2", json!({})), node("n4", json!({}))];
        let plan = reconcile(&ds, &nodes, &pods, &mut rand::thread_rng());
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(crate::pod::node_name(&plan.create[0]), Some("n4"));
    }

    #[test]
    fn a_template_change_rolls_one_node_at_a_time() {
        let old = ds(json!({}));
        let nodes = [node("n1", json!({})), node("n2", json!({}))];
        let pods: Vec<Pod> = reconcile(&old, &nodes, &[], &mut rand::thread_rng())
            .create
            .into_iter()
            .map(ready)
            .collect();
        let mut new = old.clone();
        new.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("weft:2".into());
        let plan = reconcile(&new, &nodes, &pods, &mut rand::thread_rng());
        assert_eq!(
            names(&plan.delete),
            [pods[0].metadata.name.as_deref().unwrap()]
        );
        assert!(plan.create.is_empty());
        // With one node's pod gone, nothing else is deleted until its replacement is ready.
        let plan = reconcile(&new, &nodes, &pods[1..], &mut rand::thread_rng());
        assert!(plan.delete.is_empty());
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.status.updated_number_scheduled, Some(0));
    }
}
