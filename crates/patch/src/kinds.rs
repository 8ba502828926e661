//! The strategic-merge metadata of the built-in kinds, in one table: the `patchStrategy` and
//! `patchMergeKey` struct tags of k8s.io/api v1.34 (and of ObjectMeta in apimachinery, which
//! every kind has). Lists not named here have no strategy and are replaced whole, as in
//! Kubernetes: a pod's `tolerations` and `readinessGates`, a node's `spec.taints`, a
//! container's `resources.claims`, every list of EndpointSlice, Endpoints, Ingress and
//! NetworkPolicy, and a pod status's `containerStatuses`.

use crate::schema::{FieldStrategy, Schema};
use std::collections::HashMap;
use std::sync::LazyLock;

enum Tag {
    /// `patchStrategy:"merge" patchMergeKey:"…"`
    Merge(&'static str),
    /// `patchStrategy:"merge,retainKeys" patchMergeKey:"…"`
    MergeRetainKeys(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives.
    MergeSet,
    /// `patchStrategy:"replace"`
    Replace,
    /// `patchStrategy:"retainKeys"`
    RetainKeys,
}

enum Entry {
    Field(&'static str, Tag),
    /// A struct used in several places, under a path prefix.
    Nested(&'static str, &'static [Entry]),
}

use Entry::{Field as F, Nested as N};
use Tag::*;

const OBJECT_META: &[Entry] = &[
    F("ownerReferences", Merge("uid")),
    F("finalizers", MergeSet),
];

/// Container and EphemeralContainerCommon.
const CONTAINER: &[Entry] = &[
    F("ports", Merge("containerPort")),
    F("env", Merge("name")),
    F("volumeMounts", Merge("mountPath")),
    F("volumeDevices", Merge("devicePath")),
];

const POD_SPEC: &[Entry] = &[
    F("volumes", MergeRetainKeys("name")),
    F("initContainers", Merge("name")),
    N("initContainers", CONTAINER),
    F("containers", Merge("name")),
    N("containers", CONTAINER),
    F("ephemeralContainers", Merge("name")),
    N("ephemeralContainers", CONTAINER),
    F("imagePullSecrets", Merge("name")),
    F("hostAliases", Merge("ip")),
    F("topologySpreadConstraints", Merge("topologyKey")),
    F("schedulingGates", Merge("name")),
    F("resourceClaims", MergeRetainKeys("name")),
];

const POD_STATUS: &[Entry] = &[
    F("conditions", Merge("type")),
    F("hostIPs", Merge("ip")),
    F("podIPs", Merge("ip")),
    F("resourceClaimStatuses", MergeRetainKeys("name")),
];

const POD_TEMPLATE_SPEC: &[Entry] = &[N("metadata", OBJECT_META), N("spec", POD_SPEC)];

const STATUS_CONDITIONS: &[Entry] = &[F("status.conditions", Merge("type"))];

const WORKLOAD: &[Entry] = &[
    N("spec.template", POD_TEMPLATE_SPEC),
    N("", STATUS_CONDITIONS),
];

const WEBHOOKS: &[Entry] = &[
    F("webhooks", Merge("name")),
    N("webhooks", &[F("matchConditions", Merge("name"))]),
];

const NONE: &[Entry] = &[];

/// (apiVersion, kind, strategies besides `metadata`'s).
const KINDS: &[(&str, &str, &[Entry])] = &[
    ("v1", "Pod", &[N("spec", POD_SPEC), N("status", POD_STATUS)]),
    ("v1", "PodTemplate", &[N("template", POD_TEMPLATE_SPEC)]),
    ("v1", "ReplicationController", WORKLOAD),
    (
        "v1",
        "Service",
        &[F("spec.ports", Merge("port")), N("", STATUS_CONDITIONS)],
    ),
    ("v1", "Endpoints", NONE),
    (
        "v1",
        "Node",
        &[
            F("spec.podCIDRs", MergeSet),
            F("status.conditions", Merge("type")),
            F("status.addresses", Merge("type")),
        ],
    ),
    ("v1", "Namespace", STATUS_CONDITIONS),
    ("v1", "ConfigMap", NONE),
    ("v1", "Secret", NONE),
    ("v1", "ServiceAccount", &[F("secrets", Merge("name"))]),
    ("v1", "Event", NONE),
    ("v1", "PersistentVolume", NONE),
    ("v1", "PersistentVolumeClaim", STATUS_CONDITIONS),
    ("v1", "LimitRange", NONE),
    ("v1", "ResourceQuota", NONE),
    ("v1", "ComponentStatus", &[F("conditions", Merge("type"))]),
    (
        "apps/v1",
        "Deployment",
        &[F("spec.strategy", RetainKeys), N("", WORKLOAD)],
    ),
    ("apps/v1", "ReplicaSet", WORKLOAD),
    ("apps/v1", "DaemonSet", WORKLOAD),
    ("apps/v1", "StatefulSet", WORKLOAD),
    ("apps/v1", "ControllerRevision", NONE),
    ("batch/v1", "Job", WORKLOAD),
    (
        "batch/v1",
        "CronJob",
        &[
            N("spec.jobTemplate.metadata", OBJECT_META),
            N("spec.jobTemplate.spec.template", POD_TEMPLATE_SPEC),
        ],
    ),
    ("autoscaling/v1", "HorizontalPodAutoscaler", NONE),
    ("autoscaling/v1", "Scale", NONE),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        STATUS_CONDITIONS,
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        &[F("spec.selector", Replace), N("", STATUS_CONDITIONS)],
    ),
    ("networking.k8s.io/v1", "Ingress", NONE),
    ("networking.k8s.io/v1", "IngressClass", NONE),
    ("networking.k8s.io/v1", "NetworkPolicy", NONE),
    ("networking.k8s.io/v1", "IPAddress", NONE),
    ("networking.k8s.io/v1", "ServiceCIDR", STATUS_CONDITIONS),
    ("discovery.k8s.io/v1", "EndpointSlice", NONE),
    ("events.k8s.io/v1", "Event", NONE),
    ("coordination.k8s.io/v1", "Lease", NONE),
    ("rbac.authorization.k8s.io/v1", "Role", NONE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", NONE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", NONE),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", NONE),
    ("storage.k8s.io/v1", "StorageClass", NONE),
    ("storage.k8s.io/v1", "CSIDriver", NONE),
    (
        "storage.k8s.io/v1",
        "CSINode",
        &[F("spec.drivers", Merge("name"))],
    ),
    ("storage.k8s.io/v1", "VolumeAttachment", NONE),
    ("scheduling.k8s.io/v1", "PriorityClass", NONE),
    ("node.k8s.io/v1", "RuntimeClass", NONE),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        WEBHOOKS,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        WEBHOOKS,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        &[
            F("spec.matchConditions", Merge("name")),
            F("spec.variables", Merge("name")),
        ],
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        NONE,
    ),
    ("certificates.k8s.io/v1", "CertificateSigningRequest", NONE),
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "FlowSchema",
        STATUS_CONDITIONS,
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1",
        "PriorityLevelConfiguration",
        STATUS_CONDITIONS,
    ),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", NONE),
    ("apiregistration.k8s.io/v1", "APIService", STATUS_CONDITIONS),
];

