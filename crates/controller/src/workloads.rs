//! What kube-controller-manager's Deployment, ReplicaSet, DaemonSet and garbage collector
//! controllers do for the lab, as one reconciler of the view: Deployments and DaemonSets become
//! Pods (the pure decisions are the model's `deployment::reconcile` and `daemonset::reconcile`),
//! Pods whose owner is gone are collected, and each Deployment's and DaemonSet's status counts
//! its pods. It only writes through the API; the scheduler binds what it creates and the
//! kubelets run it. A real cluster has these controllers already: `weft controller` runs this
//! only with `--lab-controllers`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use weft_model::object::ObjectKey;
use weft_view::{ClusterView, Interest, NsName, Reconciler, Shared, Wake};

use crate::writer::{Failures, Involved, WriteError, Writer};

/// Pod creations per pass (kube-controller-manager's ReplicaSet controller uses 500): a
/// Deployment of 100000 replicas fills up over many passes, each of which re-reads the
/// Deployments and so follows a scale-down or a delete at once.
const BURST_CREATES: usize = 500;

pub struct Workloads {
    writer: Writer,
    rng: rand::rngs::StdRng,
    expectations: Expectations,
}

/// How long an owner waits for the view to show its own writes before acting anyway
/// (kube-controller-manager's expectations expire after 5 minutes).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// A Deployment or DaemonSet, by kind and name.
type OwnerKey = (&'static str, NsName);

/// kube-controller-manager's controller expectations: the pods an owner's last pass created or
/// deleted, until the view shows them so. The view follows the API through a watch, so just
/// after a write it is behind: an owner acting on it then would count its new pods as missing and
/// create them twice. It waits instead, until the view has caught up or the wait expires.
#[derive(Default)]
struct Expectations {
    pending: BTreeMap<OwnerKey, (Vec<(NsName, bool)>, Instant)>,
}

/// Whether a pod is there and not on its way out.
fn live(pod: Option<&Pod>) -> bool {
    pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none())
}

impl Expectations {
    /// Records that `pod` should now exist (or, `false`, be gone) for `owner`.
    fn expect(&mut self, owner: &OwnerKey, pod: NsName, exists: bool) {
        let entry = self
            .pending
            .entry(owner.clone())
            .or_insert_with(|| (Vec::new(), Instant::now()));
        entry.0.push((pod, exists));
        entry.1 = Instant::now();
    }

    /// Whether `owner` may act: every write of its last pass is in the view (or took too long).
    fn satisfied(&mut self, view: &ClusterView, owner: &OwnerKey) -> bool {
        let Some((pods, since)) = self.pending.get(owner) else {
            return true;
        };
        let seen = pods
            .iter()
            .all(|(pod, exists)| live(view.pod(pod)) == *exists);
        if seen || since.elapsed() > EXPECTATIONS_TIMEOUT {
            self.pending.remove(owner);
            return true;
        }
        false
    }
}

impl Workloads {
    pub fn new(writer: Writer) -> Workloads {
        use rand::SeedableRng;
        Workloads {
            writer,
            rng: rand::rngs::StdRng::from_entropy(),
            expectations: Expectations::default(),
        }
    }
}

/// Everything one pass decides, taken from the view under its lock.
#[derive(Default)]
struct Pass {
    create: Vec<(Owner, Pod)>,
    /// With the owner whose decision it is (None: garbage).
    delete: Vec<(Option<OwnerKey>, ObjectKey)>,
    deployment_status: Vec<(ObjectKey, serde_json::Value)>,
    daemonset_status: Vec<(ObjectKey, serde_json::Value)>,
}

