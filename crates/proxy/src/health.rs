//! Service health checks for load balancers, as kube-proxy's service health server
//! (`pkg/proxy/healthcheck/service_health.go`) answers them: a LoadBalancer Service with
//! `externalTrafficPolicy: Local` gets a `healthCheckNodePort`, and on every node an HTTP server
//! on that port answers 200 when the node has a ready endpoint of the Service and 503 when it
//! has none, with the count in a small JSON body. A load balancer probing it sends traffic only
//! to nodes that can serve it without a second hop, which is what keeps the client's address.
//!
//! Two halves: [`checks`] is pure (the proxy's loaded [`ServicePortView`]s in, one
//! [`HealthCheck`] per Service out, with its port and local ready endpoint count), and
//! [`serve`] is the tokio side: it follows a [`watch`] channel the proxy reconciler publishes to
//! after each successful sync ([`HealthState`]), opens a listener per Service as it appears,
//! closes it as it goes, and answers every request from the latest state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ServicePortView;

/// How long after its last successful sync the proxy still calls itself healthy
/// (`serviceProxyHealthy`): kube-proxy's default, twice its 30 s sync period. Ours syncs at
/// least every 10 s, so a proxy that has not synced for a minute is stuck.
pub const PROXY_HEALTHY_WITHIN: Duration = Duration::from_secs(60);
/// The most a request head may take; a health check's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One Service's health check on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    /// The Service's `healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints of the Service on this node (distinct addresses over all its ports, as
    /// kube-proxy counts them; terminating ones do not count).
    pub local_endpoints: usize,
}

/// The health checks `views` (this node's service-port views) ask for, one per Service that has
/// a health check node port, sorted by namespace and name.
pub fn checks<'a>(views: impl IntoIterator<Item = &'a ServicePortView>) -> Vec<HealthCheck> {
    let mut by_service: BTreeMap<(&str, &str), (u16, BTreeSet<Ipv4Addr>)> = BTreeMap::new();
    for v in views {
        let Some(port) = v.health_check_node_port else {
            continue;
        };
        let (_, local) = by_service
            .entry((v.namespace.as_str(), v.name.as_str()))
            .or_insert_with(|| (port, BTreeSet::new()));
        if !v.terminating {
            local.extend(v.local_endpoints.iter().map(|e| e.ip));
        }
    }
    by_service
        .into_iter()
        .map(|((namespace, name), (port, local))| HealthCheck {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port,
            local_endpoints: local.len(),
        })
        .collect()
}

/// What the proxy reconciler publishes after each successful sync.
#[derive(Clone, Debug)]
pub struct HealthState {
    pub checks: Vec<HealthCheck>,
    /// When the proxy last loaded its rules successfully.
    pub synced_at: Instant,
}

impl HealthState {
    fn proxy_healthy(&self) -> bool {
        self.synced_at.elapsed() < PROXY_HEALTHY_WITHIN
    }
}

/// The channel between the proxy reconciler (sender) and [`serve`] (receiver). It starts with
/// no checks: nothing is served before the first sync.
pub fn channel() -> (watch::Sender<HealthState>, watch::Receiver<HealthState>) {
    watch::channel(HealthState {
        checks: Vec::new(),
        synced_at: Instant::now(),
    })
}

/// Records a successful sync of `views` on `tx`: waiters are woken only when the checks
/// changed, but the sync time is always fresh for the next answer.
pub fn publish<'a>(
    tx: &watch::Sender<HealthState>,
    views: impl IntoIterator<Item = &'a ServicePortView>,
) {
    let fresh = checks(views);
    tx.send_if_modified(|state| {
        state.synced_at = Instant::now();
        if state.checks == fresh {
            return false;
        }
        state.checks = fresh;
        true
    });
}

/// An HTTP answer: status and JSON body, byte for byte kube-proxy's (Go's `%q` of a Kubernetes
/// name is the name in quotes; the layout is its dedented template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What the health check of `check` answers; `proxy_healthy` is whether the proxy syncs.
pub fn answer(check: &HealthCheck, proxy_healthy: bool) -> Answer {
    let status = if check.local_endpoints != 0 && proxy_healthy {
        200
    } else {
        503
    };
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        json_string(&check.namespace),
        json_string(&check.name),
        check.local_endpoints,
        proxy_healthy
    );
    Answer { status, body }
}

/// A JSON string literal. Kubernetes names need no escaping; this is for safety, not for
/// kube-proxy parity.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The request line of an HTTP/1.x request head, as far as a health check needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub target: &'a str,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is not complete")]
    Incomplete,
    #[error("the request line is not \"METHOD TARGET HTTP/1.x\"")]
    BadRequestLine,
}

/// Parses a request head (everything up to the blank line). Any method and any path is
/// answered, as kube-proxy's handler does; only a malformed request line is refused.
pub fn parse_head(bytes: &[u8]) -> Result<RequestHead<'_>, HeadError> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HeadError::Incomplete)?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| HeadError::BadRequestLine)?;
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && !target.is_empty()
                && (version == "HTTP/1.1" || version == "HTTP/1.0") =>
        {
            Ok(RequestHead { method, target })
        }
        _ => Err(HeadError::BadRequestLine),
    }
}

