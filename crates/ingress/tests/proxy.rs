//! The proxy for real, on loopback: echo backends (each answers with what it received and its
//! own name), a route table compiled from a cluster view whose EndpointSlices point at them,
//! and `curl` as the client (HTTP/1.1, and HTTP/2 with prior knowledge). Checks routing by
//! host and path, taking endpoints in turn, retrying another endpoint when one refuses, 503
//! without endpoints, 404 without a match, the forwarding headers, and a table swap under an
//! open keep-alive connection. Needs no root: everything listens on 127.0.0.0/8.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use weft_ingress::proxy::{serve_http, Proxy, ProxyConfig};
use weft_ingress::{compile, Settings};
use weft_view::{ClusterView, Event};

/// The echo: JSON of what the request was, its body's length included.
async fn answer(
    req: Request<hyper::body::Incoming>,
    name: &'static str,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let (method, uri, version) = (
        req.method().to_string(),
        req.uri().to_string(),
        format!("{:?}", req.version()),
    );
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let body = json!({
        "server": name, "method": method, "uri": uri, "version": version,
        "headers": headers, "peer": peer.to_string(), "body_len": body_len,
    });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

/// An echo backend over HTTP/2 without TLS (what gRPC backends speak) at `addr`.
async fn echo_h2c(addr: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, name, peer));
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
            });
        }
    });
}

/// An echo backend over HTTPS (a self-signed certificate) at `addr`.
async fn echo_tls(addr: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["backend".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| answer(req, name, peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// An echo backend at `addr` named `name`: answers every request with JSON of what it got.
async fn echo(addr: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, name, peer));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Service `name` (port http:80) whose slice lists `ips` at `port`.
fn service(view: &mut ClusterView, name: &str, ips: &[&str], port: u16) {
    view.apply(Event::Apply(obj::<k8s_openapi::api::core::v1::Service>(
        json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}
        }),
    )));
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    view.apply(Event::Apply(obj::<
        k8s_openapi::api::discovery::v1::EndpointSlice,
    >(json!({
        "metadata": {"name": format!("{name}-1"), "namespace": "default", "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints
    }))));
}

fn ingress(view: &mut ClusterView, version: &str, rules: Value) {
    view.apply(Event::Apply(
        obj::<k8s_openapi::api::networking::v1::Ingress>(json!({
            "metadata": {"name": "site", "namespace": "default", "resourceVersion": version,
                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"rules": rules}
        })),
    ));
}

