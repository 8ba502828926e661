//! No 5-second DNS stalls: the conntrack insertion race that makes glibc's parallel A/AAAA
//! lookups wait 5 s on Kubernetes (kubernetes#56903) loses no question in weft. Needs root,
//! python3 and conntrack; the lab is torn down in Drop.
//!
//! The race: glibc sends a lookup's A and AAAA questions back to back on one UDP socket (one
//! `sendmmsg`, one 5-tuple). The first packet of a flow gets an unconfirmed conntrack entry at
//! prerouting, the proxy's DNAT picks a DNS pod for it (`numgen random`, per entry), and the
//! entry is inserted ("confirmed") only when the packet leaves the node's hooks. When the second
//! packet reaches conntrack before the first is confirmed (two CPUs at once), both entries have
//! the same original tuple, and the second insertion clashes. Kernels used to drop the loser
//! (`insert_failed`), and glibc waited its 5 s timeout before asking again.
//!
//! Why weft does not stall (kernel facts, `net/netfilter/nf_conntrack_core.c`): UDP sets
//! `allow_clash`, and `nf_ct_resolve_clash` resolves the clash instead of dropping. With the
//! same NAT result the loser's packet is attached to the winner's entry (71d8c47fc653,
//! ed07d9a021df); with a different DNS pod picked for each packet, the loser is inserted for its
//! reply direction only, flagged `IPS_NAT_CLASH` with a 1 s timeout, so it reaches its own DNS
//! pod and the answer is un-NATed on the way back (6a757c07e51f, "allow insertion of clashing
//! entries", Linux 5.6; 5.9 stopped the first reply from deleting that entry). Either way
//! `clash_resolve` counts it; what is still dropped is a clash of the reply tuples too, which
//! two different backends do not make. (Written on 6.18; on a kernel before 5.6 this test fails
//! on `insert_failed`.)
//!
//! What the lab shows (the storms below): glibc's own pairs do not even race here. Both packets
//! leave one thread in one `sendmmsg`, and each goes through the pod's veth and the node's hooks
//! to completion in that sender's softirq on its CPU before the second is sent; the second then
//! finds the first's confirmed entry and follows it to the same DNS pod (`clash_resolve` stays
//! 0 through the getent storm). So the second storm sends the same pairs from two threads
//! released at once (`dns_pairs.py`, as the kernel's selftest `udpclash.c` does): they race,
//! `clash_resolve` rises, and the DNS pods' query logs show sockets whose A went to one DNS pod
//! and AAAA to the other. Every question is still answered at once, and `insert_failed` and
//! `drop` stay 0: on a kernel before 5.6 those split pairs are exactly the dropped ones.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};

use weft_testutil::{client_pod, name_of, pod_ip, wait_for_what, Lab, AGNHOST};

/// The client pods, two on each node (`-nodeN`).
const CLIENTS: [(&str, u32); 4] = [("c1", 1), ("c2", 2), ("c3", 1), ("c4", 2)];

/// getent loops running at once in each client pod (32 lookups in flight over the four pods),
/// and how many times each looks every name up. More loops only add CPU contention on a small
/// machine (a lookup's time includes starting getent), not races: glibc's pairs do not race
/// here whatever the load, which is what the racing storm is for.
const WORKERS: usize = 8;
const ROUNDS: usize = 24;

/// The short name (answered at the first search suffix) and one that goes through the search
/// path: `web.default.svc` has fewer than 5 dots, so glibc tries
/// `web.default.svc.default.svc.cluster.local` and `web.default.svc.svc.cluster.local`
/// (NXDOMAIN, each an A/AAAA pair on its own socket) before `web.default.svc.cluster.local`.
const NAMES: [&str; 2] = ["web", "web.default.svc"];