static SCHEMAS: LazyLock<HashMap<(&'static str, &'static str), Schema>> = LazyLock::new(|| {
    KINDS
        .iter()
        .map(|(api_version, kind, entries)| {
            let schema = add(Schema::empty(), "metadata", OBJECT_META);
            ((*api_version, *kind), add(schema, "", entries))
        })
        .collect()
});

static KIND_NAMES: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    KINDS
        .iter()
        .map(|(api_version, kind, _)| (*api_version, *kind))
        .collect()
});

fn add(mut schema: Schema, prefix: &str, entries: &[Entry]) -> Schema {
    for entry in entries {
        schema = match entry {
            Entry::Field(path, tag) => schema.with(&join(prefix, path), strategy(tag)),
            Entry::Nested(path, inner) => add(schema, &join(prefix, path), inner),
        };
    }
    schema
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{path}"),
    }
}

fn strategy(tag: &Tag) -> FieldStrategy {
    match tag {
        Merge(key) => FieldStrategy::merge_by(key),
        MergeRetainKeys(key) => FieldStrategy::MergeByKey {
            key: key.to_string(),
            retain_keys: true,
        },
        MergeSet => FieldStrategy::MergeSet,
        Replace => FieldStrategy::Replace,
        RetainKeys => FieldStrategy::RetainKeys,
    }
}

pub(crate) fn schema(api_version: &str, kind: &str) -> Option<Schema> {
    SCHEMAS.get(&(api_version, kind)).cloned()
}

