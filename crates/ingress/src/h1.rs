//! Plain HTTP/1.1 without hyper, for the requests that make up most of an ingress's traffic:
//! a bodiless request (GET, HEAD, DELETE...) on a keep-alive connection, to a route that asks
//! for nothing but its backend and timeouts. The request head is parsed in place
//! (`httparse`), written to a kept backend connection with the forwarding headers, and the
//! response head parsed and written back with the first body bytes in one write; the body is
//! relayed as it comes (by its length, chunk by chunk, or to the backend's close). One task
//! does it all: no connection task per backend connection, no channel between them, no header
//! map. Anything else, from the first request that is not this simple to the connection's
//! end, goes to hyper with the bytes read so far ([`Proxy::handle`]): bodies, upgrades,
//! HTTP/1.0, HTTP/2 with prior knowledge, the annotations that change a request or answer for
//! the backend, 404s and 503s, and every malformed or oversized head (hyper answers those with
//! 400 and 431, as before).
//!
//! Behaviour is the hyper path's: the same routing, forwarding headers, hop-by-hop headers
//! dropped both ways, retries of the next endpoint on a failed connect (at most
//! [`ProxyConfig::tries`](crate::proxy::ProxyConfig)), 502 and 504 with the same bodies, the
//! same access log line and metrics. The response's framing is the proxy's own
//! (`content-length`, or `transfer-encoding: chunked` over chunks relayed as they came and
//! checked strictly), never the backend's lines, and a `date` is added when missing. A kept
//! backend connection that turns out closed before any byte of its answer is replaced by a
//! new one and an idempotent request sent again (RFC 9110 9.2.2; a POST gets 502, as nginx
//! answers). Kept connections are per worker thread, let go after 60 s unused or once the
//! backend closes them (a sweep every 5 s). Where it differs, it does as nginx does: the read
//! timeout applies between body reads too, a body that ends at the backend's close ends the
//! client's connection, and `$request_time` covers the whole body.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::options::Protocol;
use crate::proxy::{access_log, Logged, Peer, Proxy, Upstream};
use crate::routes::Backend;

/// Header fields a request or response head may have here (more: hyper answers, with 431).
const MAX_HEADERS: usize = 100;
/// A backend's response head may take this many bytes (more: 502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What became of one request.
enum Next {
    /// Answered; the request took this many bytes and the connection stays open.
    Again(usize),
    /// Answered (or the client left); the connection is closed.
    Close,
    /// Not one for this path: hyper serves the connection from this request on.
    Hyper,
}

/// Buffers kept for a client connection's life.
#[derive(Default)]
struct Buffers {
    /// The request head as it goes to the backend.
    up: Vec<u8>,
    /// What the backend sent.
    from: BytesMut,
    /// The response head (and first body bytes) as it goes to the client.
    out: Vec<u8>,
}

/// Serves a plain HTTP client connection: requests this path takes, then, if one comes that it
/// does not, the rest of the connection through hyper.
pub(crate) async fn serve<S: Client>(
    mut stream: S,
    peer: Peer,
    proxy: Arc<Proxy>,
    scheme: &'static str,
    port: u16,
) {
    let mut input = BytesMut::with_capacity(4096);
    let mut buffers = Buffers::default();
    let header_timeout = proxy.config().header_timeout;
    let entry = Entry { scheme, port };
    loop {
        let next = 'head: {
            let mut deadline = None;
            loop {
                if !input.is_empty() {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut req = httparse::Request::new(&mut headers);
                    match req.parse(&input) {
                        Ok(httparse::Status::Complete(n)) if n <= crate::proxy::MAX_HEAD => {
                            break 'head match Head::of(&req) {
                                Some(head) => {
                                    proxy
                                        .one(&head, n, &mut stream, &peer, entry, &mut buffers)
                                        .await
                                }
                                None => Next::Hyper,
                            };
                        }
                        Ok(httparse::Status::Partial) if input.len() <= crate::proxy::MAX_HEAD => {}
                        _ => break 'head Next::Hyper,
                    }
                }
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + header_timeout);
                input.reserve(4096);
                match tokio::time::timeout_at(deadline, stream.read_buf(&mut input)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break 'head Next::Close,
                    Ok(Ok(_)) => {}
                }
            }
        };
        match next {
            Next::Again(n) => input.advance(n),
            Next::Close => {
                // A TLS client learns the end from close_notify (a body to the close would
                // look cut off without it); a TCP one gets the FIN.
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                return;
            }
            Next::Hyper => break,
        }
    }
    let io = crate::proxy::Rewind::new(input.freeze(), stream);
    crate::proxy::serve_connection(io, peer, proxy, scheme, port).await;
}

