//! The controllers' writes: the Kubernetes API calls they make, blocking on the runtime from
//! a reconciler's thread (reconcilers run on blocking threads, see `weft_view::reconciler::host`).
//! A write whose object is already gone (NotFound on delete) counts as done.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::runtime::Handle;

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct WriteError {
    what: String,
    #[source]
    source: kube::Error,
}

impl WriteError {
    /// The API server's own message, e.g. a quota refusal, for events and logs.
    pub fn message(&self) -> String {
        match &self.source {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        }
    }

    /// The API's status code, if the API answered.
    pub fn code(&self) -> Option<u16> {
        match &self.source {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

/// The failed writes of one pass: each is logged as it happens, and the first is the pass's
/// result (the reconciler driver retries the pass after a failure). A pass writes what it can
/// rather than stopping at the first refusal.
#[derive(Default)]
pub struct Failures(Option<WriteError>);

impl Failures {
    pub fn note(&mut self, result: Result<(), WriteError>) {
        if let Err(e) = result {
            tracing::warn!("{e}");
            self.0.get_or_insert(e);
        }
    }

    pub fn any(&self) -> bool {
        self.0.is_some()
    }

    pub fn result(self) -> Result<(), WriteError> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Writes through one API client, from blocking threads.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    rt: Handle,
}

/// The kinds the controllers write: namespaced built-in kinds.
pub trait Writable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
{
}

impl<K> Writable for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
{
}

/// The one result of a batch of one.
fn one(mut results: Vec<Result<(), WriteError>>) -> Result<(), WriteError> {
    results.pop().unwrap_or(Ok(()))
}

/// The field manager weft's controllers write as.
const MANAGER: &str = "weft-controller";

fn what<K: Writable>(verb: &str, ns: &str, name: &str) -> String {
    format!("{verb} {} {ns}/{name}", K::kind(&()))
}

impl Writer {
    /// A writer for `client`, on the current runtime (call from within it).
    pub fn new(client: Client) -> Writer {
        Writer {
            client,
            rt: Handle::current(),
        }
    }

    fn api<K: Writable>(&self, ns: Option<&str>) -> Api<K> {
        Api::namespaced(self.client.clone(), ns.unwrap_or("default"))
    }

    fn post() -> PostParams {
        PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        }
    }

    pub fn create<K: Writable>(&self, object: &K) -> Result<(), WriteError> {
        one(self.create_all(vec![object.clone()]))
    }

    /// Creates `objects`, up to 16 requests in flight; a result per object, in order.
    pub fn create_all<K: Writable>(&self, objects: Vec<K>) -> Vec<Result<(), WriteError>> {
        use futures::StreamExt;
        let calls = objects.into_iter().map(|o| {
            let writer = self.clone();
            async move {
                let meta = o.meta();
                let ns = meta.namespace.clone();
                let name = meta.name.clone().unwrap_or_default();
                writer
                    .api::<K>(ns.as_deref())
                    .create(&Writer::post(), &o)
                    .await
                    .map(drop)
                    .map_err(|source| WriteError {
                        what: what::<K>("creating", ns.as_deref().unwrap_or("default"), &name),
                        source,
                    })
            }
        });
        self.rt
            .block_on(futures::stream::iter(calls).buffered(16).collect())
    }

    /// Creates `object`, or replaces what is stored under its name (unconditionally).
    pub fn put<K: Writable>(&self, object: &K) -> Result<(), WriteError> {
        let meta = object.meta();
        let ns = meta.namespace.as_deref();
        let name = meta.name.clone().unwrap_or_default();
        let api = self.api::<K>(ns);
        let mut object = object.clone();
        object.meta_mut().resource_version = None;
        let replaced = self
            .rt
            .block_on(api.replace(&name, &Writer::post(), &object));
        let result = match replaced {
            Err(kube::Error::Api(s)) if s.code == 404 => self
                .rt
                .block_on(api.create(&Writer::post(), &object))
                .map(drop),
            other => other.map(drop),
        };
        result.map_err(|source| WriteError {
            what: what::<K>("writing", ns.unwrap_or("default"), &name),
            source,
        })
    }

    /// Deletes `keys` (namespace, name), up to 16 requests in flight; a result per key.
    pub fn delete_all<K: Writable>(
        &self,
        keys: &[(Option<String>, String)],
    ) -> Vec<Result<(), WriteError>> {
        use futures::StreamExt;
        let calls = keys.iter().map(|(ns, name)| {
            let api = self.api::<K>(ns.as_deref());
            async move {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(source) => Err(WriteError {
                        what: what::<K>("deleting", ns.as_deref().unwrap_or("default"), name),
                        source,
                    }),
                }
            }
        });
        self.rt
            .block_on(futures::stream::iter(calls).buffered(16).collect())
    }

    pub fn delete<K: Writable>(&self, ns: Option<&str>, name: &str) -> Result<(), WriteError> {
        one(self.delete_all::<K>(&[(ns.map(str::to_string), name.to_string())]))
    }

    /// A JSON merge patch of the object (`null` removes a field).
    pub fn patch<K: Writable>(
        &self,
        ns: Option<&str>,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), WriteError> {
        self.rt
            .block_on(
                self.api::<K>(ns)
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch)),
            )
            .map(drop)
            .map_err(|source| WriteError {
                what: what::<K>("patching", ns.unwrap_or("default"), name),
                source,
            })
    }

    /// A JSON merge patch of the object's `status` subresource.
    pub fn patch_status<K: Writable>(
        &self,
        ns: Option<&str>,
        name: &str,
        status: &serde_json::Value,
    ) -> Result<(), WriteError> {
        let patch = serde_json::json!({ "status": status });
        self.rt
            .block_on(self.api::<K>(ns).patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .map(drop)
            .map_err(|source| WriteError {
                what: what::<K>("updating the status of", ns.unwrap_or("default"), name),
                source,
            })
    }

    /// Binds a pod to a node (`pods/binding`, as kube-scheduler does).
    pub fn bind(&self, ns: &str, pod: &str, node: &str) -> Result<(), WriteError> {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), ns);
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.rt
            .block_on(api.create_subresource::<_, serde_json::Value>(
                "binding",
                pod,
                &PostParams::default(),
                &binding,
            ))
            .map(drop)
            .map_err(|source| WriteError {
                what: format!("binding pod {ns}/{pod} to {node}"),
                source,
            })
    }
}