/// The (apiVersion, kind) pairs that take strategic merge patches; the API server answers
/// 415 Unsupported Media Type for the others, as kube-apiserver does for custom resources.
pub fn strategic_merge_patch_kinds() -> &'static [(&'static str, &'static str)] {
    &KIND_NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(api_version: &str, kind: &str, path: &str) -> Option<FieldStrategy> {
        Schema::for_kind(api_version, kind)
            .unwrap()
            .strategy(path)
            .cloned()
    }

    #[test]
    fn every_pod_template_has_the_pod_spec_strategies() {
        let templates = [
            ("v1", "Pod", "spec"),
            ("v1", "PodTemplate", "template.spec"),
            ("v1", "ReplicationController", "spec.template.spec"),
            ("apps/v1", "Deployment", "spec.template.spec"),
            ("apps/v1", "ReplicaSet", "spec.template.spec"),
            ("apps/v1", "DaemonSet", "spec.template.spec"),
            ("apps/v1", "StatefulSet", "spec.template.spec"),
            ("batch/v1", "Job", "spec.template.spec"),
            ("batch/v1", "CronJob", "spec.jobTemplate.spec.template.spec"),
        ];
        for (api_version, kind, spec) in templates {
            let at = |field: &str| at(api_version, kind, &format!("{spec}.{field}"));
            for containers in ["containers", "initContainers", "ephemeralContainers"] {
                assert_eq!(
                    at(containers),
                    Some(FieldStrategy::merge_by("name")),
                    "{kind} {containers}"
                );
                assert_eq!(
                    at(&format!("{containers}.ports")),
                    Some(FieldStrategy::merge_by("containerPort"))
                );
                assert_eq!(
                    at(&format!("{containers}.env")),
                    Some(FieldStrategy::merge_by("name"))
                );
                assert_eq!(
                    at(&format!("{containers}.volumeMounts")),
                    Some(FieldStrategy::merge_by("mountPath"))
                );
                assert_eq!(
                    at(&format!("{containers}.volumeDevices")),
                    Some(FieldStrategy::merge_by("devicePath"))
                );
            }
            assert_eq!(
                at("volumes"),
                Some(FieldStrategy::MergeByKey {
                    key: "name".into(),
                    retain_keys: true
                })
            );
            assert_eq!(
                at("imagePullSecrets"),
                Some(FieldStrategy::merge_by("name"))
            );
            assert_eq!(at("hostAliases"), Some(FieldStrategy::merge_by("ip")));
            assert_eq!(
                at("tolerations"),
                None,
                "tolerations have no strategy: replaced whole"
            );
            assert_eq!(at("readinessGates"), None);
        }
        assert_eq!(
            at("apps/v1", "Deployment", "spec.template.metadata.finalizers"),
            Some(FieldStrategy::MergeSet)
        );
        assert_eq!(
            at(
                "batch/v1",
                "CronJob",
                "spec.jobTemplate.metadata.ownerReferences"
            ),
            Some(FieldStrategy::merge_by("uid"))
        );
    }

    #[test]
    fn kind_specific_tags() {
        assert_eq!(
            at("v1", "Service", "spec.ports"),
            Some(FieldStrategy::merge_by("port"))
        );
        assert_eq!(at("v1", "Node", "spec.taints"), None);
        assert_eq!(
            at("v1", "Node", "spec.podCIDRs"),
            Some(FieldStrategy::MergeSet)
        );
        assert_eq!(
            at("v1", "Node", "status.addresses"),
            Some(FieldStrategy::merge_by("type"))
        );
        assert_eq!(
            at("v1", "Pod", "status.conditions"),
            Some(FieldStrategy::merge_by("type"))
        );
        assert_eq!(
            at("v1", "Pod", "status.podIPs"),
            Some(FieldStrategy::merge_by("ip"))
        );
        assert_eq!(at("v1", "Pod", "status.containerStatuses"), None);
        assert_eq!(
            at("v1", "ServiceAccount", "secrets"),
            Some(FieldStrategy::merge_by("name"))
        );
        assert_eq!(
            at("apps/v1", "Deployment", "spec.strategy"),
            Some(FieldStrategy::RetainKeys)
        );
        assert_eq!(
            at("apps/v1", "Deployment", "status.conditions"),
            Some(FieldStrategy::merge_by("type"))
        );
        assert_eq!(
            at("policy/v1", "PodDisruptionBudget", "spec.selector"),
            Some(FieldStrategy::Replace)
        );
        assert_eq!(
            at(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "webhooks.matchConditions"
            ),
            Some(FieldStrategy::merge_by("name"))
        );
        for (api_version, kind) in [
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("networking.k8s.io/v1", "Ingress"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("v1", "ConfigMap"),
        ] {
            for path in [
                "endpoints",
                "ports",
                "spec.rules",
                "spec.ingress",
                "spec.egress",
                "data",
            ] {
                assert_eq!(at(api_version, kind, path), None, "{kind} {path}");
            }
        }
    }

    #[test]
    fn every_kind_has_object_meta_and_unknown_kinds_have_none() {
        for (api_version, kind) in strategic_merge_patch_kinds() {
            assert_eq!(
                at(api_version, kind, "metadata.finalizers"),
                Some(FieldStrategy::MergeSet)
            );
            assert_eq!(
                at(api_version, kind, "metadata.ownerReferences"),
                Some(FieldStrategy::merge_by("uid"))
            );
        }
        assert_eq!(strategic_merge_patch_kinds().len(), KINDS.len());
        assert!(Schema::for_kind("example.com/v1", "Widget").is_none());
        assert!(Schema::for_kind("apps/v1beta1", "Deployment").is_none());
        assert!(Schema::for_kind("v1", "Deployment").is_none());
    }
}
