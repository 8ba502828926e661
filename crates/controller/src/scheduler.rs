//! What kube-scheduler does for the lab: each pod without a node is bound (`pods/binding`) to
//! the ready node matching its nodeSelector with the fewest pods and room left; a pod that fits
//! nowhere stays Pending with the scheduler's condition and reason, as `kubectl describe` shows
//! it. [`decide`] is pure; [`Scheduler`] runs it on the view and writes through the API.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use serde_json::json;
use weft_view::{Interest, NsName, Reconciler, Shared, Wake};

use crate::writer::{Failures, WriteError, Writer};

#[derive(Debug, PartialEq)]
pub enum Decision {
    Bind {
        pod: NsName,
        node: String,
    },
    /// Fits nowhere: the pod's status should be this (only listed when it differs).
    Unschedulable {
        pod: NsName,
        status: Box<PodStatus>,
    },
}

/// How many pods a node takes: its `status.allocatable.pods`, else the kubelet's default.
fn max_pods(n: &Node) -> usize {
    n.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(weft_model::node::DEFAULT_MAX_PODS)
}

/// Where each unbound pod goes, in the order given.
pub fn decide(nodes: &[&Node], pods: &[&Pod]) -> Vec<Decision> {
    let mut load: BTreeMap<&str, usize> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .map(|n| (n, 0))
        .collect();
    for p in pods {
        if let Some(n) = weft_model::pod::node_name(p) {
            if let Some(count) = load.get_mut(n) {
                *count += 1;
            }
        }
    }
    let mut out = Vec::new();
    for p in pods.iter().copied() {
        let Some(spec) = &p.spec else { continue };
        if spec.node_name.is_some() {
            continue;
        }
        let key = NsName::new(
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        );
        let empty = BTreeMap::new();
        let selector = spec.node_selector.as_ref().unwrap_or(&empty);
        let matching: Vec<&Node> = nodes
            .iter()
            .copied()
            .filter(|n| weft_model::node::is_ready(n))
            .filter(|n| {
                weft_model::selector::map_matches(
                    selector,
                    n.metadata.labels.as_ref().unwrap_or(&empty),
                )
            })
            .collect();
        let choice = matching
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, max_pods(n))))
            .filter(|(name, max)| load.get(name).copied().unwrap_or(0) < *max)
            .min_by_key(|(name, _)| (load.get(name).copied().unwrap_or(0), *name));
        match choice {
            Some((node, _)) => {
                *load.entry(node).or_default() += 1;
                out.push(Decision::Bind {
                    pod: key,
                    node: node.to_string(),
                });
            }
            None => {
                let status = unschedulable(nodes, matching.len());
                if p.status.as_ref() != Some(&status) {
                    out.push(Decision::Unschedulable {
                        pod: key,
                        status: Box::new(status),
                    });
                }
            }
        }
    }
    out
}

/// The status kube-scheduler gives a pod that fits on no node, with its reasons counted.
fn unschedulable(nodes: &[&Node], full: usize) -> PodStatus {
    let not_ready = nodes
        .iter()
        .filter(|n| !weft_model::node::is_ready(n))
        .count();
    let mismatched = nodes.len() - not_ready - full;
    let reasons: Vec<String> = [
        (not_ready, "node(s) were not ready"),
        (
            mismatched,
            "node(s) didn't match Pod's node affinity/selector",
        ),
        (full, "Too many pods"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, why)| format!("{count} {why}"))
    .collect();
    let message = if nodes.is_empty() {
        "0/0 nodes are available".to_string()
    } else {
        format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            reasons.join(", ")
        )
    };
    serde_json::from_value(json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    }))
    .expect("a PodStatus built from strings")
}

pub struct Scheduler {
    writer: Writer,
    /// Pods bound by this scheduler that the view does not show bound yet (kube-scheduler's
    /// assumed pods): they count on their node, and are not bound again.
    assumed: BTreeMap<NsName, String>,
}

impl Scheduler {
    pub fn new(writer: Writer) -> Scheduler {
        Scheduler {
            writer,
            assumed: BTreeMap::new(),
        }
    }
}

