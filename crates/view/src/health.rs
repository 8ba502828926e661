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
        route(head, &readiness, &routes)
    })
    .await;
}

/// The answer to a request head: an extra route's, else the health endpoints'.
fn route(
    head: &[u8],
    readiness: &Readiness,
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
            let (status, body) = answer(head, readiness);
            (status, TEXT, body)
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// A small plain-text HTTP server on every address: `respond` turns the request's head into a
/// status line and a body (`text/plain`), one request per connection. For health, readiness and
/// metrics endpoints, nothing more.
pub async fn serve_text<F>(port: u16, what: &str, respond: F)
where
    F: Fn(&[u8]) -> (&'static str, String) + Send + Sync + 'static,
{
    serve_http(port, what, move |head| {
        let (status, body) = respond(head);
        (status, TEXT, body)
    })
    .await;
}

/// [`serve_text`] with the content type chosen per answer; `respond` runs on the blocking pool.
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
            route(b"GET /policy HTTP/1.1\r\n", &r, &routes),
            ("200 OK", "application/json", "{\"query\":\"\"}".to_string())
        );
        assert_eq!(
            route(b"GET /policy?since=3 HTTP/1.1\r\n", &r, &routes).2,
            "{\"query\":\"since=3\"}"
        );
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n", &r, &routes).1, TEXT);
        assert_eq!(
            route(b"GET /policyx HTTP/1.1\r\n", &r, &routes).0,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /policy HTTP/1.1\r\n", &r, &routes).0,
            "405 Method Not Allowed"
        );
    }
}