/// Serves every health check `rx` names until the sender is dropped: one listener per Service
/// on `bind:port` (the agent passes 0.0.0.0, every address of its node, as kube-proxy does).
/// A port that cannot be bound (someone else holds it) is logged and retried at the next change.
pub async fn serve(mut rx: watch::Receiver<HealthState>, bind: IpAddr) {
    let mut running: BTreeMap<(String, String), (u16, JoinHandle<()>)> = BTreeMap::new();
    loop {
        let wanted: BTreeMap<(String, String), u16> = rx
            .borrow_and_update()
            .checks
            .iter()
            .map(|c| ((c.namespace.clone(), c.name.clone()), c.port))
            .collect();
        running.retain(|key, (port, task)| {
            let keep = wanted.get(key) == Some(port) && !task.is_finished();
            if !keep {
                let port = *port;
                tracing::info!(service = %format!("{}/{}", key.0, key.1), port, "closing health check");
                task.abort();
            }
            keep
        });
        for (key, port) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            match TcpListener::bind(SocketAddr::new(bind, port)).await {
                Ok(listener) => {
                    tracing::info!(service = %format!("{}/{}", key.0, key.1), port, "serving health check");
                    let task = tokio::spawn(accept(listener, key.clone(), rx.clone()));
                    running.insert(key, (port, task));
                }
                Err(e) => tracing::error!(
                    service = %format!("{}/{}", key.0, key.1),
                    "cannot serve the health check on port {port}: {e}"
                ),
            }
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

async fn accept(listener: TcpListener, key: (String, String), rx: watch::Receiver<HealthState>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(respond(stream, key.clone(), rx.clone()));
            }
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!("health check accept on {:?}: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, key: (String, String), rx: watch::Receiver<HealthState>) {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            match parse_head(&buf) {
                Err(HeadError::Incomplete) if buf.len() < MAX_HEAD => {}
                other => return other.map(|h| h.method == "HEAD"),
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(HeadError::Incomplete),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let (status, body, head_only) = match head {
        Ok(Ok(head_only)) => {
            let found = {
                let state = rx.borrow();
                state
                    .checks
                    .iter()
                    .find(|c| c.namespace == key.0 && c.name == key.1)
                    .map(|c| answer(c, state.proxy_healthy()))
            };
            // Closed between accept and answer: kube-proxy answers nothing either.
            let Some(a) = found else { return };
            (a.status, a.body, head_only)
        }
        Ok(Err(HeadError::BadRequestLine)) => (400, String::new(), false),
        // Timed out or closed before a whole head: nothing to answer.
        _ => return,
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    // A client that went away gets nothing; there is no one to tell.
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Endpoint, Protocol};

    fn view(name: &str, port_name: &str, hc: Option<u16>, local: &[&str]) -> ServicePortView {
        let eps: Vec<Endpoint> = local
            .iter()
            .map(|ip| Endpoint {
                ip: ip.parse().unwrap(),
                port: 8080,
                node: Some("n1".into()),
            })
            .collect();
        ServicePortView {
            namespace: "default".into(),
            name: name.into(),
            port_name: port_name.into(),
            protocol: Protocol::Tcp,
            port: 80,
            cluster_ip: Some("10.96.0.5".parse().unwrap()),
            node_port: Some(30080),
            external_ips: vec!["198.51.100.1".parse().unwrap()],
            external_local: hc.is_some(),
            internal_local: false,
            affinity_timeout: None,
            endpoints: eps.clone(),
            local_endpoints: eps,
            terminating: false,
            health_check_node_port: hc,
        }
    }

    #[test]
    fn one_check_per_health_checked_service_counting_distinct_ready_local_addresses() {
        let views = [
            view("web", "http", Some(30001), &["10.244.0.5"]),
            view("web", "https", Some(30001), &["10.244.0.5", "10.244.0.6"]),
            view("cluster", "http", None, &["10.244.0.7"]),
            view("empty", "http", Some(30002), &[]),
            ServicePortView {
                terminating: true,
                ..view("draining", "http", Some(30003), &["10.244.0.8"])
            },
        ];
        let got = checks(&views);
        let show: Vec<(&str, u16, usize)> = got
            .iter()
            .map(|c| (c.name.as_str(), c.port, c.local_endpoints))
            .collect();
        assert_eq!(
            show,
            [
                ("draining", 30003, 0),
                ("empty", 30002, 0),
                ("web", 30001, 2)
            ]
        );
    }

    #[test]
    fn answers_are_kube_proxys() {
        let check = HealthCheck {
            namespace: "default".into(),
            name: "web".into(),
            port: 30001,
            local_endpoints: 1,
        };
        let a = answer(&check, true);
        assert_eq!(a.status, 200);
        assert_eq!(
            a.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let none = HealthCheck {
            local_endpoints: 0,
            ..check.clone()
        };
        assert_eq!(answer(&none, true).status, 503);
        let stuck = answer(&check, false);
        assert_eq!(
            stuck.status, 503,
            "a proxy that stopped syncing fails its checks"
        );
        assert!(stuck.body.contains("\"serviceProxyHealthy\": false"));
    }

    #[test]
    fn request_heads_parse_or_say_why() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(RequestHead {
                method: "GET",
                target: "/"
            })
        );
        assert_eq!(
            parse_head(b"HEAD /healthz HTTP/1.0\r\n\r\n").map(|h| h.method),
            Ok("HEAD")
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost"),
            Err(HeadError::Incomplete)
        );
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"\xff / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad), Err(HeadError::BadRequestLine), "{bad:?}");
        }
    }

    #[test]
    fn publish_wakes_only_on_changed_checks_but_always_refreshes_the_sync_time() {
        let (tx, mut rx) = channel();
        let views = [view("web", "http", Some(30001), &["10.244.0.5"])];
        publish(&tx, &views);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        let before = rx.borrow().synced_at;
        std::thread::sleep(Duration::from_millis(5));
        publish(&tx, &views);
        assert!(!rx.has_changed().unwrap(), "same checks: no wake-up");
        assert!(rx.borrow().synced_at > before);
    }
}
