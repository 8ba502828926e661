//! The ReplicaSet controller's decision, pure: given a Deployment and the pods that exist, which pods
//! to create and which to delete. Deterministic given the random generator (used only for the
//! 5-character name suffixes).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::Resource;
use serde_json::Value;

use crate::object::ObjectKey;

/// The label Kubernetes puts on a Deployment's pods to tell template revisions apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Kubernetes' `SafeEncodeString` alphabet: no vowels (no words), no 0/1/3 (look like letters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What to do to make the pods match the Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentPlan {
    pub create: Vec<Pod>,
    pub delete: Vec<ObjectKey>,
}

impl DeploymentPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// JSON with object keys sorted at every level, so the hash does not depend on field order.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A stable hash of a pod template, in the same shape as Kubernetes' (FNV-1a 32 of the template,
/// its decimal digits mapped through the SafeEncodeString alphabet). The exact value differs from
/// Kubernetes', which hashes Go's spew dump of the struct; it is stable across runs and versions of
/// weft.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let mut text = String::new();
    // Serializing a template to a JSON value cannot fail for values that were deserialized.
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    canonical_json(&value, &mut text);
    let hash = fnv1a_32(text.as_bytes());
    hash.to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

pub(crate) fn random_suffix(rng: &mut impl rand::Rng) -> String {
    (0..5)
        .map(|_| char::from(SAFE_ALPHABET[rng.gen_range(0..SAFE_ALPHABET.len())]))
        .collect()
}

/// Whether `pod` is one of `deployment`'s: same namespace and a Deployment owner reference with its
/// name (and its uid, when both carry one).
pub fn owns(deployment: &Deployment, pod: &Pod) -> bool {
    let meta = &deployment.metadata;
    if pod.metadata.namespace != meta.namespace {
        return false;
    }
    pod.metadata.owner_references.iter().flatten().any(|r| {
        r.kind == <Deployment as Resource>::KIND
            && Some(&r.name) == meta.name.as_ref()
            && (r.uid.is_empty() || meta.uid.as_deref().is_none_or(|uid| uid == r.uid))
    })
}

fn pod_key(pod: &Pod) -> ObjectKey {
    ObjectKey {
        kind: <Pod as Resource>::KIND.to_string(),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// Decides which pods to create and delete so that exactly `spec.replicas` (default 1) pods of the
/// current template exist. Pods of other templates are deleted (a recreate, not a rolling update),
/// surplus pods are deleted newest first, new pods get unique `<deployment>-<hash>-<suffix>` names.
pub fn reconcile(
    deployment: &Deployment,
    pods: &[Pod],
    rng: &mut impl rand::Rng,
) -> DeploymentPlan {
    let mut plan = DeploymentPlan::default();
    let Some(spec) = deployment.spec.as_ref() else {
        return plan;
    };
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let hash = pod_template_hash(&spec.template);

    let mut current: Vec<&Pod> = Vec::new();
    for pod in pods.iter().filter(|p| owns(deployment, p)) {
        let pod_hash = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL));
        if pod_hash == Some(&hash) {
            current.push(pod);
        } else {
            plan.delete.push(pod_key(pod));
        }
    }

    if current.len() > replicas {
        // Newest first, like the ReplicaSet controller: the youngest pods have served least.
        current.sort_by(|a, b| {
            let age = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            age(b)
                .cmp(&age(a))
                .then_with(|| b.metadata.name.cmp(&a.metadata.name))
        });
        let surplus = current.len() - replicas;
        plan.delete
            .extend(current.iter().take(surplus).map(|p| pod_key(p)));
        return plan;
    }

    let mut taken: BTreeSet<String> = pods
        .iter()
        .filter(|p| p.metadata.namespace == deployment.metadata.namespace)
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.clone().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
    let owner = OwnerReference {
        api_version: <Deployment as Resource>::API_VERSION.to_string(),
        kind: <Deployment as Resource>::KIND.to_string(),
        name: name.clone(),
        uid: deployment.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    for _ in current.len()..replicas {
        let pod_name = loop {
            let candidate = format!("{name}-{hash}-{}", random_suffix(rng));
            if taken.insert(candidate.clone()) {
                break candidate;
            }
        };
        plan.create.push(Pod {
            metadata: ObjectMeta {
                name: Some(pod_name),
                namespace: deployment.metadata.namespace.clone(),
                labels: Some(labels.clone()),
                annotations: template_meta.annotations.clone(),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: spec.template.spec.clone(),
            status: None,
        });
    }
    plan
}

#[cfg(test)]
mod tests;
