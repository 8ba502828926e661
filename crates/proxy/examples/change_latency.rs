//! One Service change at scale, many times (needs root; works in a namespace it creates):
//! N Services x E endpoints are loaded whole (`Proxy::sync`, timed), then `changes` Services in
//! turn get all their endpoints replaced and each change is timed the way the agent makes it
//! (`Proxy::sync_changes`: that Service recompiled alone, one netlink batch). Prints p50/p99.
//! Then raw batches on the same table, to see what the kernel's commit costs by kind of change:
//! only a `backends` element (data, no verdict), only a `service_ips` element (a verdict: goto a
//! chain), only a Service's chain (rules with a jump).
//!   cargo run --release -p weft-proxy --example change_latency -- 10000 10 200

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::nft::{Applied, Applier, Elem, ElemData, L4Proto, Tx, Value, Verdict};
use weft_dataplane::ScopedNetNs;
use weft_proxy::{compile, view::views, Proxy, ProxyNode, ServicePortView, SyncKind};

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("s{i}"), "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("valid service")
}

/// Service `i`'s slice in a generation: every (Service, endpoint, generation) has its own
/// address, so a change replaces all of a Service's endpoints.
fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = (i * endpoints + e) as u32 | (generation as u32) << 22;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + n);
            serde_json::json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
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

fn view(node: &ProxyNode, i: usize, endpoints: usize, generation: usize) -> ServicePortView {
    let v = views(node, &[service(i)], &[slice(i, endpoints, generation)]);
    v.into_iter().next().expect("one service port")
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let pct = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
    println!(
        "{name:<52} n={:<4} p50 {:>8.3} ms  p99 {:>8.3} ms",
        d.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let e = args.get(1).copied().unwrap_or(10);
    let changes = args.get(2).copied().unwrap_or(200);
    let node = ProxyNode {
        name: "bench-node".into(),
        ip: "172.20.0.2".parse().expect("ip"),
        cluster_cidr: "10.128.0.0/9".parse().expect("cidr"),
    };
    let mut all: Vec<ServicePortView> = (0..n).map(|i| view(&node, i, e, 0)).collect();
    let ns = ScopedNetNs::create_unique("weftbench-chg").expect("netns");
    ns.run(|| {
        let mut times = Vec::new();
        for _ in 0..3 {
            let mut proxy = Proxy::new();
            // A fresh applier would keep an identical table an earlier run loaded.
            let _ = weft_dataplane::nft::delete_table("ip", weft_proxy::TABLE);
            let t = Instant::now();
            let kind = proxy.sync(compile(&node, &all)).expect("full load");
            times.push(t.elapsed());
            assert_eq!(kind, SyncKind::Full);
        }
        report(
            &format!("whole load, {n} Services x {e} endpoints (compile + load)"),
            times,
        );

        let mut proxy = Proxy::new();
        proxy.sync(compile(&node, &all)).expect("full load");
        let mut times = Vec::new();
        for round in 0..changes {
            let i = (round * 7919) % n;
            let generation = 1 - (round / n) % 2;
            let new = view(&node, i, e, generation);
            let change = [(Some(all[i].clone()), Some(new.clone()))];
            let t = Instant::now();
            let kind = proxy.sync_changes(&node, &change).expect("change");
            times.push(t.elapsed());
            assert_eq!(kind, Some(SyncKind::Incremental));
            all[i] = new;
        }
        report(
            &format!("one Service's {e} endpoints replaced (sync_changes)"),
            times,
        );
        assert_eq!(
            proxy.sync(compile(&node, &all)).expect("check"),
            SyncKind::Unchanged,
            "the changes add up to a whole compile"
        );

        // Raw batches by kind, on the same table.
        let table = compile(&node, &all).table();
        let mut ap = Applier::new();
        ap.load_whole(&table).expect("whole load");
        let backends: Vec<_> = table.sets["backends"].elements.keys().cloned().collect();
        let svc_keys: Vec<_> = table.sets["service_ips"].elements.keys().cloned().collect();
        let kinds: [(&str, &dyn Fn(usize) -> Tx); 2] = [
            ("raw: one backends element (data)", &|r| {
                let mut tx = Tx::new();
                let ip = Ipv4Addr::new(10, 250, (r >> 8) as u8, r as u8);
                tx.put_element(
                    "backends",
                    backends[(r * 7919) % backends.len()].clone(),
                    Elem::data(ElemData::Values(vec![Value::Ipv4(ip), Value::Port(8080)])),
                );
                tx
            }),
            ("raw: one service_ips element (verdict goto)", &|r| {
                let mut tx = Tx::new();
                let key = &svc_keys[(r * 7919) % svc_keys.len()];
                let moved = vec![
                    key[0],
                    Value::Proto(L4Proto::Tcp),
                    Value::Port(81 + (r % 2) as u16),
                ];
                let old = vec![
                    key[0],
                    Value::Proto(L4Proto::Tcp),
                    Value::Port(81 + ((r + 1) % 2) as u16),
                ];
                let chain = match &table.sets["service_ips"].elements[key].data {
                    Some(ElemData::Verdict(v)) => v.clone(),
                    _ => Verdict::Accept,
                };
                tx.delete_element("service_ips", old).put_element(
                    "service_ips",
                    moved,
                    Elem::data(ElemData::Verdict(chain)),
                );
                tx
            }),
        ];
        for (name, make) in kinds {
            let mut times = Vec::new();
            for r in 0..changes {
                let tx = make(r);
                let t = Instant::now();
                let applied = ap.commit(tx).expect("commit");
                times.push(t.elapsed());
                assert!(
                    matches!(applied, Applied::Incremental(_) | Applied::Unchanged),
                    "{applied:?}"
                );
            }
            report(name, times);
        }
        let mut times = Vec::new();
        for r in 0..changes {
            let name = format!("svc-default/s{}/tcp/http", (r * 7919) % n);
            let mut c = ap.loaded().expect("loaded").chains[&name].clone();
            c.rules.reverse();
            let mut tx = Tx::new();
            tx.put_chain(c);
            let t = Instant::now();
            let applied = ap.commit(tx).expect("commit");
            times.push(t.elapsed());
            assert!(matches!(applied, Applied::Incremental(_)), "{applied:?}");
        }
        report(
            "raw: one Service chain rewritten (rules with a jump)",
            times,
        );
    })
    .expect("enter netns");
}
