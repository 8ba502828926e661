//! The WebSocket side of `exec` and `attach`: the upgrade handshake, then a session that
//! multiplexes the process's streams onto binary messages and demultiplexes the client's.
//!
//! One task writes the socket (so frames from stdout, stderr and the final status never
//! interleave mid-message and keep their order per stream); one task reads it and hands stdin
//! and resize messages on through bounded channels, so a process that does not read its stdin
//! slows the client down instead of growing a buffer.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::StreamError;
use crate::Body;

/// Stream ids, the first byte of every message (apimachinery's `remotecommand` constants).
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[255, id]` says the sender has closed stream `id` (kubectl closes stdin this way).
pub const CLOSE: u8 = 255;

/// How long the server waits for the client to answer its close frame. client-go answers once
/// it has read everything before it, so this only cuts off a client that stopped reading.
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// The channel protocols we speak. Both are binary (no base64 variant): v5 adds the close
/// signal, which is what lets `echo x | kubectl exec -i pod -- cat` end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelProtocol {
    V4,
    V5,
}

impl ChannelProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ChannelProtocol::V4 => "v4.channel.k8s.io",
            ChannelProtocol::V5 => "v5.channel.k8s.io",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "v5.channel.k8s.io" => Some(ChannelProtocol::V5),
            "v4.channel.k8s.io" => Some(ChannelProtocol::V4),
            _ => None,
        }
    }
}

/// An accepted upgrade: hyper hands over the connection once the 101 response is sent.
pub struct Upgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    protocol: ChannelProtocol,
}

impl Upgrade {
    pub fn protocol(&self) -> ChannelProtocol {
        self.protocol
    }
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Validates a WebSocket upgrade request (GET over HTTP/1.1, `Connection: Upgrade`,
/// `Upgrade: websocket`, version 13, a key, and a `Sec-WebSocket-Protocol` naming a channel
/// protocol we speak) and returns the 101 response to send and the [`Upgrade`] to pass to
/// [`super::run_exec`] or [`super::run_attach`], spawned, since the connection only arrives
/// after the response has gone out. The connection must be served with upgrades enabled
/// (`serve_connection_with_upgrades`).
pub fn accept_websocket<B>(req: &mut Request<B>) -> Result<(Response<Body>, Upgrade), StreamError> {
    if req.method() != Method::GET {
        return Err(StreamError::NotWebSocket("a WebSocket upgrade is a GET"));
    }
    // client-go's dialer (gorilla) always upgrades over HTTP/1.1; HTTP/2 has no Upgrade header.
    if req.version() != Version::HTTP_11 {
        return Err(StreamError::NotWebSocket("WebSocket needs HTTP/1.1"));
    }
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(StreamError::NotWebSocket("no Connection: Upgrade"));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(StreamError::NotWebSocket("no Upgrade: websocket"));
    }
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if version.trim() != "13" {
        return Err(StreamError::WebSocketVersion(version));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(StreamError::NotWebSocket("no Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    let requested = tokens(headers, header::SEC_WEBSOCKET_PROTOCOL);
    // The client lists protocols in its order of preference (v5 first); take its first we speak.
    let protocol = requested
        .iter()
        .find_map(|p| ChannelProtocol::from_name(p))
        .ok_or_else(|| StreamError::Protocol {
            requested: requested.clone(),
        })?;

    let on_upgrade = hyper::upgrade::on(req);
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    // The accept key is base64, always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok((
        response,
        Upgrade {
            on_upgrade,
            protocol,
        },
    ))
}

/// The comma-separated tokens of every instance of a header, trimmed.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    tokens(headers, name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(want))
}

/// Which streams the client asked for; the first open output stream gets an empty message
/// right after the handshake, as the kubelet and kube-apiserver send, to say "connected".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wants {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A terminal size from the resize stream (client-go's `TerminalSize`, untagged Go fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client gone or the socket broken: nothing more can be sent.
#[derive(Debug)]
pub(crate) struct Gone;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The writing half of a session, cheap to clone for each output pump.
#[derive(Clone)]
pub(crate) struct Output {
    frames: mpsc::Sender<Message>,
    gone: watch::Receiver<bool>,
}

/// What the client sends: stdin (the channel closes on the v5 close signal or when the client
/// goes away) and terminal sizes.
pub(crate) struct Input {
    pub stdin: mpsc::Receiver<Bytes>,
    pub resize: mpsc::Receiver<TermSize>,
}

/// Completes the upgrade and starts the session's reader and writer. `None` when the
/// connection never arrived (the client left during the handshake).
pub(crate) async fn open(upgrade: Upgrade, wants: Wants) -> Option<(Output, Input)> {
    let upgraded = match upgrade.on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            return None;
        }
    };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let (sink, stream) = ws.split();
    let (frames_tx, frames_rx) = mpsc::channel(16);
    let (gone_tx, gone_rx) = watch::channel(false);
    let (stdin_tx, stdin_rx) = mpsc::channel(16);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    tokio::spawn(write_loop(sink, frames_rx));
    tokio::spawn(read_loop(
        stream,
        upgrade.protocol,
        wants.stdin.then_some(stdin_tx),
        resize_tx,
        gone_tx,
    ));
    let output = Output {
        frames: frames_tx,
        gone: gone_rx,
    };
    let first = if wants.stdout {
        STDOUT
    } else if wants.stderr {
        STDERR
    } else {
        ERROR
    };
    output.send(first, &[]).await.ok()?;
    Some((
        output,
        Input {
            stdin: stdin_rx,
            resize: resize_rx,
        },
    ))
}

impl Output {
    /// Sends `data` on stream `id`; waits while the writer is behind (backpressure).
    pub async fn send(&self, id: u8, data: &[u8]) -> Result<(), Gone> {
        let mut frame = BytesMut::with_capacity(data.len() + 1);
        frame.put_u8(id);
        frame.extend_from_slice(data);
        self.frames
            .send(Message::Binary(frame.freeze()))
            .await
            .map_err(|_| Gone)
    }

    /// Resolves once the client has closed the connection or it broke.
    pub async fn gone(&self) {
        let mut gone = self.gone.clone();
        // An Err means the reader is gone, which is the same thing.
        let _ = gone.wait_for(|g| *g).await;
    }

    /// Ends the session the way kube-apiserver does: the status on the error stream, a
    /// normal close, then wait for the client's close so that output still in flight is
    /// delivered rather than reset.
    pub async fn finish(self, status: &Status) {
        let json = match serde_json::to_vec(status) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(error = %e, "encoding exec status");
                Vec::new()
            }
        };
        if self.send(ERROR, &json).await.is_err() {
            return;
        }
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        if self.frames.send(close).await.is_err() {
            return;
        }
        if tokio::time::timeout(CLOSE_WAIT, self.gone()).await.is_err() {
            tracing::debug!("client did not answer the close frame");
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut frames: mpsc::Receiver<Message>) {
    while let Some(message) = frames.recv().await {
        let closing = matches!(message, Message::Close(_));
        if let Err(e) = sink.send(message).await {
            tracing::debug!(error = %e, "websocket write failed");
            return;
        }
        if closing {
            return;
        }
    }
    // Every Output dropped without finish: the session was abandoned (client gone, or the
    // caller had nothing to report); close politely in case the client is still there.
    let _ = sink.close().await;
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    protocol: ChannelProtocol,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: mpsc::Sender<TermSize>,
    gone: watch::Sender<bool>,
) {
    let mut sizes = ResizeDecoder::default();
    while let Some(message) = stream.next().await {
        let data = match message {
            Ok(Message::Binary(data)) => data,
            // Pings are answered by tungstenite; text is not part of the binary protocols.
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let Some((&id, payload)) = data.split_first() else {
            continue;
        };
        match id {
            STDIN => {
                if let Some(tx) = &stdin {
                    if tx.send(data.slice(1..)).await.is_err() {
                        // The process closed its stdin: discard the rest.
                        stdin = None;
                    }
                }
            }
            RESIZE => {
                for size in sizes.push(payload) {
                    // A full queue means sizes are arriving faster than applied; the latest
                    // one that fits is as good.
                    let _ = resize.try_send(size);
                }
            }
            CLOSE if protocol == ChannelProtocol::V5 && payload.first() == Some(&STDIN) => {
                stdin = None;
            }
            _ => {}
        }
    }
    drop(stdin);
    let _ = gone.send(true);
}

/// Decodes the resize stream: a sequence of JSON objects, which client-go writes one per
/// message but which is a byte stream to its decoder, so one may span messages.
#[derive(Default)]
struct ResizeDecoder {
    pending: Vec<u8>,
}

impl ResizeDecoder {
    fn push(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let mut values =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<TermSize>();
        loop {
            match values.next() {
                Some(Ok(size)) => {
                    sizes.push(size);
                    consumed = values.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    // Not a size: drop what we have rather than stall on it forever.
                    tracing::debug!(error = %e, "bad resize message");
                    consumed = self.pending.len();
                    break;
                }
                None => {
                    consumed = self.pending.len();
                    break;
                }
            }
        }
        self.pending.drain(..consumed);
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request(protocols: &str) -> Request<()> {
        Request::builder()
            .method(Method::GET)
            .uri("/api/v1/namespaces/default/pods/p/exec?command=sh")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", protocols)
            .body(())
            .expect("request")
    }

    #[test]
    fn accepts_v5_first_and_computes_the_accept_key() {
        let mut req = upgrade_request("v5.channel.k8s.io, v4.channel.k8s.io");
        let (resp, upgrade) = accept_websocket(&mut req).expect("accepted");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(upgrade.protocol(), ChannelProtocol::V5);
        assert_eq!(
            resp.headers()["sec-websocket-protocol"],
            "v5.channel.k8s.io"
        );
        // RFC 6455's example.
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn falls_back_to_v4_and_refuses_others() {
        let mut req = upgrade_request("v4.channel.k8s.io");
        let (_, upgrade) = accept_websocket(&mut req).expect("accepted");
        assert_eq!(upgrade.protocol(), ChannelProtocol::V4);

        let mut req = upgrade_request("channel.k8s.io, base64.channel.k8s.io");
        let err = accept_websocket(&mut req).expect_err("refused");
        assert!(matches!(err, StreamError::Protocol { ref requested } if requested.len() == 2));
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn refuses_plain_requests() {
        let mut req = Request::builder()
            .uri("/api/v1/namespaces/default/pods/p/exec")
            .body(())
            .expect("request");
        assert!(matches!(
            accept_websocket(&mut req),
            Err(StreamError::NotWebSocket(_))
        ));
    }

    #[test]
    fn resize_messages_may_split_and_join() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.push(br#"{"Width":80,"#), vec![]);
        assert_eq!(
            d.push(br#""Height":24}{"Width":100,"Height":40}"#),
            vec![
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 40
                }
            ]
        );
        assert!(d.pending.is_empty());
        assert_eq!(d.push(b"garbage"), vec![]);
        assert!(d.pending.is_empty());
    }
}