fn rule(host: &str, path: &str, svc: &str) -> Value {
    json!({"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix",
        "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}})
}

/// A free port on 127.0.0.2 and 127.0.0.3 alike.
fn shared_port() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// `curl` to the proxy at `proxy` for `http://host/path`: (status, body).
fn curl(proxy: SocketAddr, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("http://{host}:{}{path}", proxy.port());
    let resolve = format!("{host}:{}:{}", proxy.port(), proxy.ip());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(&url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

struct Setup {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    view: ClusterView,
}

async fn setup() -> Setup {
    let port = shared_port();
    echo(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port)), "a").await;
    echo(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 3), port)), "b").await;
    let other = shared_port();
    echo(
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), other)),
        "api",
    )
    .await;
    let mut view = ClusterView::new();
    // 127.0.0.9 listens on nothing: connecting there is refused, and the next is tried.
    service(
        &mut view,
        "web",
        &["127.0.0.2", "127.0.0.3", "127.0.0.9"],
        port,
    );
    service(&mut view, "api", &["127.0.0.2"], other);
    service(&mut view, "empty", &[], port);
    ingress(
        &mut view,
        "1",
        json!([
            rule("shop.example.com", "/", "web"),
            rule("shop.example.com", "/api", "api"),
            rule("shop.example.com", "/soon", "empty"),
        ]),
    );
    let proxy = Proxy::new(ProxyConfig::default());
    proxy.swap(compile(&view, &Settings::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(listener, proxy.clone()));
    Setup { proxy, addr, view }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_balances_retries_and_answers_for_itself() {
    let s = setup().await;
    let addr = s.addr;
    // Host and path choose the backend; the path and query go through unchanged.
    let (code, body) =
        blocking(move || curl(addr, "shop.example.com", "/api/users?x=1", &[])).await;
    assert_eq!(code, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["server"], "api");
    assert_eq!(got["uri"], "/api/users?x=1");
    // The forwarding headers, and Host kept.
    assert_eq!(
        got["headers"]["host"],
        format!("shop.example.com:{}", addr.port())
    );
    assert_eq!(got["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(got["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(got["headers"]["x-forwarded-proto"], "http");
    assert_eq!(got["headers"]["x-forwarded-host"], "shop.example.com");
    assert_eq!(got["headers"]["x-forwarded-port"], addr.port().to_string());
    // A client's X-Forwarded-For is not trusted (ingress-nginx without use-forwarded-headers).
    let (_, body) = blocking(move || {
        curl(
            addr,
            "shop.example.com",
            "/api",
            &["-H", "X-Forwarded-For: 6.6.6.6"],
        )
    })
    .await;
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["headers"]["x-forwarded-for"], "127.0.0.1");

    // Endpoints in turn: both a and b answer, and the refusing 127.0.0.9 never fails a request.
    let mut servers = Vec::new();
    for _ in 0..9 {
        let (code, body) = blocking(move || curl(addr, "shop.example.com", "/", &[])).await;
        assert_eq!(
            code, 200,
            "a refused endpoint is retried on the next: {body}"
        );
        let got: Value = serde_json::from_str(&body).unwrap();
        servers.push(got["server"].as_str().unwrap().to_string());
    }
    assert!(servers.contains(&"a".to_string()), "{servers:?}");
    assert!(servers.contains(&"b".to_string()), "{servers:?}");

    // No ready endpoint: 503; no match (unknown host, no default backend): 404.
    let (code, _) = blocking(move || curl(addr, "shop.example.com", "/soon", &[])).await;
    assert_eq!(code, 503);
    let (code, body) = blocking(move || curl(addr, "other.example.com", "/", &[])).await;
    assert_eq!((code, body.as_str()), (404, "default backend - 404\n"));

    // HTTP/2 from the client (prior knowledge), HTTP/1.1 to the backend, Host from :authority.
    let (code, body) = blocking(move || {
        curl(
            addr,
            "shop.example.com",
            "/api",
            &["--http2-prior-knowledge"],
        )
    })
    .await;
    assert_eq!(code, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["version"], "HTTP/1.1");
    assert_eq!(
        got["headers"]["host"],
        format!("shop.example.com:{}", addr.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_swap_keeps_open_connections() {
    let mut s = setup().await;
    // One keep-alive connection from a client.
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let ask = |path: &str| {
        Request::builder()
            .uri(path)
            .header("host", "shop.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let r = sender.send_request(ask("/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    let first: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_ne!(first["server"], "api");
    // The route "/" now goes to api: the same connection gets the new table's answer.
    ingress(
        &mut s.view,
        "2",
        json!([rule("shop.example.com", "/", "api")]),
    );
    s.proxy.swap(compile(&s.view, &Settings::default()));
    sender.ready().await.expect("the connection stays open");
    let r = sender.send_request(ask("/x")).await.unwrap();
    assert_eq!(r.status(), 200);
    let second: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(second["server"], "api");
}

/// A CA and a certificate it signed for `hosts`: (CA PEM, leaf PEM, leaf key PEM).
fn signed(hosts: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "weft test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn tls_secret(view: &mut ClusterView, name: &str, crt: &str, key: &str) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    view.apply(Event::Apply(obj::<k8s_openapi::api::core::v1::Secret>(
        json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(crt), "tls.key": b64(key)}
        }),
    )));
}

/// `curl` over HTTPS to the proxy's TLS port for `https://host/path`, trusting `ca`:
/// (status, body, stderr).
fn curl_tls(
    tls: SocketAddr,
    host: &str,
    path: &str,
    ca: &str,
    extra: &[&str],
) -> (u16, String, String) {
    let url = format!("https://{host}:{}{path}", tls.port());
    let resolve = format!("{host}:{}:{}", tls.port(), tls.ip());
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "10",
            "--cacert",
            ca,
            "--resolve",
            &resolve,
        ])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(&url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = tail
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let stderr = format!("{tail}\n{}", String::from_utf8_lossy(&out.stderr));
    (code, body.to_string(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_http2_by_alpn_and_the_https_redirect() {
    let mut s = setup().await;
    let (ca, crt, key) = signed(&["shop.example.com"]);
    let dir = std::env::temp_dir().join(format!("weft-ingress-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let ca_file = ca_file.to_string_lossy().into_owned();
    tls_secret(&mut s.view, "shop-tls", &crt, &key);
    s.view.apply(Event::Apply(obj::<k8s_openapi::api::networking::v1::Ingress>(json!({
        "metadata": {"name": "site", "namespace": "default", "resourceVersion": "9",
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [rule("shop.example.com", "/", "web"), rule("plain.example.com", "/", "web")]
        }
    }))));
    let table = compile(&s.view, &Settings::default());
    assert!(table.problems.is_empty(), "{:?}", table.problems);
    s.proxy.swap(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_addr = listener.local_addr().unwrap();
    let default = weft_ingress::tls::default_certificate().unwrap();
    let config = weft_ingress::tls::server_config(s.proxy.clone(), default).unwrap();
    tokio::spawn(weft_ingress::proxy::serve_https(
        listener,
        s.proxy.clone(),
        Arc::new(config),
    ));
    let addr = s.addr;

    // The Secret's certificate for its host, verified against its CA; HTTP/2 by ALPN.
    let ca2 = ca_file.clone();
    let (code, body, log) =
        blocking(move || curl_tls(tls_addr, "shop.example.com", "/x", &ca2, &["--http2"])).await;
    assert_eq!(code, 200, "{body}\n{log}");
    assert!(log.starts_with("200 2"), "HTTP/2 over ALPN: {log}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["headers"]["x-forwarded-proto"], "https");
    // TLS 1.2 and HTTP/1.1 too, with the same forwarding headers.
    let ca2 = ca_file.clone();
    let (code, body, log) = blocking(move || {
        curl_tls(
            tls_addr,
            "shop.example.com",
            "/x",
            &ca2,
            &["--tls-max", "1.2", "--http1.1"],
        )
    })
    .await;
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("TLSv1.2"), "{log}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        got["headers"]["x-forwarded-port"],
        tls_addr.port().to_string()
    );
    assert_eq!(got["version"], "HTTP/1.1");
    // A name without a certificate gets the default one (not trusted by the CA: -k to look).
    let ca2 = ca_file.clone();
    let (code, _, log) =
        blocking(move || curl_tls(tls_addr, "plain.example.com", "/", &ca2, &["-k"])).await;
    assert_eq!(code, 200, "{log}");
    assert!(
        log.contains("Kubernetes Ingress Controller Fake Certificate"),
        "{log}"
    );

    // Plain HTTP to a host with TLS: 308 to HTTPS, path and query kept; without TLS: served.
    let (code, _) =
        blocking(move || curl(addr, "shop.example.com", "/a/b?c=d", &["-o", "/dev/null"])).await;
    assert_eq!(code, 308);
    let location = blocking(move || {
        let url = format!("http://shop.example.com:{}/a/b?c=d", addr.port());
        let resolve = format!("shop.example.com:{}:{}", addr.port(), addr.ip());
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{redirect_url}",
                "--resolve",
                &resolve,
                &url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await;
    assert_eq!(location, "https://shop.example.com/a/b?c=d");
    let (code, _) = blocking(move || curl(addr, "plain.example.com", "/", &[])).await;
    assert_eq!(code, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An Ingress of its own (name, annotations, rules).
fn annotated(view: &mut ClusterView, name: &str, annotations: Value, rules: Value) {
    view.apply(Event::Apply(
        obj::<k8s_openapi::api::networking::v1::Ingress>(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "1",
                "creationTimestamp": "2026-02-01T00:00:00Z", "annotations": annotations},
            "spec": {"rules": rules}
        })),
    ));
}

fn a(name: &str, value: &str) -> Value {
    json!({ format!("nginx.ingress.kubernetes.io/{name}"): value })
}

fn field(body: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap_or_default()[name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_served() {
    let mut s = setup().await;
    let h2c = shared_port();
    echo_h2c(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), h2c)), "grpc").await;
    service(&mut s.view, "grpc", &["127.0.0.2"], h2c);
    let tls = shared_port();
    echo_tls(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), tls)), "tls").await;
    service(&mut s.view, "secure", &["127.0.0.2"], tls);
    let v = &mut s.view;
    annotated(
        v,
        "small",
        a("proxy-body-size", "1k"),
        json!([rule("small.example.com", "/", "api")]),
    );
    annotated(
        v,
        "deny",
        a("whitelist-source-range", "10.0.0.0/8"),
        json!([rule("deny.example.com", "/", "api")]),
    );
    annotated(
        v,
        "allow",
        a("whitelist-source-range", "10.0.0.0/8,127.0.0.0/8"),
        json!([rule("allow.example.com", "/", "api")]),
    );
    annotated(
        v,
        "rewrite",
        a("rewrite-target", "/$2"),
        json!([{"host": "rw.example.com", "http": {"paths": [{"path": "/app(/|$)(.*)",
            "pathType": "ImplementationSpecific",
            "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]),
    );
    annotated(
        v,
        "cors",
        a("enable-cors", "true"),
        json!([rule("cors.example.com", "/", "api")]),
    );
    annotated(
        v,
        "limited",
        a("limit-rps", "1"),
        json!([rule("limited.example.com", "/", "api")]),
    );
    annotated(
        v,
        "sticky",
        a("affinity", "cookie"),
        json!([rule("sticky.example.com", "/", "web")]),
    );
    annotated(
        v,
        "grpc",
        a("backend-protocol", "GRPC"),
        json!([rule("grpc.example.com", "/", "grpc")]),
    );
    annotated(
        v,
        "secure",
        a("backend-protocol", "HTTPS"),
        json!([rule("secure.example.com", "/", "secure")]),
    );
    annotated(
        v,
        "odd",
        a("configuration-snippet", "x"),
        json!([rule("odd.example.com", "/", "api")]),
    );
    let table = compile(&s.view, &Settings::default());
    assert!(table.problems.is_empty(), "{:?}", table.problems);
    let unserved: Vec<String> = table.unserved.values().flatten().cloned().collect();
    assert_eq!(
        unserved,
        ["nginx.ingress.kubernetes.io/configuration-snippet"]
    );
    s.proxy.swap(table);
    let addr = s.addr;
    let run = |host: &'static str, path: &'static str, extra: Vec<String>| {
        blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            curl(addr, host, path, &extra)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // proxy-body-size 1k: larger bodies get 413, by Content-Length and chunked alike.
    let (code, body) = run(
        "small.example.com",
        "/",
        args(&["--data-binary", &"x".repeat(500)]),
    )
    .await;
    assert_eq!(
        (code, field(&body, "body_len")),
        (200, json!(500)),
        "{body}"
    );
    let big = "x".repeat(2000);
    assert_eq!(
        run("small.example.com", "/", args(&["--data-binary", &big]))
            .await
            .0,
        413
    );
    let chunked = args(&["-H", "Transfer-Encoding: chunked", "--data-binary", &big]);
    assert_eq!(run("small.example.com", "/", chunked).await.0, 413);
    // The default is 1m.
    let file = std::env::temp_dir().join(format!("weft-ingress-2m-{}", std::process::id()));
    std::fs::write(&file, "y".repeat(2 << 20)).unwrap();
    let huge = args(&["--data-binary", &format!("@{}", file.display())]);
    assert_eq!(run("shop.example.com", "/api", huge).await.0, 413);
    std::fs::remove_file(&file).unwrap();

    // whitelist-source-range: 127.0.0.1 is outside 10/8, inside 127/8.
    assert_eq!(run("deny.example.com", "/", vec![]).await.0, 403);
    assert_eq!(run("allow.example.com", "/", vec![]).await.0, 200);

    // rewrite-target with capture groups, the query kept.
    let (_, body) = run("rw.example.com", "/app/users/7?x=1", vec![]).await;
    assert_eq!(field(&body, "uri"), "/users/7?x=1");
    let (_, body) = run("rw.example.com", "/app", vec![]).await;
    assert_eq!(field(&body, "uri"), "/");

    // enable-cors: a preflight is answered here; responses carry the headers.
    let preflight = args(&["-X", "OPTIONS", "-H", "Origin: http://x"]);
    assert_eq!(run("cors.example.com", "/", preflight).await.0, 204);
    let (_, headers) = run(
        "cors.example.com",
        "/",
        args(&["-D", "-", "-o", "/dev/null"]),
    )
    .await;
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{headers}"
    );

    // limit-rps 1: a burst of five, then 503.
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(run("limited.example.com", "/", vec![]).await.0);
    }
    assert!(codes[..5].iter().all(|c| *c == 200), "{codes:?}");
    assert!(codes.contains(&503), "{codes:?}");

    // affinity: cookie pins a client to one endpoint.
    let (_, headers) = run(
        "sticky.example.com",
        "/",
        args(&["-D", "-", "-o", "/dev/null"]),
    )
    .await;
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a Set-Cookie")
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .to_string();
    let pair = cookie.split(';').next().unwrap().trim().to_string();
    assert!(pair.starts_with("INGRESSCOOKIE="), "{cookie}");
    let mut servers = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (_, body) = run(
            "sticky.example.com",
            "/",
            args(&["-H", &format!("Cookie: {pair}")]),
        )
        .await;
        servers.insert(field(&body, "server").to_string());
    }
    assert_eq!(servers.len(), 1, "{servers:?}");

    // backend-protocol: GRPC is HTTP/2 to the backend; HTTPS is TLS to it.
    let (code, body) = run("grpc.example.com", "/pkg.Svc/Call", vec![]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (field(&body, "server"), field(&body, "version")),
        (json!("grpc"), json!("HTTP/2.0"))
    );
    let (code, body) = run("secure.example.com", "/", vec![]).await;
    assert_eq!(
        (code, field(&body, "server")),
        (200, json!("tls")),
        "{body}"
    );
}

/// A backend that accepts any upgrade (101) and then echoes bytes, at `addr`.
async fn echo_upgrade(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |mut req: Request<hyper::body::Incoming>| async move {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            if let Ok(up) = on.await {
                                let mut io = TokioIo::new(up);
                                let (mut r, mut w) = tokio::io::split(&mut io);
                                let _ = tokio::io::copy(&mut r, &mut w).await;
                            }
                        });
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                        r.headers_mut()
                            .insert("upgrade", "websocket".parse().unwrap());
                        r.headers_mut()
                            .insert("connection", "upgrade".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

/// Writes `request` raw to the proxy and reads what comes back until `done` says enough (or
/// the connection closes, or 5 s pass).
async fn raw(addr: SocketAddr, request: &[u8], done: impl Fn(&[u8]) -> bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !done(&got) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_bad_input() {
    let mut s = setup().await;
    let ws = shared_port();
    echo_upgrade(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), ws))).await;
    service(&mut s.view, "ws", &["127.0.0.2"], ws);
    annotated(
        &mut s.view,
        "ws",
        json!({}),
        json!([rule("ws.example.com", "/", "ws")]),
    );
    s.proxy.swap(compile(&s.view, &Settings::default()));
    let addr = s.addr;

    // An upgrade: 101 from the backend, then bytes both ways through the proxy.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    c.write_all(b"ping over the upgraded connection")
        .await
        .unwrap();
    let mut echoed = [0u8; 33];
    tokio::time::timeout(std::time::Duration::from_secs(5), c.read_exact(&mut echoed))
        .await
        .expect("the echo within 5 s")
        .unwrap();
    assert_eq!(&echoed, b"ping over the upgraded connection");

    let status = |text: &str| text.split_whitespace().nth(1).unwrap_or("none").to_string();
    let head_done = |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n");
    // Oversized headers: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_eq!(status(&raw(addr, big.as_bytes(), head_done).await), "431");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: shop.example.com\r\n{many}\r\n");
    assert_eq!(status(&raw(addr, many.as_bytes(), head_done).await), "431");
    // Smuggling: Content-Length and Transfer-Encoding together, or two Content-Lengths.
    let both = b"POST / HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: shop.example.com\r\n\r\n";
    // RFC 9112 6.3: Transfer-Encoding wins, Content-Length is dropped, and the connection is
    // closed after the answer, so the request hidden in the body is never served.
    let answer = raw(addr, both, |_| false).await;
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer only: {answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(!answer.contains("\"uri\":\"/x\""), "{answer}");
    let hosts = b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: other.example.com\r\n\r\n";
    assert_eq!(status(&raw(addr, hosts, head_done).await), "400");
    let two = b"POST / HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    assert_eq!(status(&raw(addr, two, |b| b.len() > 12).await), "400");
    // Garbage: 400, and the proxy keeps serving.
    assert_eq!(
        status(&raw(addr, b"\x16\x03\x01 not http\r\n\r\n", |b| b.len() > 12).await),
        "400"
    );
    let (code, _) = blocking(move || curl(addr, "shop.example.com", "/api", &[])).await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off() {
    let s = setup().await;
    let proxy = Proxy::new(ProxyConfig {
        header_timeout: std::time::Duration::from_millis(300),
        ..ProxyConfig::default()
    });
    proxy.swap(compile(&s.view, &Settings::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(listener, proxy));
    // Half a request head, then nothing: the proxy answers 408 or closes within the timeout.
    let started = std::time::Instant::now();
    let answer = raw(addr, b"GET / HTTP/1.1\r\nHost: shop.exa", |_| false).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "cut off: {answer:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_takes_nothing_times_out_the_send() {
    let mut s = setup().await;
    // A backend that accepts and never reads.
    let port = shared_port();
    let stuck = TcpListener::bind(("127.0.0.2", port)).await.unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = stuck.accept().await {
            held.push(c);
        }
    });
    service(&mut s.view, "stuck", &["127.0.0.2"], port);
    annotated(
        &mut s.view,
        "stuck",
        json!({"nginx.ingress.kubernetes.io/proxy-send-timeout": "1",
               "nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
        json!([rule("stuck.example.com", "/", "stuck")]),
    );
    s.proxy.swap(compile(&s.view, &Settings::default()));
    let file = std::env::temp_dir().join(format!("weft-ingress-32m-{}", std::process::id()));
    std::fs::write(&file, vec![b'z'; 32 << 20]).unwrap();
    let addr = s.addr;
    let started = std::time::Instant::now();
    let body = format!("@{}", file.display());
    let (code, _) =
        blocking(move || curl(addr, "stuck.example.com", "/", &["--data-binary", &body])).await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(code, 504);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// A backend written by hand, for the framings hyper's echo never sends: each request's path
/// chooses the answer, written in pieces. Counts the connections it accepted.
async fn framings(addr: SocketAddr) -> Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = TcpListener::bind(addr).await.unwrap();
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&got[..end]).into_owned();
                    got.drain(..end + 4);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let pieces: Vec<Vec<u8>> = match path.as_str() {
                        "/chunked" => vec![
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5\r\nhel".to_vec(),
                            b"lo\r\n6;ext=1\r\n world\r\n".to_vec(),
                            b"0\r\nx-trailer: 1\r\n\r\n".to_vec(),
                        ],
                        "/interim" => vec![
                            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".to_vec(),
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                        ],
                        "/head" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n".to_vec()],
                        "/big" => {
                            let mut v = vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec()];
                            v.extend((0..16).map(|_| vec![b'b'; 65536]));
                            v
                        }
                        "/hop" => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\n\r\nok".to_vec()],
                        "/close" | "/bye" | "/then-close" => {
                            let v = match path.as_str() {
                                "/close" => b"HTTP/1.1 200 OK\r\n\r\nuntil the close".to_vec(),
                                "/bye" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye".to_vec(),
                                // Says keep-alive, closes anyway (as a backend's idle timeout does).
                                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce".to_vec(),
                            };
                            let _ = c.write_all(&v).await;
                            return;
                        }
                        _ => {
                            let body = format!("{head}\n");
                            vec![format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()]
                        }
                    };
                    for p in pieces {
                        if c.write_all(&p).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            });
        }
    });
    accepted
}

/// One request on `c`, its answer read with hyper's client (which checks the framing).
async fn send(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "raw.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    c.ready().await.unwrap();
    let res = c.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status.as_u16(), parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_requests_relay_every_response_framing() {
    let mut s = setup().await;
    let port = shared_port();
    let accepted = framings(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), port))).await;
    service(&mut s.view, "raw", &["127.0.0.2"], port);
    annotated(
        &mut s.view,
        "raw",
        json!({}),
        json!([rule("raw.example.com", "/", "raw")]),
    );
    s.proxy.swap(compile(&s.view, &Settings::default()));
    // Served as the ingress's workers serve (a runtime of one thread, whose kept backend
    // connections are its own), so that keeping them can be counted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy = s.proxy.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                async move { serve_http(TcpListener::from_std(listener).unwrap(), proxy).await },
            )
    });
    let client = || async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    };
    let mut c = client().await;
    // Chunks relayed as they are, trailers included, the conflicting Content-Length dropped.
    let (code, headers, body) = send(&mut c, "GET", "/chunked").await;
    assert_eq!((code, body.as_slice()), (200, &b"hello world"[..]));
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    // The interim 103 is not sent on; the final answer is.
    let (code, _, body) = send(&mut c, "GET", "/interim").await;
    assert_eq!((code, body.as_slice()), (200, &b"ok"[..]));
    // HEAD: the length, no body.
    let (code, headers, body) = send(&mut c, "HEAD", "/head").await;
    assert_eq!((code, body.len()), (200, 0));
    assert_eq!(headers["content-length"], "7");
    // A megabyte in pieces.
    let (code, _, body) = send(&mut c, "GET", "/big").await;
    assert_eq!((code, body.len()), (200, 1 << 20));
    assert!(body.iter().all(|&b| b == b'b'));
    // Hop-by-hop headers, and those Connection names, stay behind.
    let (_, headers, _) = send(&mut c, "GET", "/hop").await;
    assert!(!headers.contains_key("x-hop") && !headers.contains_key("keep-alive"));
    assert_eq!(headers["x-kept"], "1");
    // The request as the backend got it: forwarding headers set, the client's Connection not
    // sent on.
    let (_, _, body) = send(&mut c, "GET", "/echo?q=1").await;
    let head = String::from_utf8(body).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /echo?q=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nx-forwarded-for: 127.0.0.1"), "{head}");
    assert!(
        head.contains("\r\nx-forwarded-host: raw.example.com"),
        "{head}"
    );
    assert!(head.contains("\r\nhost: raw.example.com"), "{head}");
    // All of that on two backend connections, kept between requests: the chunked answer
    // that also had a length is not trusted again (RFC 9112 6.3), the rest share one.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A backend that closes the kept connection after answering: the next request goes on a
    // new connection and is answered.
    let (_, _, body) = send(&mut c, "GET", "/then-close").await;
    assert_eq!(body, b"once");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for _ in 0..3 {
        let (code, _, _) = send(&mut c, "GET", "/echo").await;
        assert_eq!(code, 200);
    }
    // A body to the backend's close: the client's connection is closed after it too.
    let (code, headers, body) = send(&mut c, "GET", "/close").await;
    assert_eq!((code, body.as_slice()), (200, &b"until the close"[..]));
    assert_eq!(headers["connection"], "close");
    let mut c = client().await;
    let (code, _, body) = send(&mut c, "GET", "/bye").await;
    assert_eq!((code, body.as_slice()), (200, &b"bye"[..]));

    // Pipelined requests are answered in order on the one connection.
    let two = b"GET /echo?n=1 HTTP/1.1\r\nHost: raw.example.com\r\n\r\nGET /echo?n=2 HTTP/1.1\r\nHost: raw.example.com\r\nConnection: close\r\n\r\n";
    let answer = raw(addr, two, |_| false).await;
    let first = answer.find("GET /echo?n=1").expect(&answer);
    let second = answer.find("GET /echo?n=2").expect(&answer);
    assert!(first < second, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
}

