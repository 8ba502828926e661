//! The load generator behind `bench/api.sh`: a Kubernetes API client that does one measured
//! thing per run against a lab's API server and prints the result as one JSON line. It speaks
//! HTTP/2 over TLS with the lab's admin client certificate, as kubectl and client-go do, and
//! keeps its connections open for the whole run, so what it times is the server, not handshakes.
//!
//! ```text
//! weft-api-bench https://127.0.0.1:PORT PKI_DIR create   count=10000 conns=4 streams=2 [from=0]
//! weft-api-bench https://127.0.0.1:PORT PKI_DIR put      count=10000 conns=4 streams=2
//! weft-api-bench https://127.0.0.1:PORT PKI_DIR slices   count=10000 endpoints=10
//! weft-api-bench https://127.0.0.1:PORT PKI_DIR list     times=20 table=1
//! weft-api-bench https://127.0.0.1:PORT PKI_DIR watch    writes=1000
//! ```
//!
//! Services are named `bulk0`..`bulkN-1` in `default` (ClusterIP, one port, no selector), the
//! same documents `bench/api.sh` writes for kubectl and for the old file store's `weft apply`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

const SERVICES: &str = "/api/v1/namespaces/default/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// What `kubectl get` asks for: a server-side Table.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, pki, command, rest @ ..] = args.as_slice() else {
        bail!("usage: weft-api-bench URL PKI_DIR create|put|slices|list|watch [key=value ...]");
    };
    let opts: HashMap<&str, usize> = rest
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("{kv}: not key=value"))?;
            Ok((k, v.parse().with_context(|| format!("{kv}: not a number"))?))
        })
        .collect::<Result<_>>()?;
    let opt = |k: &str, default: usize| opts.get(k).copied().unwrap_or(default);
    let server = Server::parse(server, Path::new(pki))?;
    // Two worker threads: the client shares the machine's two cores with the server, and its
    // own CPU time is printed so a reader can see it is not the bottleneck.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let count = opt("count", 10_000);
        let conns = opt("conns", 4);
        let streams = opt("streams", 2);
        match command.as_str() {
            "create" => {
                let from = opt("from", 0);
                let make = move |i| create_service(from + i);
                bulk(&server, "create", conns, streams, count, make).await
            }
            "put" => reapply(&server, conns, streams).await,
            "slices" => {
                let endpoints = opt("endpoints", 10);
                let make = move |i| create_slice(i, endpoints);
                bulk(&server, "slices", conns, streams, count, make).await
            }
            "list" => list(&server, opt("times", 20), opt("table", 0) == 1).await,
            "watch" => watch(&server, opt("writes", 1000)).await,
            other => bail!("unknown command {other}"),
        }
    })?;
    let mut result = result;
    result["client_cpu_seconds"] = json!(round3(own_cpu_seconds()));
    println!("{result}");
    Ok(())
}

/// Where the server is and how to prove who we are.
struct Server {
    base: String,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Server {
    fn parse(url: &str, pki: &Path) -> Result<Server> {
        let hostport = url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("{url}: not https://HOST:PORT"))?
            .trim_end_matches('/');
        let addr: SocketAddr = hostport
            .parse()
            .with_context(|| format!("{url}: not IP:PORT"))?;
        let file = |name: &str| -> PathBuf { pki.join(name) };
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(file("ca.crt"))? {
            roots.add(ca?)?;
        }
        let certs =
            CertificateDer::pem_file_iter(file("admin.crt"))?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(file("admin.key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Server {
            base: format!("https://{hostport}"),
            addr,
            tls: Arc::new(tls),
        })
    }

    /// One HTTP/2 connection (TLS with the client certificate, ALPN h2).
    async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        // Flow-control windows as Go's HTTP/2 transport (kubectl, client-go) sets them: a 5 MB
        // list is not throttled by 64 KiB window updates.
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(1 << 30)
            .handshake(TokioIo::new(tls))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("connection: {e}");
            }
        });
        Ok(Conn {
            send,
            base: self.base.clone(),
        })
    }
}

#[derive(Clone)]
struct Conn {
    send: SendRequest<Full<Bytes>>,
    base: String,
}

/// One request, its whole response body read.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    content_type: &'static str,
}

impl Call {
    fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method,
            path: path.into(),
            body,
            content_type: "application/json",
        }
    }
}