/// Where a client connection came in: `http` or `https`, and the port.
#[derive(Clone, Copy)]
struct Entry {
    scheme: &'static str,
    port: u16,
}

/// A client connection: plain TCP, or TLS that chose HTTP/1.1.
pub(crate) trait Client:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Client for T {}

/// A request this path can take: HTTP/1.1, origin-form, one `Host`, no body, no upgrade, no
/// hop-by-hop header but `Connection: keep-alive|close` and `Keep-Alive`.
struct Head<'a> {
    method: &'a str,
    target: &'a str,
    /// The target without its query.
    path: &'a str,
    /// The `Host` header as sent.
    host: &'a str,
    headers: &'a [httparse::Header<'a>],
    /// The client asked to close after this one.
    close: bool,
    referer: Option<&'a [u8]>,
    agent: Option<&'a [u8]>,
}

impl<'a> Head<'a> {
    fn of(req: &'a httparse::Request<'a, 'a>) -> Option<Head<'a>> {
        let (method, target) = (req.method?, req.path?);
        if req.version != Some(1) || method == "CONNECT" || !origin_form(target) {
            return None;
        }
        let mut host = None;
        let (mut close, mut referer, mut agent) = (false, None, None);
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                if host.is_some() {
                    return None;
                }
                host = Some(std::str::from_utf8(h.value).ok()?);
            } else if name.eq_ignore_ascii_case("content-length") {
                if h.value.trim_ascii() != b"0" {
                    return None;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                        return None;
                    }
                }
            } else if name.eq_ignore_ascii_case("referer") {
                referer = referer.or(Some(h.value));
            } else if name.eq_ignore_ascii_case("user-agent") {
                agent = agent.or(Some(h.value));
            } else if [
                "transfer-encoding",
                "upgrade",
                "expect",
                "te",
                "trailer",
                "proxy-connection",
                "proxy-authorization",
                "proxy-authenticate",
            ]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
            {
                return None;
            }
        }
        let host = host.filter(|h| !h.is_empty())?;
        Some(Head {
            method,
            target,
            path: target.split_once('?').map_or(target, |(p, _)| p),
            host,
            headers: &*req.headers,
            close,
            referer,
            agent,
        })
    }
}

/// An origin-form target of the characters a URI's path and query may have (RFC 3986); hyper
/// decides about anything else.
fn origin_form(target: &str) -> bool {
    target.starts_with('/')
        && target.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                        | b'%'
                )
        })
}

/// Request headers not sent on: hop-by-hop ones, and the forwarding headers the proxy sets.
const NOT_FORWARDED: [&str; 7] = [
    "connection",
    "keep-alive",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
];

/// How a response's body ends (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body: a HEAD request's answer, 204, 304.
    Empty,
    Length(u64),
    /// `Transfer-Encoding: ... chunked`: relayed as it is, to the last chunk and trailers.
    Chunked,
    /// Until the backend closes (the client's connection is closed too).
    Close,
}

/// Why an exchange with a backend failed.
enum Failed {
    /// No connection could be made.
    Connect(io::Error),
    /// A kept connection was found closed before any answer: send again on a new one.
    Stale,
    /// The send or the response head took longer than its timeout.
    Timeout,
    /// The backend broke the exchange or answered something that is not HTTP/1.1.
    Broken(String),
}

/// The parts of a backend's response head the relay needs, the head itself already in
/// [`Buffers::out`].
struct Answer {
    status: u16,
    framing: Framing,
    /// The backend connection can take another request after this body.
    reusable: bool,
    /// Bytes of the head at the front of [`Buffers::from`].
    head_len: usize,
}