/// Racing pairs per client pod in one storm; storms until the race has been seen (a clash and a
/// pair split over both DNS pods), at most `MAX_STORMS`. Pair n of storm k leaves from port
/// `FIRST_PORT + k * PAIRS + n`, below the ephemeral range, so the query logs tell pairs apart.
const PAIRS: u32 = 1000;
const MAX_STORMS: u32 = 5;
const FIRST_PORT: u32 = 20000;

/// A lookup slower than this counts as a stall (glibc's timeout is 5 s; a clean answer here
/// takes milliseconds).
const STALL_SECS: f64 = 1.0;

/// In a client pod: `WORKERS` loops at once, each running `getent ahosts NAME` for every name,
/// `ROUNDS` times, timed with bash's clock; one line per lookup:
/// `<ok|fail> <name> <start> <end>` (ok: it succeeded and its first address is the expected one).
const STORM: &str = r#"
export LC_ALL=C
workers=$1 rounds=$2 want=$3
shift 3
for w in $(seq "$workers"); do
  (
    for r in $(seq "$rounds"); do
      for name in "$@"; do
        start=$EPOCHREALTIME
        out=$(getent ahosts "$name")
        rc=$?
        end=$EPOCHREALTIME
        case "$rc:$out" in
          0:"$want "*) echo "ok $name $start $end" ;;
          *) echo "fail $name $start $end" ;;
        esac
      done
    done
  ) &
done
wait
"#;

const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: AGNHOST, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n";

/// Lookup durations in seconds, summarised.
struct Timings(Vec<f64>);

impl Timings {
    fn new(mut secs: Vec<f64>) -> Timings {
        secs.sort_by(f64::total_cmp);
        Timings(secs)
    }

    fn quantile(&self, q: f64) -> f64 {
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len().max(1));
        self.0.get(rank - 1).copied().unwrap_or(0.0)
    }

    fn stalls(&self) -> usize {
        self.0.iter().filter(|s| **s > STALL_SECS).count()
    }

    fn summary(&self) -> String {
        format!(
            "{} lookups: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, over {STALL_SECS} s: {}",
            self.0.len(),
            self.quantile(0.5) * 1e3,
            self.quantile(0.99) * 1e3,
            self.0.last().copied().unwrap_or(0.0) * 1e3,
            self.stalls()
        )
    }
}