/// What a Warning event is about.
pub struct Involved<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
}

impl Writer {
    /// Records a Warning event about `about`: one per object and reason, its count bumped on
    /// repeats (as the event recorder aggregates).
    pub fn warn(
        &self,
        about: &Involved<'_>,
        reason: &str,
        message: &str,
    ) -> Result<(), WriteError> {
        self.event(about, "Warning", reason, message)
    }

    /// Records a Normal event about `about`, as [`Writer::warn`] does.
    pub fn normal(
        &self,
        about: &Involved<'_>,
        reason: &str,
        message: &str,
    ) -> Result<(), WriteError> {
        self.event(about, "Normal", reason, message)
    }

    /// An event of `kind` about `about`, in its namespace (a cluster-scoped object's, such as
    /// a Node's, in `default`, where the kubelet records them).
    fn event(
        &self,
        about: &Involved<'_>,
        kind: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), WriteError> {
        use k8s_openapi::api::core::v1::Event;
        let namespace = if about.namespace.is_empty() {
            "default"
        } else {
            about.namespace
        };
        let name = format!("{}.{}", about.name, reason.to_ascii_lowercase());
        let api = self.api::<Event>(Some(namespace));
        let now = weft_model::time::now();
        let err = |source| WriteError {
            what: format!("recording event {namespace}/{name}"),
            source,
        };
        if let Some(existing) = self.rt.block_on(api.get_opt(&name)).map_err(err)? {
            let patch = serde_json::json!({
                "count": existing.count.unwrap_or(1) + 1,
                "message": message,
                "lastTimestamp": now,
            });
            return self.patch::<Event>(Some(namespace), &name, &patch);
        }
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"apiVersion": about.api_version, "kind": about.kind,
                "name": about.name,
                "namespace": (!about.namespace.is_empty()).then_some(about.namespace),
                "uid": about.uid},
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": MANAGER},
        }))
        .expect("an Event built from strings");
        self.create(&event)
    }
}