impl Proxy {
    /// Answers one request if it is one for this path, else [`Next::Hyper`] having written
    /// nothing.
    async fn one(
        self: &Arc<Self>,
        head: &Head<'_>,
        head_len: usize,
        client: &mut impl Client,
        peer: &Peer,
        Entry { scheme, port }: Entry,
        buffers: &mut Buffers,
    ) -> Next {
        let started = Instant::now();
        let table = self.table();
        let host = crate::routes::lowercase(crate::proxy::strip_port(head.host));
        let Some(route) = table.route(&host, head.path).and_then(|m| m.route) else {
            return Next::Hyper;
        };
        let o = &*route.options;
        let plain_route = !(route.https_redirect && scheme == "http")
            && o.rewrite.is_none()
            && o.allow.is_none()
            && o.cors.is_none()
            && o.limit_rps.is_none()
            && o.affinity_cookie.is_none()
            && o.protocol == Protocol::Http;
        if !plain_route || !matches!(*route.backend, Backend::Endpoints { .. }) {
            return Next::Hyper;
        }
        let endpoints = route.backend.endpoints_in_turn();
        if endpoints.is_empty() {
            return Next::Hyper;
        }
        let config = self.config();
        let connect_timeout = o.connect_timeout.unwrap_or(config.connect_timeout);
        let read_timeout = o.read_timeout.unwrap_or(config.read_timeout);
        let send_timeout = o.send_timeout.unwrap_or(config.send_timeout);
        upstream_head(&mut buffers.up, head, peer, &host, scheme, port);

        let mut upstream = Upstream {
            addr: None,
            target: route.target.clone(),
        };
        let logged = Logged {
            method: head.method,
            target: head.target,
            version: "HTTP/1.1",
            referer: head.referer,
            agent: head.agent,
            length: 0,
        };
        let head_request = head.method == "HEAD";
        // Sent again on a new connection when a kept one turns out closed (RFC 9110 9.2.2).
        let idempotent = matches!(
            head.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );
        let mut reached = None;
        let mut own: Option<(u16, &'static str)> = None;
        for endpoint in endpoints.iter().take(config.tries.max(1)) {
            let mut kept = take_kept(*endpoint);
            let result = loop {
                let fresh = kept.is_none();
                let backend = match kept.take() {
                    Some(b) => b,
                    None => match crate::proxy::connect(*endpoint, connect_timeout).await {
                        Ok(b) => b,
                        Err(e) => break Err(Failed::Connect(e)),
                    },
                };
                match exchange(
                    backend,
                    fresh,
                    idempotent,
                    buffers,
                    head_request,
                    head.close,
                    send_timeout,
                    read_timeout,
                )
                .await
                {
                    Err(Failed::Stale) => continue,
                    other => break other,
                }
            };
            match result {
                Ok(r) => {
                    upstream.addr = Some(*endpoint);
                    reached = Some(r);
                    break;
                }
                Err(Failed::Connect(e)) => {
                    self.metrics.upstream_error(&upstream.target, "connect");
                    tracing::warn!("connecting to {endpoint} for {host}{}: {e}", head.path);
                }
                Err(Failed::Timeout) => {
                    upstream.addr = Some(*endpoint);
                    self.metrics.upstream_error(&upstream.target, "timeout");
                    own = Some((504, "504 Gateway Time-out\n"));
                    break;
                }
                Err(e) => {
                    let e = match e {
                        Failed::Broken(e) => e,
                        _ => "kept connection closed".to_string(),
                    };
                    upstream.addr = Some(*endpoint);
                    self.metrics.upstream_error(&upstream.target, "broken");
                    tracing::warn!("{endpoint} for {host}{}: {e}", head.path);
                    own = Some((502, "502 Bad Gateway\n"));
                    break;
                }
            }
        }
        let Some((backend, answer)) = reached else {
            let (status, text) = own.unwrap_or((502, "502 Bad Gateway\n"));
            let written = write_plain(client, &mut buffers.out, status, text, head.close).await;
            self.finish(
                &logged,
                peer,
                status,
                Some(text.len() as u64),
                &upstream,
                started,
            );
            return match written {
                Ok(()) if !head.close => Next::Again(head_len),
                _ => Next::Close,
            };
        };
        let relayed = relay(
            client,
            backend,
            &answer,
            buffers,
            read_timeout,
            (upstream.addr, config.idle_per_endpoint),
        )
        .await;
        let sent = match answer.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::Close => None,
        };
        self.finish(&logged, peer, answer.status, sent, &upstream, started);
        match relayed {
            Ok(()) if !head.close && answer.framing != Framing::Close => Next::Again(head_len),
            _ => Next::Close,
        }
    }