/// Serves `proxy` as the ingress's workers do (a runtime of one thread), on a new port.
fn one_thread_proxy(proxy: Arc<Proxy>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                async move { serve_http(TcpListener::from_std(listener).unwrap(), proxy).await },
            )
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_connections_are_retried_only_when_it_is_safe_and_let_go_when_closed() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = setup().await;
    let port = shared_port();
    let listener = TcpListener::bind(("127.0.0.2", port)).await.unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    // Each connection: answers its first request, then closes at the second without a word
    // (as a backend that crashed, or closed an idle connection as the request came).
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = 0;
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let idle = got.starts_with(b"GET /idle ");
                        got.drain(..end + 4);
                        seen.fetch_add(1, SeqCst);
                        if answered == 1 {
                            return;
                        }
                        answered += 1;
                        let _ = c
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                        if idle {
                            // Closes the idle connection soon after (its keep-alive timeout).
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    service(&mut s.view, "flaky", &["127.0.0.2"], port);
    annotated(
        &mut s.view,
        "flaky",
        json!({}),
        json!([rule("flaky.example.com", "/", "flaky")]),
    );
    s.proxy.swap(compile(&s.view, &Settings::default()));
    let addr = one_thread_proxy(s.proxy.clone());
    let status = |text: &str| text.split_whitespace().nth(1).unwrap_or("none").to_string();
    let head_done = |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n");
    let ask = |method: &'static str, path: &'static str| async move {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: flaky.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        status(&raw(addr, req.as_bytes(), head_done).await)
    };
    // A GET on the kept connection that closes: sent again on a new one, and answered.
    assert_eq!(ask("GET", "/").await, "200");
    assert_eq!(ask("GET", "/").await, "200");
    assert_eq!(requests.load(SeqCst), 3, "the second GET was sent twice");
    // A POST on the kept connection that closes is not sent again (RFC 9110 9.2.2): 502, as
    // nginx answers without non_idempotent. The next one gets a new connection.
    requests.store(0, SeqCst);
    assert_eq!(ask("POST", "/").await, "502");
    assert_eq!(requests.load(SeqCst), 1, "a POST was sent again");
    assert_eq!(ask("POST", "/").await, "200");
    assert_eq!(requests.load(SeqCst), 2);

    // Kept connections the backend closed are let go within the sweep (5 s), not left in
    // CLOSE_WAIT until a request to that endpoint comes.
    assert_eq!(ask("GET", "/idle").await, "200");
    let close_wait = || {
        let out = Command::new("ss")
            .args([
                "-tanH",
                "state",
                "close-wait",
                "dst",
                &format!("127.0.0.2:{port}"),
            ])
            .output()
            .expect("ss");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let started = std::time::Instant::now();
    while close_wait() == 0 && started.elapsed() < std::time::Duration::from_secs(2) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(close_wait(), 1, "the backend's close seen as CLOSE_WAIT");
    while close_wait() > 0 && started.elapsed() < std::time::Duration::from_secs(15) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(close_wait(), 0, "kept connections left in CLOSE_WAIT");
}
