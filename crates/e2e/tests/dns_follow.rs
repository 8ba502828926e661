//! The cluster DNS follows the cluster, measured from pods: a headless Service's answer follows
//! its Deployment's scale up and down (how long after the scale, and after the EndpointSlice,
//! the DNS answer has the new set is printed; the only bound asserted is a generous 30 s),
//! `weft describe svc` says NoDNSRecords while the Service has no ready endpoint, and
//! 10.96.0.10 answers over UDP and TCP (`dig +tcp`) from pods on both nodes. Needs root; the
//! lab is torn down in Drop.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_testutil::{client_pod, pod_ip, wait_for_what, Lab, AGNHOST};

/// How long an answer may take to follow a scale before the test fails: generous, since the
/// figure is measured and printed, not a performance assertion.
const FOLLOW_LIMIT: Duration = Duration::from_secs(30);

const HEADLESS: &str = "peers.default.svc.cluster.local";

/// `web`, a ClusterIP Service, and `peers`, a headless one over the `peer` Deployment.
const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: AGNHOST, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: peer}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: peer}}\n  template:\n    metadata: {labels: {app: peer}}\n    spec:\n      containers: [{name: peer, image: AGNHOST, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: peers}\nspec:\n  clusterIP: None\n  selector: {app: peer}\n  ports: [{name: http, port: 80}]\n";

/// `dig @10.96.0.10 NAME` from `pod` (with `+tcp` or `+notcp`): the A records of a NOERROR
/// answer, None for anything else (no answer in time, another rcode).
fn dig_a(lab: &Lab, pod: &str, transport: &str, name: &str) -> Option<BTreeSet<String>> {
    let out = lab.weft(&[
        "exec",
        pod,
        "--",
        "dig",
        "@10.96.0.10",
        transport,
        "+time=1",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
        name,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("status: NOERROR") {
        return None;
    }
    Some(
        text.lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [_, _, "IN", "A", ip] => Some(ip.to_string()),
                _ => None,
            })
            .collect(),
    )
}

/// The ready addresses in the `peers` Service's EndpointSlices.
fn ready_endpoints(lab: &Lab) -> BTreeSet<String> {
    let out = lab.weft(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=peers",
        "-o",
        "json",
    ]);
    let slices: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut ready = BTreeSet::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            if e["conditions"]["ready"] == true {
                for a in e["addresses"].as_array().into_iter().flatten() {
                    ready.extend(a.as_str().map(str::to_string));
                }
            }
        }
    }
    ready
}

/// The addresses of the `peer` pods that are running and not being deleted.
fn peer_pods(lab: &Lab) -> BTreeSet<String> {
    lab.pods(&["-l", "app=peer"])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running")
        .map(pod_ip)
        .collect()
}

/// Seconds after `start` at which `cond` first held, polling as fast as its command allows;
/// None if it did not within [`FOLLOW_LIMIT`].
fn seconds_until(start: Instant, mut cond: impl FnMut() -> bool) -> Option<f64> {
    while start.elapsed() < FOLLOW_LIMIT {
        if cond() {
            return Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Scales `peer` to `replicas` and measures, from the scale, when the EndpointSlice and when
/// the DNS answer (dig from `pod`) first have that many ready addresses; then checks that the
/// answer is exactly the running pods' addresses. Returns the DNS delay in seconds.
fn follow_scale(lab: &Lab, pod: &str, from: usize, replicas: usize) -> f64 {
    let start = Instant::now();
    lab.kubectl_ok(&[
        "scale",
        "deployment",
        "peer",
        &format!("--replicas={replicas}"),
    ]);
    let (slice, dns) = std::thread::scope(|s| {
        let slice = s.spawn(|| seconds_until(start, || ready_endpoints(lab).len() == replicas));
        let dns = s.spawn(|| {
            seconds_until(start, || {
                dig_a(lab, pod, "+notcp", HEADLESS).is_some_and(|a| a.len() == replicas)
            })
        });
        (slice.join().unwrap(), dns.join().unwrap())
    });
    let limit = FOLLOW_LIMIT.as_secs();
    let slice = slice.unwrap_or_else(|| panic!("{replicas} ready endpoints within {limit} s"));
    let dns =
        dns.unwrap_or_else(|| panic!("{replicas} addresses in the DNS answer within {limit} s"));
    println!(
        "scale peer {from} -> {replicas}: EndpointSlice after {slice:.3} s, DNS answer after {dns:.3} s ({:+.3} s after the slice)",
        dns - slice
    );
    // The answer is the new set, not just its size: the running pods, as the slice has them.
    wait_for_what("the peer pods settled", || peer_pods(lab).len() == replicas);
    let pods = peer_pods(lab);
    assert_eq!(ready_endpoints(lab), pods);
    assert_eq!(dig_a(lab, pod, "+notcp", HEADLESS), Some(pods));
    dns
}

#[test]
fn records_follow_a_scale_and_answer_over_udp_and_tcp_from_both_nodes() {
    let lab = Lab::new();
    let nodes: Vec<String> = (1..=2).map(|n| format!("{}-node{n}", lab.name)).collect();
    let manifest = lab.write(
        "app.yaml",
        &[
            APP.replace("AGNHOST", AGNHOST),
            client_pod("c1", &nodes[0]),
            client_pod("c2", &nodes[1]),
        ]
        .join("---\n"),
    );
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    let web_ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .expect("web has a cluster IP")
        .to_string();

    // UDP and TCP from a pod on each node, straight to the DNS Service's address.
    for c in ["c1", "c2"] {
        for (flag, transport) in [("+notcp", "UDP"), ("+tcp", "TCP")] {
            let out = lab.ok(&[
                "exec",
                c,
                "--",
                "dig",
                "@10.96.0.10",
                flag,
                "+time=2",
                "+tries=1",
                "web.default.svc.cluster.local",
            ]);
            assert!(out.contains("status: NOERROR"), "{c} {transport}: {out}");
            assert!(
                out.contains(&format!("#53(10.96.0.10) ({transport})")),
                "{c}: the answer came over {transport}: {out}"
            );
            let web = BTreeSet::from([web_ip.clone()]);
            assert_eq!(
                dig_a(&lab, c, flag, "web.default.svc.cluster.local"),
                Some(web),
                "{c} over {transport}"
            );
        }
        wait_for_what("the headless Service's two pods over TCP", || {
            dig_a(&lab, c, "+tcp", HEADLESS).is_some_and(|a| a.len() == 2)
        });
    }

    // A scale up, a scale down, to nothing and back: the answer follows each.
    let mut delays = Vec::new();
    for (from, to) in [(2, 5), (5, 1), (1, 0)] {
        delays.push(follow_scale(&lab, "c2", from, to));
    }
    // No ready endpoint: NOERROR with no address, and describe says why.
    assert_eq!(
        dig_a(&lab, "c1", "+tcp", HEADLESS),
        Some(BTreeSet::new()),
        "no address, NOERROR"
    );
    let described = lab.ok(&["describe", "svc", "peers"]);
    assert!(described.contains("NoDNSRecords"), "{described}");
    let web_described = lab.ok(&["describe", "svc", "web"]);
    assert!(!web_described.contains("NoDNSRecords"), "{web_described}");
    delays.push(follow_scale(&lab, "c1", 0, 3));
    let described = lab.ok(&["describe", "svc", "peers"]);
    assert!(!described.contains("NoDNSRecords"), "{described}");
    println!(
        "DNS delays after a scale (s): {}",
        delays
            .iter()
            .map(|d| format!("{d:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