    fn finish(
        &self,
        logged: &Logged<'_>,
        peer: &Peer,
        status: u16,
        sent: Option<u64>,
        upstream: &Upstream,
        started: Instant,
    ) {
        let took = started.elapsed();
        self.metrics.request(&upstream.target, status, took);
        access_log(logged, peer, status, sent, upstream, took);
    }
}

/// The request head as the backend gets it: the client's request line and headers, but for
/// the hop-by-hop ones and the forwarding headers, which are set anew.
fn upstream_head(
    up: &mut Vec<u8>,
    head: &Head<'_>,
    peer: &Peer,
    host: &str,
    scheme: &str,
    port: u16,
) {
    up.clear();
    up.extend_from_slice(head.method.as_bytes());
    up.push(b' ');
    up.extend_from_slice(head.target.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    for h in head.headers {
        if NOT_FORWARDED.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        up.extend_from_slice(h.name.as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(h.value);
        up.extend_from_slice(b"\r\n");
    }
    let ip = peer.text().as_bytes();
    for (name, value) in [
        (&b"x-forwarded-for: "[..], ip),
        (b"x-real-ip: ", ip),
        (b"x-forwarded-proto: ", scheme.as_bytes()),
        (b"x-forwarded-host: ", host.as_bytes()),
    ] {
        up.extend_from_slice(name);
        up.extend_from_slice(value);
        up.extend_from_slice(b"\r\n");
    }
    up.extend_from_slice(b"x-forwarded-port: ");
    up.extend_from_slice(port.to_string().as_bytes());
    up.extend_from_slice(b"\r\n\r\n");
}

thread_local! {
    /// Kept backend connections of this path, per thread (each worker thread has a runtime of
    /// its own, see `proxy::spawn_workers`), with when each was put back.
    static KEPT: std::cell::RefCell<rustc_hash::FxHashMap<SocketAddr, Vec<(TcpStream, Instant)>>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
    /// Whether this thread's sweeper runs.
    static SWEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A kept connection is closed after this long unused (nginx's upstream `keepalive_timeout`).
const KEPT_IDLE: Duration = Duration::from_secs(60);
/// How often each thread looks over its kept connections.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Whether a kept connection can take a request: unused for less than [`KEPT_IDLE`], not
/// closed by the backend, and with nothing unasked from it (as far as can be told without
/// waiting).
fn usable(stream: &TcpStream, since: Instant) -> bool {
    if since.elapsed() >= KEPT_IDLE {
        return false;
    }
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// A usable kept connection to `endpoint`.
fn take_kept(endpoint: SocketAddr) -> Option<TcpStream> {
    KEPT.with_borrow_mut(|kept| {
        let list = kept.get_mut(&endpoint)?;
        while let Some((s, since)) = list.pop() {
            if usable(&s, since) {
                return Some(s);
            }
        }
        None
    })
}

fn keep(endpoint: SocketAddr, stream: TcpStream, max: usize) {
    if !SWEEPING.get() {
        // Connections the backend closes, or to endpoints no request asks for again (a pod
        // gone in a rollout), are let go within SWEEP_EVERY, not left in CLOSE_WAIT.
        SWEEPING.set(true);
        tokio::spawn(async {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                KEPT.with_borrow_mut(|kept| {
                    kept.retain(|_, list| {
                        list.retain(|(s, since)| usable(s, *since));
                        !list.is_empty()
                    })
                });
            }
        });
    }
    KEPT.with_borrow_mut(|kept| {
        let list = kept.entry(endpoint).or_default();
        if list.len() < max {
            list.push((stream, Instant::now()));
        }
    });
}

/// Sends [`Buffers::up`] on `backend` and reads the response head into [`Buffers::from`],
/// writing the client's version of it into [`Buffers::out`]. A `fresh` connection's failures
/// are the backend's; a kept one's before any answer are [`Failed::Stale`] when the request may
/// be sent again (`idempotent`, RFC 9110 section 9.2.2), else the backend's too.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    mut backend: TcpStream,
    fresh: bool,
    idempotent: bool,
    buffers: &mut Buffers,
    head_request: bool,
    client_close: bool,
    send_timeout: Duration,
    read_timeout: Duration,
) -> Result<(TcpStream, Answer), Failed> {
    let broken = |e: io::Error| {
        if fresh || !idempotent {
            Failed::Broken(e.to_string())
        } else {
            Failed::Stale
        }
    };
    match tokio::time::timeout(send_timeout, backend.write_all(&buffers.up)).await {
        Err(_) => return Err(Failed::Timeout),
        Ok(Err(e)) => return Err(broken(e)),
        Ok(Ok(())) => {}
    }
    let from = &mut buffers.from;
    from.clear();
    let deadline = tokio::time::Instant::now() + read_timeout;
    // Whether any byte of an answer came (interim ones included).
    let mut answered = false;
    loop {
        if !from.is_empty() {
            answered = true;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(from) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = res.code.unwrap_or(0);
                    if (100..200).contains(&status) {
                        if status == 101 {
                            return Err(Failed::Broken("101 to a request without upgrade".into()));
                        }
                        // An interim answer (100, 103): not sent on, as nginx does, and not
                        // kept either (a backend sending them without end holds no memory).
                        from.advance(n);
                        continue;
                    }
                    let answer = client_head(&res, &mut buffers.out, head_request, client_close)
                        .map_err(|e| Failed::Broken(e.to_string()))?;
                    return Ok((
                        backend,
                        Answer {
                            head_len: n,
                            ..answer
                        },
                    ));
                }
                Ok(httparse::Status::Partial) if from.len() <= MAX_RESPONSE_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Failed::Broken("response head too large".into()))
                }
                Err(e) => return Err(Failed::Broken(format!("bad response head: {e}"))),
            }
        }
        from.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, backend.read_buf(from)).await {
            Err(_) => return Err(Failed::Timeout),
            Ok(Ok(0)) if !answered => {
                return Err(broken(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed without an answer",
                )))
            }
            Ok(Ok(0)) => return Err(Failed::Broken("closed within the response head".into())),
            Ok(Err(e)) if !answered => return Err(broken(e)),
            Ok(Err(e)) => return Err(Failed::Broken(e.to_string())),
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes the client's response head for the backend's `res` into `out`: the status line, the
/// headers but hop-by-hop ones (and those its `Connection` names), the body's framing written
/// by the proxy itself (`content-length`, or `transfer-encoding: chunked` when the chunks are
/// relayed as they are: never the backend's own lines, so that no header the backend names or
/// repeats can unframe the answer), a `date` if the backend sent none, and `Connection: close`
/// when the client's connection ends with this answer.
fn client_head(
    res: &httparse::Response<'_, '_>,
    out: &mut Vec<u8>,
    head_request: bool,
    client_close: bool,
) -> Result<Answer, &'static str> {
    let status = res.code.ok_or("no status")?;
    if !(200..=999).contains(&status) {
        return Err("bad status code");
    }
    let mut length: Option<u64> = None;
    let (mut encodings, mut backend_close, mut dated) = (Vec::new(), false, false);
    let mut named: Vec<&[u8]> = Vec::new();
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value.trim_ascii())
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length");
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings.extend(
                h.value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !t.is_empty()),
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    backend_close = true;
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        } else if h.name.eq_ignore_ascii_case("date") {
            dated = true;
        }
    }
    let encoded = !encodings.is_empty();
    if encoded && res.version != Some(1) {
        return Err("Transfer-Encoding in an HTTP/1.0 answer");
    }
    // Chunked only as the sole coding: anything else (a coding the client would have to undo,
    // chunked twice) is not relayed.
    let chunked = matches!(encodings.as_slice(), [c] if c.eq_ignore_ascii_case(b"chunked"));
    if encoded && !chunked {
        return Err("a Transfer-Encoding other than chunked");
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers.iter() {
        let name = h.name;
        let dropped = crate::proxy::HOP_BY_HOP
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str()))
            || name.eq_ignore_ascii_case("content-length")
            || named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name.as_bytes()));
        if dropped {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    match (framing, length) {
        (Framing::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (Framing::Length(n), _) | (Framing::Empty, Some(n)) if status != 204 => {
            out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes())
        }
        _ => {}
    }
    if !dated {
        http_date(out);
    }
    if client_close || framing == Framing::Close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Answer {
        status,
        framing,
        // Both a length and chunks: answered, but the connection is not trusted again.
        reusable: res.version == Some(1)
            && !backend_close
            && framing != Framing::Close
            && !(encoded && length.is_some()),
        head_len: 0,
    })
}

