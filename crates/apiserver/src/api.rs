//! The API: one `handle` per request, from path to response. Discovery is answered from the
//! resource table; resource requests go to [`crate::crud`], watches to [`crate::watch`], the pod
//! subresources to [`crate::pods`].

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use weft_sources::Store;

use crate::pki::TokenUser;
use crate::request::{route, Query, ResourcePath, Route};
use crate::resources::Resources;
use crate::server::Caller;
use crate::status::ApiError;
use crate::watch::Hub;
use crate::Body;

/// What the server needs to know about the lab to serve the pod subresources.
#[derive(Clone, Debug)]
pub struct PodTools {
    /// The `weft` executable, whose `exec` enters a pod.
    pub weft: std::path::PathBuf,
    pub lab: String,
    /// Where the kubelets write container output: `<ns>_<pod>_<container>.log`.
    pub logs_dir: std::path::PathBuf,
}

/// Limits that keep one client from exhausting the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body accepted (kube-apiserver: 3 MiB).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 3 * 1024 * 1024,
        }
    }
}

/// The server's state, shared by every connection.
pub struct Api {
    pub(crate) store: Store,
    resources: RwLock<Arc<Resources>>,
    tokens: Vec<TokenUser>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) pods: Option<PodTools>,
    pub(crate) limits: Limits,
    /// Owners whose dependents the garbage collector has yet to delete.
    pub(crate) gc: Arc<crate::gc::Backlog>,
    /// Where clients reach the server (for `/api`'s serverAddressByClientCIDRs).
    address: String,
}

/// The Kubernetes version the lab reports (the API it serves is that of k8s-openapi's v1_34).
pub const KUBERNETES_VERSION: &str = "v1.34.0";

impl Api {
    pub fn new(
        store: Store,
        tokens: Vec<TokenUser>,
        pods: Option<PodTools>,
        address: String,
    ) -> Arc<Api> {
        let hub = Hub::start(store.clone());
        let api = Arc::new(Api {
            store,
            resources: RwLock::new(Arc::new(Resources::builtin())),
            tokens,
            hub,
            pods,
            limits: Limits::default(),
            gc: Arc::default(),
            address,
        });
        api.refresh_resources();
        api
    }

