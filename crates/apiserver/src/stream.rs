//! The pod subresources that stream: `log`, and `exec`/`attach` over WebSocket (v5.channel.k8s.io).
//!
//! The router owns the HTTP side (routing, authorization, finding the pod and its container); this
//! module owns the bytes once a request is known to be one of these. `exec` and `attach` speak
//! Kubernetes' channel protocol exactly as kube-apiserver does towards kubectl since 1.31 (client-go's
//! WebSocket executor): every binary message starts with a stream byte (0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize, and in v5 255 "close this stream"), the error stream carries one JSON
//! `metav1.Status` at the end (`Success`, or `NonZeroExitCode` with an `ExitCode` cause, as the
//! kubelet sends), and the server then sends a WebSocket close and waits for the client's.
//!
//! - [`websocket`]: the upgrade handshake and the framed session the other parts write through.
//! - [`exec`]: runs a process behind pipes or a pseudo-terminal ([`pty`]).
//! - [`attach`]: follows a container's output file and feeds its stdin FIFO.
//! - [`logs`]: `pods/log` options and the (optionally following) response body.
//! - [`query`]: the `exec`/`attach` query parameters ([`RemoteCommandOptions`]).

pub mod attach;
pub mod exec;
mod follow;
pub mod logs;
mod pty;
pub mod query;
mod status;
pub mod websocket;

pub use attach::{run_attach, AttachSpec};
pub use exec::{run_exec, ExecSpec};
pub use logs::{log_body, LogOptions};
pub use query::RemoteCommandOptions;
pub use websocket::{accept_websocket, ChannelProtocol, Upgrade};

/// Why a streaming request was refused before anything streamed. The router answers with a
/// `Status` of [`StreamError::status_code`] and this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// kubectl falls back to SPDY when the upgrade fails; the router then refuses that too.
    #[error("Upgrade request required: {0}")]
    NotWebSocket(&'static str),
    #[error("unsupported Sec-WebSocket-Version {0:?}: only 13 is supported")]
    WebSocketVersion(String),
    #[error("requested protocol(s) are not supported: {requested:?}; supports [v5.channel.k8s.io v4.channel.k8s.io]")]
    Protocol { requested: Vec<String> },
    #[error("invalid query parameter {name}={value:?}: {reason}")]
    Query {
        name: String,
        value: String,
        reason: &'static str,
    },
}

impl StreamError {
    /// Every refusal here is about the request itself.
    pub fn status_code(&self) -> hyper::StatusCode {
        hyper::StatusCode::BAD_REQUEST
    }
}