/// A `date` header line (RFC 9110 section 6.6.1), formatted once a second per thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = format!("date: {}\r\n", httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// Sends the client the response head in [`Buffers::out`] and the body after it, and keeps
/// the backend connection if it ended the body where its framing said.
async fn relay(
    client: &mut impl Client,
    mut backend: TcpStream,
    answer: &Answer,
    buffers: &mut Buffers,
    read_timeout: Duration,
    (endpoint, kept_max): (Option<SocketAddr>, usize),
) -> io::Result<()> {
    let Buffers { from, out, .. } = buffers;
    let invalid = |e: &str| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let mut framed = Framed::new(answer.framing);
    let body = &from[answer.head_len..];
    let n = framed.take(body).map_err(invalid)?;
    // More than the body: the backend is out of step.
    let mut reusable = answer.reusable && n == body.len();
    out.extend_from_slice(&body[..n]);
    send(client, out).await?;
    while !framed.whole() {
        from.clear();
        from.reserve(64 * 1024);
        let got = match tokio::time::timeout(read_timeout, backend.read_buf(from)).await {
            Ok(Ok(0)) if answer.framing == Framing::Close => break,
            Ok(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{endpoint:?} closed within the body"),
                ))
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "body read timed out",
                ))
            }
        };
        let n = framed.take(&from[..got]).map_err(invalid)?;
        reusable &= n == got;
        send(client, &from[..n]).await?;
    }
    if reusable {
        if let Some(endpoint) = endpoint {
            keep(endpoint, backend, kept_max);
        }
    }
    Ok(())
}

