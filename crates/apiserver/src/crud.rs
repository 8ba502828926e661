//! Reads and writes of resources: get, list (selectors, pages, Tables), create, update, and
//! the `status` subresource, with the request routing for every resource path; patches are in
//! `patching`, deletes in `delete`, `scale` and the pod subresources in their own modules. Each
//! write is one store transaction, so it is whole or absent.

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use weft_model::{Object, ObjectKey};
use weft_sources::{StatusMode, Store, StoreError};

use crate::api::{json_response, Api};
use crate::decode::{self, FieldValidation};
use crate::request::{Query, ResourcePath};
use crate::resources::Resource;
use crate::select::Filter;
use crate::status::{ApiError, Cause};
use crate::Body;

/// Runs a store call off the async threads (SQLite blocks).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Invalid {
            key: ObjectKey::cluster_scoped("Task", "store"),
            message: format!("store task failed: {e}"),
        }),
    }
}

pub(crate) async fn dispatch(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    p: ResourcePath,
    query: Query,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let ns = p.namespace.clone();
    let sub = p.subresource.as_deref();
    if resource.read_only && method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{} are a read-only view of EndpointSlices in this server",
            resource.plural
        )));
    }
    match (&method, p.name.clone(), sub) {
        (&Method::GET, None, None) if query.flag("watch") => {
            crate::watch::serve(api, &req, resource, ns, &query).await
        }
        (&Method::GET, None, None) => list(api, &req, resource, ns.as_deref(), &query).await,
        (&Method::GET, Some(name), None | Some("status")) => {
            let object = get(api, resource, ns.as_deref(), &name).await?;
            Ok(object_response(
                &req,
                resource,
                StatusCode::OK,
                object,
                Vec::new(),
            ))
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, Some(name), Some("scale"))
            if resource.kind == "Deployment" =>
        {
            crate::scale::serve(api, req, resource, ns, name, &query).await
        }
        (_, Some(_), Some("portforward")) if resource.kind == "Pod" => Err(ApiError::method_not_allowed(
            "pods/portforward is not served by the weft lab's API server yet; `weft port-forward` forwards to a lab's pods and Services from this machine",
        )),
        (_, Some(name), Some("log" | "exec" | "attach")) if resource.kind == "Pod" => {
            crate::pods::serve(
                api,
                req,
                ns.unwrap_or_default(),
                name,
                sub.unwrap_or_default(),
                &query,
            )
            .await
        }
        (&Method::POST, Some(name), Some("binding")) if resource.kind == "Pod" => {
            crate::binding::bind(api, req, resource, ns, name, &query).await
        }
        (&Method::POST, None, None) => create(api, req, resource, ns.as_deref(), &query).await,
        (&Method::PUT, Some(name), None | Some("status")) => {
            update(
                api,
                req,
                resource,
                ns.as_deref(),
                &name,
                sub == Some("status"),
                &query,
            )
            .await
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            crate::patching::patch(
                api,
                req,
                resource,
                ns.as_deref(),
                &name,
                sub == Some("status"),
                &query,
            )
            .await
        }
        (&Method::DELETE, Some(name), None) => {
            crate::delete::delete(api, req, resource, ns.as_deref(), &name, &query).await
        }
        (&Method::DELETE, None, None) => {
            crate::delete::delete_collection(api, req, resource, ns.as_deref(), &query).await
        }
        (_, Some(_), Some(other)) if !resource.subresources.contains(&other) => {
            Err(ApiError::no_route())
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            resource.qualified()
        ))),
    }
}

pub(crate) fn key(resource: &Resource, ns: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey::new(
        resource.kind.clone(),
        if resource.namespaced { ns } else { None },
        name,
    )
}

