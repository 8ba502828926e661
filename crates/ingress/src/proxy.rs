//! The proxy: HTTP/1.1 and HTTP/2 (by the client's preface) served with hyper, each request
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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::routes::{Backend, RouteTable};

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
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            tries: 3,
            idle_per_endpoint: 64,
        }
    }
}

/// The proxy's state: the current table and the backend connections.
pub struct Proxy {
    table: RwLock<Arc<RouteTable>>,
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
    config: ProxyConfig,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Proxy> {
        Arc::new(Proxy {
            table: RwLock::new(Arc::new(RouteTable::default())),
            idle: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// Puts `table` in place of the current one (requests in flight keep theirs).
    pub fn swap(&self, table: RouteTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers one request from `client` that came in over `scheme` on port `port`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        scheme: &'static str,
        port: u16,
    ) -> Result<Response<Body>, Infallible> {
        let table = self.table();
        let host = request_host(&req);
        let path = req.uri().path().to_string();
        let Some(matched) = table.route(&host, &path) else {
            return Ok(plain(StatusCode::NOT_FOUND, "default backend - 404\n"));
        };
        if scheme == "http" && matched.route.is_some_and(|r| r.https_redirect) {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            return Ok(redirect(&format!("https://{host}{target}")));
        }
        let endpoints = match matched.backend {
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
            return Ok(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Temporarily Unavailable\n",
            ));
        }
        let upstream = match self.prepare(req, client, &host, scheme, port) {
            Ok(r) => r,
            Err(status) => return Ok(plain(status, "bad request\n")),
        };
        let mut sender = None;
        for endpoint in endpoints.iter().take(self.config.tries.max(1)) {
            match self.connection(*endpoint).await {
                Ok(s) => {
                    sender = Some((*endpoint, s));
                    break;
                }
                Err(e) => tracing::warn!("connecting to {endpoint} for {host}{path}: {e}"),
            }
        }
        let Some((endpoint, mut sender)) = sender else {
            return Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
        };
        let sent =
            tokio::time::timeout(self.config.read_timeout, sender.send_request(upstream)).await;
        let response = match sent {
            Err(_) => return Ok(plain(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n")),
            Ok(Err(e)) => {
                tracing::warn!("{endpoint} for {host}{path}: {e}");
                return Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
            }
            Ok(Ok(r)) => r,
        };
        self.keep(endpoint, sender);
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }

    /// The request as the backend gets it: origin-form URI, hop-by-hop headers out, `Host`
    /// kept (set from the URI for HTTP/2 clients), forwarding headers set.
    fn prepare(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        host: &str,
        scheme: &'static str,
        port: u16,
    ) -> Result<Request<Incoming>, StatusCode> {
        let (mut parts, body) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.to_string());
        let origin = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse::<Uri>()
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        parts.uri = origin;
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        if !parts.headers.contains_key(HOST) {
            let value = authority.unwrap_or_else(|| host.to_string());
            parts.headers.insert(
                HOST,
                HeaderValue::from_str(&value).map_err(|_| StatusCode::BAD_REQUEST)?,
            );
        }
        let ip = client.ip().to_string();
        let set = |h: &mut hyper::HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set(&mut parts.headers, "x-forwarded-for", &ip);
        set(&mut parts.headers, "x-real-ip", &ip);
        set(&mut parts.headers, "x-forwarded-proto", scheme);
        set(&mut parts.headers, "x-forwarded-host", host);
        set(&mut parts.headers, "x-forwarded-port", &port.to_string());
        Ok(Request::from_parts(parts, body))
    }

    /// An idle kept-alive connection to `endpoint`, or a new one.
    async fn connection(&self, endpoint: SocketAddr) -> std::io::Result<SendRequest<Incoming>> {
        loop {
            let idle = {
                let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                pool.get_mut(&endpoint).and_then(Vec::pop)
            };
            match idle {
                Some(s) if s.is_ready() => return Ok(s),
                // Busy (its last response still streaming) or closed: not for this request.
                Some(s) if !s.is_closed() => {
                    self.keep(endpoint, s);
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        let stream =
            tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(endpoint))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("backend connection {endpoint}: {e}");
            }
        });
        Ok(sender)
    }

    /// Keeps a connection for a later request to `endpoint` (one whose response is still
    /// streaming is skipped until it is ready again).
    fn keep(&self, endpoint: SocketAddr, sender: SendRequest<Incoming>) {
        let mut pool = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = pool.entry(endpoint).or_default();
        if list.len() < self.config.idle_per_endpoint {
            list.insert(0, sender);
        }
    }
}

/// The request's host without its port: the URI's authority (HTTP/2, absolute-form), else
/// the `Host` header.
fn request_host(req: &Request<Incoming>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    strip_port(&raw).to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(name.as_str());
    }
    headers.remove(hyper::header::UPGRADE);
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
            let service = hyper::service::service_fn(move |req| {
                proxy.clone().handle(req, client, "https", port)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("client {client}: {e}");
            }
        });
    }
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                proxy.clone().handle(req, client, "http", port)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("client {client}: {e}");
            }
        });
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