/// `weft exec POD -- ARGS`, started, its stdout and stderr captured.
fn spawn_in(lab: &Lab, pod: &str, args: &[&str]) -> Child {
    let mut all = vec!["exec", pod, "--"];
    all.extend_from_slice(args);
    lab.weft_cmd(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weft exec")
}

/// Waits for each child, which must succeed; their stdouts, in order.
fn outputs(children: Vec<(String, Child)>) -> Vec<String> {
    children
        .into_iter()
        .map(|(pod, child)| {
            let out = child.wait_with_output().expect("waiting for weft exec");
            assert!(
                out.status.success(),
                "in {pod}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// The node's conntrack statistics (`conntrack -S`, one line per CPU), summed over its CPUs.
fn conntrack_stats(lab: &Lab, node: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for field in lab
        .in_node(node, &["conntrack", "-S"])
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
    {
        if let Ok(v) = field.1.parse::<u64>() {
            *sums.entry(field.0.to_string()).or_insert(0) += v;
        }
    }
    sums
}

/// How much `field` grew on `node` between two readings.
fn grew(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, field: &str) -> u64 {
    let get = |m: &BTreeMap<String, u64>| m.get(field).copied().unwrap_or(0);
    get(after).saturating_sub(get(before))
}

/// Every node's conntrack statistics, by node.
fn all_stats(lab: &Lab, nodes: &[String]) -> Vec<BTreeMap<String, u64>> {
    nodes.iter().map(|n| conntrack_stats(lab, n)).collect()
}

/// From a DNS pod's query log: the clients (`ip:port`) of the questions whose source port is in
/// `ports`, with how many questions each asked.
fn clients_in_log(log: &str, ports: &std::ops::Range<u32>) -> BTreeMap<String, usize> {
    let mut clients = BTreeMap::new();
    for client in log
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("client="))
    {
        let port = client.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        if port.is_some_and(|p| ports.contains(&p)) {
            *clients.entry(client.to_string()).or_insert(0) += 1;
        }
    }
    clients
}

#[test]
fn concurrent_lookups_from_several_pods_never_stall() {
    weft_testutil::require_tool("python3", "python3");
    weft_testutil::require_tool("conntrack", "conntrack");
    let lab = Lab::new();
    let nodes: Vec<String> = (1..=2).map(|n| format!("{}-node{n}", lab.name)).collect();
    let mut manifest = vec![APP.replace("AGNHOST", AGNHOST)];
    for (c, node) in CLIENTS {
        manifest.push(client_pod(c, &nodes[node as usize - 1]));
    }
    let manifest = lab.write("app.yaml", &manifest.join("---\n"));
    // The query log says which DNS pod answered which client socket.
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 2\ndnsQueryLog: true\n",
            lab.name
        ),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &manifest, "--wait", "60",
    ]);
    let web_ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .expect("web has a cluster IP")
        .to_string();

    // Two DNS pods behind 10.96.0.10, and every node's proxy balancing over both.
    let dns_pods = lab.pods(&["-n", "kube-system", "-l", "k8s-app=kube-dns"]);
    assert_eq!(dns_pods.len(), 2, "{dns_pods:?}");
    for p in &dns_pods {
        println!(
            "DNS pod {} ({}) on {}",
            name_of(p),
            pod_ip(p),
            p["spec"]["nodeName"].as_str().unwrap_or("?")
        );
    }
    for node in &nodes {
        wait_for_what(&format!("both DNS pods in {node}'s service rules"), || {
            let rules = lab.in_node(node, &["nft", "list", "table", "ip", "weft_services"]);
            dns_pods
                .iter()
                .all(|p| rules.contains(&format!("{} . 53", pod_ip(p))))
        });
    }

    // The getent storm: glibc's own A/AAAA pairs, WORKERS at once in each of the four pods.
    let before = all_stats(&lab, &nodes);
    let workers = WORKERS.to_string();
    let rounds = ROUNDS.to_string();
    let children = CLIENTS
        .iter()
        .map(|(c, _)| {
            let mut args = vec!["bash", "-c", STORM, "storm", &workers, &rounds, &web_ip];
            args.extend_from_slice(&NAMES);
            (c.to_string(), spawn_in(&lab, c, &args))
        })
        .collect();
    let lines: Vec<String> = outputs(children)
        .iter()
        .flat_map(|o| o.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let after_getent = all_stats(&lab, &nodes);
    assert_eq!(
        lines.len(),
        CLIENTS.len() * WORKERS * ROUNDS * NAMES.len(),
        "one line per lookup"
    );
    let mut by_name: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut failed = Vec::new();
    for line in &lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [result, name, start, end] = fields[..] else {
            panic!("unexpected storm output: {line}");
        };
        let secs = end.parse::<f64>().unwrap() - start.parse::<f64>().unwrap();
        if result != "ok" {
            failed.push(line.clone());
        }
        let name = NAMES.iter().find(|n| **n == name).expect("a storm name");
        by_name.entry(name).or_default().push(secs);
    }
    for (name, secs) in &by_name {
        println!(
            "getent ahosts {name}: {}",
            Timings::new(secs.clone()).summary()
        );
    }
    let getent = Timings::new(by_name.into_values().flatten().collect());
    println!("getent storm, all: {}", getent.summary());
    for (node, (b, a)) in nodes.iter().zip(before.iter().zip(&after_getent)) {
        println!(
            "getent storm, {node}: clash_resolve +{}, insert_failed +{}, drop +{}",
            grew(b, a, "clash_resolve"),
            grew(b, a, "insert_failed"),
            grew(b, a, "drop")
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {} lookups failed or answered another address, e.g. {:?}",
        failed.len(),
        lines.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(getent.stalls(), 0, "{}", getent.summary());

    // The racing storm: the same pairs sent from two threads at once, until the race was seen.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dns_pairs.py");
    let name = "web.default.svc.cluster.local";
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dns_names: Vec<String> = dns_pods.iter().map(name_of).collect();
    let mut pair_secs = Vec::new();
    let mut unanswered = 0;
    let mut splits = 0;
    let mut clashes = 0;
    for storm in 0..MAX_STORMS {
        let first = FIRST_PORT + storm * PAIRS;
        let (pairs, first_arg) = (PAIRS.to_string(), first.to_string());
        let children = CLIENTS
            .iter()
            .map(|(c, _)| {
                let args = ["python3", script, "10.96.0.10", name, &pairs, &first_arg];
                (c.to_string(), spawn_in(&lab, c, &args))
            })
            .collect();
        for line in outputs(children).iter().flat_map(|o| o.lines()) {
            let (answers, secs) = line.split_once(' ').expect("<answers> <seconds>");
            if answers != "2" {
                unanswered += 1;
            }
            pair_secs.push(secs.parse::<f64>().unwrap());
        }
        let now = all_stats(&lab, &nodes);
        clashes = after_getent
            .iter()
            .zip(&now)
            .map(|(b, a)| grew(b, a, "clash_resolve"))
            .sum();
        // The sockets of all storms so far that both DNS pods answered: A to one, AAAA to the
        // other. Each answered question is logged; wait for the logs to hold them all.
        let ports = FIRST_PORT..first + PAIRS;
        let asked = 2 * CLIENTS.len() * (ports.len());
        let mut seen = Vec::new();
        wait_for_what("every racing question in the DNS pods' query logs", || {
            seen = dns_names
                .iter()
                .map(|p| {
                    let out = lab.kubectl(&["logs", "-n", "kube-system", p, "--tail=-1"]);
                    clients_in_log(&String::from_utf8_lossy(&out.stdout), &ports)
                })
                .collect();
            seen.iter().flat_map(|m| m.values()).sum::<usize>() >= asked - 2 * unanswered
        });
        let in_both: BTreeSet<&String> = seen[0]
            .keys()
            .filter(|c| seen[1].contains_key(*c))
            .collect();
        splits = in_both.len();
        println!(
            "racing storm {}: {} pairs so far, clash_resolve +{clashes}, pairs split over both DNS pods: {splits} (e.g. {:?})",
            storm + 1,
            pair_secs.len(),
            in_both.iter().take(3).collect::<Vec<_>>()
        );
        if cpus < 2 || (clashes > 0 && splits > 0) {
            break;
        }
    }
    let racing = Timings::new(pair_secs);
    println!("racing pairs: {}", racing.summary());
    let after = all_stats(&lab, &nodes);
    for (node, (b, a)) in nodes.iter().zip(before.iter().zip(&after)) {
        println!(
            "both storms, {node}: clash_resolve +{}, insert_failed +{}, drop +{}",
            grew(b, a, "clash_resolve"),
            grew(b, a, "insert_failed"),
            grew(b, a, "drop")
        );
        // No packet was lost to a conntrack insertion clash on any node.
        assert_eq!(grew(b, a, "insert_failed"), 0, "{node}: {a:?}");
        assert_eq!(grew(b, a, "drop"), 0, "{node}: {a:?}");
    }
    assert_eq!(unanswered, 0, "racing pairs with a question unanswered");
    assert_eq!(racing.stalls(), 0, "{}", racing.summary());
    // The storm did what it is for: the race happened, with pairs split over both DNS pods
    // (impossible to force on one CPU: the two threads never run at once there).
    if cpus >= 2 {
        assert!(clashes > 0, "no conntrack clash in {MAX_STORMS} storms");
        assert!(
            splits > 0,
            "no pair split over both DNS pods in {MAX_STORMS} storms"
        );
    } else {
        println!("one CPU: the racing storm cannot make packets race");
    }
}
