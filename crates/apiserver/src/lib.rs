//! The lab's Kubernetes API server. It sits at the head of the flow in the lab: kubectl, helm,
//! client libraries and weft's own components talk to it exactly as to kube-apiserver, and it
//! keeps every object in the embedded store (`weft-sources`). It serves discovery, CRUD with
//! optimistic concurrency, patches, list and watch from a resourceVersion, the `status` and
//! `scale` subresources, server-side `Table`s for `kubectl get`, and the pod subresources
//! (`log`, `exec`, `attach`) by running weft's own pod tools.

pub mod api;
mod binding;
mod crud;
pub mod decode;
mod delete;
pub mod endpoints;
mod gc;
pub mod openapi;
pub mod patching;
pub mod pki;
mod pods;
pub mod request;
pub mod resources;
mod scale;
pub mod select;
pub mod server;
pub mod status;
pub mod stream;
pub mod table;
pub mod watch;

use std::sync::Arc;

use bytes::Bytes;

pub use api::{Api, PodTools};
pub use pki::Pki;

/// The body of every response: whole (JSON) or streamed (watch, logs).
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Serves `api` on every listener until the process ends.
pub async fn run(
    api: Arc<Api>,
    listeners: Vec<std::net::TcpListener>,
    tls: rustls::ServerConfig,
) -> std::io::Result<()> {
    let tls = Arc::new(tls);
    let mut tasks = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tasks.push(tokio::spawn(server::serve(
            listener,
            tls.clone(),
            api.clone(),
        )));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}
