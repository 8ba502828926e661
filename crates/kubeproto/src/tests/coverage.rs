//! Schema-wide checks. For every kind k8s-openapi has a type for, a body with every field set
//! (walking the schema: each scalar non-zero, each list and map one element, each message
//! recursed into) decodes to JSON that k8s-openapi reads and writes back unchanged: so every
//! JSON name, embedded struct and special form the table produces is one Kubernetes uses, and a
//! wrong acronym (`podIp`) or a missed `json:",inline"` fails here.

use std::collections::BTreeSet;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use serde_json::Value;

use super::{body, decoded, openapi_roundtrip, Msg};
use crate::schema::{self, Card, MessageDef, NameSource, Shape, Ty, MESSAGES};

/// A body for `def` with every field k8s-openapi names set once. Messages already on the path
/// are not entered again (JSONSchemaProps is recursive).
fn sample(def: &'static MessageDef, path: &mut Vec<&'static str>) -> Msg {
    let mut out = Msg::new();
    if path.contains(&def.name) {
        return out;
    }
    path.push(def.name);
    for f in def.fields {
        // Fields k8s-openapi v1_34 does not have (newer than 1.34) cannot round-trip through it.
        if f.name_source != NameSource::Openapi {
            continue;
        }
        let one = |out: Msg| match f.ty {
            Ty::String => out.string(f.number, "x"),
            Ty::Bytes => out.bytes(f.number, b"x"),
            Ty::Bool => out.boolean(f.number, true),
            Ty::Int32 | Ty::Int64 => out.int(f.number, 7),
            Ty::Double => out.double(f.number, 0.5),
            Ty::Message(_) => out,
        };
        out = match (f.card, f.ty) {
            (Card::Map, Ty::Message(i)) => {
                out.entry_msg(f.number, "k", special_or_struct(schema::message(i), path))
            }
            (Card::Map, Ty::Bytes) => out.msg(f.number, Msg::new().string(1, "k").bytes(2, b"x")),
            (Card::Map, _) => out.entry(f.number, "k", "v"),
            (_, Ty::Message(i)) => out.msg(f.number, special_or_struct(schema::message(i), path)),
            _ => one(out),
        };
    }
    path.pop();
    out
}

