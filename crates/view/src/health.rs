//! A reconciling process's own health endpoints, as kube-proxy serves `/healthz`: `/healthz`
//! answers 200 while the process runs; `/readyz` answers 200 once every reconciler has synced
//! once and 503 naming the ones still pending before. For the agent that means the node's
//! routes, egress and Service table are in place: the DaemonSet's readiness probe reads
//! `/readyz`, so "the agent pod is Ready" means the node is wired, and `weft lab up --wait` (or
//! a rollout) waits for exactly that. The controller serves the same. A process may add
//! endpoints of its own ([`Route`]: the agent's `/policy`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::reconciler::Readiness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves until the runtime stops; a port that cannot be bound is logged (the agent still
/// works, its probe fails and says so).
pub async fn serve(port: u16, readiness: Arc<Readiness>) {
    serve_routes(port, readiness, Vec::new()).await;
}

/// An extra endpoint of a process's health server, beside `/healthz` and `/readyz`: a GET of
/// `path` (with any query) answers what `answer` returns for the query (the text after `?`,
/// empty without one), with `content_type`. The answer may block (the agent's `/policy` reads
/// the kernel's counters): it runs on tokio's blocking pool.
#[derive(Clone)]
pub struct Route {
    pub path: &'static str,
    pub content_type: &'static str,
    pub answer: Answer,
}

/// What a [`Route`] answers for a query: a status line and a body.
pub type Answer = Arc<dyn Fn(&str) -> (&'static str, String) + Send + Sync>;

/// [`serve`] with extra endpoints.
pub async fn serve_routes(port: u16, readiness: Arc<Readiness>, routes: Vec<Route>) {
    serve_http(port, "health endpoints", move |head| {
        route(head, Some(&readiness), &routes)
    })
    .await;
}

/// `GET path?since=SEQ` answering what `after(SEQ)` returns (0 without a query), as JSON: the
/// records of a ring after the last one the reader has (the agent's `/flows`, the DNS pods'
/// `/lookups`).
pub fn json_since<T, F>(path: &'static str, after: F) -> Route
where
    T: serde::Serialize,
    F: Fn(u64) -> T + Send + Sync + 'static,
{
    Route {
        path,
        content_type: "application/json",
        answer: Arc::new(move |query: &str| {
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            match serde_json::to_string(&after(since)) {
                Ok(json) => ("200 OK", json),
                Err(e) => ("500 Internal Server Error", format!("{e}\n")),
            }
        }),
    }
}

/// A server of `routes` alone (anything else is not found), as the DNS pods serve `/metrics`
/// and `/lookups` on their metrics port.
pub async fn serve_only(port: u16, what: &str, routes: Vec<Route>) {
    serve_http(port, what, move |head| route(head, None, &routes)).await;
}

/// The answer to a request head: an extra route's, else the health endpoints' (when served).
fn route(
    head: &[u8],
    readiness: Option<&Readiness>,
    routes: &[Route],
) -> (&'static str, &'static str, String) {
    let target = request_path(head).unwrap_or_default();
    let (path, query) = match target.iter().position(|b| *b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &[][..]),
    };
    match routes.iter().find(|r| path == r.path.as_bytes()) {
        Some(route) => {
            let (status, body) = (route.answer)(&String::from_utf8_lossy(query));
            (status, route.content_type, body)
        }
        None => {
            let (status, body) = match readiness {
                Some(readiness) => answer(head, readiness),
                None if request_path(head).is_none() => {
                    ("405 Method Not Allowed", "only GET\n".into())
                }
                None => ("404 Not Found", "not found\n".into()),
            };
            (status, TEXT, body)
        }
    }
}

/// The longest answer [`get`] reads.
const RESPONSE_MAX: u64 = 32 << 20;

/// One `GET path` over `stream` to the server at `addr`, which closes the connection after
/// answering (as these servers do): the status code and the body. Blocking, each read and
/// write within `timeout`.
pub fn get(
    mut stream: std::net::TcpStream,
    addr: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    // At most RESPONSE_MAX: these answers are pages of a ring, never larger.
    stream.take(RESPONSE_MAX).read_to_end(&mut response)?;
    parse_response(&response).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{addr} answered something other than HTTP/1.1 text"),
        )
    })
}

