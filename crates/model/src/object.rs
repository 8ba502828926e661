//! The objects weft understands, as `k8s-openapi` types in one enum, plus their identity
//! ([`ObjectKey`]) and the JSON form they are stored and exchanged in.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Why a JSON value is not a valid object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("an object must be a mapping, found {found}")]
    NotAMapping { found: &'static str },
    #[error("{field}: required field is missing")]
    Missing { field: &'static str },
    #[error("apiVersion: {found:?} is not an API version of kind {kind}; use {expected:?}")]
    WrongApiVersion {
        kind: String,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: {message}")]
    Field { path: String, message: String },
}

impl ObjectError {
    /// The field the error is about, as a dotted path (`spec.replicas`).
    pub fn field(&self) -> Option<String> {
        match self {
            ObjectError::NotAMapping { .. } => None,
            ObjectError::Missing { field } => Some(field.to_string()),
            ObjectError::WrongApiVersion { .. } => Some("apiVersion".to_string()),
            ObjectError::Field { path, .. } => Some(path.clone()),
        }
    }

    /// What is wrong, without the field.
    pub fn message(&self) -> String {
        match self {
            ObjectError::NotAMapping { .. } => self.to_string(),
            ObjectError::Missing { .. } => "required field is missing".to_string(),
            ObjectError::WrongApiVersion {
                kind,
                found,
                expected,
            } => format!("{found:?} is not an API version of kind {kind}; use {expected:?}"),
            ObjectError::Field { message, .. } => message.clone(),
        }
    }
}

/// The identity of an object: kind, namespace (None for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, namespace: Option<&str>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    pub fn namespaced(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ObjectKey {
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    pub fn cluster_scoped(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// kubectl's `resource/name` form: `pod/web-1`, `namespace/demo`.
    pub fn resource_ref(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// An object of a kind weft does not handle (yet), kept whole so it round-trips unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct OtherObject {
    pub api_version: String,
    pub kind: String,
    /// The parsed `metadata`; authoritative over `raw["metadata"]`.
    pub metadata: ObjectMeta,
    pub raw: Value,
}

macro_rules! objects {
    ($($variant:ident => $as:ident, $as_mut:ident;)*) => {
        /// One Kubernetes object.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Object {
            $($variant($variant),)*
            Other(OtherObject),
        }

        /// The kinds weft handles, with their API versions.
        pub const HANDLED_KINDS: &[(&str, &str)] =
            &[$((<$variant as Resource>::KIND, <$variant as Resource>::API_VERSION),)*];

        $(impl From<$variant> for Object {
            fn from(value: $variant) -> Object {
                Object::$variant(value)
            }
        })*

        impl Object {
            pub fn kind(&self) -> &str {
                match self {
                    $(Object::$variant(_) => <$variant as Resource>::KIND,)*
                    Object::Other(o) => &o.kind,
                }
            }

            pub fn api_version(&self) -> &str {
                match self {
                    $(Object::$variant(_) => <$variant as Resource>::API_VERSION,)*
                    Object::Other(o) => &o.api_version,
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$variant(o) => &o.metadata,)*
                    Object::Other(o) => &o.metadata,
                }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$variant(o) => &mut o.metadata,)*
                    Object::Other(o) => &mut o.metadata,
                }
            }

            fn typed_to_json(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(Object::$variant(o) => serde_json::to_value(o),)*
                    Object::Other(o) => {
                        let mut raw = o.raw.clone();
                        let metadata = serde_json::to_value(&o.metadata)?;
                        if let Value::Object(map) = &mut raw {
                            map.insert("apiVersion".into(), Value::String(o.api_version.clone()));
                            map.insert("kind".into(), Value::String(o.kind.clone()));
                            map.insert("metadata".into(), metadata);
                        }
                        Ok(raw)
                    }
                }
            }

            fn typed_from_json(kind: &str, value: Value) -> Option<Result<Object, ObjectError>> {
                match kind {
                    $(k if k == <$variant as Resource>::KIND => {
                        Some(deserialize_at::<$variant>(value, "").map(Object::$variant))
                    })*
                    _ => None,
                }
            }

            $(
                pub fn $as(&self) -> Option<&$variant> {
                    match self {
                        Object::$variant(o) => Some(o),
                        _ => None,
                    }
                }

                pub fn $as_mut(&mut self) -> Option<&mut $variant> {
                    match self {
                        Object::$variant(o) => Some(o),
                        _ => None,
                    }
                }
            )*
        }
    };
}

