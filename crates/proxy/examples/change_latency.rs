//! One Service change at scale, many times, for each kind of change (needs root; works in a
//! namespace it creates): N Services x E endpoints are loaded whole (`Proxy::sync`, timed),
//! then `changes` Services in turn change and each change is timed the way the agent makes it
//! (`Proxy::sync_changes`: that Service recompiled alone, one netlink batch). Kinds: all
//! endpoints replaced; one endpoint more or fewer (a count no other Service has: its pick
//! chain comes and goes); the Service removed and added back; a NodePort with
//! `externalTrafficPolicy: Local` added and taken away; session affinity switched on and off
//! (the one kind with chains of its own). Prints p50/p99 per kind, each judged against the
//! 2 ms target. Then raw batches on the same table, to see what the kernel's commit costs:
//! one `backends` element, one `service_ips` element (data), one shared chain rewritten
//! (a rule: the kernel re-validates the table's jump graph).
//!   cargo run --release -p weft-proxy --example change_latency -- 10000 10 200

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::nft::{Applied, Applier, Elem, ElemData, L4Proto, Tx, Value};
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

/// How long this thread has waited for a CPU while runnable (`/proc/thread-self/schedstat`):
/// on a busy machine a change can take longer only because another process had the CPU.
fn runqueue_wait() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// One timed run of `f`: wall-clock time and the part spent waiting for a CPU.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Sample) {
    let (w, t) = (runqueue_wait(), Instant::now());
    let out = f();
    let wall = t.elapsed();
    (
        out,
        Sample {
            wall,
            waited: runqueue_wait().saturating_sub(w),
        },
    )
}

#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    waited: Duration,
}

/// Prints p50/p99 of the samples' wall-clock times and, for Service changes, the verdict
/// against the 2 ms target (on wall-clock time); then p99 of the time waiting for a CPU.
fn report(name: &str, samples: Vec<Sample>, judged: bool) {
    let mut d: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
    let mut waits: Vec<Duration> = samples.iter().map(|s| s.waited).collect();
    d.sort();
    waits.sort();
    let at = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let pct = |p: f64| at(&d, p);
    let (p50, p99) = (pct(0.5).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3);
    let waited = at(&waits, 0.99).as_secs_f64() * 1e3;
    let mut busy: Vec<Duration> = samples
        .iter()
        .map(|s| s.wall - s.waited.min(s.wall))
        .collect();
    busy.sort();
    let busy = at(&busy, 0.99).as_secs_f64() * 1e3;
    let verdict = if !judged {
        ""
    } else if p50 < 2.0 && p99 < 2.0 {
        "  (target < 2 ms: met)"
    } else {
        "  (target < 2 ms: MISSED)"
    };
    println!(
        "{name:<54} n={:<4} p50 {p50:>8.3} ms  p99 {p99:>8.3} ms{verdict}  [p99 waiting for a CPU {waited:.3} ms; p99 without that wait {busy:.3} ms]",
        d.len(),
    );
}

/// A change as steps, each one Service's (old, new) views.
type Steps = Vec<(Option<ServicePortView>, Option<ServicePortView>)>;

/// A kind of change: (round, the Service's current view) -> its steps.
type Change<'a> = dyn Fn(usize, &ServicePortView) -> Steps + 'a;

