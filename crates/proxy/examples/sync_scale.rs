//! Times the proxy's kernel programming at scale (needs root): N Services x E endpoints are
//! compiled and loaded into a fresh network namespace from scratch, then one Service changes
//! (one endpoint replaced) and the incremental update is timed. Used by bench/proxy.sh.
//!   cargo run --release -p weft-proxy --example sync_scale -- 10000 10

use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::ScopedNetNs;
use weft_proxy::{compile, view::views, Proxy, ProxyNode, SyncKind};

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s{i}"), "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("valid service")
}

fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e + generation;
            serde_json::json!({"addresses": [format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256)], "conditions": {"ready": true}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s{i}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps
    }))
    .expect("valid slice")
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, e) = (
        args.first().copied().unwrap_or(1000),
        args.get(1).copied().unwrap_or(10),
    );
    let node = ProxyNode {
        name: "bench-node".into(),
        ip: "172.20.0.2".parse().expect("ip"),
        cluster_cidr: "10.128.0.0/9".parse().expect("cidr"),
    };
    let services: Vec<Service> = (0..n).map(service).collect();
    let mut slices: Vec<EndpointSlice> = (0..n).map(|i| slice(i, e, 0)).collect();
    let ns = ScopedNetNs::create_unique("weftbench-proxy").expect("netns");
    let mut proxy = Proxy::new();

    let t = Instant::now();
    let rs = compile(&node, &views(&node, &services, &slices));
    let compiled = t.elapsed();
    if let Ok(path) = std::env::var("DUMP") {
        std::fs::write(path, rs.full_script()).expect("dump");
    }
    let first = rs.clone();
    let kind = ns
        .run(|| proxy.sync(rs))
        .expect("enter netns")
        .expect("full load");
    let full = t.elapsed();
    assert_eq!(kind, SyncKind::Full);

    // One Service's endpoints change (as when one pod is replaced).
    slices[n / 2] = slice(n / 2, e, 1);
    let t = Instant::now();
    let rs = compile(&node, &views(&node, &services, &slices));
    let recompiled = t.elapsed();
    let d = Instant::now();
    let script = rs.update_script(&first).expect("same base");
    let equal = rs == first;
    let diffed = d.elapsed();
    let kind = ns
        .run(|| proxy.sync(rs))
        .expect("enter netns")
        .expect("update");
    let one = t.elapsed();
    assert_eq!(kind, SyncKind::Incremental);
    assert!(!equal && !script.is_empty(), "the change shows in the update");
    println!(
        "services={n} endpoints_per_service={e} full_sync_ms={:.1} (compile {:.1}) one_change_ms={:.1} (compile {:.1}, diff {:.1}, nft the rest)",
        full.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3 - diffed.as_secs_f64() * 1e3,
        recompiled.as_secs_f64() * 1e3,
        diffed.as_secs_f64() * 1e3
    );
}
