//! PATCH: JSON patch, merge patch, strategic merge patch (for the built-in kinds) and apply
//! patches (server-side apply), computed on the stored object and written with its
//! resourceVersion as the precondition; a concurrent write makes it try again on the fresh
//! object, as kube-apiserver does, unless the patch itself named a resourceVersion.

use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;
use weft_sources::StoreError;

use crate::api::Api;
use crate::crud::{
    blocking, create_value, get, object_from, status_mode, store_error, warn_if_not_acted_on,
    writer, written,
};
use crate::decode::{self, FieldValidation};
use crate::request::Query;
use crate::resources::Resource;
use crate::status::ApiError;
use crate::Body;

/// The patch formats, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a patch body to `doc` (an object of `api_version`/`kind`).
pub fn apply_patch(
    doc: &Value,
    body: &[u8],
    patch_type: PatchType,
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let patch: Value = match patch_type {
        PatchType::Apply => decode::parse_body(body, "application/yaml")?,
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    let failed = |e: weft_patch::PatchError| ApiError::new(422, "Invalid", e.to_string());
    match patch_type {
        PatchType::Json => weft_patch::json_patch(doc, &patch).map_err(failed),
        PatchType::Merge => weft_patch::merge_patch(doc, &patch).map_err(failed),
        PatchType::Strategic | PatchType::Apply => match weft_patch::Schema::for_kind(api_version, kind) {
            Some(schema) => weft_patch::strategic_merge_patch(doc, &patch, &schema).map_err(failed),
            // Apply of a kind without merge metadata merges maps and replaces lists, as
            // server-side apply does for atomic lists.
            None if patch_type == PatchType::Apply => weft_patch::merge_patch(doc, &patch).map_err(failed),
            None => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("strategic merge patch is not supported for {kind} ({api_version}): use a merge or JSON patch"),
            )),
        },
    }
}

pub(crate) async fn patch(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    to_status: bool,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let patch_type = PatchType::from_content_type(&content_type)?;
    let validation = FieldValidation::from_query(query)?;
    let store = writer(api, query)?;
    if patch_type == PatchType::Apply && query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            resource,
            name,
            vec![crate::status::Cause {
                reason: "FieldValueRequired",
                field: "fieldManager".into(),
                message: "Required value: is required for apply patch".into(),
            }],
        ));
    }
    let bytes = api.body(req).await?;
    for _attempt in 0..5 {
        let current = match get(api, resource, ns, name).await {
            Ok(current) => current,
            Err(e) if e.code == 404 && patch_type == PatchType::Apply && !to_status => {
                // Apply creates what does not exist yet.
                let value = decode::parse_body(&bytes, "application/yaml")?;
                return create_value(api, &store, value, resource, ns, validation).await;
            }
            Err(e) => return Err(e),
        };
        let stored_rv = current["metadata"]["resourceVersion"].clone();
        let patched = apply_patch(
            &current,
            &bytes,
            patch_type,
            &resource.api_version(),
            &resource.kind,
        )?;
        let named_rv = patched["metadata"]["resourceVersion"] != stored_rv;
        let expected = patched["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse::<u64>().ok());
        if patched["metadata"]["name"] != current["metadata"]["name"] {
            return Err(ApiError::bad_request(
                "metadata.name: the name of an object cannot be patched",
            ));
        }
        let (object, mut warnings) = object_from(patched, resource, ns, validation)?;
        warn_if_not_acted_on(resource, to_status, &mut warnings);
        let mode = status_mode(resource, to_status);
        let s = store.clone();
        match blocking(move || s.replace(object, expected, mode)).await {
            Ok(stored) => {
                if resource.kind == "CustomResourceDefinition" {
                    api.refresh_resources();
                }
                api.hub.poke();
                return Ok(written(StatusCode::OK, stored.to_json(), warnings));
            }
            Err(StoreError::Conflict { .. }) if !named_rv => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::conflict(resource, name))
}
