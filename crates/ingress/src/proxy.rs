//! The proxy: HTTP/1.1 and HTTP/2 (by the client's preface) served with hyper (bodiless
//! HTTP/1.1 requests to plain routes first take `h1`'s path, with the same behaviour), each request
//! routed by the current [`RouteTable`] straight to a ready endpoint pod (not through the
//! Service's cluster IP), endpoints taken in turn, and on a failed connect the next one (as
//! nginx's `proxy_next_upstream error timeout`, at most [`ProxyConfig::tries`]). Connections to
//! backends are HTTP/1.1 and kept alive in a pool per endpoint. The table is swapped whole
//! ([`Proxy::swap`]); requests in flight finish on the table they started with, so a change
//! drops no connection.
//!
//! Answers of its own, as ingress-nginx gives them: 404 when nothing matches and there is no
//! default backend, 503 when the backend has no ready endpoint (or cannot be resolved), 502
//! when no endpoint could be connected to or the backend broke the exchange, 504 when it did
//! not answer within the read timeout. Headers to the backend: `Host` kept, `X-Forwarded-For`
//! and `X-Real-IP` set to the client's address (what ingress-nginx does without
//! `use-forwarded-headers`), `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port`;
//! hop-by-hop headers are not forwarded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::options::{Options, Protocol};
use crate::routes::{Backend, PathMatch, RouteTable};
use weft_view::NsName;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy's timeouts and retries (ingress-nginx's defaults).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `proxy-connect-timeout`: 5 s.
    pub connect_timeout: Duration,
    /// `proxy-read-timeout`: 60 s, for the backend's response head.
    pub read_timeout: Duration,
    /// `proxy-next-upstream-tries`: 3 endpoints at most per request.
    pub tries: usize,
    /// Idle connections kept per endpoint.
    pub idle_per_endpoint: usize,
    /// A client has this long to send a request's head (nginx's `client_header_timeout`).
    pub header_timeout: Duration,
    /// `proxy-send-timeout`: 60 s between two writes to a backend that takes nothing.
    pub send_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            tries: 3,
            idle_per_endpoint: 64,
            header_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// The body sent to backends: the client's, possibly length-limited.
pub type UpBody = BoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A kept connection to a backend.
enum Conn {
    H1(SendRequest<UpBody>),
    H2(hyper::client::conn::http2::SendRequest<UpBody>),
}

impl Conn {
    fn ready(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_ready(),
            Conn::H2(s) => s.is_ready(),
        }
    }
    fn closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.is_closed(),
            Conn::H2(s) => s.is_closed(),
        }
    }
    async fn send(&mut self, req: Request<UpBody>) -> hyper::Result<Response<Incoming>> {
        match self {
            Conn::H1(s) => s.send_request(req).await,
            Conn::H2(s) => s.send_request(req).await,
        }
    }
}

thread_local! {
    /// Kept backend connections, per thread: each worker thread runs its own runtime
    /// ([`spawn_workers`]), and a connection used where it was made wakes no other thread.
    static IDLE: std::cell::RefCell<rustc_hash::FxHashMap<PoolKey, Vec<Conn>>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// What a kept connection can be reused for: its endpoint, protocol and send timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    endpoint: SocketAddr,
    protocol: Protocol,
    send_timeout: Duration,
}