fn special_or_struct(def: &'static MessageDef, path: &mut Vec<&'static str>) -> Msg {
    match def.shape {
        Shape::Struct => sample(def, path),
        Shape::Time => Msg::new().int(1, 1_704_164_645),
        Shape::MicroTime => Msg::new().int(1, 1_704_164_645).int(2, 123_456_000),
        Shape::Duration => Msg::new().int(1, 300_000_000_000),
        Shape::Quantity => Msg::new().string(1, "100m"),
        Shape::IntOrString => Msg::new().int(1, 0).int(2, 8080),
        Shape::RawJson => Msg::new().bytes(1, br#"{"a":[1,"b"]}"#),
        Shape::StringList => Msg::new().string(1, "x"),
        Shape::SchemaOrBool => Msg::new().boolean(1, true),
        Shape::SchemaOrArray => Msg::new().msg(2, Msg::new().string(1, "x")),
        Shape::SchemaOrStringArray => Msg::new().string(2, "x"),
    }
}

/// Paths where two JSON values differ, for a readable failure.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => differences(&sub, l, r, out),
                    // k8s-openapi writes apiVersion and kind on embedded objects (a
                    // StatefulSet's volumeClaimTemplates); Go leaves an empty TypeMeta out.
                    (None, Some(_)) if k == "apiVersion" || k == "kind" => {}
                    (l, r) => out.push(format!("{sub}: decoded {l:?}, k8s-openapi {r:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a != b => out.push(format!("{path}: decoded {a}, k8s-openapi {b}")),
        _ => {}
    }
}

type Check = (&'static str, &'static str, fn(&Value) -> Value);

macro_rules! resources {
    ($($t:ty),* $(,)?) => {
        vec![$((
            <$t as k8s_openapi::Resource>::API_VERSION,
            <$t as k8s_openapi::Resource>::KIND,
            openapi_roundtrip::<$t> as fn(&Value) -> Value,
        )),*]
    };
}

fn checks() -> Vec<Check> {
    let mut all: Vec<Check> = resources![
        api::core::v1::Pod,
        api::core::v1::Service,
        api::core::v1::Namespace,
        api::core::v1::ConfigMap,
        api::core::v1::Secret,
        api::core::v1::ServiceAccount,
        api::core::v1::Endpoints,
        api::core::v1::Event,
        api::core::v1::Node,
        api::core::v1::Binding,
        api::core::v1::ComponentStatus,
        api::core::v1::LimitRange,
        api::core::v1::PersistentVolume,
        api::core::v1::PersistentVolumeClaim,
        api::core::v1::PodTemplate,
        api::core::v1::ReplicationController,
        api::core::v1::ResourceQuota,
        api::apps::v1::Deployment,
        api::apps::v1::ReplicaSet,
        api::apps::v1::DaemonSet,
        api::apps::v1::StatefulSet,
        api::apps::v1::ControllerRevision,
        api::batch::v1::Job,
        api::batch::v1::CronJob,
        api::networking::v1::Ingress,
        api::networking::v1::IngressClass,
        api::networking::v1::NetworkPolicy,
        api::networking::v1::IPAddress,
        api::networking::v1::ServiceCIDR,
        api::networking::v1beta1::IPAddress,
        api::networking::v1beta1::ServiceCIDR,
        api::discovery::v1::EndpointSlice,
        api::events::v1::Event,
        api::autoscaling::v1::Scale,
        api::autoscaling::v1::HorizontalPodAutoscaler,
        api::autoscaling::v2::HorizontalPodAutoscaler,
        api::policy::v1::PodDisruptionBudget,
        api::policy::v1::Eviction,
        api::rbac::v1::Role,
        api::rbac::v1::RoleBinding,
        api::rbac::v1::ClusterRole,
        api::rbac::v1::ClusterRoleBinding,
        api::admissionregistration::v1::MutatingWebhookConfiguration,
        api::admissionregistration::v1::ValidatingWebhookConfiguration,
        api::admissionregistration::v1::ValidatingAdmissionPolicy,
        api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
        api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
        api::admissionregistration::v1beta1::MutatingAdmissionPolicy,
        api::admissionregistration::v1beta1::MutatingAdmissionPolicyBinding,
        api::apiserverinternal::v1alpha1::StorageVersion,
        api::authentication::v1::SelfSubjectReview,
        api::authentication::v1::TokenRequest,
        api::authentication::v1::TokenReview,
        api::authorization::v1::LocalSubjectAccessReview,
        api::authorization::v1::SelfSubjectAccessReview,
        api::authorization::v1::SelfSubjectRulesReview,
        api::authorization::v1::SubjectAccessReview,
        api::certificates::v1::CertificateSigningRequest,
        api::certificates::v1alpha1::ClusterTrustBundle,
        api::certificates::v1beta1::ClusterTrustBundle,
        api::coordination::v1::Lease,
        api::coordination::v1alpha2::LeaseCandidate,
        api::coordination::v1beta1::LeaseCandidate,
        api::flowcontrol::v1::FlowSchema,
        api::flowcontrol::v1::PriorityLevelConfiguration,
        api::node::v1::RuntimeClass,
        api::resource::v1::DeviceClass,
        api::resource::v1::ResourceClaim,
        api::resource::v1::ResourceClaimTemplate,
        api::resource::v1::ResourceSlice,
        api::resource::v1alpha3::DeviceTaintRule,
        api::resource::v1beta1::DeviceClass,
        api::resource::v1beta1::ResourceClaim,
        api::resource::v1beta1::ResourceClaimTemplate,
        api::resource::v1beta1::ResourceSlice,
        api::resource::v1beta2::DeviceClass,
        api::resource::v1beta2::ResourceClaim,
        api::resource::v1beta2::ResourceClaimTemplate,
        api::resource::v1beta2::ResourceSlice,
        api::scheduling::v1::PriorityClass,
        api::storage::v1::CSIDriver,
        api::storage::v1::CSINode,
        api::storage::v1::CSIStorageCapacity,
        api::storage::v1::StorageClass,
        api::storage::v1::VolumeAttachment,
        api::storage::v1::VolumeAttributesClass,
        api::storage::v1alpha1::VolumeAttributesClass,
        api::storage::v1beta1::VolumeAttributesClass,
        apiextensions::v1::CustomResourceDefinition,
        apiregistration::v1::APIService,
        meta::v1::Status,
    ];
    all.push((
        "meta.k8s.io/v1",
        "DeleteOptions",
        openapi_roundtrip::<meta::v1::DeleteOptions>,
    ));
    all
}

#[test]
fn every_field_of_every_kind_round_trips_through_k8s_openapi() {
    let mut failures = Vec::new();
    for (api_version, kind, roundtrip) in checks() {
        let Some(def) = schema::kind(api_version, kind) else {
            failures.push(format!("{api_version} {kind}: no schema"));
            continue;
        };
        let json = decoded(&body(api_version, kind, &sample(def, &mut Vec::new())));
        let back = roundtrip(&json);
        let mut diffs = Vec::new();
        differences(&format!("{api_version} {kind}"), &json, &back, &mut diffs);
        failures.extend(diffs);
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_required_kinds_are_known() {
    for (api_version, kind) in [
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Endpoints"),
        ("v1", "Event"),
        ("v1", "Node"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "StatefulSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "IngressClass"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("meta.k8s.io/v1", "DeleteOptions"),
        ("apps/v1", "DeleteOptions"),
        ("v1", "List"),
        ("apps/v1beta1", "Deployment"),
        ("extensions/v1beta1", "Ingress"),
    ] {
        assert!(
            schema::kind(api_version, kind).is_some(),
            "{api_version} {kind}"
        );
    }
    assert!(
        schema::kind("v1", "PodSpec").is_none(),
        "only objects are kinds"
    );
    assert!(schema::kind("nope/v1", "DeleteOptions").is_none());
}

/// Messages reachable from `def` (itself included).
fn reachable(def: &'static MessageDef, seen: &mut BTreeSet<&'static str>) {
    if !seen.insert(def.name) {
        return;
    }
    for f in def.fields {
        if let Ty::Message(i) = f.ty {
            reachable(schema::message(i), seen);
        }
    }
}

/// Names k8s-openapi v1_34 does not confirm, in what the lab's kubectl (1.34) can send: only
/// fields k8s-pb (Kubernetes 1.35) added after 1.34. A new entry here means a field whose JSON
/// name was guessed: check it against Kubernetes' Go struct tags before accepting it.
#[test]
fn guessed_names_in_v1_kinds_are_only_newer_fields() {
    let mut seen = BTreeSet::new();
    for (api_version, kind, _) in checks() {
        if let Some(def) = schema::kind(api_version, kind) {
            reachable(def, &mut seen);
        }
    }
    let mut guessed = Vec::new();
    for m in MESSAGES
        .iter()
        .filter(|m| seen.contains(m.name) && m.shape == Shape::Struct)
    {
        for f in m
            .fields
            .iter()
            .filter(|f| f.name_source != NameSource::Openapi)
        {
            guessed.push(format!("{}.{}", m.name, f.json));
        }
    }
    let expected = [
        "k8s.io.api.core.v1.NodeStatus.declaredFeatures",
        "k8s.io.api.core.v1.PodCertificateProjection.userAnnotations",
        "k8s.io.api.core.v1.PodSpec.workloadRef",
        "k8s.io.api.core.v1.PodStatus.allocatedResources",
        "k8s.io.api.core.v1.PodStatus.resources",
        "k8s.io.api.core.v1.WorkloadReference.name",
        "k8s.io.api.core.v1.WorkloadReference.podGroup",
        "k8s.io.api.core.v1.WorkloadReference.podGroupReplicaKey",
        "k8s.io.api.resource.v1alpha3.DeviceTaintRule.status",
        "k8s.io.api.resource.v1alpha3.DeviceTaintRuleStatus.conditions",
        "k8s.io.api.storage.v1.CSIDriverSpec.serviceAccountTokenInSecrets",
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionCondition.observedGeneration",
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.observedGeneration",
    ];
    assert_eq!(guessed, expected);
}
