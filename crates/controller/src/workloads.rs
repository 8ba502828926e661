//! What kube-controller-manager's Deployment, ReplicaSet, DaemonSet and garbage collector
//! controllers do for the lab, as one reconciler of the view: Deployments and DaemonSets become
//! Pods (the pure decisions are the model's `deployment::reconcile` and `daemonset::reconcile`),
//! Pods whose owner is gone are collected, and each Deployment's and DaemonSet's status counts
//! its pods. It only writes through the API; the scheduler binds what it creates and the
//! kubelets run it. A real cluster has these controllers already: `weft controller` runs this
//! only with `--lab-controllers`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use weft_model::object::ObjectKey;
use weft_view::{ClusterView, Interest, Reconciler, Shared, Wake};

use crate::writer::{Involved, WriteError, Writer};

/// Pod creations per pass (kube-controller-manager's ReplicaSet controller uses 500): a
/// Deployment of 100000 replicas fills up over many passes, each of which re-reads the
/// Deployments and so follows a scale-down or a delete at once.
const BURST_CREATES: usize = 500;

pub struct Workloads {
    writer: Writer,
    rng: rand::rngs::StdRng,
}

impl Workloads {
    pub fn new(writer: Writer) -> Workloads {
        use rand::SeedableRng;
        Workloads {
            writer,
            rng: rand::rngs::StdRng::from_entropy(),
        }
    }
}

/// Everything one pass decides, taken from the view under its lock.
#[derive(Default)]
struct Pass {
    create: Vec<(Owner, Pod)>,
    delete: Vec<ObjectKey>,
    deployment_status: Vec<(ObjectKey, serde_json::Value)>,
    daemonset_status: Vec<(ObjectKey, serde_json::Value)>,
}

/// The owner of a pod to create, for the event if the creation fails.
struct Owner {
    api_version: &'static str,
    kind: &'static str,
    namespace: String,
    name: String,
    uid: Option<String>,
}

impl Reconciler for Workloads {
    type Error = WriteError;

    fn name(&self) -> &'static str {
        "workloads"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            pods: true,
            workloads: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every pass looks at every Deployment and DaemonSet: few, and the pods come grouped.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), WriteError> {
        let pass = {
            let view = shared.read();
            plan(&view, &mut self.rng)
        };
        self.write(pass)
    }
}