/// The proxy's state: the current table and the backend connections.
pub struct Proxy {
    table: RwLock<Arc<RouteTable>>,
    /// `limit-rps` buckets: (ingress, client) -> (tokens, last refill).
    buckets: Mutex<HashMap<(NsName, IpAddr), (f64, Instant)>>,
    backend_tls: tokio_rustls::TlsConnector,
    config: ProxyConfig,
    /// What it has answered (`/metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: RwLock::new(Arc::new(RouteTable::default())),
            buckets: Mutex::new(HashMap::new()),
            backend_tls: crate::tls::backend_connector(),
            config,
            metrics: crate::metrics::Metrics::default(),
        })
    }

    /// Puts `table` in place of the current one (requests in flight keep theirs).
    pub fn swap(&self, table: RouteTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    pub(crate) fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers one request from `client` that came in over `scheme` on port `port`, and logs
    /// it (ingress-nginx's log format, on the `access` target).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: Peer,
        scheme: &'static str,
        port: u16,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let line = AccessLine::of(&req);
        let (response, upstream) = self.answer(req, &client, scheme, port).await;
        let took = started.elapsed();
        self.metrics
            .request(&upstream.target, response.status().as_u16(), took);
        line.log(&client, &response, upstream, took);
        Ok(response)
    }

    async fn answer(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        client: &Peer,
        scheme: &'static str,
        port: u16,
    ) -> (Response<Body>, Upstream) {
        let none = Upstream::default();
        // Two Host headers: which one is meant cannot be told (RFC 9112 section 3.2).
        if req.headers().get_all(HOST).iter().nth(1).is_some() {
            return (plain(StatusCode::BAD_REQUEST, "400 Bad Request\n"), none);
        }
        let table = self.table();
        let host = request_host(&req);
        let path = req.uri().path().to_string();
        let Some(matched) = table.route(&host, &path) else {
            return (
                plain(StatusCode::NOT_FOUND, "default backend - 404\n"),
                none,
            );
        };
        let defaults = Options::default();
        let options = matched.route.map_or(&defaults, |r| r.options.as_ref());
        let upstream = Upstream {
            target: match matched.route {
                Some(r) => r.target.clone(),
                None => Arc::new(crate::metrics::Target {
                    upstream: matched.backend.name(),
                    service: matched.backend.service_name(),
                    ..Default::default()
                }),
            },
            addr: None,
        };
        if let Some(allow) = &options.allow {
            if !allow
                .iter()
                .any(|net| crate::options::contains(*net, client.addr.ip()))
            {
                return (plain(StatusCode::FORBIDDEN, "403 Forbidden\n"), upstream);
            }
        }
        if scheme == "http" && matched.route.is_some_and(|r| r.https_redirect) {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            return (redirect(&format!("https://{host}{target}")), upstream);
        }
        if let (Some(cors), true) = (&options.cors, req.method() == Method::OPTIONS) {
            let mut r = plain(StatusCode::NO_CONTENT, "");
            cors_headers(r.headers_mut(), cors);
            return (r, upstream);
        }
        if let (Some(rps), Some(route)) = (options.limit_rps, matched.route) {
            if !self.take_token(&route.ingress, client.addr.ip(), rps) {
                return (
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "503 Service Temporarily Unavailable\n",
                    ),
                    upstream,
                );
            }
        }
        if let (Some(limit), Some(length)) = (options.body_limit, content_length(&req)) {
            if length > limit {
                return (
                    plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "413 Request Entity Too Large\n",
                    ),
                    upstream,
                );
            }
        }
        let mut endpoints = match matched.backend {
            Backend::Endpoints { .. } => matched.backend.endpoints_in_turn(),
            Backend::External { host, port, .. } => {
                match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(addrs) => addrs.collect(),
                    Err(e) => {
                        tracing::warn!("resolving ExternalName backend {host}: {e}");
                        Vec::new()
                    }
                }
            }
            Backend::Unavailable { .. } => Vec::new(),
        };
        if endpoints.is_empty() {
            return (
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable\n",
                ),
                upstream,
            );
        }
        // Session affinity: the endpoint the cookie names first, if it is still one.
        let mut set_cookie = None;
        if let Some(cookie) = &options.affinity_cookie {
            let wanted = cookie_value(&req, cookie);
            match wanted.and_then(|v| endpoints.iter().position(|e| endpoint_id(e) == v)) {
                Some(at) => endpoints.rotate_left(at),
                None => {
                    set_cookie = Some(format!(
                        "{cookie}={}; Path=/; HttpOnly",
                        endpoint_id(&endpoints[0])
                    ))
                }
            }
        }
        let rewritten = match (&options.rewrite, matched.route.map(|r| &r.path)) {
            (Some(target), Some(PathMatch::Regex(re, _))) => re.captures(&path).map(|c| {
                let mut to = crate::options::expand(target, &c);
                if let Some(q) = req.uri().query() {
                    to.push('?');
                    to.push_str(q);
                }
                to
            }),
            _ => None,
        };
        // A WebSocket (or other HTTP/1.1 upgrade): its own backend connection, then bytes both
        // ways once the backend agrees (101).
        let upgrade = upgrade_of(&req);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let upstream_req = match self.prepare(
            req,
            client,
            &host,
            scheme,
            port,
            rewritten,
            options.body_limit,
        ) {
            Ok(r) => r,
            Err(status) => return (plain(status, "400 Bad Request\n"), upstream),
        };
        let connect_timeout = options
            .connect_timeout
            .unwrap_or(self.config.connect_timeout);
        if let (Some(protocol), Some(client_upgrade)) = (upgrade, client_upgrade) {
            return self
                .upgrade(
                    upstream_req,
                    &protocol,
                    client_upgrade,
                    &endpoints,
                    options,
                    connect_timeout,
                    upstream,
                )
                .await;
        }
        let send_timeout = options.send_timeout.unwrap_or(self.config.send_timeout);
        let reached = self
            .first_reachable(&endpoints, &upstream.target, &host, &path, |endpoint| {
                let key = PoolKey {
                    endpoint,
                    protocol: options.protocol,
                    send_timeout,
                };
                async move {
                    self.connection(key, connect_timeout)
                        .await
                        .map(|c| (key, c))
                }
            })
            .await;
        let Some((key, mut conn)) = reached else {
            return (
                plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                upstream,
            );
        };
        let endpoint = key.endpoint;
        let upstream = Upstream {
            addr: Some(endpoint),
            ..upstream
        };
        let read_timeout = options.read_timeout.unwrap_or(self.config.read_timeout);
        let sent = tokio::time::timeout(read_timeout, conn.send(upstream_req)).await;
        let response = match sent {
            Err(_) => {
                self.metrics.upstream_error(&upstream.target, "timeout");
                return (
                    plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
                    upstream,
                );
            }
            Ok(Err(e)) => {
                if too_large(&e) {
                    return (
                        plain(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "413 Request Entity Too Large\n",
                        ),
                        upstream,
                    );
                }
                if timed_out(&e) {
                    // proxy-send-timeout: the backend stopped taking the request.
                    self.metrics.upstream_error(&upstream.target, "timeout");
                    return (
                        plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
                        upstream,
                    );
                }
                self.metrics.upstream_error(&upstream.target, "broken");
                tracing::warn!("{endpoint} for {host}{path}: {e}");
                return (
                    plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                    upstream,
                );
            }
            Ok(Ok(r)) => r,
        };
        // An HTTP/2 connection takes more requests at once; an HTTP/1.1 one only once this
        // response's body has been read to its end (the body gives it back then).
        let (mut parts, body) = response.into_parts();
        let body = match conn {
            Conn::H2(_) => {
                self.keep(key, conn);
                body.boxed()
            }
            Conn::H1(_) => Returning {
                inner: body,
                back: Some((self.clone(), key, conn)),
            }
            .boxed(),
        };
        strip_hop_by_hop(&mut parts.headers);
        if let Some(cors) = &options.cors {
            cors_headers(&mut parts.headers, cors);
        }
        if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            parts.headers.append(hyper::header::SET_COOKIE, c);
        }
        (Response::from_parts(parts, body), upstream)
    }

    /// Sends an upgrade request on a connection of its own; on 101, joins the client's and
    /// the backend's upgraded connections and copies bytes both ways until either closes.
    #[allow(clippy::too_many_arguments)]
    async fn upgrade(
        &self,
        mut req: Request<UpBody>,
        protocol: &HeaderValue,
        client_upgrade: hyper::upgrade::OnUpgrade,
        endpoints: &[SocketAddr],
        options: &Options,
        connect_timeout: Duration,
        upstream: Upstream,
    ) -> (Response<Body>, Upstream) {
        req.headers_mut().insert(
            hyper::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        req.headers_mut()
            .insert(hyper::header::UPGRADE, protocol.clone());
        let reached = self
            .first_reachable(
                endpoints,
                &upstream.target,
                "an upgrade",
                "",
                |endpoint| async move {
                    self.upgradable(endpoint, options.protocol, connect_timeout)
                        .await
                        .map(|s| (endpoint, s))
                },
            )
            .await;
        let Some((endpoint, mut sender)) = reached else {
            return (
                plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                upstream,
            );
        };
        let upstream = Upstream {
            addr: Some(endpoint),
            ..upstream
        };
        let read_timeout = options.read_timeout.unwrap_or(self.config.read_timeout);
        let mut response = match tokio::time::timeout(read_timeout, sender.send_request(req)).await
        {
            Err(_) => {
                self.metrics.upstream_error(&upstream.target, "timeout");
                return (
                    plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
                    upstream,
                );
            }
            Ok(Err(e)) => {
                self.metrics.upstream_error(&upstream.target, "broken");
                tracing::warn!("{endpoint} upgrade: {e}");
                return (
                    plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
                    upstream,
                );
            }
            Ok(Ok(r)) => r,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                    (Ok(c), Ok(b)) => (c, b),
                    (c, b) => {
                        tracing::debug!(
                            "upgrade to {endpoint} not completed: client {:?}, backend {:?}",
                            c.err(),
                            b.err()
                        );
                        return;
                    }
                };
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                    tracing::debug!("upgraded connection to {endpoint}: {e}");
                }
            });
        }
        let (parts, body) = response.into_parts();
        (Response::from_parts(parts, body.boxed()), upstream)
    }

    /// What `connect` makes of the first of `endpoints` it reaches, trying at most
    /// [`ProxyConfig::tries`] of them in order; each failure counted (`connect`) and logged as
    /// connecting for `host` `path`.
    async fn first_reachable<T, F, Fut>(
        &self,
        endpoints: &[SocketAddr],
        target: &crate::metrics::Target,
        host: &str,
        path: &str,
        connect: F,
    ) -> Option<T>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<T>>,
    {
        for endpoint in endpoints.iter().take(self.config.tries.max(1)) {
            match connect(*endpoint).await {
                Ok(reached) => return Some(reached),
                Err(e) => {
                    self.metrics.upstream_error(target, "connect");
                    tracing::warn!("connecting to {endpoint} for {host}{path}: {e}");
                }
            }
        }
        None
    }

    /// A new HTTP/1.1 connection to `endpoint` that can be upgraded.
    async fn upgradable(
        &self,
        endpoint: SocketAddr,
        protocol: Protocol,
        connect_timeout: Duration,
    ) -> std::io::Result<SendRequest<UpBody>> {
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let stream = connect(endpoint, connect_timeout).await?;
        if protocol == Protocol::Https {
            let name = rustls::pki_types::ServerName::IpAddress(endpoint.ip().into());
            let tls = tokio::time::timeout(connect_timeout, self.backend_tls.connect(name, stream))
                .await
                .map_err(|_| timed_out())??;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
            spawn_conn(endpoint, conn.with_upgrades());
            return Ok(sender);
        }
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        spawn_conn(endpoint, conn.with_upgrades());
        Ok(sender)
    }

    /// One token of `ingress`'s bucket for `client` (refilled at `rps` per second, holding at
    /// most five seconds' worth, as ingress-nginx's burst multiplier).
    fn take_token(&self, ingress: &NsName, client: IpAddr, rps: u32) -> bool {
        let now = Instant::now();
        let burst = f64::from(rps) * 5.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let (tokens, at) = buckets
            .entry((ingress.clone(), client))
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * f64::from(rps)).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The request as the backend gets it: origin-form URI (rewritten if asked), hop-by-hop
    /// headers out, `Host` kept (set from the URI for HTTP/2 clients), forwarding headers set,
    /// the body limited to `limit` bytes.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        req: Request<Incoming>,
        client: &Peer,
        host: &str,
        scheme: &'static str,
        port: u16,
        rewritten: Option<String>,
        limit: Option<u64>,
    ) -> Result<Request<UpBody>, StatusCode> {
        let (mut parts, body) = req.into_parts();
        // An origin-form target (HTTP/1.1's usual) goes as it came; an absolute-form one, or
        // HTTP/2's, loses its scheme and authority (the authority becomes `Host`).
        if !parts.headers.contains_key(HOST) {
            let value = parts
                .uri
                .authority()
                .map_or(host, |a| a.as_str())
                .to_string();
            parts.headers.insert(
                HOST,
                HeaderValue::from_str(&value).map_err(|_| StatusCode::BAD_REQUEST)?,
            );
        }
        match rewritten {
            Some(t) => parts.uri = t.parse::<Uri>().map_err(|_| StatusCode::BAD_REQUEST)?,
            None if parts.uri.scheme().is_some() || parts.uri.authority().is_some() => {
                let origin = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                parts.uri = origin.parse::<Uri>().map_err(|_| StatusCode::BAD_REQUEST)?;
            }
            None => {}
        }
        strip_hop_by_hop(&mut parts.headers);
        let h = &mut parts.headers;
        h.insert(
            HeaderName::from_static("x-forwarded-for"),
            client.ip.clone(),
        );
        h.insert(HeaderName::from_static("x-real-ip"), client.ip.clone());
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(scheme),
        );
        // The client's own never goes on, even when the host cannot be one.
        h.remove(HeaderName::from_static("x-forwarded-host"));
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
        h.insert(
            HeaderName::from_static("x-forwarded-port"),
            HeaderValue::from(port),
        );
        let body: UpBody = match limit {
            Some(n) => {
                http_body_util::Limited::new(body, usize::try_from(n).unwrap_or(usize::MAX)).boxed()
            }
            None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
        };
        Ok(Request::from_parts(parts, body))
    }

    /// An idle kept-alive connection to `endpoint`, or a new one.
    async fn connection(&self, key: PoolKey, connect_timeout: Duration) -> std::io::Result<Conn> {
        let PoolKey {
            endpoint,
            protocol,
            send_timeout,
        } = key;
        // The first ready one of this thread's; closed ones are dropped, busy ones (a
        // response still streaming) stay for later.
        let found = IDLE.with_borrow_mut(|pool| {
            let list = pool.get_mut(&key)?;
            list.retain(|c| !c.closed());
            let at = list.iter().rposition(Conn::ready)?;
            Some(list.swap_remove(at))
        });
        if let Some(c) = found {
            return Ok(c);
        }
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
        let stream = connect(endpoint, connect_timeout).await?;
        let stream = SendTimeout::new(stream, send_timeout);
        match protocol {
            Protocol::Http => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
                spawn_conn(endpoint, conn);
                Ok(Conn::H1(sender))
            }
            Protocol::Https => {
                let name = rustls::pki_types::ServerName::IpAddress(endpoint.ip().into());
                let tls =
                    tokio::time::timeout(connect_timeout, self.backend_tls.connect(name, stream))
                        .await
                        .map_err(|_| timed_out())??;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(std::io::Error::other)?;
                spawn_conn(endpoint, conn);
                Ok(Conn::H1(sender))
            }
            Protocol::Grpc => {
                let (sender, conn) = hyper::client::conn::http2::handshake(
                    TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .map_err(std::io::Error::other)?;
                spawn_conn(endpoint, conn);
                Ok(Conn::H2(sender))
            }
        }
    }

    /// Keeps a connection for a later request to `endpoint` (one whose response is still
    /// streaming is skipped until it is ready again).
    fn keep(&self, key: PoolKey, conn: Conn) {
        let max = self.config.idle_per_endpoint;
        IDLE.with_borrow_mut(|pool| {
            let list = pool.entry(key).or_default();
            if list.len() < max {
                list.push(conn);
            }
        });
    }
}

