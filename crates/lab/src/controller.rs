//! The lab's control plane: what kube-controller-manager and kube-scheduler do for a lab.
//! Deployments become Pods (the ReplicaSet logic is the model's pure `deployment::reconcile`),
//! Pods whose owner is gone are collected, unbound Pods are bound to a node, and Deployment status
//! counts ready replicas. It writes only to the store; the kubelets act on what it writes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

use crate::kubelet::pod_name;
use crate::LabError;

/// Pod creations per controller pass (kube-controller-manager's ReplicaSet controller uses 500).
const BURST_CREATES: usize = 500;

pub struct Controller {
    store: Store,
    rng: rand::rngs::ThreadRng,
    /// The lab whose daemons this controller keeps running, if any.
    supervising: Option<crate::layout::Layout>,
}

impl Controller {
    pub fn new(store: Store) -> Controller {
        Controller {
            store,
            rng: rand::thread_rng(),
            supervising: None,
        }
    }

    /// Also restart the lab's API server, speaker and kubelets when they die.
    pub fn supervising(mut self, layout: crate::layout::Layout) -> Controller {
        self.supervising = Some(layout);
        self
    }

    pub fn run(mut self) -> Result<(), LabError> {
        let store = self.store.clone();
        crate::follow(&store, Duration::from_secs(1), || {
            if let Some(layout) = &self.supervising {
                if let Err(e) = crate::supervise::control_plane(layout, &self.store) {
                    tracing::warn!("supervising the lab's daemons: {e}");
                }
            }
            if let Err(e) = self.sync() {
                tracing::warn!("controller sync failed: {e}");
            }
        })
    }

    pub fn sync(&mut self) -> Result<(), LabError> {
        let objects = self.store.list_all()?;
        let mut deployments = Vec::new();
        let mut pods = Vec::new();
        let mut nodes = Vec::new();
        let mut services = Vec::new();
        let mut slices = Vec::new();
        let mut daemonsets = Vec::new();
        for o in objects {
            match o {
                Object::Other(other) if other.kind == "DaemonSet" => {
                    match serde_json::from_value::<k8s_openapi::api::apps::v1::DaemonSet>(other.raw)
                    {
                        Ok(ds) => daemonsets.push(ds),
                        Err(e) => tracing::warn!("daemonset {:?}: {e}", other.metadata.name),
                    }
                }
                Object::Deployment(d) => deployments.push(d),
                Object::Pod(p) => pods.push(p),
                Object::Node(n) => nodes.push(n),
                Object::Service(s) => services.push(s),
                Object::EndpointSlice(s) => slices.push(s),
                _ => {}
            }
        }
        self.sync_deployments(&deployments, &pods)?;
        self.sync_daemonsets(&daemonsets, &nodes, &pods)?;
        self.collect_orphans(&deployments, &pods)?;
        let pods = crate::list_pods(&self.store)?;
        self.schedule(&nodes, &pods)?;
        self.deployment_status(&deployments, &pods)?;
        crate::endpoints::reconcile(&self.store, &services, &pods, &slices)?;
        Ok(())
    }

    fn sync_deployments(
        &mut self,
        deployments: &[Deployment],
        pods: &[Pod],
    ) -> Result<(), LabError> {
        // Like the ReplicaSet controller's burstReplicas: a few hundred creations per pass, so a
        // Deployment of 100000 replicas fills up over many passes, each of which re-reads the
        // Deployments and so follows a scale-down or a delete at once.
        let mut budget = BURST_CREATES;
        for d in deployments {
            let plan = weft_model::deployment::reconcile(d, pods, &mut self.rng);
            if !plan.delete.is_empty() {
                self.store.delete(&plan.delete)?;
            }
            for pod in plan.create {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                if let Err(e) = self.store.put(Object::Pod(pod)) {
                    // The ReplicaSet controller's FailedCreate: say so where `kubectl describe`
                    // and `kubectl get events` look, and try again on a later pass.
                    tracing::warn!(
                        "deployment {}: {e}",
                        d.metadata.name.as_deref().unwrap_or("")
                    );
                    let why = match e {
                        weft_sources::StoreError::QuotaExceeded { key, limit } => format!(
                            "pods \"{}\" is forbidden: exceeded quota: at most {limit} objects of this kind (objectQuota in the lab's cluster config)",
                            key.name
                        ),
                        other => other.to_string(),
                    };
                    self.event(d, "FailedCreate", &format!("Error creating: {why}"));
                    break;
                }
            }
        }
        Ok(())
    }

