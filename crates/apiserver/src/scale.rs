//! The `scale` subresource of Deployments (autoscaling/v1 `Scale`), which `kubectl scale` and
//! autoscalers use: reads show spec and status replicas with the selector; writes change only
//! `spec.replicas` of the Deployment, with its resourceVersion as the precondition.

use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use weft_sources::StatusMode;

use crate::api::{json_response, Api};
use crate::crud::{blocking, get, store_error, writer};
use crate::patching::{apply_patch, PatchType};
use crate::request::Query;
use crate::resources::Resource;
use crate::status::ApiError;
use crate::Body;

fn scale_of(deployment: &Value) -> Value {
    let meta = &deployment["metadata"];
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

pub(crate) async fn serve(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<String>,
    name: String,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let current = get(api, resource, ns.as_deref(), &name).await?;
    let scale = scale_of(&current);
    if method == Method::GET {
        return Ok(json_response(StatusCode::OK, &scale));
    }
    let store = writer(api, query)?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = api.body(req).await?;
    let wanted = if method == Method::PATCH {
        apply_patch(
            &scale,
            &body,
            PatchType::from_content_type(&content_type)?,
            "autoscaling/v1",
            "Scale",
        )?
    } else {
        crate::decode::parse_body(&body, &content_type)?
    };
    let replicas = wanted["spec"]["replicas"]
        .as_i64()
        .filter(|r| *r >= 0 && *r <= i64::from(i32::MAX))
        .ok_or_else(|| {
            ApiError::invalid(
                resource,
                &name,
                vec![crate::status::Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.replicas".into(),
                    message: format!(
                        "Invalid value: {}: must be greater than or equal to 0",
                        wanted["spec"]["replicas"]
                    ),
                }],
            )
        })?;
    let expected = wanted["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse::<u64>().ok());
    let mut deployment = current;
    deployment["spec"]["replicas"] = json!(replicas);
    let object = crate::decode::to_object(deployment, resource)?;
    let stored = blocking(move || store.replace(object, expected, StatusMode::KeepStored))
        .await
        .map_err(|e| store_error(e, resource, &name))?;
    api.hub.poke();
    Ok(json_response(StatusCode::OK, &scale_of(&stored.to_json())))
}