/// The store's error as the API says it.
pub(crate) fn store_error(e: StoreError, resource: &Resource, name: &str) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(resource, name),
        StoreError::NotFound { .. } => ApiError::not_found(resource, name),
        StoreError::Conflict { .. } => ApiError::conflict(resource, name),
        StoreError::NamespaceMissing { namespace, .. } => ApiError {
            details: Some(json!({"name": namespace, "kind": "namespaces"})),
            ..ApiError::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"))
        },
        StoreError::Invalid { message, .. } | StoreError::InvalidKey { reason: message, .. } => {
            ApiError::invalid(resource, name, vec![cause_of(&message)])
        }
        StoreError::QuotaExceeded { limit, .. } => ApiError::forbidden(
            resource,
            name,
            format!("exceeded quota: at most {limit} objects of this kind (objectQuota in the lab's cluster config)"),
        ),
        StoreError::Compacted { requested, oldest } => ApiError::expired(requested, oldest),
        other => ApiError::internal(format!("Internal error occurred: {other}")),
    }
}

/// Splits `spec.ports[0].port: must be ...` into the field and the message.
fn cause_of(message: &str) -> Cause {
    let field_like = |f: &str| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]-/".contains(c))
            && f.contains(|c: char| c.is_ascii_lowercase())
    };
    match message.split_once(": ") {
        // A field the writer may not set (`spec.externalIPs[0]: Forbidden: ...`), kube's
        // FieldValueForbidden: its message already says so.
        Some((field, rest)) if field_like(field) && rest.starts_with("Forbidden: ") => Cause {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            message: rest.to_string(),
        },
        Some((field, rest)) if field_like(field) => Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {rest}"),
        },
        _ => match message.split_once(' ') {
            Some((field, _)) if field_like(field) && field.contains('.') => Cause {
                reason: "FieldValueInvalid",
                field: field.to_string(),
                message: message.to_string(),
            },
            _ => Cause {
                reason: "FieldValueInvalid",
                field: String::new(),
                message: message.to_string(),
            },
        },
    }
}

pub(crate) async fn get(
    api: &Api,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    if resource.kind == "Endpoints" {
        let store = api.store.clone();
        let slices = blocking(move || store.list("EndpointSlice")).await;
        let slices = slices.map_err(|e| store_error(e, resource, name))?;
        return crate::endpoints::endpoints(&slices, ns, Some(name))
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(resource, name));
    }
    let store = api.store.clone();
    let k = key(resource, ns, name);
    match blocking(move || store.get(&k)).await {
        Ok(Some(object)) => Ok(object.to_json()),
        Ok(None) => Err(ApiError::not_found(resource, name)),
        Err(e) => Err(store_error(e, resource, name)),
    }
}

/// The objects of a resource (in a namespace or all) at one revision, filtered.
pub(crate) async fn snapshot(
    api: &Api,
    resource: &Resource,
    ns: Option<&str>,
    filter: &Filter,
) -> Result<(u64, Vec<Value>), ApiError> {
    let store = api.store.clone();
    let kind = if resource.kind == "Endpoints" {
        "EndpointSlice".to_string()
    } else {
        resource.kind.clone()
    };
    let (revision, objects) = blocking(move || store.snapshot(Some(&kind)))
        .await
        .map_err(|e| store_error(e, resource, ""))?;
    let items: Vec<Value> = if resource.kind == "Endpoints" {
        crate::endpoints::endpoints(&objects, ns, None)
    } else {
        objects
            .iter()
            .filter(|o| ns.is_none() || !resource.namespaced || o.namespace() == ns)
            .map(Object::to_json)
            .collect()
    };
    Ok((
        revision,
        items.into_iter().filter(|v| filter.matches(v)).collect(),
    ))
}

async fn list(
    api: &Api,
    req: &Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(query)?;
    filter.check_fields(&resource.group, &resource.kind)?;
    let (revision, mut items) = snapshot(api, resource, ns, &filter).await?;
    // Pages: `continue` carries the last key handed out; the next page starts after it.
    let limit = query
        .number("limit")
        .map_err(ApiError::bad_request)?
        .filter(|l| *l > 0);
    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        let after = decode_continue(token)?;
        items.retain(|v| item_key(v) > after);
    }
    let mut list_meta = json!({"resourceVersion": revision.to_string()});
    if let Some(limit) = limit {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if items.len() > limit {
            let remaining = items.len() - limit;
            items.truncate(limit);
            if let Some(last) = items.last() {
                list_meta["continue"] = json!(encode_continue(&item_key(last)));
                list_meta["remainingItemCount"] = json!(remaining);
            }
        }
    }
    if let Some(include) = wants_table(req) {
        let table = crate::table::table(
            &resource.plural,
            &items,
            include,
            &weft_model::time::now(),
            list_meta,
        );
        return Ok(json_response(StatusCode::OK, &table));
    }
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": list_meta,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