impl Reconciler for Scheduler {
    type Error = WriteError;

    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            pods: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every pass looks at every unbound pod.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), WriteError> {
        let decisions = {
            let view = shared.read();
            let nodes: Vec<&Node> = view.nodes().collect();
            // An assumed binding is dropped once the view shows the pod bound (or gone).
            self.assumed.retain(|key, _| {
                view.pod(key)
                    .is_some_and(|p| weft_model::pod::node_name(p).is_none())
            });
            let assumed: Vec<Pod> = self
                .assumed
                .iter()
                .filter_map(|(key, node)| {
                    let mut p = view.pod(key)?.clone();
                    p.spec.get_or_insert_default().node_name = Some(node.clone());
                    Some(p)
                })
                .collect();
            let pods: Vec<&Pod> = view
                .pods()
                .filter(|p| {
                    !self.assumed.contains_key(&NsName::new(
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default(),
                    ))
                })
                .chain(&assumed)
                .collect();
            decide(&nodes, &pods)
        };
        let mut failures = Failures::default();
        for d in decisions {
            let result = match &d {
                Decision::Bind { pod, node } => {
                    let r = self.writer.bind(&pod.namespace, &pod.name, node);
                    match r {
                        // Bound meanwhile (by another scheduler or a user): nothing to do.
                        Err(e) if e.code() == Some(409) => Ok(()),
                        Ok(()) => {
                            tracing::info!("pod {pod} bound to {node}");
                            self.assumed.insert(pod.clone(), node.clone());
                            Ok(())
                        }
                        other => other,
                    }
                }
                Decision::Unschedulable { pod, status } => self.writer.patch_status::<Pod>(
                    Some(&pod.namespace),
                    &pod.name,
                    &serde_json::to_value(status).unwrap_or_default(),
                ),
            };
            failures.note(result);
        }
        failures.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, labels: serde_json::Value, max: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"pods": max},
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    fn pod(name: &str, node: Option<&str>, selector: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "nodeSelector": selector, "containers": [{"name": "c"}]},
        }))
        .unwrap()
    }

    fn bound(decisions: &[Decision]) -> Vec<(String, String)> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Bind { pod, node } => Some((pod.name.clone(), node.clone())),
                Decision::Unschedulable { .. } => None,
            })
            .collect()
    }

    #[test]
    fn spreads_over_the_least_loaded_ready_nodes() {
        let a = node("a", true, json!({}), "110");
        let b = node("b", true, json!({}), "110");
        let c = node("c", false, json!({}), "110");
        let pods = [
            pod("old", Some("a"), json!({})),
            pod("p1", None, json!({})),
            pod("p2", None, json!({})),
            pod("p3", None, json!({})),
        ];
        let d = decide(&[&a, &b, &c], &pods.iter().collect::<Vec<_>>());
        assert_eq!(
            bound(&d),
            [("p1", "b"), ("p2", "a"), ("p3", "b")].map(|(p, n)| (p.to_string(), n.to_string()))
        );
    }

    #[test]
    fn a_pod_that_fits_nowhere_says_why() {
        let a = node("a", true, json!({"disk": "ssd"}), "1");
        let b = node("b", true, json!({}), "110");
        let c = node("c", false, json!({}), "110");
        let pods = [
            pod("there", Some("a"), json!({})),
            pod("p", None, json!({"disk": "ssd"})),
        ];
        let d = decide(&[&a, &b, &c], &pods.iter().collect::<Vec<_>>());
        let [Decision::Unschedulable { pod, status }] = d.as_slice() else {
            panic!("{d:?}")
        };
        assert_eq!(pod.name, "p");
        let message = status.conditions.as_ref().unwrap()[0]
            .message
            .clone()
            .unwrap();
        assert_eq!(
            message,
            "0/3 nodes are available: 1 node(s) were not ready, 1 node(s) didn't match Pod's node affinity/selector, 1 Too many pods."
        );
        // The same verdict is not written again.
        let pending = Pod {
            status: Some((**status).clone()),
            ..pods[1].clone()
        };
        assert!(decide(&[&a, &b, &c], &[&pods[0], &pending]).is_empty());
    }
}
