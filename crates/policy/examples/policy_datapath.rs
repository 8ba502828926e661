//! What the policy table costs a connection and a stream (needs root, `iperf3` and `nsenter`;
//! works in network namespaces it creates): a "node" namespace and two "pods" wired as the
//! CNI plugin wires them (`cni/src/wiring.rs`: a host veth `weft<11 hex>` per pod with a /32
//! route to it, the pod's default route via the link-local gateway 169.254.1.1 on a permanent
//! neighbour entry). The node's table is the one compiled for the synthetic cluster of
//! `cluster/mod.rs` (1,000 policies x 1,000 pods by default), with the server pod one of those
//! pods and the client a pod of its own namespace, allowed by one more policy whose chain the
//! server's profile reaches last: every new connection walks all the chains of the policies
//! selecting the server before it is accepted.
//!
//! Measured in the same run, conditions interleaved round by round: TCP connect latency (the
//! client's `connect` to the server's listener, then close; p50/p99) and iperf3 throughput
//! from client to server, with no table in the node, with a table holding only a conntrack
//! rule (what any stateful table costs), with weft's table for a node without policies (the
//! pod network's own isolation and the stateful pass: what a weft node always has), and with
//! the policy table. Prints the ratios (policies vs none installed, and each vs no table at
//! all) and `key=value` figures for bench/policy.sh.
//!   cargo run --release -p weft-policy --example policy_datapath -- [POLICIES PODS NAMESPACES CONNECTS SECONDS ROUNDS]
//! `WEFT_BENCH_NETNS` prefixes the namespaces' names.

mod cluster;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_dataplane::nft::{self, ct_state, Chain, ChainType, Family, Hook, Rule, Table};
use weft_dataplane::{sysctl, IpNet, NetNs, Netlink, Scope, ScopedNetNs};
use weft_policy::compile::{policy_chain, profile_chain, NodeContext};
use weft_policy::{compile, resolve, Direction, TABLE};
use weft_view::{Event, NsName};

use cluster::{Shape, NODE, VXLAN_PORT};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 1);
const CLIENT_NS: &str = "bench-client";
const ALLOW_CLIENT: &str = "zz-allow-bench-client";
const CONNECT_PORT: u16 = 8080;
const IPERF_PORT: u16 = 5201;
const CT_TABLE: &str = "weft_bench_ct";

/// A pod wired as the CNI plugin wires one (see the module doc).
fn wire(node: &NetNs, pod: &NetNs, host_veth: &str, ip: Ipv4Addr) {
    let fail = |what: &str, e: weft_dataplane::Error| -> ! { panic!("{what} ({host_veth}): {e}") };
    let mut host = node
        .run(Netlink::open)
        .expect("enter the node")
        .unwrap_or_else(|e| fail("netlink", e));
    let host_link = host
        .link_add_veth(host_veth, "eth0")
        .peer_netns(pod)
        .mtu(1500)
        .queues(1)
        .execute_get()
        .unwrap_or_else(|e| fail("veth", e));
    let host_mac = host_link.mac.expect("a veth has a MAC");
    let mut inside = pod
        .run(Netlink::open)
        .expect("enter the pod")
        .unwrap_or_else(|e| fail("netlink", e));
    inside.lo_up().unwrap_or_else(|e| fail("lo", e));
    let eth0 = inside
        .link_get("eth0")
        .unwrap_or_else(|e| fail("eth0", e))
        .expect("eth0 was just created");
    let (pod_ip, gw) = (IpAddr::V4(ip), IpAddr::V4(GATEWAY));
    inside
        .batch(|p| {
            p.addr_add(eth0.index, IpNet::host(pod_ip)).execute()?;
            p.link_set(eth0.index).up().execute()?;
            p.neigh_add_permanent(eth0.index, gw, host_mac)?;
            p.route_add(IpNet::host(gw))
                .oif(eth0.index)
                .scope(Scope::Link)
                .execute()?;
            p.route_add(IpNet::default_v4())
                .gateway(gw)
                .oif(eth0.index)
                .execute()
        })
        .unwrap_or_else(|e| fail("pod side", e));
    host.batch(|h| {
        h.link_set(host_link.index).up().execute()?;
        h.route_add(IpNet::host(pod_ip))
            .oif(host_link.index)
            .scope(Scope::Link)
            .replace()
            .execute()
    })
    .unwrap_or_else(|e| fail("host side", e));
}