/// The owner of a pod to create, for the event if the creation fails.
struct Owner {
    api_version: &'static str,
    kind: &'static str,
    key: NsName,
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
            plan(&view, &mut self.rng, &mut self.expectations)
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
fn plan(view: &ClusterView, rng: &mut impl rand::Rng, expectations: &mut Expectations) -> Pass {
    let mut pass = Pass::default();
    let mut by_namespace: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    let pods_of = |ns: &str| -> Vec<Pod> { view.pods_in(ns).cloned().collect() };
    let mut budget = BURST_CREATES;
    for (key, d) in view.deployments() {
        let owner: OwnerKey = ("Deployment", key.clone());
        if !expectations.satisfied(view, &owner) {
            continue;
        }
        let pods = by_namespace
            .entry(key.namespace.as_str())
            .or_insert_with(|| pods_of(&key.namespace));
        let p = weft_model::deployment::reconcile(d, pods, rng);
        pass.delete
            .extend(p.delete.into_iter().map(|k| (Some(owner.clone()), k)));
        for pod in p.create.into_iter().take(budget) {
            budget -= 1;
            pass.create.push((
                Owner {
                    api_version: "apps/v1",
                    kind: "Deployment",
                    key: key.clone(),
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
        let owner: OwnerKey = ("DaemonSet", key.clone());
        if !expectations.satisfied(view, &owner) {
            continue;
        }
        let pods = by_namespace
            .entry(key.namespace.as_str())
            .or_insert_with(|| pods_of(&key.namespace));
        let p = weft_model::daemonset::reconcile(ds, &nodes, pods, rng);
        pass.delete
            .extend(p.delete.into_iter().map(|k| (Some(owner.clone()), k)));
        for pod in p.create {
            pass.create.push((
                Owner {
                    api_version: "apps/v1",
                    kind: "DaemonSet",
                    key: key.clone(),
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
    pass.delete
        .extend(orphans(view).into_iter().map(|k| (None, k)));
    pass.delete
        .sort_by(|(_, a), (_, b)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    pass.delete.dedup_by(|(_, a), (_, b)| a == b);
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
    fn write(&mut self, pass: Pass) -> Result<(), WriteError> {
        let mut failures = Failures::default();
        let keys: Vec<(Option<String>, String)> = pass
            .delete
            .iter()
            .map(|(_, k)| (k.namespace.clone(), k.name.clone()))
            .collect();
        let results = self.writer.delete_all::<Pod>(&keys);
        for ((owner, key), result) in pass.delete.iter().zip(results) {
            if let (Ok(()), Some(owner)) = (&result, owner) {
                let pod = NsName::new(key.namespace.clone().unwrap_or_default(), &key.name);
                self.expectations.expect(owner, pod, false);
            }
            failures.note(result);
        }
        let (owners, pods): (Vec<Owner>, Vec<Pod>) = pass.create.into_iter().unzip();
        let names: Vec<NsName> = pods
            .iter()
            .map(|p| {
                NsName::new(
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let mut reported = std::collections::BTreeSet::new();
        let results = self.writer.create_all(pods);
        for ((owner, pod), result) in owners.iter().zip(names).zip(results) {
            let Err(e) = result else {
                self.expectations
                    .expect(&(owner.kind, owner.key.clone()), pod, true);
                continue;
            };
            // The ReplicaSet controller's FailedCreate: said where `kubectl describe` and
            // `kubectl get events` look, once per owner and pass; a later pass tries again.
            if reported.insert(owner.key.clone()) {
                let about = Involved {
                    api_version: owner.api_version,
                    kind: owner.kind,
                    namespace: &owner.key.namespace,
                    name: &owner.key.name,
                    uid: owner.uid.as_deref(),
                };
                let message = format!("Error creating: {}", e.message());
                if let Err(e) = self.writer.warn(&about, "FailedCreate", &message) {
                    tracing::warn!("{e}");
                }
            }
            failures.note(Err(e));
        }
        for (key, status) in &pass.deployment_status {
            failures.note(self.writer.patch_status::<Deployment>(
                key.namespace.as_deref(),
                &key.name,
                status,
            ));
        }
        for (key, status) in &pass.daemonset_status {
            failures.note(self.writer.patch_status::<DaemonSet>(
                key.namespace.as_deref(),
                &key.name,
                status,
            ));
        }
        failures.result()
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

#[cfg(test)]
mod tests {
    use weft_view::Event;

    use super::*;

    fn deployment(replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "d-1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        }))
        .unwrap()
    }

    fn rng() -> rand::rngs::StdRng {
        use rand::SeedableRng;
        rand::rngs::StdRng::seed_from_u64(7)
    }

    /// The pods a pass creates, by name.
    fn created(pass: &Pass) -> Vec<NsName> {
        pass.create
            .iter()
            .map(|(_, p)| NsName::new("default", p.metadata.name.clone().unwrap()))
            .collect()
    }

    #[test]
    fn an_owner_waits_until_the_view_shows_its_own_creations() {
        let mut view = ClusterView::new();
        view.apply(Event::Relisted(vec![deployment(2)]));
        view.apply(Event::<Pod>::Relisted(Vec::new()));
        let mut expectations = Expectations::default();
        let first = plan(&view, &mut rng(), &mut expectations);
        let pods = created(&first);
        assert_eq!(pods.len(), 2);
        let owner: OwnerKey = ("Deployment", NsName::new("default", "web"));
        for pod in &pods {
            expectations.expect(&owner, pod.clone(), true);
        }
        // The watch has not delivered them yet: the next pass must not create two more.
        let behind = plan(&view, &mut rng(), &mut expectations);
        assert!(behind.create.is_empty(), "{:?}", created(&behind));
        // Once one has arrived it still waits; with both, it acts again (nothing to do).
        let mut seen = first.create.iter().map(|(_, p)| p.clone());
        view.apply(Event::Apply(seen.next().unwrap()));
        assert!(plan(&view, &mut rng(), &mut expectations).create.is_empty());
        view.apply(Event::Apply(seen.next().unwrap()));
        assert!(expectations.satisfied(&view, &owner));
        let caught_up = plan(&view, &mut rng(), &mut expectations);
        assert!(caught_up.create.is_empty() && caught_up.delete.is_empty());
        // A scale-up is then followed at once.
        view.apply(Event::Apply(deployment(3)));
        assert_eq!(
            created(&plan(&view, &mut rng(), &mut expectations)).len(),
            1
        );
    }

    #[test]
    fn pods_of_a_gone_owner_are_garbage() {
        let mut view = ClusterView::new();
        let pass = plan(
            &{
                let mut v = ClusterView::new();
                v.apply(Event::Relisted(vec![deployment(1)]));
                v
            },
            &mut rng(),
            &mut Expectations::default(),
        );
        let (_, pod) = pass.create.into_iter().next().unwrap();
        view.apply(Event::Relisted(vec![pod]));
        view.apply(Event::<Deployment>::Relisted(Vec::new()));
        let garbage = plan(&view, &mut rng(), &mut Expectations::default());
        assert_eq!(garbage.delete.len(), 1);
        assert!(
            garbage.delete[0].0.is_none(),
            "garbage has no owner to wait on"
        );
    }
}