    pub fn user_for_token(&self, token: &str) -> Option<String> {
        self.tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes()))
            .map(|t| t.user.clone())
    }

    pub(crate) fn resources(&self) -> Arc<Resources> {
        self.resources
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Re-reads the CustomResourceDefinitions, so their kinds are served; called at start and
    /// after every write of a CRD.
    pub(crate) fn refresh_resources(&self) {
        let crds: Vec<Value> = match self.store.list("CustomResourceDefinition") {
            Ok(list) => list.iter().map(|o| o.to_json()).collect(),
            Err(e) => {
                tracing::warn!("reading CustomResourceDefinitions: {e}");
                return;
            }
        };
        let fresh = Arc::new(Resources::with_crds(&crds));
        match self.resources.write() {
            Ok(mut r) => *r = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    pub async fn handle(&self, req: Request<Body>, caller: Caller) -> Response<Body> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let started = std::time::Instant::now();
        let response = match self.route(req, &caller).await {
            Ok(response) => response,
            Err(e) => error_response(&e),
        };
        tracing::debug!(
            "{method} {uri} {} {:?} ({})",
            response.status().as_u16(),
            started.elapsed(),
            caller.user.as_deref().unwrap_or("anonymous")
        );
        response
    }

    async fn route(&self, req: Request<Body>, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().to_string();
        let query = Query::parse(req.uri().query());
        let get_only = |m: &Method| {
            if m == Method::GET || m == Method::HEAD {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed(
                    "the server does not allow this method on the requested resource",
                ))
            }
        };
        let aggregated = accepts_aggregated_discovery(&req);
        let req = self.protobuf_to_json(req).await?;
        match route(&path) {
            Route::Version => {
                get_only(req.method())?;
                Ok(json_response(StatusCode::OK, &version_info()))
            }
            Route::Health => Ok(text_response(StatusCode::OK, "ok")),
            Route::CoreGroup => {
                get_only(req.method())?;
                if aggregated {
                    Ok(aggregated_response(self.resources().aggregated(true)))
                } else {
                    Ok(json_response(
                        StatusCode::OK,
                        &self.resources().core_versions(&self.address),
                    ))
                }
            }
            Route::Groups => {
                get_only(req.method())?;
                if aggregated {
                    Ok(aggregated_response(self.resources().aggregated(false)))
                } else {
                    Ok(json_response(
                        StatusCode::OK,
                        &self.resources().group_list(),
                    ))
                }
            }
            Route::Group(group) => {
                get_only(req.method())?;
                let doc = self
                    .resources()
                    .group(&group)
                    .ok_or_else(ApiError::no_route)?;
                Ok(json_response(StatusCode::OK, &doc))
            }
            Route::GroupVersion { group, version } => {
                get_only(req.method())?;
                let doc = self
                    .resources()
                    .resource_list(&group, &version)
                    .ok_or_else(ApiError::no_route)?;
                Ok(json_response(StatusCode::OK, &doc))
            }
            Route::OpenApiV3(None) => {
                get_only(req.method())?;
                Ok(json_response(
                    StatusCode::OK,
                    &crate::openapi::root(&self.resources()),
                ))
            }
            Route::OpenApiV3(Some(path)) => {
                get_only(req.method())?;
                let doc = crate::openapi::group_version(&self.resources(), &path)
                    .ok_or_else(ApiError::no_route)?;
                Ok(json_response(StatusCode::OK, &doc))
            }
            Route::OpenApiV2 | Route::Unknown => Err(ApiError::no_route()),
            Route::Resource(p) => self.resource(req, p, query, caller).await,
        }
    }

    async fn resource(
        &self,
        req: Request<Body>,
        p: ResourcePath,
        query: Query,
        caller: &Caller,
    ) -> Result<Response<Body>, ApiError> {
        let resources = self.resources();
        let resource = resources
            .find(&p.group, &p.version, &p.plural)
            .filter(|r| r.namespaced || p.namespace.is_none())
            .ok_or_else(ApiError::no_route)?
            .clone();
        let _ = caller;
        crate::crud::dispatch(self, req, &resource, p, query).await
    }

    /// Bodies are handled as JSON (or YAML). client-go's typed clients send built-in kinds as
    /// Kubernetes protobuf, with no fallback: such a body is decoded to the JSON it stands for
    /// and the request goes on as a JSON one. CBOR (which client-go falls back from on 415) is
    /// refused.
    async fn protobuf_to_json(&self, req: Request<Body>) -> Result<Request<Body>, ApiError> {
        let Some(ct) = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(req);
        };
        if ct.contains("cbor") {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {ct:?}"),
            ));
        }
        if !ct.starts_with(weft_kubeproto::MEDIA_TYPE) {
            return Ok(req);
        }
        let (mut parts, body) = req.into_parts();
        let bytes = self.body(Request::from_parts(parts.clone(), body)).await?;
        let value = weft_kubeproto::decode(&bytes).map_err(|e| match e {
            weft_kubeproto::DecodeError::UnknownKind { .. }
            | weft_kubeproto::DecodeError::UnsupportedEncoding { .. } => {
                ApiError::new(415, "UnsupportedMediaType", e.to_string())
            }
            other => ApiError::bad_request(format!("decoding the protobuf body: {other}")),
        })?;
        let json = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
        Ok(Request::from_parts(parts, full(json)))
    }

    /// Reads a request body, refusing one over the size limit before reading it whole.
    pub(crate) async fn body(&self, req: Request<Body>) -> Result<Bytes, ApiError> {
        let limit = self.limits.max_body;
        if let Some(len) = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > limit {
                return Err(ApiError::too_large(limit));
            }
        }
        let limited = http_body_util::Limited::new(req.into_body(), limit);
        match limited.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(ApiError::too_large(limit))
            }
            Err(e) => Err(ApiError::bad_request(format!(
                "reading the request body: {e}"
            ))),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn accepts_aggregated_discovery(req: &Request<Body>) -> bool {
    req.headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2;"))
}

fn aggregated_response(doc: Value) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &doc);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ),
    );
    response
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "weft",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "weft",
        "platform": "linux/amd64",
    })
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(full(text.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &e.to_status())
}