/// A client has this long to take each write (nginx's `send_timeout`).
const CLIENT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes `bytes` to the client and flushes them (a TLS stream holds what it could not send
/// yet until then), within [`CLIENT_SEND_TIMEOUT`].
async fn send(client: &mut impl Client, bytes: &[u8]) -> io::Result<()> {
    let write = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    tokio::time::timeout(CLIENT_SEND_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client takes nothing"))?
}

/// A response body's progress by its framing.
struct Framed {
    framing: Framing,
    /// Bytes left of a body of known length.
    left: u64,
    chunks: Chunks,
}

impl Framed {
    fn new(framing: Framing) -> Framed {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Framed {
            framing,
            left,
            chunks: Chunks::default(),
        }
    }

    /// How much of `bytes` is this body's.
    fn take(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        match self.framing {
            Framing::Empty => Ok(0),
            Framing::Length(_) => {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.left -= n as u64;
                Ok(n)
            }
            Framing::Chunked => self.chunks.feed(bytes),
            Framing::Close => Ok(bytes.len()),
        }
    }

    /// The body has been taken whole (a body to the backend's close never is).
    fn whole(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(_) => self.left == 0,
            Framing::Chunked => self.chunks.done(),
            Framing::Close => false,
        }
    }
}

/// The proxy's own answer.
async fn write_plain(
    client: &mut impl Client,
    out: &mut Vec<u8>,
    status: u16,
    text: &str,
    close: bool,
) -> io::Result<()> {
    let reason = match status {
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "",
    };
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{}",
            text.len(),
            if close { "connection: close\r\n" } else { "" },
        )
        .as_bytes(),
    );
    http_date(out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
    send(client, out).await
}

