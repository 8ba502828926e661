//! DELETE of one object (preconditions, propagation policy, dry run) and of a collection
//! (selectors). Owner-reference garbage collection follows in `gc`.

use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use weft_model::ObjectKey;

use crate::api::{json_response, Api};
use crate::crud::{blocking, get, key, snapshot, store_error, store_for};
use crate::decode;
use crate::request::Query;
use crate::resources::Resource;
use crate::select::Filter;
use crate::status::ApiError;
use crate::Body;

/// DeleteOptions from the body and the query.
struct DeleteOptions {
    propagation: String,
    /// `dryRun: ["All"]` in the body: kubectl delete --dry-run=server sends it there, not in
    /// the query.
    dry_run: bool,
    uid: Option<String>,
    revision: Option<u64>,
}

fn delete_options(body: &[u8], query: &Query) -> Result<DeleteOptions, ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))?
    };
    let propagation = value["propagationPolicy"]
        .as_str()
        .or(query.get("propagationPolicy"))
        .or(match value["orphanDependents"].as_bool() {
            Some(true) => Some("Orphan"),
            _ => None,
        })
        .unwrap_or("Background")
        .to_string();
    if !["Orphan", "Background", "Foreground"].contains(&propagation.as_str()) {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {propagation:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    let revision = match value["preconditions"]["resourceVersion"].as_str() {
        Some(rv) => Some(rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "preconditions.resourceVersion {rv:?} is not a number"
            ))
        })?),
        None => None,
    };
    let dry_run = match &value["dryRun"] {
        Value::Null => false,
        Value::Array(all) if all.is_empty() => false,
        Value::Array(all) if all.len() == 1 && all[0] == "All" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid dryRun value: {other}: only \"All\" is supported"
            )))
        }
    };
    Ok(DeleteOptions {
        propagation,
        dry_run,
        uid: value["preconditions"]["uid"].as_str().map(str::to_string),
        revision,
    })
}

pub(crate) async fn delete(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let bytes = api.body(req).await?;
    let options = delete_options(&bytes, query)?;
    let dry = decode::dry_run(query)? || options.dry_run;
    let store = store_for(api, dry);
    let current = match get(api, resource, ns, name).await {
        Ok(current) => current,
        // A row that no longer parses can still be deleted (it has no owner references or
        // uid to check), which is how a user clears it.
        Err(e) if e.reason == "InternalError" && options.uid.is_none() => json!({}),
        Err(e) => return Err(e),
    };
    if let Some(uid) = &options.uid {
        let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != actual {
            return Err(ApiError {
                details: Some(json!({"name": name, "group": resource.group, "kind": resource.plural})),
                ..ApiError::new(409, "Conflict", format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}",
                    resource.qualified()
                ))
            });
        }
    }
    let uid = current["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !dry && options.propagation == "Orphan" {
        crate::gc::orphan(api, &uid)
            .await
            .map_err(|e| store_error(e, resource, name))?;
    }
    if !dry && options.propagation == "Foreground" {
        crate::gc::collect(api, &uid)
            .await
            .map_err(|e| store_error(e, resource, name))?;
    }
    let k = key(resource, ns, name);
    let expected = options.revision;
    let deleted = blocking(move || store.delete_object(&k, expected))
        .await
        .map_err(|e| store_error(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    if !dry && options.propagation == "Background" {
        crate::gc::collect_later(api, uid);
    }
    if resource.kind == "CustomResourceDefinition" {
        api.refresh_resources();
    }
    api.hub.poke();
    Ok(json_response(StatusCode::OK, &deleted.to_json()))
}

pub(crate) async fn delete_collection(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(query)?;
    filter.check_fields(&resource.group, &resource.kind)?;
    let bytes = api.body(req).await?;
    let dry = decode::dry_run(query)? || delete_options(&bytes, query)?.dry_run;
    let store = store_for(api, dry);
    let (_, items) = snapshot(api, resource, ns, &filter).await?;
    let keys: Vec<ObjectKey> = items
        .iter()
        .map(|v| {
            key(
                resource,
                v["metadata"]["namespace"].as_str(),
                v["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let mut deleted = Vec::new();
    for k in keys {
        let store = store.clone();
        let name = k.name.clone();
        if let Some(object) = blocking(move || store.delete_object(&k, None))
            .await
            .map_err(|e| store_error(e, resource, &name))?
        {
            if !dry {
                if let Some(uid) = object.metadata().uid.clone() {
                    crate::gc::collect_later(api, uid);
                }
            }
            deleted.push(object.to_json());
        }
    }
    api.hub.poke();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": {}, "items": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_carry_a_dry_run() {
        let q = Query::parse(None);
        assert!(
            delete_options(br#"{"kind":"DeleteOptions","dryRun":["All"]}"#, &q)
                .unwrap()
                .dry_run
        );
        assert!(!delete_options(b"", &q).unwrap().dry_run);
        assert!(!delete_options(br#"{"dryRun":[]}"#, &q).unwrap().dry_run);
        assert!(delete_options(br#"{"dryRun":["Some"]}"#, &q).is_err());
    }
}