impl Conn {
    async fn call(&mut self, call: &Call, accept: &str) -> Result<(StatusCode, Bytes)> {
        let body = match &call.body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let req = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.base, call.path))
            .header("content-type", call.content_type)
            .header("accept", accept)
            .body(Full::new(body))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn get_json(&mut self, path: &str) -> Result<Value> {
        let (status, body) = self
            .call(&Call::new(Method::GET, path, None), "application/json")
            .await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

fn create_service(i: usize) -> Call {
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("bulk{i}")},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    });
    Call::new(Method::POST, SERVICES, Some(body))
}

/// A hand-made slice for the selector-less Service `bulk{i}`, `endpoints` addresses in it.
fn create_slice(i: usize, endpoints: usize) -> Call {
    let endpoints: Vec<Value> = (0..endpoints)
        .map(|e| {
            let k = i * endpoints + e;
            let ip = format!("10.{}.{}.{}", 200 + k / 65536, (k / 256) % 256, k % 256);
            json!({"addresses": [ip], "conditions": {"ready": true}})
        })
        .collect();
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("bulk{i}-1"), "labels": {"kubernetes.io/service-name": format!("bulk{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    });
    Call::new(Method::POST, SLICES, Some(body))
}

/// Sends `count` requests made by `make` over `conns` connections with `streams` requests in
/// flight on each, and reports the rate.
async fn bulk<F>(
    server: &Server,
    op: &str,
    conns: usize,
    streams: usize,
    count: usize,
    make: F,
) -> Result<Value>
where
    F: Fn(usize) -> Call + Send + Sync + 'static,
{
    let mut connections = Vec::new();
    for _ in 0..conns.max(1) {
        connections.push(server.connect().await?);
    }
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let cpu0 = own_cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for conn in &connections {
        for _ in 0..streams.max(1) {
            let (mut conn, make, next) = (conn.clone(), make.clone(), next.clone());
            let first_error = first_error.clone();
            tasks.push(tokio::spawn(async move {
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return errors;
                    }
                    let call = make(i);
                    let failure = match conn.call(&call, "application/json").await {
                        Ok((status, _)) if status.is_success() => continue,
                        Ok((status, body)) => {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        }
                        Err(e) => e.to_string(),
                    };
                    errors += 1;
                    let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    first.get_or_insert(format!("{} {}: {failure}", call.method, call.path));
                }
            }));
        }
    }
    let mut errors = 0;
    for task in tasks {
        errors += task.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu0;
    if let Some(e) = first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        eprintln!("{op}: {errors} errors, the first: {e}");
    }
    Ok(json!({
        "op": op, "count": count, "errors": errors, "seconds": round3(secs),
        "per_second": (count as f64 / secs).round(), "conns": conns, "streams": streams,
        "client_cpu_during": round3(cpu),
    }))
}

/// Re-applies every `bulk*` Service unchanged: PUT of the object as the server returns it
/// (with its resourceVersion, so the server checks it as for any optimistic update). The list
/// that fetches them is not timed.
async fn reapply(server: &Server, conns: usize, streams: usize) -> Result<Value> {
    let list = server.connect().await?.get_json(SERVICES).await?;
    let items: Vec<Value> = list["items"]
        .as_array()
        .ok_or_else(|| anyhow!("the Service list has no items"))?
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("bulk"))
        })
        .map(|s| {
            let mut s = s.clone();
            s["apiVersion"] = json!("v1");
            s["kind"] = json!("Service");
            s
        })
        .collect();
    let count = items.len();
    let items = Arc::new(items);
    let make = move |i: usize| {
        let name = items[i]["metadata"]["name"].as_str().unwrap_or_default();
        Call::new(
            Method::PUT,
            format!("{SERVICES}/{name}"),
            Some(items[i].clone()),
        )
    };
    let mut result = bulk(server, "put", conns, streams, count, make).await?;
    // An unchanged PUT must not write: the resourceVersions stay as they were.
    let after = server.connect().await?.get_json(SERVICES).await?;
    let rv = |list: &Value| -> HashMap<String, String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let m = &s["metadata"];
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let (before, after) = (rv(&list), rv(&after));
    let changed = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .count();
    result["resource_versions_changed"] = json!(changed);
    Ok(result)
}

