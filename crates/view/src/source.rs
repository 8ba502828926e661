//! The source: kube-rs watchers on the Kubernetes API feeding the [`Shared`] view. The same code
//! runs against the lab's API server and a real cluster's; which one is a matter of the client's
//! configuration ([`client`]).
//!
//! A watcher lists, then watches from the list's resourceVersion, and relists when the watch
//! breaks or its version is too old (410 Gone). A list arrives in pieces (`Init`, `InitApply`...,
//! `InitDone`); it is buffered and applied whole ([`Event::Relisted`]), so the view never holds
//! a half list and objects missing from a relist are seen as deleted.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::mailbox::Interest;
use crate::view::{Event, Shared, Watched};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes API to talk to (no in-cluster service account, KUBECONFIG or ~/.kube/config): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("in-cluster API access: {0}")]
    InCluster(kube::config::InClusterError),
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// Where a pod's service account token is mounted.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A client for `kubeconfig` (its current context), or else the in-cluster configuration or
/// `KUBECONFIG`/`~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, SourceError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |source| SourceError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(err)?
        }
        // In a pod, the pod's own service account and API address, whatever files the image
        // or host happen to have (a hostNetwork pod may see the node's ~/.kube/config).
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            && Path::new(SERVICE_ACCOUNT_TOKEN).exists() =>
        {
            kube::Config::incluster().map_err(SourceError::InCluster)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The kinds `interest` covers, by their Kubernetes kind name.
pub fn kinds(interest: &Interest) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut add = |on: bool, kinds: &[&'static str]| {
        if on {
            out.extend_from_slice(kinds);
        }
    };
    add(interest.nodes, &["Node"]);
    add(interest.services, &["Service", "EndpointSlice"]);
    add(interest.pods, &["Pod"]);
    add(interest.namespaces, &["Namespace"]);
    add(interest.network_policies, &["NetworkPolicy"]);
    add(interest.workloads, &["Deployment", "DaemonSet"]);
    add(interest.ingresses, &["Ingress", "IngressClass"]);
    add(interest.secrets, &["Secret"]);
    out
}

/// Starts a watcher per kind `interest` covers, feeding `shared`; they run (and retry with
/// backoff on errors) until the runtime stops.
pub fn spawn(client: &Client, shared: &Arc<Shared>, interest: Interest) {
    if interest.nodes {
        spawn_one::<Node>(client, shared);
    }
    if interest.services {
        spawn_one::<Service>(client, shared);
        spawn_one::<EndpointSlice>(client, shared);
    }
    if interest.pods {
        spawn_one::<Pod>(client, shared);
    }
    if interest.namespaces {
        spawn_one::<Namespace>(client, shared);
    }
    if interest.network_policies {
        spawn_one::<NetworkPolicy>(client, shared);
    }
    if interest.workloads {
        spawn_one::<Deployment>(client, shared);
        spawn_one::<DaemonSet>(client, shared);
    }
    if interest.ingresses {
        spawn_one::<Ingress>(client, shared);
        spawn_one::<IngressClass>(client, shared);
    }
    if interest.secrets {
        spawn_one::<Secret>(client, shared);
    }
}

fn spawn_one<K>(client: &Client, shared: &Arc<Shared>)
where
    K: Watched
        + kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listing: Option<Vec<K>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(Vec::new()),
                Ok(watcher::Event::InitApply(obj)) => listing.get_or_insert_default().push(obj),
                Ok(watcher::Event::InitDone) => {
                    let list = listing.take().unwrap_or_default();
                    tracing::debug!(kind = K::KIND, objects = list.len(), "listed");
                    shared.apply(Event::Relisted(list));
                }
                Ok(watcher::Event::Apply(obj)) => shared.apply(Event::Apply(obj)),
                Ok(watcher::Event::Delete(obj)) => shared.apply(Event::Delete(obj)),
                Err(e) => tracing::warn!(kind = K::KIND, "watch failed, retrying: {e}"),
            }
        }
    });
}