/// A new connection to `endpoint` (Nagle off), within `timeout`.
pub(crate) async fn connect(endpoint: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(endpoint))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn spawn_conn<F, E>(endpoint: SocketAddr, conn: F)
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("backend connection {endpoint}: {e}");
        }
    });
}

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection: upgrade` and `Upgrade`).
fn upgrade_of(req: &Request<Incoming>) -> Option<HeaderValue> {
    let asks = req
        .headers()
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    (asks && req.version() == hyper::Version::HTTP_11)
        .then(|| req.headers().get(hyper::header::UPGRADE).cloned())
        .flatten()
}

/// A client connection's peer: its address, and its address as text (`X-Forwarded-For`,
/// `X-Real-IP`, the access log), made once per connection rather than per request.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    ip: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let text = addr.ip().to_canonical().to_string();
        Peer {
            addr,
            ip: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("-")),
        }
    }

    pub(crate) fn text(&self) -> &str {
        self.ip.to_str().unwrap_or("-")
    }
}

/// A backend response's body that gives its HTTP/1.1 connection back to the pool once read
/// to the end (a body dropped before its end takes the connection with it: hyper closes it).
struct Returning {
    inner: Incoming,
    back: Option<(Arc<Proxy>, PoolKey, Conn)>,
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            if let Some((proxy, key, conn)) = self.back.take() {
                proxy.keep(key, conn);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a failed exchange failed because a write to the backend timed out.
fn timed_out(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A backend connection whose writes time out: a write that cannot proceed for `timeout` fails
/// (nginx's `proxy_send_timeout`: between two successive writes, not for the whole request).
struct SendTimeout<T> {
    inner: T,
    timeout: Duration,
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> SendTimeout<T> {
    fn new(inner: T, timeout: Duration) -> SendTimeout<T> {
        SendTimeout {
            inner,
            timeout,
            waiting: None,
        }
    }

    /// Ready(error) once a write has waited `timeout`; otherwise Pending (and the timer armed).
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match std::future::Future::poll(sleep.as_mut(), cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the backend took nothing for {timeout:?} (proxy-send-timeout)"),
            )),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for SendTimeout<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for SendTimeout<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => self.expired(cx).map(Err),
            done => {
                self.waiting = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Pending => self.expired(cx).map(Err),
            done => {
                self.waiting = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether a failed exchange failed because the request body passed its limit.
fn too_large(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An endpoint's affinity cookie value: a stable hash of its address.
fn endpoint_id(e: &SocketAddr) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in e.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn cookie_value<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn cors_headers(h: &mut hyper::HeaderMap, cors: &crate::options::Cors) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("access-control-allow-origin", &cors.allow_origin);
    set("access-control-allow-methods", &cors.allow_methods);
    set("access-control-allow-headers", &cors.allow_headers);
    if cors.allow_credentials {
        set("access-control-allow-credentials", "true");
    }
    set("access-control-max-age", &cors.max_age.to_string());
}

/// The backend a request went to, for the access log and the metrics.
#[derive(Default)]
pub(crate) struct Upstream {
    pub addr: Option<SocketAddr>,
    pub target: Arc<crate::metrics::Target>,
}

/// What the access log needs of the request, taken before it is sent on (cheap clones).
struct AccessLine {
    method: Method,
    uri: Uri,
    version: hyper::Version,
    referer: Option<HeaderValue>,
    agent: Option<HeaderValue>,
    length: u64,
}

impl AccessLine {
    fn of(req: &Request<Incoming>) -> AccessLine {
        AccessLine {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            referer: req.headers().get(hyper::header::REFERER).cloned(),
            agent: req.headers().get(hyper::header::USER_AGENT).cloned(),
            length: content_length(req).unwrap_or(0),
        }
    }

    fn log(&self, client: &Peer, response: &Response<Body>, upstream: Upstream, took: Duration) {
        let version = match self.version {
            hyper::Version::HTTP_10 => "HTTP/1.0",
            hyper::Version::HTTP_11 => "HTTP/1.1",
            hyper::Version::HTTP_2 => "HTTP/2.0",
            _ => "-",
        };
        let request = Logged {
            method: self.method.as_str(),
            target: self.uri.path_and_query().map_or("/", |p| p.as_str()),
            version,
            referer: self.referer.as_ref().map(HeaderValue::as_bytes),
            agent: self.agent.as_ref().map(HeaderValue::as_bytes),
            length: self.length,
        };
        let sent = hyper::body::Body::size_hint(response.body()).exact();
        access_log(
            &request,
            client,
            response.status().as_u16(),
            sent,
            &upstream,
            took,
        );
    }
}

/// What the access log shows of a request.
pub(crate) struct Logged<'a> {
    pub method: &'a str,
    /// The request target as sent (origin-form).
    pub target: &'a str,
    pub version: &'a str,
    pub referer: Option<&'a [u8]>,
    pub agent: Option<&'a [u8]>,
    /// `$request_length`: the body's length.
    pub length: u64,
}

/// One line in ingress-nginx's default log format (`$remote_addr - $remote_user [$time_local]
/// "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length
/// $request_time [$proxy_upstream_name] [] $upstream_addr`, without the fields weft does not
/// have), written to standard output as nginx writes its access log there in ingress-nginx's
/// image: one write per line, `kubectl logs` shows it. `sent` is the body's length when known.
/// Off with `WEFT_ACCESS_LOG=off`.
pub(crate) fn access_log(
    request: &Logged<'_>,
    client: &Peer,
    status: u16,
    sent: Option<u64>,
    upstream: &Upstream,
    took: Duration,
) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    if !access_log_on() {
        return;
    }
    // Quotes in what the client sent are escaped as nginx escapes them; a value that is not
    // visible ASCII is shown as missing.
    let quoted = |line: &mut String, v: Option<&[u8]>| match v
        .filter(|v| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        Some(text) => {
            for (i, part) in text.split('"').enumerate() {
                if i > 0 {
                    line.push_str("\\x22");
                }
                line.push_str(part);
            }
        }
        None => line.push('-'),
    };
    LINE.with_borrow_mut(|line| {
        line.clear();
        line.push_str(client.text());
        line.push_str(" - - [");
        time_local(line);
        line.push_str("] \"");
        line.push_str(request.method);
        line.push(' ');
        line.push_str(request.target);
        line.push(' ');
        line.push_str(request.version);
        let _ = write!(line, "\" {status} ");
        match sent {
            Some(n) => {
                let _ = write!(line, "{n}");
            }
            None => line.push('-'),
        }
        line.push_str(" \"");
        quoted(line, request.referer);
        line.push_str("\" \"");
        quoted(line, request.agent);
        // $request_time: seconds with milliseconds.
        let ms = took.as_millis();
        let _ = write!(
            line,
            "\" {} {}.{:03} [{}] [] ",
            request.length,
            ms / 1000,
            ms % 1000,
            upstream.target.upstream,
        );
        match upstream.addr {
            Some(a) => {
                let _ = write!(line, "{a}");
            }
            None => line.push('-'),
        }
        line.push('\n');
        if let Some(mut out) = access_out() {
            let _ = out.write_all(line.as_bytes());
        }
    });
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The second and its `$time_local` text.
    static NOW: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Where access log lines go: standard output, through a descriptor of its own so that a
