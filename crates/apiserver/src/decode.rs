//! From request bodies to objects: JSON or YAML in, the group/version/kind checked against the
//! URL, the namespace and name reconciled with the path, fields unknown to the kind's schema
//! found (for `fieldValidation`), and the defaults kube-apiserver applies on create.

use rand::Rng;
use serde_json::{json, Value};
use weft_model::Object;

use crate::request::Query;
use crate::resources::Resource;
use crate::status::{ApiError, Cause};

/// `fieldValidation`: what to do about fields the schema does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &Query) -> Result<FieldValidation, ApiError> {
        match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, or Strict; got {other:?}"
            ))),
        }
    }
}

/// `dryRun=All` (the only value kube-apiserver accepts besides none).
pub fn dry_run(query: &Query) -> Result<bool, ApiError> {
    match query.all("dryRun") {
        [] => Ok(false),
        [all] if all == "All" => Ok(true),
        other => Err(ApiError::bad_request(format!(
            "Invalid dryRun value: {other:?}: only \"All\" is supported"
        ))),
    }
}

/// Parses a body as JSON, or as YAML when the content type says so.
pub fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
        serde_norway::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// Fills apiVersion and kind from the URL when the body leaves them out, and refuses a body of
/// another kind.
pub fn check_kind(value: &mut Value, resource: &Resource) -> Result<(), ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    };
    let expected = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected));
        }
        Some(v) if v != expected => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )))
        }
        Some(_) => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(resource.kind));
        }
        Some(k) if k != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )))
        }
        Some(_) => {}
    }
    Ok(())
}

/// Makes the body's namespace agree with the path's (filling it in when absent).
pub fn check_namespace(
    value: &mut Value,
    resource: &Resource,
    path_namespace: Option<&str>,
) -> Result<(), ApiError> {
    if !resource.namespaced {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
        return Ok(());
    }
    let Some(path_ns) = path_namespace else {
        return Err(ApiError::bad_request(format!(
            "{} must be written in a namespace: use /namespaces/<namespace>/{}",
            resource.qualified(),
            resource.plural
        )));
    };
    let meta = metadata_mut(value)?;
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(path_ns));
            Ok(())
        }
        Some(ns) if ns == path_ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

pub fn metadata_mut(value: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    let not_object = || ApiError::bad_request("the body of the request is not a JSON object");
    let map = value.as_object_mut().ok_or_else(not_object)?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    meta.as_object_mut().ok_or_else(not_object)
}

/// The name characters kube-apiserver's generateName appends.
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What the server sets on create: a name from `generateName`, and the kind's own defaults.
pub fn prepare_create(value: &mut Value, resource: &Resource) -> Result<(), ApiError> {
    let meta = metadata_mut(value)?;
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let mut rng = rand::thread_rng();
                let suffix: String = (0..5)
                    .map(|_| NAME_CHARS[rng.gen_range(0..NAME_CHARS.len())] as char)
                    .collect();
                meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
            }
            _ => {
                return Err(ApiError::invalid(
                    resource,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired",
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                    }],
                ))
            }
        }
    }
    // The server owns these; a client's values (e.g. from an exported manifest) are dropped.
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "managedFields",
    ] {
        meta.remove(field);
    }
    // A namespace's kubernetes.io/metadata.name label is `weft_model::defaults::namespace`'s,
    // applied to every parsed object.
    // Users do not write status: kube-apiserver resets it on create for these kinds (a
    // LoadBalancer address is admission's to give).
    if ["Pod", "Service", "Deployment", "Ingress", "Namespace"].contains(&resource.kind.as_str()) {
        if let Value::Object(map) = value {
            map.remove("status");
        }
    }
    Ok(())
}

/// Parses into the typed object (with the kind's defaults, see `weft_model::defaults`), with
/// kube-apiserver's wording for a body of the wrong shape.
pub fn to_object(value: Value, resource: &Resource) -> Result<Object, ApiError> {
    Object::from_json(value).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })
}

/// Paths present in `input` that the typed object dropped: fields its schema does not know.
/// Objects of kinds without a schema keep everything, so nothing is reported for them.
pub fn unknown_fields(input: &Value, object: &Object) -> Vec<String> {
    if !object.is_handled() {
        return Vec::new();
    }
    let mut found = Vec::new();
    walk(input, &object.to_json(), "", &mut found);
    found
}

fn walk(input: &Value, kept: &Value, path: &str, found: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match b.get(key) {
                    Some(inner) => walk(value, inner, &here, found),
                    // A null, empty map or list is dropped by serialization, not unknown.
                    None if is_empty(value) => {}
                    None if key == "status" && path.is_empty() => {}
                    None => found.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A create's or update's strict decoding error as kube-apiserver words it (its decoder's error
/// goes through transformDecodeError: `ConfigMap in version "v1" cannot be handled as a
/// ConfigMap: strict decoding error: unknown field "x"`); a patch's stays bare, as there.
pub fn in_version(e: ApiError, resource: &Resource) -> ApiError {
    if e.code == 400 && e.message.starts_with("strict decoding error: ") {
        return ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            resource.kind, resource.version, resource.kind, e.message
        ));
    }
    e
}

/// Applies `fieldValidation` to what [`unknown_fields`] found: an error under Strict, warnings
/// (for the `Warning` header) under Warn.
pub fn field_validation(
    unknown: Vec<String>,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() || mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    #[test]
    fn finds_unknown_fields() {
        let input = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "bogus": 1},
            "spec": {"ports": [{"port": 80, "portt": 81}], "selector": {"app": "x"}, "emptyThing": {}}});
        let object = Object::from_json(input.clone()).unwrap();
        assert_eq!(
            unknown_fields(&input, &object),
            ["metadata.bogus", "spec.ports[0].portt"]
        );
        assert!(
            field_validation(vec!["spec.x".into()], FieldValidation::Strict)
                .unwrap_err()
                .message
                .contains("unknown field \"spec.x\"")
        );
    }

    #[test]
    fn fills_and_checks_identity() {
        let r = Resources::builtin();
        let svc = r.find("", "v1", "services").unwrap();
        let mut v = json!({"metadata": {"generateName": "web-"}});
        check_kind(&mut v, svc).unwrap();
        check_namespace(&mut v, svc, Some("default")).unwrap();
        prepare_create(&mut v, svc).unwrap();
        assert_eq!(v["kind"], "Service");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert!(v["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        let mut other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}});
        assert!(check_namespace(&mut other, svc, Some("default")).is_err());
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}});
        assert!(check_kind(&mut pod, svc).is_err());
        let ns = r.find("", "v1", "namespaces").unwrap();
        let mut n = json!({"metadata": {"name": "team-a"}});
        check_kind(&mut n, ns).unwrap();
        prepare_create(&mut n, ns).unwrap();
        let object = to_object(n, ns).unwrap().to_json();
        assert_eq!(
            object["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
    }
}
