//! Times the proxy's kernel programming at scale (needs root): N Services x E endpoints are
//! compiled and loaded into a fresh network namespace from scratch, then one Service changes
//! (all its endpoints replaced) and the update is timed the way the agent makes it: that Service
//! recompiled alone, its chains and elements replaced in one transaction. Used by bench/proxy.sh.
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
    let all_views = views(&node, &services, &slices);
    let rs = compile(&node, &all_views);
    let compiled = t.elapsed();
    if let Ok(path) = std::env::var("DUMP") {
        std::fs::write(path, rs.full_script()).expect("dump");
    }
    let kind = ns
        .run(|| proxy.sync(rs))
        .expect("enter netns")
        .expect("full load");
    let full = t.elapsed();
    assert_eq!(kind, SyncKind::Full);

    // One Service's endpoints change (as when one pod is replaced).
    // One Service's endpoints change (as when one pod is replaced). The agent recompiles only
    // that Service: its views from its own slice, then the per-service change.
    slices[n / 2] = slice(n / 2, e, 1);
    let t = Instant::now();
    let new_views = views(
        &node,
        &services[n / 2..n / 2 + 1],
        &slices[n / 2..n / 2 + 1],
    );
    let old_views: Vec<_> = all_views
        .iter()
        .filter(|v| v.name == format!("s{}", n / 2))
        .cloned()
        .collect();
    let changes: Vec<_> = old_views
        .into_iter()
        .map(Some)
        .zip(new_views.into_iter().map(Some))
        .collect();
    let kind = ns
        .run(|| proxy.sync_changes(&node, &changes))
        .expect("enter netns")
        .expect("update");
    let one = t.elapsed();
    assert_eq!(kind, Some(SyncKind::Incremental));
    // For comparison: recompiling everything for the same change.
    let t = Instant::now();
    let whole = compile(&node, &views(&node, &services, &slices));
    let recompiled = t.elapsed();
    assert!(whole.chain_count() >= n);
    println!(
        "services={n} endpoints_per_service={e} full_sync_ms={:.1} (compile {:.1}) one_change_ms={:.2} (a whole recompile alone: {:.1})",
        full.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3,
        recompiled.as_secs_f64() * 1e3
    );
}