fn item_key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn encode_continue(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_continue(token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: illegal base64 data"))
}

/// The `includeObject` a client asking for a Table wants, or None when it wants objects.
pub(crate) fn wants_table(req: &Request<Body>) -> Option<crate::table::IncludeObject> {
    let accept = req.headers().get(hyper::header::ACCEPT)?.to_str().ok()?;
    let first = accept.split(',').next()?;
    if !first.contains("as=Table") {
        return None;
    }
    let query = crate::request::Query::parse(req.uri().query());
    Some(crate::table::IncludeObject::from_query(query.get("includeObject")).unwrap_or_default())
}

/// One object in the response, as a one-row Table if the client asked for one.
pub(crate) fn object_response(
    req: &Request<Body>,
    resource: &Resource,
    status: StatusCode,
    object: Value,
    warnings: Vec<String>,
) -> Response<Body> {
    let response = match wants_table(req) {
        Some(include) => {
            let rv = object["metadata"]["resourceVersion"].clone();
            let table = crate::table::table(
                &resource.plural,
                &[object],
                include,
                &weft_model::time::now(),
                json!({"resourceVersion": rv}),
            );
            json_response(status, &table)
        }
        None => json_response(status, &object),
    };
    with_warnings(response, warnings)
}

/// The object a write stored, with the write's warnings (writes answer with the object, not a
/// Table, as kube-apiserver does for kubectl).
pub(crate) fn written(status: StatusCode, object: Value, warnings: Vec<String>) -> Response<Body> {
    with_warnings(json_response(status, &object), warnings)
}

/// Adds `Warning` headers in kube-apiserver's form (`299 - "<text>"`), which kubectl prints.
fn with_warnings(mut response: Response<Body>, warnings: Vec<String>) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

pub(crate) fn content_type(req: &Request<Body>) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

/// The store to write through: the real one, or one that rolls back (`dryRun=All`).
pub(crate) fn writer(api: &Api, query: &Query) -> Result<Store, ApiError> {
    Ok(store_for(api, decode::dry_run(query)?))
}

/// The real store, or with `dry` one whose writes roll back.
pub(crate) fn store_for(api: &Api, dry: bool) -> Store {
    if dry {
        api.store.dry_run()
    } else {
        api.store.clone()
    }
}

/// Parses, checks and validates a body into the object to store.
pub(crate) fn object_from(
    mut value: Value,
    resource: &Resource,
    ns: Option<&str>,
    validation: FieldValidation,
) -> Result<(Object, Vec<String>), ApiError> {
    decode::check_kind(&mut value, resource)?;
    decode::check_namespace(&mut value, resource, ns)?;
    let object = decode::to_object(value.clone(), resource)?;
    let warnings = decode::field_validation(decode::unknown_fields(&value, &object), validation)?;
    Ok((object, warnings))
}

async fn create(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let validation = FieldValidation::from_query(query)?;
    let store = writer(api, query)?;
    let ct = content_type(&req);
    let bytes = api.body(req).await?;
    let value = decode::parse_body(&bytes, &ct)?;
    create_value(api, &store, value, resource, ns, validation).await
}

/// Creates an object from a request's JSON: kube-apiserver's preparation, validation, the
/// store's admission; answers 201 with the stored object (POST, and an apply of a new object).
pub(crate) async fn create_value(
    api: &Api,
    store: &Store,
    mut value: Value,
    resource: &Resource,
    ns: Option<&str>,
    validation: FieldValidation,
) -> Result<Response<Body>, ApiError> {
    decode::check_kind(&mut value, resource)?;
    decode::check_namespace(&mut value, resource, ns)?;
    decode::prepare_create(&mut value, resource)?;
    if resource.kind == "Ingress" {
        default_ingress_class(store, &mut value).await;
    }
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (object, mut warnings) = object_from(value, resource, ns, validation)
        .map_err(|e| decode::in_version(e, resource))?;
    warn_if_not_acted_on(resource, false, &mut warnings);
    let store = store.clone();
    let stored = blocking(move || store.create(object))
        .await
        .map_err(|e| store_error(e, resource, &name))?;
    if resource.kind == "CustomResourceDefinition" {
        api.refresh_resources();
    }
    api.hub.poke();
    Ok(written(StatusCode::CREATED, stored.to_json(), warnings))
}

/// kube-apiserver's DefaultIngressClass admission ([`weft_model::ingress_class`]), on create
/// only, as upstream.
async fn default_ingress_class(store: &Store, value: &mut Value) {
    let store = store.clone();
    let Ok(Ok(classes)) = tokio::task::spawn_blocking(move || store.list("IngressClass")).await
    else {
        return;
    };
    let classes: Vec<Value> = classes.iter().map(|c| c.to_json()).collect();
    weft_model::ingress_class::admit(
        value,
        weft_model::ingress_class::default_class(&classes).as_deref(),
    );
}

/// Says, as a Warning kubectl prints, that a write of this resource's spec is stored and
/// nothing more: on every write (create, update, patch, server-side apply), since `kubectl
/// apply` creates once and patches after, and a changed Ingress is as unenforced as a new one.
/// Status writes are the controllers' reports, not a user's intent: nothing to warn about.
pub(crate) fn warn_if_not_acted_on(
    resource: &Resource,
    to_status: bool,
    warnings: &mut Vec<String>,
) {
    if !resource.acted_on() && !to_status {
        warnings.push(format!(
            "weft stores {} objects but does not act on them",
            resource.qualified()
        ));
    }
}

/// Which part of the stored object a write of this resource keeps.
pub(crate) fn status_mode(resource: &Resource, to_status: bool) -> StatusMode {
    if to_status {
        StatusMode::OnlyStatus
    } else if resource.subresources.contains(&"status") {
        StatusMode::KeepStored
    } else {
        StatusMode::Replace
    }
}

fn parse_revision(value: &Value) -> Result<Option<u64>, ApiError> {
    match value["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion: Invalid value: {rv:?}: must be a number"
            ))
        }),
    }
}

