//! `pods/binding`: how a scheduler assigns a pod to a node (POST a `Binding` whose target names
//! the node). The pod's `spec.nodeName` is set in one transaction, so two schedulers racing for
//! one pod cannot both win: the second gets the Conflict kube-apiserver answers, "pod x is
//! already assigned to node y".

use std::sync::{Arc, Mutex};

use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use weft_model::Object;

use crate::api::{json_response, Api};
use crate::crud::{blocking, key, store_error, writer};
use crate::request::Query;
use crate::resources::Resource;
use crate::status::ApiError;
use crate::Body;

pub(crate) async fn bind(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<String>,
    name: String,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let store = writer(api, query)?;
    let content_type = crate::crud::content_type(&req);
    let body = api.body(req).await?;
    let binding: Value = crate::decode::parse_body(&body, &content_type)?;
    let node = target_node(&binding, &name)?;
    let k = key(resource, ns.as_deref(), &name);
    // What the pod was bound to before this request, if anything.
    let before: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = before.clone();
    let target = node.clone();
    let updated = blocking(move || {
        store.update(&k, |o| {
            if let Object::Pod(pod) = o {
                let spec = pod.spec.get_or_insert_default();
                match &spec.node_name {
                    Some(bound) => {
                        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(bound.clone())
                    }
                    None => spec.node_name = Some(target),
                }
            }
        })
    })
    .await
    .map_err(|e| store_error(e, resource, &name))?;
    if updated.is_none() {
        return Err(ApiError::not_found(resource, &name));
    }
    if let Some(bound) = before.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""
            ),
        ));
    }
    api.hub.poke();
    Ok(json_response(
        StatusCode::CREATED,
        &crate::status::success(None),
    ))
}

/// The node a `Binding` names; its own name must be the pod's.
fn target_node(binding: &Value, pod: &str) -> Result<String, ApiError> {
    if let Some(named) = binding["metadata"]["name"].as_str() {
        if named != pod {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({named}) does not match the name on the URL ({pod})"
            )));
        }
    }
    let kind = binding["target"]["kind"].as_str().unwrap_or("Node");
    if kind != "Node" {
        return Err(ApiError::bad_request(format!(
            "target.kind: Unsupported value: {kind:?}: supported values: \"Node\""
        )));
    }
    match binding["target"]["name"].as_str() {
        Some(node) if !node.is_empty() => Ok(node.to_string()),
        _ => Err(ApiError::bad_request("target.name: Required value")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_target_must_be_a_named_node() {
        let ok = json!({"metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}});
        assert_eq!(target_node(&ok, "web").unwrap(), "n1");
        let other = json!({"metadata": {"name": "x"}, "target": {"name": "n1"}});
        assert!(target_node(&other, "web").is_err());
        let unnamed = json!({"target": {"kind": "Node"}});
        assert!(target_node(&unnamed, "web").is_err());
        let wrong = json!({"target": {"kind": "Pod", "name": "p"}});
        assert!(target_node(&wrong, "web").is_err());
    }
}