/// `times` lists of the Services (one untimed first), each timed from sending the request to
/// the last byte of the body.
async fn list(server: &Server, times: usize, table: bool) -> Result<Value> {
    let mut conn = server.connect().await?;
    let accept = if table { TABLE } else { "application/json" };
    let call = Call::new(Method::GET, SERVICES, None);
    let (_, warm) = conn.call(&call, accept).await?;
    let doc: Value = serde_json::from_slice(&warm)?;
    let items = doc["items"]
        .as_array()
        .or(doc["rows"].as_array())
        .map_or(0, Vec::len);
    let mut ms = Vec::new();
    for _ in 0..times {
        let start = Instant::now();
        let (status, body) = conn.call(&call, accept).await?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            bail!(
                "GET {SERVICES}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "op": if table { "list-table" } else { "list" }, "times": times, "items": items,
        "bytes": warm.len(), "median_ms": round3(percentile(&ms, 50.0)),
        "p99_ms": round3(percentile(&ms, 99.0)), "min_ms": round3(ms[0]),
        "max_ms": round3(ms[ms.len() - 1]),
    }))
}

/// Watch latency: one connection watches ConfigMaps in `default` from the list's revision,
/// another writes `writes` ConfigMaps one at a time (the first half created, the second half
/// each of those updated once), and waits for each write's event before the next write.
async fn watch(server: &Server, writes: usize) -> Result<Value> {
    let mut writer = server.connect().await?;
    let list = writer.get_json(CONFIGMAPS).await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("the ConfigMap list has no resourceVersion"))?
        .to_string();
    let mut watcher = server.connect().await?;
    let req = Request::builder()
        .uri(format!(
            "{}{CONFIGMAPS}?watch=true&resourceVersion={rv}",
            watcher.base
        ))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))?;
    watcher.send.ready().await?;
    let resp = watcher.send.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("watch: {}", resp.status());
    }
    // The watcher notes each event's arrival the moment its bytes are read, then parses it.
    let (tx, mut events) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let at = Instant::now();
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.extend_from_slice(data);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let rv = event["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                if tx.send((rv.to_string(), at)).is_err() {
                    return;
                }
            }
        }
    });
    let half = writes.div_ceil(2);
    let mut created: Vec<Value> = Vec::new();
    let (mut after_response, mut after_send, mut write_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut early, mut missed) = (0usize, 0usize);
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let run = Instant::now();
    for i in 0..writes {
        let call = if i < half {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("watchbench{i}")}, "data": {"n": i.to_string()}});
            Call::new(Method::POST, CONFIGMAPS, Some(body))
        } else {
            let mut cm = created[i - half].clone();
            cm["data"]["n"] = json!(format!("{i}"));
            let name = cm["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Call::new(Method::PUT, format!("{CONFIGMAPS}/{name}"), Some(cm))
        };
        let sent = Instant::now();
        let (status, body) = writer.call(&call, "application/json").await?;
        let answered = Instant::now();
        if !status.is_success() {
            bail!(
                "{} {}: {status}: {}",
                call.method,
                call.path,
                String::from_utf8_lossy(&body)
            );
        }
        let object: Value = serde_json::from_slice(&body)?;
        let want = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if i < half {
            created.push(object);
        }
        write_ms.push(ms(answered - sent));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let arrived = loop {
            if let Some(at) = pending.remove(&want) {
                break Some(at);
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some((rv, at))) => {
                    pending.insert(rv, at);
                }
                Ok(None) | Err(_) => break None,
            }
        };
        let Some(at) = arrived else {
            missed += 1;
            continue;
        };
        after_send.push(ms(at - sent));
        // An event may be read before the write's own response: that is a latency of zero.
        match at.checked_duration_since(answered) {
            Some(d) => after_response.push(ms(d)),
            None => {
                early += 1;
                after_response.push(0.0);
            }
        }
    }
    let secs = run.elapsed().as_secs_f64();
    for v in [&mut after_response, &mut after_send, &mut write_ms] {
        v.sort_by(f64::total_cmp);
    }
    let p = |v: &Vec<f64>, q| round3(percentile(v, q));
    Ok(json!({
        "op": "watch", "writes": writes, "missed": missed, "events_before_response": early,
        "seconds": round3(secs),
        "response_to_event_p50_ms": p(&after_response, 50.0),
        "response_to_event_p99_ms": p(&after_response, 99.0),
        "response_to_event_max_ms": p(&after_response, 100.0),
        "send_to_event_p50_ms": p(&after_send, 50.0),
        "send_to_event_p99_ms": p(&after_send, 99.0),
        "write_p50_ms": p(&write_ms, 50.0),
        "write_p99_ms": p(&write_ms, 99.0),
    }))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// This process's user + system CPU time, all threads (clock ticks are 1/100 s on Linux).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 from the state field.
    (tick(11) + tick(12)) / 100.0
}