objects! {
    Namespace => as_namespace, as_namespace_mut;
    Pod => as_pod, as_pod_mut;
    Deployment => as_deployment, as_deployment_mut;
    Service => as_service, as_service_mut;
    EndpointSlice => as_endpoint_slice, as_endpoint_slice_mut;
    Ingress => as_ingress, as_ingress_mut;
    NetworkPolicy => as_network_policy, as_network_policy_mut;
    Secret => as_secret, as_secret_mut;
    ConfigMap => as_config_map, as_config_map_mut;
    Node => as_node, as_node_mut;
}

/// Kinds that live outside namespaces: the handled ones and the common built-in ones, so that
/// an unhandled `ClusterRole` is still keyed without a namespace.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "RuntimeClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "IPAddress",
    "ServiceCIDR",
];

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Deserializes with the failing field's path; `prefix` is prepended for nested values.
fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: Value,
    prefix: &str,
) -> Result<T, ObjectError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix.is_empty(), path == ".") {
            (true, _) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        ObjectError::Field {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

impl Object {
    /// The object's identity; the namespace is None for cluster-scoped kinds.
    pub fn key(&self) -> ObjectKey {
        let meta = self.metadata();
        let namespace = if Object::is_namespaced_kind(self.kind()) {
            meta.namespace.clone()
        } else {
            None
        };
        ObjectKey {
            kind: self.kind().to_string(),
            namespace,
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// False for kinds weft stores but does not act on.
    pub fn is_handled(&self) -> bool {
        !matches!(self, Object::Other(_))
    }

    /// The object as Kubernetes JSON, `apiVersion` and `kind` included.
    pub fn to_json(&self) -> Value {
        // k8s-openapi only fails to serialize timestamps outside what RFC 3339 can write, which
        // parsing never produces; Null makes such an impossible object visible rather than a panic.
        self.typed_to_json().unwrap_or(Value::Null)
    }

    /// Parses Kubernetes JSON. Handled kinds must carry their exact API version (`apps/v1` for a
    /// Deployment); other kinds become [`Object::Other`].
    pub fn from_json(mut value: Value) -> Result<Object, ObjectError> {
        match value.get("kind").and_then(Value::as_str) {
            Some("NetworkPolicy") => crate::defaults::network_policy(&mut value),
            Some("Namespace") => crate::defaults::namespace(&mut value),
            _ => {}
        }
        let Value::Object(map) = &value else {
            return Err(ObjectError::NotAMapping {
                found: json_type(&value),
            });
        };
        let api_version = match map.get("apiVersion") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Null) | None => {
                return Err(ObjectError::Missing {
                    field: "apiVersion",
                })
            }
            Some(other) => {
                return Err(ObjectError::Field {
                    path: "apiVersion".into(),
                    message: format!("must be a string, found {}", json_type(other)),
                })
            }
        };
        let kind = match map.get("kind") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Null) | None => return Err(ObjectError::Missing { field: "kind" }),
            Some(other) => {
                return Err(ObjectError::Field {
                    path: "kind".into(),
                    message: format!("must be a string, found {}", json_type(other)),
                })
            }
        };
        match map.get("metadata").and_then(|m| m.get("name")) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) if !other.is_null() && !other.is_string() => {
                return Err(ObjectError::Field {
                    path: "metadata.name".into(),
                    message: format!("must be a string, found {}", json_type(other)),
                })
            }
            _ => {
                return Err(ObjectError::Missing {
                    field: "metadata.name",
                })
            }
        }
        if let Some((_, expected)) = HANDLED_KINDS.iter().find(|(k, _)| *k == kind) {
            if api_version != *expected {
                return Err(ObjectError::WrongApiVersion {
                    kind,
                    found: api_version,
                    expected,
                });
            }
        }
        if let Some(result) = Object::typed_from_json(&kind, value.clone()) {
            return result;
        }
        let metadata: ObjectMeta = deserialize_at(
            map.get("metadata").cloned().unwrap_or(Value::Null),
            "metadata",
        )?;
        Ok(Object::Other(OtherObject {
            api_version,
            kind,
            metadata,
            raw: value,
        }))
    }

    /// Whether objects of `kind` live in a namespace. Unknown kinds are assumed namespaced, like
    /// most custom resources.
    pub fn is_namespaced_kind(kind: &str) -> bool {
        !CLUSTER_SCOPED_KINDS.contains(&kind)
    }

    /// The API version weft expects for a handled kind.
    pub fn api_version_of(kind: &str) -> Option<&'static str> {
        HANDLED_KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| *v)
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.typed_to_json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Object::from_json(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_display_like_kubectl() {
        let pod = ObjectKey::namespaced("Pod", "default", "web-1");
        assert_eq!(pod.to_string(), "Pod default/web-1");
        assert_eq!(pod.resource_ref(), "pod/web-1");
        assert_eq!(
            ObjectKey::cluster_scoped("Namespace", "demo").to_string(),
            "Namespace demo"
        );
    }

    #[test]
    fn handled_kinds_round_trip() {
        let value = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}
        });
        let object = Object::from_json(value.clone()).unwrap();
        assert!(object.is_handled());
        assert_eq!(object.kind(), "Deployment");
        assert_eq!(object.api_version(), "apps/v1");
        assert_eq!(
            object.key(),
            ObjectKey::namespaced("Deployment", "demo", "web")
        );
        assert_eq!(object.to_json(), value);
        assert_eq!(
            object
                .as_deployment()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .replicas,
            Some(2)
        );
        let text = serde_json::to_string(&object).unwrap();
        let back: Object = serde_json::from_str(&text).unwrap();
        assert_eq!(back, object);
    }

    #[test]
    fn other_kinds_are_kept_whole() {
        let value = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"size": 3}, "extra": [1, 2]
        });
        let mut object = Object::from_json(value.clone()).unwrap();
        assert!(!object.is_handled());
        assert_eq!(object.kind(), "Widget");
        assert_eq!(object.to_json(), value);
        object.metadata_mut().uid = Some("u1".into());
        assert_eq!(object.to_json()["metadata"]["uid"], "u1");
        assert_eq!(object.to_json()["extra"], json!([1, 2]));
        let role = Object::from_json(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r", "namespace": "ignored"}
        }))
        .unwrap();
        assert_eq!(role.key(), ObjectKey::cluster_scoped("ClusterRole", "r"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| Object::from_json(v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"kind": "Pod", "metadata": {"name": "a"}})),
            "apiVersion: required field is missing"
        );
        assert_eq!(
            err(json!({"apiVersion": "v1", "metadata": {"name": "a"}})),
            "kind: required field is missing"
        );
        assert_eq!(
            err(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}})),
            "metadata.name: required field is missing"
        );
        assert_eq!(
            err(json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "a"}})),
            "apiVersion: \"v1\" is not an API version of kind Deployment; use \"apps/v1\""
        );
        assert_eq!(
            err(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
                       "spec": {"replicas": "three"}})
            ),
            "spec.replicas: invalid type: string \"three\", expected i32"
        );
        assert_eq!(err(json!([1])), "an object must be a mapping, found a list");
        assert_eq!(
            err(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}})),
            "metadata.name: must be a string, found a number"
        );
        assert_eq!(
            err(json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a", "labels": 3}})),
            "metadata.labels: invalid type: integer `3`, expected a map"
        );
    }

    #[test]
    fn scopes() {
        assert!(Object::is_namespaced_kind("Pod"));
        assert!(Object::is_namespaced_kind("Widget"));
        assert!(!Object::is_namespaced_kind("Namespace"));
        assert!(!Object::is_namespaced_kind("Node"));
        assert_eq!(
            Object::api_version_of("Ingress"),
            Some("networking.k8s.io/v1")
        );
        assert_eq!(Object::api_version_of("Widget"), None);
    }
}
