//! Object keys at the store's edge: which keys the store accepts, how an incoming object's namespace
//! is normalized, and how a key maps to the database's key columns.

use weft_model::{Object, ObjectKey};

use super::StoreError;

/// Namespaces that exist without a Namespace object, as in every Kubernetes cluster.
pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system"];

/// Refuses keys no Kubernetes object can have, so they never reach the database.
pub(super) fn check_key(key: &ObjectKey) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.clone(),
            reason: reason.to_string(),
        })
    };
    if !valid_kind(&key.kind) {
        return bad("kind must be non-empty and alphanumeric");
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && !s.contains(['/', '\0', '%'])
    };
    if !name_ok(&key.name) {
        return bad(
            "name must be 1-253 characters, not start with '.', and not contain '/' or '%'",
        );
    }
    if let Some(ns) = &key.namespace {
        if weft_model::names::check_rfc1123_label(ns).is_err() {
            return bad("namespace must be an RFC 1123 label");
        }
    }
    Ok(())
}

pub(super) fn valid_kind(kind: &str) -> bool {
    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Gives namespaced objects a namespace (`default`) and takes it from cluster-scoped ones, so keys
/// are the same whether or not the object came through the manifest parser.
pub(super) fn normalize(mut object: Object) -> Object {
    let namespaced = Object::is_namespaced_kind(object.kind());
    let meta = object.metadata_mut();
    if !namespaced {
        meta.namespace = None;
    } else if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".to_string());
    }
    object
}

/// The `namespace` column of a key: empty for cluster-scoped objects, which no namespace name can
/// be (an RFC 1123 label is never empty).
pub(super) fn namespace_column(key: &ObjectKey) -> &str {
    key.namespace.as_deref().unwrap_or("")
}

/// The key stored in a row's key columns.
pub(super) fn from_columns(kind: String, namespace: String, name: String) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: (!namespace.is_empty()).then_some(namespace),
        name,
    }
}

/// What a watcher is told about an object whose stored form cannot be read: its identity only.
/// Used for the log row of a deleted corrupt object, so its deletion still reaches watchers.
pub(super) fn stub(key: &ObjectKey) -> serde_json::Value {
    let api_version = Object::api_version_of(&key.kind).unwrap_or("v1");
    let mut metadata = serde_json::json!({ "name": key.name });
    if let Some(ns) = &key.namespace {
        metadata["namespace"] = serde_json::Value::String(ns.clone());
    }
    serde_json::json!({ "apiVersion": api_version, "kind": key.kind, "metadata": metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip_both_scopes() {
        for key in [
            ObjectKey::namespaced("Pod", "demo", "a"),
            ObjectKey::cluster_scoped("Namespace", "demo"),
        ] {
            let ns = namespace_column(&key).to_string();
            assert_eq!(from_columns(key.kind.clone(), ns, key.name.clone()), key);
        }
    }

    #[test]
    fn stubs_parse_as_the_kind_they_name() {
        for key in [
            ObjectKey::namespaced("Service", "demo", "web"),
            ObjectKey::namespaced("Deployment", "demo", "web"),
            ObjectKey::cluster_scoped("Namespace", "demo"),
            ObjectKey::namespaced("Widget", "demo", "w"),
        ] {
            let object = Object::from_json(stub(&key)).unwrap();
            assert_eq!(object.key(), key);
        }
    }
}