fn key_of(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> ObjectKey {
    ObjectKey::namespaced(
        kind,
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// One pass over the view: pods to create and delete, statuses that differ.
fn plan(view: &ClusterView, rng: &mut impl rand::Rng) -> Pass {
    let mut pass = Pass::default();
    let mut by_namespace: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    let pods_of = |ns: &str| -> Vec<Pod> { view.pods_in(ns).cloned().collect() };
    let mut budget = BURST_CREATES;
    for (key, d) in view.deployments() {
        let pods = by_namespace
            .entry(key.namespace.as_str())
            .or_insert_with(|| pods_of(&key.namespace));
        let p = weft_model::deployment::reconcile(d, pods, rng);
        pass.delete.extend(p.delete);
        for pod in p.create.into_iter().take(budget) {
            budget -= 1;
            pass.create.push((
                Owner {
                    api_version: "apps/v1",
                    kind: "Deployment",
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    uid: d.metadata.uid.clone(),
                },
                pod,
            ));
        }
        if let Some(status) = deployment_status(d, pods) {
            pass.deployment_status
                .push((key_of("Deployment", &d.metadata), status));
        }
    }
    let nodes: Vec<Node> = view.nodes().cloned().collect();
    for (key, ds) in view.daemonsets() {
        let pods = by_namespace
            .entry(key.namespace.as_str())
            .or_insert_with(|| pods_of(&key.namespace));
        let p = weft_model::daemonset::reconcile(ds, &nodes, pods, rng);
        pass.delete.extend(p.delete);
        for pod in p.create {
            pass.create.push((
                Owner {
                    api_version: "apps/v1",
                    kind: "DaemonSet",
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    uid: ds.metadata.uid.clone(),
                },
                pod,
            ));
        }
        if ds.status.as_ref() != Some(&p.status) {
            if let Ok(status) = serde_json::to_value(&p.status) {
                pass.daemonset_status
                    .push((key_of("DaemonSet", &ds.metadata), status));
            }
        }
    }
    pass.delete.extend(orphans(view));
    pass.delete
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    pass.delete.dedup();
    pass
}

/// Pods owned by a Deployment or DaemonSet that no longer exists (or was recreated with a new
/// uid): the garbage collector's background deletion.
fn orphans(view: &ClusterView) -> Vec<ObjectKey> {
    view.pods()
        .filter(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            p.metadata.owner_references.iter().flatten().any(|r| {
                let owner = weft_view::NsName::new(ns, &r.name);
                let uid = match r.kind.as_str() {
                    "Deployment" => view.deployment(&owner).map(|d| d.metadata.uid.clone()),
                    "DaemonSet" => view.daemonset(&owner).map(|d| d.metadata.uid.clone()),
                    _ => return false,
                };
                match uid {
                    None => true,
                    Some(uid) => uid.is_some_and(|u| u != r.uid),
                }
            })
        })
        .map(|p| key_of("Pod", &p.metadata))
        .collect()
}

impl Workloads {
    fn write(&self, pass: Pass) -> Result<(), WriteError> {
        let mut first_error = None;
        let mut keep = |r: Result<(), WriteError>| {
            if let Err(e) = r {
                tracing::warn!("{e}");
                first_error.get_or_insert(e);
            }
        };
        for key in &pass.delete {
            keep(
                self.writer
                    .delete::<Pod>(key.namespace.as_deref(), &key.name),
            );
        }
        let (owners, pods): (Vec<Owner>, Vec<Pod>) = pass.create.into_iter().unzip();
        let mut reported = std::collections::BTreeSet::new();
        for (owner, result) in owners.iter().zip(self.writer.create_all(pods)) {
            let Err(e) = result else { continue };
            // The ReplicaSet controller's FailedCreate: said where `kubectl describe` and
            // `kubectl get events` look, once per owner and pass; a later pass tries again.
            if reported.insert((owner.namespace.clone(), owner.name.clone())) {
                let about = Involved {
                    api_version: owner.api_version,
                    kind: owner.kind,
                    namespace: &owner.namespace,
                    name: &owner.name,
                    uid: owner.uid.as_deref(),
                };
                let message = format!("Error creating: {}", e.message());
                if let Err(e) = self.writer.warn(&about, "FailedCreate", &message) {
                    tracing::warn!("{e}");
                }
            }
            keep(Err(e));
        }
        for (key, status) in &pass.deployment_status {
            keep(self.writer.patch_status::<Deployment>(
                key.namespace.as_deref(),
                &key.name,
                status,
            ));
        }
        for (key, status) in &pass.daemonset_status {
            keep(self.writer.patch_status::<DaemonSet>(
                key.namespace.as_deref(),
                &key.name,
                status,
            ));
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The Deployment's status from its pods, if it differs from what it has.
fn deployment_status(d: &Deployment, pods: &[Pod]) -> Option<serde_json::Value> {
    let owned: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.kind == "Deployment" && Some(&r.name) == d.metadata.name.as_ref())
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
    // Available once enough pods are ready, Progressing until the current template's pods are
    // all there and ready.
    let available = ready >= desired;
    let complete = updated == desired && replicas == desired && ready >= desired;
    let name = d.metadata.name.as_deref().unwrap_or("");
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
                format!("Pods of Deployment {name:?} have successfully progressed.")
            } else {
                format!("Deployment {name:?} is progressing.")
            },
        ),
    ];
    let status = json!({
        "observedGeneration": d.metadata.generation.unwrap_or(1),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": conditions,
    });
    let typed: k8s_openapi::api::apps::v1::DeploymentStatus =
        serde_json::from_value(status.clone()).ok()?;
    (d.status.as_ref() != Some(&typed)).then_some(status)
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