    /// One pod per eligible node for each DaemonSet (the pure decision is the model's), and
    /// the DaemonSet's status counts.
    fn sync_daemonsets(
        &mut self,
        daemonsets: &[k8s_openapi::api::apps::v1::DaemonSet],
        nodes: &[Node],
        pods: &[Pod],
    ) -> Result<(), LabError> {
        for ds in daemonsets {
            let plan = weft_model::daemonset::reconcile(ds, nodes, pods, &mut self.rng);
            if !plan.delete.is_empty() {
                self.store.delete(&plan.delete)?;
            }
            for pod in plan.create {
                if let Err(e) = self.store.put(Object::Pod(pod)) {
                    tracing::warn!(
                        "daemonset {}: {e}",
                        ds.metadata.name.as_deref().unwrap_or("")
                    );
                }
            }
            if ds.status.as_ref() != Some(&plan.status) {
                let key = ObjectKey::namespaced(
                    "DaemonSet",
                    ds.metadata.namespace.clone().unwrap_or_default(),
                    ds.metadata.name.clone().unwrap_or_default(),
                );
                let status = serde_json::to_value(&plan.status)
                    .map_err(|e| LabError::Invalid(format!("daemonset status: {e}")))?;
                let uid = ds.metadata.uid.clone();
                self.store.update(&key, |o| {
                    if let Object::Other(other) = o {
                        if other.metadata.uid == uid {
                            other.raw["status"] = status.clone();
                        }
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Records a Warning event about a Deployment (one per reason, its count bumped on repeats).
    fn event(&self, d: &Deployment, reason: &str, message: &str) {
        let ns = d
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{}",
            d.metadata.name.as_deref().unwrap_or(""),
            reason.to_ascii_lowercase()
        );
        let key = ObjectKey::namespaced("Event", &ns, &name);
        let now = weft_model::time::now();
        let updated = self.store.update(&key, |o| {
            if let Object::Other(other) = o {
                let count = other.raw["count"].as_i64().unwrap_or(1) + 1;
                other.raw["count"] = serde_json::json!(count);
                other.raw["message"] = serde_json::json!(message);
                other.raw["lastTimestamp"] = serde_json::json!(now);
            }
        });
        if matches!(updated, Ok(Some(_))) {
            return;
        }
        let event = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": d.metadata.name,
                "namespace": ns, "uid": d.metadata.uid},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "weft-controller"},
        });
        match Object::from_json(event) {
            Ok(object) => {
                if let Err(e) = self.store.put(object) {
                    tracing::warn!("recording event {name}: {e}");
                }
            }
            Err(e) => tracing::warn!("event {name}: {e}"),
        }
    }

    /// Pods owned by a Deployment that no longer exists (or was recreated with a new uid).
    fn collect_orphans(&self, deployments: &[Deployment], pods: &[Pod]) -> Result<(), LabError> {
        let live: BTreeMap<(Option<&str>, &str), Option<&str>> = deployments
            .iter()
            .map(|d| {
                (
                    (
                        d.metadata.namespace.as_deref(),
                        d.metadata.name.as_deref().unwrap_or(""),
                    ),
                    d.metadata.uid.as_deref(),
                )
            })
            .collect();
        let orphans: Vec<ObjectKey> = pods
            .iter()
            .filter(|p| {
                p.metadata.owner_references.iter().flatten().any(|r| {
                    r.kind == "Deployment"
                        && match live.get(&(p.metadata.namespace.as_deref(), r.name.as_str())) {
                            None => true,
                            Some(uid) => uid.is_some_and(|u| u != r.uid),
                        }
                })
            })
            .map(|p| ObjectKey {
                kind: "Pod".into(),
                namespace: p.metadata.namespace.clone(),
                name: pod_name(p).to_string(),
            })
            .collect();
        if !orphans.is_empty() {
            self.store.delete(&orphans)?;
        }
        Ok(())
    }

    /// Bind each pod without a node to the ready node (matching its nodeSelector) with the fewest
    /// pods; a pod that fits nowhere stays Pending with the scheduler's reason.
    fn schedule(&self, nodes: &[Node], pods: &[Pod]) -> Result<(), LabError> {
        let mut load: BTreeMap<String, usize> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .map(|n| (n, 0))
            .collect();
        for p in pods {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
                *load.entry(n.clone()).or_default() += 1;
            }
        }
        for p in pods {
            let spec = p.spec.clone().unwrap_or_default();
            if spec.node_name.is_some() {
                continue;
            }
            let selector = spec.node_selector.clone().unwrap_or_default();
            let matching: Vec<&Node> = nodes
                .iter()
                .filter(|n| weft_model::node::is_ready(n))
                .filter(|n| {
                    let labels = n.metadata.labels.clone().unwrap_or_default();
                    weft_model::selector::map_matches(&selector, &labels)
                })
                .collect();
            let candidates: Vec<&Node> = matching
                .iter()
                .copied()
                .filter(|n| {
                    let name = n.metadata.name.as_deref().unwrap_or_default();
                    load.get(name).copied().unwrap_or(0) < max_pods(n)
                })
                .collect();
            let choice = candidates
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()));
            let key = ObjectKey {
                kind: "Pod".into(),
                namespace: p.metadata.namespace.clone(),
                name: pod_name(p).to_string(),
            };
            match choice {
                Some(node) => {
                    *load.entry(node.clone()).or_default() += 1;
                    self.store.update(&key, |o| {
                        if let Object::Pod(pod) = o {
                            if let Some(spec) = pod.spec.as_mut() {
                                spec.node_name = Some(node.clone());
                            }
                        }
                    })?;
                    tracing::info!("pod {key} bound to {node}");
                }
                None => {
                    let not_ready = nodes
                        .iter()
                        .filter(|n| !weft_model::node::is_ready(n))
                        .count();
                    let full = matching.len();
                    let mismatched = nodes.len() - not_ready - full;
                    let mut reasons = Vec::new();
                    for (count, why) in [
                        (not_ready, "node(s) were not ready"),
                        (
                            mismatched,
                            "node(s) didn't match Pod's node affinity/selector",
                        ),
                        (full, "Too many pods"),
                    ] {
                        if count > 0 {
                            reasons.push(format!("{count} {why}"));
                        }
                    }
                    let message = if nodes.is_empty() {
                        "0/0 nodes are available".to_string()
                    } else {
                        format!(
                            "0/{} nodes are available: {}.",
                            nodes.len(),
                            reasons.join(", ")
                        )
                    };
                    let status: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(json!({
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
                    }))
                    .map_err(|e| LabError::Invalid(e.to_string()))?;
                    // Only a changed verdict is written: thousands of Pending pods must not cost
                    // a transaction each on every pass.
                    if p.status.as_ref() == Some(&status) {
                        continue;
                    }
                    self.store.update(&key, |o| {
                        if let Object::Pod(pod) = o {
                            pod.status = Some(status.clone());
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    fn deployment_status(&self, deployments: &[Deployment], pods: &[Pod]) -> Result<(), LabError> {
        for d in deployments {
            let owned: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.namespace == d.metadata.namespace)
                .filter(|p| {
                    p.metadata.owner_references.iter().flatten().any(|r| {
                        r.kind == "Deployment" && Some(&r.name) == d.metadata.name.as_ref()
                    })
                })
                .collect();
            let ready = owned
                .iter()
                .filter(|p| weft_model::pod::is_ready(p))
                .count() as i32;
            let replicas = owned.len() as i32;
            // Pods of the current template, which `kubectl rollout status` waits for.
            let hash = d
                .spec
                .as_ref()
                .map(|s| weft_model::deployment::pod_template_hash(&s.template));
            let updated = owned
                .iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("pod-template-hash"))
                        == hash.as_ref()
                })
                .count() as i32;
            let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            // The deployment controller's two conditions, which `helm --wait` and kstatus read:
            // Available once enough pods are ready, Progressing until the current template's
            // pods are all there and ready.
            let available = ready >= desired;
            let complete = updated == desired && replicas == desired && ready >= desired;
            let conditions = [
                condition(
                    d,
                    "Available",
                    available,
                    if available {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    },
                    if available {
                        "Deployment has minimum availability."
                    } else {
                        "Deployment does not have minimum availability."
                    },
                ),
                condition(
                    d,
                    "Progressing",
                    true,
                    if complete {
                        "NewReplicaSetAvailable"
                    } else {
                        "ReplicaSetUpdated"
                    },
                    &if complete {
                        format!(
                            "Pods of Deployment {:?} have successfully progressed.",
                            d.metadata.name.as_deref().unwrap_or("")
                        )
                    } else {
                        format!(
                            "Deployment {:?} is progressing.",
                            d.metadata.name.as_deref().unwrap_or("")
                        )
                    },
                ),
            ];
            let status: k8s_openapi::api::apps::v1::DeploymentStatus =
                serde_json::from_value(json!({
                    "observedGeneration": d.metadata.generation.unwrap_or(1),
                    "replicas": replicas,
                    "updatedReplicas": updated,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "conditions": conditions,
                }))
                .map_err(|e| LabError::Invalid(e.to_string()))?;
            if d.status.as_ref() == Some(&status) {
                continue;
            }
            let key = ObjectKey {
                kind: "Deployment".into(),
                namespace: d.metadata.namespace.clone(),
                name: d.metadata.name.clone().unwrap_or_default(),
            };
            self.store.update(&key, |o| {
                if let Object::Deployment(d) = o {
                    d.status = Some(status.clone());
                }
            })?;
        }
        Ok(())
    }
}

/// How many pods a node takes: its `status.allocatable.pods`, else the kubelet's default.
fn max_pods(n: &Node) -> usize {
    n.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(crate::nodes::MAX_PODS)
}

/// A Deployment condition; its times stay those of the stored one while nothing about it
/// changes, so an unchanged Deployment is not rewritten every pass.
fn condition(
    d: &Deployment,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> serde_json::Value {
    let status = if status { "True" } else { "False" };
    let old = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_));
    let now = weft_model::time::now();
    let transition = old
        .filter(|o| o.status == status)
        .and_then(|o| o.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let update = old
        .filter(|o| o.status == status && o.reason.as_deref() == Some(reason))
        .and_then(|o| o.last_update_time.clone())
        .unwrap_or(now);
    json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": transition, "lastUpdateTime": update})
}