/// Where a chunked body is in its framing (RFC 9112 section 7.1), fed the bytes as they come.
/// Strict, since the bytes go on as they are: a size line is hex digits, optional whitespace,
/// then `;` extensions of visible characters, then CRLF; trailer lines are field lines (a
/// token, `:`, a value without control characters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunks {
    /// At a chunk-size line.
    #[default]
    Start,
    /// In the size's digits.
    Size {
        size: u64,
    },
    /// After the digits: whitespace, then `;` or CR.
    SizeWs {
        size: u64,
    },
    /// In the chunk extensions.
    Ext {
        size: u64,
    },
    /// The size line's LF; then the data.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// A token character (RFC 9110 section 5.6.2).
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl Chunks {
    /// Takes what it can of `bytes`: all of them, or those up to the body's end. Errors on
    /// anything that is not chunked framing.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            *self = match *self {
                Chunks::Done => return Ok(i),
                Chunks::Start => match hex(b) {
                    Some(d) => Chunks::Size { size: u64::from(d) },
                    None => return Err("bad chunk size"),
                },
                Chunks::Size { size } => match hex(b) {
                    Some(d) => Chunks::Size {
                        size: size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or("chunk size too large")?,
                    },
                    None => Chunks::SizeWs { size }.after_size(b)?,
                },
                Chunks::SizeWs { size } => Chunks::SizeWs { size }.after_size(b)?,
                Chunks::Ext { size } => match b {
                    b'\r' => Chunks::SizeLf { size },
                    b'\t' | 0x20..=0x7e => Chunks::Ext { size },
                    _ => return Err("bad chunk extension"),
                },
                Chunks::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Chunks::TrailerStart,
                    (b'\n', left) => Chunks::Data { left },
                    _ => return Err("chunk size line without LF"),
                },
                Chunks::Data { left } => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += n;
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Chunks::DataCr
                    } else {
                        Chunks::Data { left }
                    };
                    continue;
                }
                Chunks::DataCr if b == b'\r' => Chunks::DataLf,
                Chunks::DataLf if b == b'\n' => Chunks::Start,
                Chunks::DataCr | Chunks::DataLf => return Err("chunk data without CRLF"),
                Chunks::TrailerStart if b == b'\r' => Chunks::EndLf,
                Chunks::TrailerStart | Chunks::TrailerName if tchar(b) => Chunks::TrailerName,
                Chunks::TrailerName if b == b':' => Chunks::TrailerValue,
                Chunks::TrailerStart | Chunks::TrailerName => return Err("bad trailer field"),
                Chunks::TrailerValue => match b {
                    b'\r' => Chunks::TrailerLf,
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => Chunks::TrailerValue,
                    _ => return Err("bad trailer value"),
                },
                Chunks::TrailerLf if b == b'\n' => Chunks::TrailerStart,
                Chunks::EndLf if b == b'\n' => Chunks::Done,
                Chunks::TrailerLf | Chunks::EndLf => return Err("trailer line without LF"),
            };
            i += 1;
        }
        Ok(i)
    }

    /// The state after byte `b` that follows a chunk size's digits.
    fn after_size(self, b: u8) -> Result<Chunks, &'static str> {
        let (Chunks::SizeWs { size } | Chunks::Size { size }) = self else {
            return Err("bad chunk size");
        };
        match b {
            b' ' | b'\t' => Ok(Chunks::SizeWs { size }),
            b';' => Ok(Chunks::Ext { size }),
            b'\r' => Ok(Chunks::SizeLf { size }),
            _ => Err("bad chunk size"),
        }
    }

    pub(crate) fn done(&self) -> bool {
        *self == Chunks::Done
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `body` in chunks of `sizes` (cycled), each size line with `ext` when set, then the
    /// last chunk and `trailers`.
    fn encode(body: &[u8], sizes: &[usize], ext: bool, trailers: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut k = 0;
        while at < body.len() {
            let n = sizes[k % sizes.len()].max(1).min(body.len() - at);
            k += 1;
            out.extend_from_slice(format!("{n:X}").as_bytes());
            if ext {
                out.extend_from_slice(b";name=value");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body[at..at + n]);
            out.extend_from_slice(b"\r\n");
            at += n;
        }
        out.extend_from_slice(b"0\r\n");
        for t in trailers {
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        /// However the bytes are split, the scanner ends exactly at the body's end and leaves
        /// what follows.
        #[test]
        fn chunked_bodies_end_where_they_end(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..5),
            ext in any::<bool>(),
            trailer in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            after in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let trailers: &[&str] = if trailer { &["x-checksum: 1", "x-more: two"] } else { &[] };
            let framed = encode(&body, &sizes, ext, trailers);
            let mut all = framed.clone();
            all.extend_from_slice(&after);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(all.len() + 1)).collect();
            cuts.push(all.len());
            cuts.sort_unstable();
            let mut chunks = Chunks::default();
            let (mut from, mut taken) = (0, 0);
            for cut in cuts {
                let n = chunks.feed(&all[from..cut]).unwrap();
                taken += n;
                if chunks.done() {
                    break;
                }
                prop_assert_eq!(n, cut - from);
                from = cut;
            }
            prop_assert!(chunks.done());
            prop_assert_eq!(taken, framed.len());
        }

        /// Arbitrary bytes never panic, and never take more than given.
        #[test]
        fn arbitrary_bytes_are_taken_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut chunks = Chunks::default();
            if let Ok(n) = chunks.feed(&bytes) {
                prop_assert!(n <= bytes.len());
            }
        }
    }

    #[test]
    fn bad_chunk_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"10000000000000000\r\n",
            b"0\r\nx-trailer\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5;\x80\xff=\"\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\x00\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\n folded: x\r\n\r\n",
            b"0\r\nx-t: a\x01b\r\n\r\n",
        ] {
            assert!(Chunks::default().feed(bad).is_err(), "{bad:?}");
        }
    }

    fn parse_head(raw: &'static [u8]) -> Option<(String, bool, String)> {
        let headers = Box::leak(Box::new([httparse::EMPTY_HEADER; MAX_HEADERS]));
        let req = Box::leak(Box::new(httparse::Request::new(headers)));
        req.parse(raw).ok()?;
        let head = Head::of(req)?;
        Some((head.path.to_string(), head.close, head.host.to_string()))
    }

    #[test]
    fn only_simple_requests_are_taken() {
        assert_eq!(
            parse_head(
                b"GET /a/b?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n"
            ),
            Some(("/a/b".into(), true, "shop.example.com".into()))
        );
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").is_some());
        for refused in [
            &b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    fn head_for(raw: &'static [u8], head_request: bool, close: bool) -> (String, Framing, bool) {
        let headers = Box::leak(Box::new([httparse::EMPTY_HEADER; MAX_HEADERS]));
        let mut res = httparse::Response::new(headers);
        res.parse(raw).unwrap();
        let mut out = Vec::new();
        let a = client_head(&res, &mut out, head_request, close).unwrap();
        (String::from_utf8(out).unwrap(), a.framing, a.reusable)
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let (h, f, r) = head_for(
            b"HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n",
            false,
            false,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: d\r\nX-Kept: yes\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!((f, r), (Framing::Length(5), true));
        // Chunks with a length too: the length goes, the connection is not reused.
        let (h, f, r) = head_for(
            b"HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
            true,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: d\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!((f, r), (Framing::Chunked, false));
        let (h, f, r) = head_for(
            b"HTTP/1.1 200 OK\r\nDate: d\r\nServer: x\r\n\r\n",
            false,
            false,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nDate: d\r\nServer: x\r\nconnection: close\r\n\r\n"
        );
        assert_eq!((f, r), (Framing::Close, false));
        // HEAD: the length the GET would have, no body.
        let (h, f, r) = head_for(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true, false);
        assert!(
            h.contains("content-length: 7\r\n") && h.contains("\r\ndate: "),
            "{h}"
        );
        assert_eq!((f, r), (Framing::Empty, true));
        let (_, f, r) = head_for(
            b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n",
            false,
            false,
        );
        assert_eq!((f, r), (Framing::Empty, false));
        let (_, f, r) = head_for(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            false,
            false,
        );
        assert_eq!((f, r), (Framing::Length(1), false));
        // A backend naming the framing headers in Connection does not unframe the answer.
        let (h, f, _) = head_for(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length, transfer-encoding\r\n\r\n",
            false,
            false,
        );
        assert!(h.contains("content-length: 5\r\n"), "{h}");
        assert_eq!(f, Framing::Length(5));
        // Every header Connection names goes, however many.
        let named: String = (0..12).map(|i| format!("x-n{i}, ")).collect();
        let raw = format!(
            "HTTP/1.1 200 OK\r\nConnection: {named}close\r\n{}Content-Length: 0\r\n\r\n",
            (0..12)
                .map(|i| format!("X-N{i}: secret\r\n"))
                .collect::<String>()
        );
        let (h, _, _) = head_for(Box::leak(raw.into_bytes().into_boxed_slice()), false, false);
        assert!(!h.contains("secret"), "{h}");
    }

    #[test]
    fn odd_answers_are_refused() {
        for raw in [
            &b"HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            let headers = Box::leak(Box::new([httparse::EMPTY_HEADER; MAX_HEADERS]));
            let mut res = httparse::Response::new(headers);
            res.parse(raw).unwrap();
            assert!(
                client_head(&res, &mut Vec::new(), false, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
