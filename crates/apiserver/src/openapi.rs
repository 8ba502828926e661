//! OpenAPI v3 documents, as far as clients need them: the root lists one document per group
//! version, and each document lists the operations of its resources with their query
//! parameters and `x-kubernetes-group-version-kind`. kubectl reads the PATCH operations to learn
//! that the server validates fields itself (`fieldValidation`), so it sends `Strict` instead of
//! validating against a schema on its own.

use serde_json::{json, Map, Value};

use crate::resources::{Resource, Resources};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn root(resources: &Resources) -> Value {
    let mut paths = Map::new();
    for r in resources.iter() {
        let path = gv_path(&r.group, &r.version);
        if !paths.contains_key(&path) {
            let url = format!(
                "/openapi/v3/{path}?hash={}",
                hash(resources, &r.group, &r.version)
            );
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// A digest of what a group version's document says, so clients' caches follow CRD changes.
fn hash(resources: &Resources, group: &str, version: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        for b in format!("{}/{}/{};", r.plural, r.kind, r.namespaced).bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016X}")
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &Resource, action: &str, verb_id: &str) -> Value {
    let mut parameters = vec![query(
        "pretty",
        "If 'true', then the output is pretty printed.",
    )];
    if matches!(action, "post" | "put" | "patch") {
        parameters.push(query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ));
        parameters.push(query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
        parameters.push(query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."));
    }
    if action == "patch" {
        parameters.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let group_id: String = r
        .group
        .split('.')
        .next()
        .map(|g| {
            let mut c = g.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let version_id = {
        let mut c = r.version.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    json!({
        "operationId": format!("{verb_id}{group_id}{version_id}{scope}{}", r.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

/// `GET /openapi/v3/<api/v1 | apis/group/version>`, None for a group version not served.
pub fn group_version(resources: &Resources, path: &str) -> Option<Value> {
    let path = path.split('?').next().unwrap_or(path).trim_matches('/');
    let members: Vec<&Resource> = resources
        .iter()
        .filter(|r| gv_path(&r.group, &r.version) == path)
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for r in members {
        let base = if r.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("/{path}/{}", r.plural)
        };
        let mut item = Map::new();
        item.insert("get".into(), operation(r, "get", "read"));
        if !r.read_only {
            item.insert("put".into(), operation(r, "put", "replace"));
            item.insert("patch".into(), operation(r, "patch", "patch"));
            item.insert("delete".into(), operation(r, "delete", "delete"));
        }
        paths.insert(format!("{base}/{{name}}"), Value::Object(item));
        let mut collection = Map::new();
        collection.insert("get".into(), operation(r, "list", "list"));
        if !r.read_only {
            collection.insert("post".into(), operation(r, "post", "create"));
        }
        paths.insert(base, Value::Object(collection));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::api::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_carry_the_kind_and_field_validation() {
        let r = Resources::builtin();
        let root = root(&r);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = group_version(&r, "apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let core = group_version(&r, "api/v1").unwrap();
        assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
        assert!(group_version(&r, "apis/nope/v1").is_none());
    }
}