/// line is one `write` with no lock: `std::io::stdout()` takes a process-wide lock that the
/// worker threads would wait for, and wake each other through, on every request. Lines are
/// short, and a log file is opened for appending: no line is split by another's.
fn access_out() -> Option<&'static std::fs::File> {
    static OUT: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        use std::os::fd::AsFd as _;
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Some(std::fs::File::from(fd)),
            Err(e) => {
                tracing::warn!("no access log: standard output cannot be duplicated: {e}");
                None
            }
        }
    })
    .as_ref()
}

fn access_log_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WEFT_ACCESS_LOG").map_or(true, |v| v != "off"))
}

/// nginx's `$time_local` in UTC (`30/Nov/2026:20:45:01 +0000`), formatted once a second.
fn time_local(out: &mut String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    NOW.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = weft_model::time::nginx_time_local(i64::try_from(secs).unwrap_or(i64::MAX));
        }
        out.push_str(text);
    });
}

/// The request's host without its port: the URI's authority (HTTP/2, absolute-form), else
/// the `Host` header.
fn request_host(req: &Request<Incoming>) -> String {
    let raw = req
        .uri()
        .host()
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or_default();
    strip_port(raw).to_ascii_lowercase()
}

pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Headers of one hop only, never forwarded either way (both proxy paths).
pub(crate) const HOP_BY_HOP: [HeaderName; 9] = [
    hyper::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    hyper::header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    if headers.contains_key(hyper::header::CONNECTION) {
        let named: Vec<String> = headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for name in named {
            headers.remove(name.as_str());
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// 308 Permanent Redirect to `location` (ingress-nginx's code for ssl-redirect: it keeps the
/// method and body).
fn redirect(location: &str) -> Response<Body> {
    let mut r = plain(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect\n");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

/// A response of the proxy's own.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves HTTP on `http` and HTTPS on `https` from `workers` threads, each with a runtime of
/// its own and its own listening sockets on both addresses (SO_REUSEPORT: the kernel spreads
/// connections over them), as nginx's worker processes: a request is served, and its backend
/// connection kept, on one thread. Binding errors are returned before any thread starts.
pub fn spawn_workers(
    http: SocketAddr,
    https: SocketAddr,
    proxy: Arc<Proxy>,
    tls: Arc<rustls::ServerConfig>,
    workers: usize,
) -> std::io::Result<()> {
    let mut sockets = Vec::new();
    for _ in 0..workers.max(1) {
        sockets.push((reuseport_listener(http)?, reuseport_listener(https)?));
    }
    for (i, (plain, secure)) in sockets.into_iter().enumerate() {
        let (proxy, tls) = (proxy.clone(), tls.clone());
        std::thread::Builder::new()
            .name(format!("ingress-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("ingress worker {i}: no runtime: {e}");
                        std::process::exit(1);
                    }
                };
                runtime.block_on(async move {
                    let (Ok(plain), Ok(secure)) =
                        (TcpListener::from_std(plain), TcpListener::from_std(secure))
                    else {
                        tracing::error!("ingress worker {i}: cannot use its listeners");
                        std::process::exit(1);
                    };
                    tokio::join!(
                        serve_http(plain, proxy.clone()),
                        serve_https(secure, proxy, tls)
                    );
                });
            })?;
    }
    Ok(())
}

/// A non-blocking listening socket on `addr` that other sockets may share (SO_REUSEPORT).
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves HTTPS on `listener` until the runtime stops: TLS by `tls` (certificates by SNI),
/// then HTTP/2 or HTTP/1.1 as ALPN chose.
pub async fn serve_https(listener: TcpListener, proxy: Arc<Proxy>, tls: Arc<rustls::ServerConfig>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accepting: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (proxy, acceptor) = (proxy.clone(), acceptor.clone());
        tokio::spawn(async move {
            // A client that never finishes its handshake is dropped.
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {client}: {e}");
                    return;
                }
                Err(_) => return,
            };
            // HTTP/2 by ALPN goes to hyper; HTTP/1.1 takes the bodiless fast path first.
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_connection(stream, Peer::new(client), proxy, "https", port).await;
            } else {
                crate::h1::serve(stream, Peer::new(client), proxy, "https", port).await;
            }
        });
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head may take this many bytes (nginx's large_client_header_buffers, 4 x 8k);
/// larger heads, or more than 100 header fields, get 431.
pub(crate) const MAX_HEAD: usize = 32 * 1024;

/// How client connections are served: HTTP/1.1 (with a timeout for the request head and a
/// bound on its size) or HTTP/2 by the client's preface.
fn server_builder(config: &ProxyConfig) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(MAX_HEAD.max(8192))
        .max_headers(100);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32);
    builder
}

/// Serves plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge) on `listener` until the
/// runtime stops.
pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(80);
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accepting: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(crate::h1::serve(
            stream,
            Peer::new(client),
            proxy.clone(),
            "http",
            port,
        ));
    }
}

/// Serves one client connection with hyper: HTTP/1.1 (upgrades too) or HTTP/2 by its preface.
pub(crate) async fn serve_connection<I>(
    io: I,
    peer: Peer,
    proxy: Arc<Proxy>,
    scheme: &'static str,
    port: u16,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = server_builder(&proxy.config);
    let client = peer.addr;
    let service = hyper::service::service_fn(move |req| {
        proxy.clone().handle(req, peer.clone(), scheme, port)
    });
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = served.await {
        tracing::debug!("client {client}: {e}");
    }
}

/// A connection whose first bytes were already read: they are read again first.
pub(crate) struct Rewind<T> {
    read: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(read: Bytes, inner: T) -> Rewind<T> {
        Rewind { read, inner }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let head = self.read.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_ports() {
        assert_eq!(strip_port("shop.example.com:8080"), "shop.example.com");
        assert_eq!(strip_port("shop.example.com"), "shop.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
