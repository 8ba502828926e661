//! The health check servers with real HTTP: inside a network namespace of the test's own (so
//! they can listen on every address, as on a node, and nothing outside sees them), views are
//! published the way the proxy reconciler publishes them, and plain TCP clients read the
//! answers: 200 with a local endpoint, 503 without, kube-proxy's headers and body; servers open
//! and close as Services come and go. Needs root (the namespace).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_dataplane::{Netlink, ScopedNetNs};
use weft_proxy::health;
use weft_proxy::{Endpoint, Protocol, ServicePortView};

fn view(name: &str, hc: u16, local: &[&str]) -> ServicePortView {
    let eps: Vec<Endpoint> = local
        .iter()
        .map(|ip| Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            node: Some("n1".into()),
        })
        .collect();
    ServicePortView {
        namespace: "shop".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        port: 80,
        cluster_ip: Some("10.96.0.5".parse().unwrap()),
        node_port: Some(31080),
        external_ips: vec!["198.51.100.1".parse().unwrap()],
        external_local: true,
        internal_local: false,
        affinity_timeout: None,
        endpoints: eps.clone(),
        local_endpoints: eps,
        terminating: false,
        health_check_node_port: Some(hc),
    }
}

/// One GET over a fresh connection: the whole response, or the connect error.
async fn get(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("read timed out"))??;
    Ok(out)
}

const GET: &str = "GET / HTTP/1.1\r\nHost: node\r\nUser-Agent: test\r\n\r\n";

/// Retries `get` until `ok` holds (servers open and close asynchronously), for up to 5 s.
async fn until(
    port: u16,
    ok: impl Fn(&std::io::Result<String>) -> bool,
) -> std::io::Result<String> {
    let start = Instant::now();
    loop {
        let r = get(port, GET).await;
        if ok(&r) || start.elapsed() > Duration::from_secs(5) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn health_check_servers_answer_like_kube_proxy_and_follow_the_views() {
    let ns = ScopedNetNs::create_unique("wph").expect("create netns");
    ns.run(|| {
        Netlink::open().unwrap().lo_up().unwrap();
        // A current-thread runtime: every socket is made on this thread, in the namespace.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = health::channel();
            let server = tokio::spawn(health::serve(rx, Ipv4Addr::UNSPECIFIED.into()));
            health::publish(
                &tx,
                &[
                    view("web", 30101, &["10.244.0.5"]),
                    view("idle", 30102, &[]),
                ],
            );

            let ok = until(30101, |r| r.is_ok()).await.unwrap();
            let (head, body) = ok.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
            assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{head}");
            assert_eq!(
                body,
                "{\n\t\"service\": {\n\t\t\"namespace\": \"shop\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
            );
            let idle = until(30102, |r| r.is_ok()).await.unwrap();
            assert!(idle.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{idle}");
            assert!(idle.contains("\"localEndpoints\": 0"), "{idle}");
            // HEAD: the head only; garbage: 400.
            let head_only = get(30101, "HEAD / HTTP/1.1\r\n\r\n").await.unwrap();
            assert!(head_only.starts_with("HTTP/1.1 200 OK") && head_only.ends_with("\r\n\r\n"));
            let bad = get(30101, "hello\r\n\r\n").await.unwrap();
            assert!(bad.starts_with("HTTP/1.1 400 Bad Request"), "{bad}");

            // Endpoints move: web loses its local one, idle gains two; a Service goes away
            // and its port closes.
            health::publish(
                &tx,
                &[
                    view("idle", 30102, &["10.244.0.7", "10.244.0.8"]),
                    view("web", 30101, &[]),
                ],
            );
            let web = until(30101, |r| r.as_ref().is_ok_and(|s| s.contains(" 503 "))).await;
            assert!(web.unwrap().contains("\"localEndpoints\": 0"));
            let idle = until(30102, |r| r.as_ref().is_ok_and(|s| s.contains(" 200 "))).await;
            assert!(idle.unwrap().contains("\"localEndpoints\": 2"));
            health::publish(&tx, &[view("idle", 30102, &["10.244.0.7"])]);
            // (A connection caught in the closing listener's backlog is reset: wait for the
            // refusal that says nothing listens.)
            let refused = |r: &std::io::Result<String>| {
                r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
            };
            assert!(refused(&until(30101, refused).await), "web's port closed");
            // A Service whose port changes moves to the new one.
            health::publish(&tx, &[view("idle", 30103, &["10.244.0.7"])]);
            assert!(until(30103, |r| r.is_ok()).await.unwrap().contains(" 200 "));
            assert!(refused(&until(30102, refused).await), "idle's old port closed");

            drop(tx);
            tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .expect("serve ends when the proxy's sender goes")
                .unwrap();
        });
    })
    .unwrap();
}