async fn update(
    api: &Api,
    req: Request<Body>,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    to_status: bool,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let validation = FieldValidation::from_query(query)?;
    let store = writer(api, query)?;
    let ct = content_type(&req);
    let bytes = api.body(req).await?;
    let value = decode::parse_body(&bytes, &ct)?;
    let body_name = value["metadata"]["name"].as_str().unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let expected = parse_revision(&value)?;
    let (object, mut warnings) = object_from(value, resource, ns, validation)
        .map_err(|e| decode::in_version(e, resource))?;
    warn_if_not_acted_on(resource, to_status, &mut warnings);
    let mode = status_mode(resource, to_status);
    let stored = blocking(move || store.replace(object, expected, mode))
        .await
        .map_err(|e| store_error(e, resource, name))?;
    if resource.kind == "CustomResourceDefinition" {
        api.refresh_resources();
    }
    api.hub.poke();
    Ok(written(StatusCode::OK, stored.to_json(), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_become_field_causes() {
        let c = cause_of("spec.ports[0].port: must be between 1 and 65535, inclusive");
        assert_eq!(c.field, "spec.ports[0].port");
        assert_eq!(
            c.message,
            "Invalid value: must be between 1 and 65535, inclusive"
        );
        let c = cause_of("spec.loadBalancerIP 1.2.3.4 is already in use");
        assert_eq!(c.field, "spec.loadBalancerIP");
        let c = cause_of("Something odd happened: here");
        assert_eq!(c.field, "");
        let c =
            cause_of("spec.externalIPs[0]: Forbidden: use of external IP 203.0.113.10 is denied");
        assert_eq!(
            (c.reason, c.field.as_str(), c.message.as_str()),
            (
                "FieldValueForbidden",
                "spec.externalIPs[0]",
                "Forbidden: use of external IP 203.0.113.10 is denied"
            )
        );
        assert_eq!(decode_continue(&encode_continue("ns/a")).unwrap(), "ns/a");
    }
}
