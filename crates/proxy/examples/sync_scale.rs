//! Times the proxy's kernel programming at scale (needs root): N Services x E endpoints are
//! compiled and loaded into a fresh network namespace from scratch, then one Service changes
//! (all its endpoints replaced by addresses no Service had) and the update is timed the way the agent makes it: that Service
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

/// Endpoint `e` of Service `i` in a generation: every (Service, endpoint, generation) has its own
/// address, so a new generation of a slice shares no address with any slice before it (64 x
/// 65536 addresses per generation: enough for 400k endpoints).
fn endpoint_ip(i: usize, endpoints: usize, e: usize, generation: usize) -> String {
    let n = i * endpoints + e;
    assert!(n < 64 * 65536 && generation < 2, "address plan exceeded");
    format!(
        "10.{}.{}.{}",
        128 + 64 * generation + n / 65536,
        (n / 256) % 256,
        n % 256
    )
}

fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            serde_json::json!({"addresses": [endpoint_ip(i, endpoints, e, generation)], "conditions": {"ready": true}})
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
        external_ip_ranges: Vec::new(),
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

    // One Service's endpoints are all replaced by new addresses (as when its pods are
    // replaced). The agent recompiles only that Service: its views from its own slice, then the
    // per-service change. (Generation 1 used to shift the addresses by one, which replaced one
    // endpoint of ten and reused the next Service's first address.)
    let changed = n / 2;
    slices[changed] = slice(changed, e, 1);
    let addresses = |s: &EndpointSlice| -> std::collections::HashSet<String> {
        s.endpoints
            .iter()
            .flat_map(|ep| ep.addresses.iter().cloned())
            .collect()
    };
    let new_addresses = addresses(&slices[changed]);
    let before = addresses(&slice(changed, e, 0));
    assert_eq!(new_addresses.len(), e, "every endpoint has a new address");
    assert!(
        new_addresses.is_disjoint(&before),
        "the change replaces every endpoint"
    );
    let t = Instant::now();
    let new_views = views(
        &node,
        &services[changed..changed + 1],
        &slices[changed..changed + 1],
    );
    let name = format!("s{changed}");
    let old_views: Vec<_> = all_views
        .iter()
        .filter(|v| v.name == name)
        .cloned()
        .collect();
    assert!(!old_views.is_empty(), "the changed Service had views");
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
    assert_eq!(whole.frontend_count(), n);
    println!(
        "services={n} endpoints_per_service={e} full_sync_ms={:.1} (compile {:.1}) one_change_ms={:.2} (all {e} endpoints of one Service replaced; a whole recompile alone: {:.1})",
        full.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3,
        one.as_secs_f64() * 1e3,
        recompiled.as_secs_f64() * 1e3
    );
}