/// `program args` in `ns` (nsenter), killed if this process dies first.
fn spawn_in(ns: &NetNs, program: &str, args: &[&str], stdout: Stdio) -> Child {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path().display()))
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("running {program} (nsenter): {e}"))
}

/// One iperf3 run from the client to the server: Gbit/s received.
fn iperf(client: &NetNs, server: Ipv4Addr, secs: u64) -> f64 {
    for attempt in 0.. {
        let child = spawn_in(
            client,
            "iperf3",
            &[
                "-c",
                &server.to_string(),
                "-p",
                &IPERF_PORT.to_string(),
                "-t",
                &secs.to_string(),
                "-J",
            ],
            Stdio::piped(),
        );
        let out = child.wait_with_output().expect("iperf3");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps / 1e9;
        }
        // The server may still be starting.
        if attempt == 20 {
            panic!(
                "iperf3 gave no result: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// `n` connects from inside `client` to `to`, each closed at once: their latencies.
fn connects(client: &NetNs, to: SocketAddr, n: usize) -> Vec<Duration> {
    client
        .run(|| {
            (0..n)
                .map(|_| {
                    let t = Instant::now();
                    let s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
                    let d = t.elapsed();
                    drop(s);
                    d
                })
                .collect()
        })
        .expect("enter the client")
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Condition {
    NoTable,
    Conntrack,
    NoPolicies,
    Policy,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::NoTable => "no table",
            Condition::Conntrack => "conntrack rule only",
            Condition::NoPolicies => "weft, no policies",
            Condition::Policy => "policy table",
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shape = Shape::from_args(&[
        args.first().copied().unwrap_or(1000),
        args.get(1).copied().unwrap_or(1000),
        args.get(2).copied().unwrap_or(50),
        1,
    ]);
    let n_connects = args.get(3).copied().unwrap_or(2000);
    let secs = args.get(4).copied().unwrap_or(5) as u64;
    let rounds = args.get(5).copied().unwrap_or(3);
    let prefix = std::env::var("WEFT_BENCH_NETNS").unwrap_or_else(|_| "weftbench-pol".into());

    // The cluster, the client's namespace and pod, and the policy that lets it in.
    let mut built = cluster::cluster(&shape);
    let server_pod = built
        .pods
        .iter()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some("ns-00")
                && p.metadata.labels.as_ref().and_then(|l| l.get("app"))
                    == Some(&"app-2".to_string())
        })
        .expect("a pod of app-2 in ns-00")
        .clone();
    let server_ip = weft_model::pod::pod_ip(&server_pod).expect("an address");
    built.namespaces.push(
        serde_json::from_value(json!({"metadata": {"name": CLIENT_NS, "labels": {"kubernetes.io/metadata.name": CLIENT_NS}}}))
            .expect("namespace"),
    );
    built.pods.push(cluster::pod(
        CLIENT_NS,
        "client",
        NODE,
        CLIENT_IP,
        json!({"bench": "client"}),
    ));
    built.policies.push(
        serde_json::from_value(json!({
            "metadata": {"name": ALLOW_CLIENT, "namespace": "ns-00"},
            "spec": {"podSelector": {"matchLabels": {"app": "app-2"}}, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": CLIENT_NS}},
                "podSelector": {"matchLabels": {"bench": "client"}}
            }]}]}
        }))
        .expect("policy"),
    );
    let shared = built.shared();
    shared.apply(Event::Relisted(built.policies.clone()));
    let view = shared.read();
    let resolved = resolve(&view, NODE, &Default::default());
    let ctx = NodeContext {
        node_ips: view
            .nodes()
            .filter_map(weft_model::node::internal_ip)
            .collect(),
        vxlan_port: VXLAN_PORT,
    };
    let table = compile(&resolved, &ctx);
    // The same node's table with no NetworkPolicy at all: what every weft node loads (the
    // pod network's own isolation, the stateful pass), so a pod "with none installed".
    let bare = compile(&Default::default(), &ctx);
    let walked = resolved.isolated[&Direction::Ingress][&server_ip].clone();
    drop(view);
    let allow = NsName::new("ns-00", ALLOW_CLIENT);
    assert_eq!(
        walked.iter().max(),
        Some(&allow),
        "the client's policy is the server's last"
    );
    let profile = profile_chain(Direction::Ingress, &{
        let mut w = walked.clone();
        w.sort();
        w
    });

    let mut conntrack = Table::new(Family::Ip, CT_TABLE);
    conntrack.add_chain(
        Chain::base(
            "prerouting",
            ChainType::Filter,
            Hook::Prerouting,
            nft::priority::FILTER,
            nft::Policy::Accept,
        )
        .rule(
            Rule::new()
                .ct_state(ct_state::ESTABLISHED | ct_state::RELATED)
                .accept(),
        ),
    );

    // The node and the two pods.
    let node = ScopedNetNs::create_unique(&format!("{prefix}-node")).expect("netns");
    let server = ScopedNetNs::create_unique(&format!("{prefix}-server")).expect("netns");
    let client = ScopedNetNs::create_unique(&format!("{prefix}-client")).expect("netns");
    node.run(|| {
        Netlink::open()?.lo_up()?;
        sysctl::write("net/ipv4/ip_forward", "1")
    })
    .expect("enter the node")
    .expect("node setup");
    let tag = std::process::id() & 0xff_ffff;
    wire(&node, &server, &format!("weft{tag:06x}01234"), server_ip);
    wire(&node, &client, &format!("weft{tag:06x}05678"), CLIENT_IP);
    // Room for every connect's ephemeral port (closed connections wait in TIME_WAIT).
    client
        .run(|| sysctl::write("net/ipv4/ip_local_port_range", "1024 65535"))
        .expect("enter the client")
        .expect("port range");

    // The servers in the server pod: a listener accepting and closing, and iperf3.
    let listener = server
        .run(|| TcpListener::bind((server_ip, CONNECT_PORT)))
        .expect("enter the server")
        .expect("listen");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let mut iperf_server = spawn_in(
        &server,
        "iperf3",
        &["-s", "-p", &IPERF_PORT.to_string()],
        Stdio::null(),
    );
    let to = SocketAddr::from((server_ip, CONNECT_PORT));

    let set = |c: Condition| {
        node.run(|| {
            for t in [TABLE, CT_TABLE] {
                if nft::table("ip", t)?.is_some() {
                    nft::delete_table("ip", t)?;
                }
            }
            match c {
                Condition::NoTable => Ok(()),
                Condition::Conntrack => nft::load(&conntrack),
                Condition::NoPolicies => nft::load(&bare),
                Condition::Policy => nft::load(&table),
            }
        })
        .expect("enter the node")
        .unwrap_or_else(|e| panic!("setting up {}: {e}", c.name()))
    };
    // Warm up (neighbours, caches) under the policy table: it lets the client in.
    set(Condition::Policy);
    connects(&client, to, 200);
    iperf(&client, server_ip, 1);

    let conditions = [
        Condition::NoTable,
        Condition::Conntrack,
        Condition::NoPolicies,
        Condition::Policy,
    ];
    // Per condition, each round's connect latencies and throughput.
    let mut lat: BTreeMap<Condition, Vec<Vec<Duration>>> = BTreeMap::new();
    let mut gbits: BTreeMap<Condition, Vec<f64>> = BTreeMap::new();
    let mut accepted = 0u64;
    for round in 0..rounds {
        // Each round in another order, so no condition always follows the same one.
        for i in 0..conditions.len() {
            let c = conditions[(i + round) % conditions.len()];
            set(c);
            lat.entry(c)
                .or_default()
                .push(connects(&client, to, n_connects));
            gbits
                .entry(c)
                .or_default()
                .push(iperf(&client, server_ip, secs));
            if c == Condition::Policy {
                // Every connection was let in by the client's policy: its accept counted them.
                let counts = node
                    .run(|| nft::counters(Family::Ip, TABLE))
                    .expect("enter the node")
                    .expect("counters");
                let chain = policy_chain(Direction::Ingress, &allow);
                accepted += counts[&chain]
                    .iter()
                    .flatten()
                    .map(|c| c.packets)
                    .sum::<u64>();
            }
        }
    }
    set(Condition::NoTable);
    let _ = iperf_server.kill();
    let _ = iperf_server.wait();

    println!(
        "server pod {server_ip} (ns-00, app-2): {} ingress policies walked in its profile chain {profile} ({}), the last allowing the client {CLIENT_IP}; policy table {} chains, {} set elements",
        walked.len(),
        walked
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        table.chains.len(),
        table.sets.values().map(|s| s.elements.len()).sum::<usize>(),
    );
    let expected = (rounds * n_connects) as u64;
    println!(
        "new connections accepted by {ALLOW_CLIENT}'s chain: {accepted} (connects {expected} + iperf3's; each walked the profile's chains to it)"
    );
    assert!(accepted >= expected, "every connect walked the policies");
    let pooled = |c: Condition| -> Vec<Duration> { lat[&c].concat() };
    println!(
        "{:<22} {:>14} {:>14} {:>12}   iperf3 runs (Gbit/s)",
        "condition", "connect p50", "connect p99", "iperf3"
    );
    for c in conditions {
        let l = pooled(c);
        println!(
            "{:<22} {:>11.1} us {:>11.1} us {:>7.2} Gbit/s   {}",
            c.name(),
            pct(&l, 0.5),
            pct(&l, 0.99),
            median(&gbits[&c]),
            gbits[&c]
                .iter()
                .map(|g| format!("{g:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    // Ratios as speeds relative to no table (>= 0.95: at most ~5% slower), paired round by
    // round (the conditions of a round ran within seconds of each other, so load that comes
    // and goes on the machine weighs on both): the median of the rounds' ratios, and their range.
    let paired = |f: &dyn Fn(usize) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = (0..rounds).map(f).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(&v), lo, hi)
    };
    // Each condition against no table at all, and the policies against the weft node with
    // none (the "1,000 policies installed vs none").
    let comparisons = [
        ("conntrack", Condition::Conntrack, Condition::NoTable),
        ("nopolicies", Condition::NoPolicies, Condition::NoTable),
        ("policy", Condition::Policy, Condition::NoTable),
        ("policy_vs_none", Condition::Policy, Condition::NoPolicies),
    ];
    for (key, c, base) in comparisons {
        let p50 = paired(&|r| pct(&lat[&base][r], 0.5) / pct(&lat[&c][r], 0.5));
        let p99 = paired(&|r| pct(&lat[&base][r], 0.99) / pct(&lat[&c][r], 0.99));
        let tput = paired(&|r| gbits[&c][r] / gbits[&base][r]);
        println!(
            "{key}_connect_ratio_p50={:.3} ({:.2}-{:.2}) {key}_connect_ratio_p99={:.3} ({:.2}-{:.2}) {key}_iperf_ratio={:.3} ({:.2}-{:.2})  ({} vs {}: median of the {rounds} rounds' ratios (range); connect ratios are the base's latency / this latency; pooled over the rounds: connect p50 {:.3}, iperf3 median {:.3})",
            p50.0, p50.1, p50.2,
            p99.0, p99.1, p99.2,
            tput.0, tput.1, tput.2,
            c.name(),
            base.name(),
            pct(&pooled(base), 0.5) / pct(&pooled(c), 0.5),
            median(&gbits[&c]) / median(&gbits[&base]),
        );
    }
    println!(
        "connects={n_connects} x {rounds} rounds per condition, iperf3 {secs} s x {rounds} per condition (median)"
    );
}