/// Times `changes` rounds of one Service's change, `change(round, current) -> steps`: the
/// times of each step apart.
fn changes_of(
    proxy: &mut Proxy,
    node: &ProxyNode,
    all: &mut [ServicePortView],
    changes: usize,
    change: &Change<'_>,
) -> Vec<Vec<Sample>> {
    let n = all.len();
    let mut times = Vec::new();
    for round in 0..changes {
        let i = (round * 7919) % n;
        let steps = change(round, &all[i]);
        times.resize(steps.len(), Vec::new());
        for (s, step) in steps.into_iter().enumerate() {
            let (kind, sample) = timed(|| proxy.sync_changes(node, std::slice::from_ref(&step)));
            let kind = kind.expect("change");
            times[s].push(sample);
            assert_eq!(kind, Some(SyncKind::Incremental));
            if let Some(v) = step.1 {
                all[i] = v;
            }
        }
    }
    times
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
        external_ip_ranges: Vec::new(),
    };
    let mut all: Vec<ServicePortView> = (0..n).map(|i| view(&node, i, e, 0)).collect();
    let ns = ScopedNetNs::create_unique("weftbench-chg").expect("netns");
    ns.run(|| {
        let mut times = Vec::new();
        for _ in 0..3 {
            let mut proxy = Proxy::new();
            // A fresh applier would keep an identical table an earlier run loaded.
            let _ = weft_dataplane::nft::delete_table("ip", weft_proxy::TABLE);
            let (kind, sample) = timed(|| proxy.sync(compile(&node, &all)));
            let kind = kind.expect("full load");
            times.push(sample);
            assert_eq!(kind, SyncKind::Full);
        }
        report(
            &format!("whole load, {n} Services x {e} endpoints (compile + load)"),
            times,
            false,
        );

        let mut proxy = Proxy::new();
        proxy.sync(compile(&node, &all)).expect("full load");
        let kinds: [(&[&str], &Change<'_>); 5] = [
            (&["one Service's endpoints all replaced"], &|round, cur| {
                let i = (round * 7919) % n;
                let generation = 1 - (round / n) % 2;
                vec![(Some(cur.clone()), Some(view(&node, i, e, generation)))]
            }),
            (
                &[
                    "one Service's endpoints +1 (a count no other has)",
                    "one Service's endpoints -1 (back to the common count)",
                ],
                &|_, cur| {
                    let mut more = cur.clone();
                    let mut extra = cur.endpoints[0].clone();
                    extra.ip = Ipv4Addr::new(10, 250, 0, 1);
                    more.endpoints.push(extra);
                    vec![
                        (Some(cur.clone()), Some(more.clone())),
                        (Some(more), Some(cur.clone())),
                    ]
                },
            ),
            (&["one Service removed", "one Service added"], &|_, cur| {
                vec![(Some(cur.clone()), None), (None, Some(cur.clone()))]
            }),
            (
                &[
                    "one Service gets a NodePort (policy Local)",
                    "one Service loses its NodePort",
                ],
                &|round, cur| {
                    let mut np = cur.clone();
                    np.node_port = Some(30000 + (round % 2000) as u16);
                    np.external_local = true;
                    vec![
                        (Some(cur.clone()), Some(np.clone())),
                        (Some(np), Some(cur.clone())),
                    ]
                },
            ),
            (
                &[
                    "one Service gets session affinity (chains)",
                    "one Service loses session affinity",
                ],
                &|_, cur| {
                    let mut sticky = cur.clone();
                    sticky.affinity_timeout = Some(10800);
                    vec![
                        (Some(cur.clone()), Some(sticky.clone())),
                        (Some(sticky), Some(cur.clone())),
                    ]
                },
            ),
        ];
        for (names, change) in kinds {
            let times = changes_of(&mut proxy, &node, &mut all, changes, change);
            for (name, times) in names.iter().zip(times) {
                report(name, times, true);
            }
        }
        assert_eq!(
            proxy.sync(compile(&node, &all)).expect("check"),
            SyncKind::Unchanged,
            "the changes add up to a whole compile"
        );

        // Raw batches by kind, on the same table.
        let table = compile(&node, &all).table();
        let mut ap = Applier::new();
        ap.load_whole(&table).expect("whole load");
        let backends: Vec<_> = table.sets["backends_10"].elements.keys().cloned().collect();
        let frontends: Vec<_> = table.sets["service_ips"].elements.keys().cloned().collect();
        let kinds: [(&str, &dyn Fn(usize) -> Tx); 2] = [
            ("raw: one backends_10 element (data)", &|r| {
                let mut tx = Tx::new();
                let ip = Ipv4Addr::new(10, 250, (r >> 8) as u8, r as u8);
                tx.put_element(
                    "backends_10",
                    backends[(r * 7919) % backends.len()].clone(),
                    Elem::data(ElemData::Values(vec![Value::Ipv4(ip), Value::Port(8080)])),
                );
                tx
            }),
            ("raw: one service_ips element moved (data)", &|r| {
                let mut tx = Tx::new();
                let key = &frontends[(r * 7919) % frontends.len()];
                let port = |k: usize| Value::Port(81 + (k % 2) as u16);
                let moved = vec![key[0], Value::Proto(L4Proto::Tcp), port(r)];
                let old = vec![key[0], Value::Proto(L4Proto::Tcp), port(r + 1)];
                let data = table.sets["service_ips"].elements[key].clone();
                tx.delete_element("service_ips", old)
                    .put_element("service_ips", moved, data);
                tx
            }),
        ];
        for (name, make) in kinds {
            let mut times = Vec::new();
            for r in 0..changes {
                let tx = make(r);
                let (applied, sample) = timed(|| ap.commit(tx));
                let applied = applied.expect("commit");
                times.push(sample);
                assert!(
                    matches!(applied, Applied::Incremental(_) | Applied::Unchanged),
                    "{applied:?}"
                );
            }
            report(name, times, false);
        }
        let mut times = Vec::new();
        for _ in 0..changes {
            let mut c = ap.loaded().expect("loaded").chains["pick_10"].clone();
            c.rules.reverse();
            let mut tx = Tx::new();
            tx.put_chain(c);
            let (applied, sample) = timed(|| ap.commit(tx));
            let applied = applied.expect("commit");
            times.push(sample);
            assert!(matches!(applied, Applied::Incremental(_)), "{applied:?}");
        }
        report(
            "raw: the shared pick_10 chain rewritten (rules)",
            times,
            false,
        );
    })
    .expect("enter netns");
}