/// The status code and body of a whole HTTP/1.1 response.
fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

const TEXT: &str = "text/plain; charset=utf-8";

/// A small HTTP server on every address: `respond` turns the request's head into a status
/// line, a content type and a body, one request per connection, on the blocking pool. For
/// health, readiness, metrics and ring endpoints, nothing more.
async fn serve_http<F>(port: u16, what: &str, respond: F)
where
    F: Fn(&[u8]) -> (&'static str, &'static str, String) + Send + Sync + 'static,
{
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("{what}: binding {addr}: {e}");
            return;
        }
    };
    let respond = Arc::new(respond);
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let mut head = [0u8; 1024];
            let n = conn.read(&mut head).await.unwrap_or(0);
            let answered = tokio::task::spawn_blocking(move || respond(&head[..n])).await;
            let (status, content_type, body) = answered.unwrap_or_else(|_| {
                (
                    "500 Internal Server Error",
                    TEXT,
                    "the handler panicked\n".into(),
                )
            });
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

/// The path of a GET or HEAD request's head (None for other methods).
fn request_path(head: &[u8]) -> Option<&[u8]> {
    let line = head.split(|b| *b == b'\n').next()?;
    let mut words = line.split(|b| *b == b' ');
    let method = words.next()?;
    (method == b"GET" || method == b"HEAD")
        .then(|| words.next())
        .flatten()
}

/// The status line and body for a request head.
fn answer(head: &[u8], readiness: &Readiness) -> (&'static str, String) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method != b"GET" && method != b"HEAD" {
        return ("405 Method Not Allowed", "only GET\n".into());
    }
    match path {
        b"/healthz" => ("200 OK", "ok\n".into()),
        b"/readyz" if readiness.is_ready() => ("200 OK", "ok\n".into()),
        b"/readyz" => (
            "503 Service Unavailable",
            format!("not synced yet: {}\n", readiness.pending().join(", ")),
        ),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_every_reconciler_synced() {
        let r = Readiness::new();
        r.expect("net");
        assert_eq!(answer(b"GET /healthz HTTP/1.1\r\n", &r).0, "200 OK");
        let (status, body) = answer(b"GET /readyz HTTP/1.1\r\n", &r);
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("net"), "{body}");
        assert_eq!(
            answer(b"POST /readyz HTTP/1.1\r\n", &r).0,
            "405 Method Not Allowed"
        );
        assert_eq!(answer(b"GET /x HTTP/1.1\r\n", &r).0, "404 Not Found");
        assert_eq!(answer(b"", &r).0, "405 Method Not Allowed");
    }

    #[test]
    fn extra_routes_answer_their_path_only() {
        let r = Readiness::new();
        let routes = vec![Route {
            path: "/policy",
            content_type: "application/json",
            answer: Arc::new(|q: &str| ("200 OK", format!("{{\"query\":\"{q}\"}}"))),
        }];
        assert_eq!(
            route(b"GET /policy HTTP/1.1\r\n", Some(&r), &routes),
            ("200 OK", "application/json", "{\"query\":\"\"}".to_string())
        );
        assert_eq!(
            route(b"GET /policy?since=3 HTTP/1.1\r\n", Some(&r), &routes).2,
            "{\"query\":\"since=3\"}"
        );
        assert_eq!(
            route(b"GET /healthz HTTP/1.1\r\n", Some(&r), &routes).1,
            TEXT
        );
        assert_eq!(
            route(b"GET /policyx HTTP/1.1\r\n", Some(&r), &routes).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /policy HTTP/1.1\r\n", Some(&r), &routes).0,
            "405 Method Not Allowed"
        );
        // Served alone: only the routes.
        assert_eq!(
            route(b"GET /policy HTTP/1.1\r\n", None, &routes).0,
            "200 OK"
        );
        assert_eq!(
            route(b"GET /healthz HTTP/1.1\r\n", None, &routes).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /policy HTTP/1.1\r\n", None, &routes).0,
            "405 Method Not Allowed"
        );
    }

    #[test]
    fn responses_are_read() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}";
        assert_eq!(parse_response(ok), Some((200, "{}".to_string())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
