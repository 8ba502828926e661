//! The node's agent and its policy table. Stopped, killed or its pod replaced, the agent leaves enforcement exactly as it was, with no window and
//! not one rule reloaded; a change made meanwhile waits for it, and so does a pod created on
//! its node. And the table repaired when it is changed behind the agent's back (ARCHITECTURE:
//! "a sync with nothing noted (every 10 s) compiles the whole table and lets the applier diff
//! it, which repairs drift"): the pod it isolates, reachable for as long as the table is wrong,
//! is isolated again within a resync or two (each change is made with the agent stopped, so
//! the open window is certain to be seen). Needs root; each lab is torn down in Drop.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_testutil::netpol::{
    apply, expect_probes, matrix_keys, policy, policy_table, policy_table_shape, probe_from, tcp,
    udp, up_matrix, Matrix, Probe, Source, Watch, ALL_PORTS, PROBER,
};
use weft_testutil::{pod_ip, wait_for_what, Lab, AGNHOST};

/// Two resyncs and a margin.
const REPAIRED_WITHIN: Duration = Duration::from_secs(25);

fn server(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=80, --udp-port=80]}}]\n"
    )
}

/// A lab where `guarded` (node 1) takes only `friend` (node 1); `stranger` is on node 2.
struct Drift {
    lab: Lab,
    node: String,
    guarded: String,
}

impl Drift {
    fn up() -> Drift {
        let lab = Lab::new();
        let (n1, n2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
        let docs = [
            server("guarded", &n1),
            server("friend", &n1),
            server("stranger", &n2),
            policy(
                "default",
                "guard",
                "  podSelector: {matchLabels: {app: guarded}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: friend}}}]}]\n",
            ),
        ];
        let manifest = lab.write("drift.yaml", &docs.join("---\n"));
        lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
        let guarded = lab
            .pods(&[])
            .iter()
            .find(|p| p["metadata"]["name"] == "guarded")
            .map(pod_ip)
            .expect("guarded's address");
        let drift = Drift {
            lab,
            node: n1,
            guarded,
        };
        drift.expect(
            "isolated before anything is changed",
            false,
            Duration::from_secs(20),
        );
        drift
    }

    /// The stranger reaches guarded (`reached`), and the friend always does.
    fn expect(&self, case: &str, reached: bool, within: Duration) {
        let to = |ok: bool| {
            vec![
                (Probe::hostname(&self.guarded, tcp(80)), ok),
                (Probe::hostname(&self.guarded, udp(80)), ok),
            ]
        };
        expect_probes(
            &self.lab,
            case,
            &[
                (Source::pod("default", "stranger"), to(reached)),
                (Source::pod("default", "friend"), to(true)),
            ],
            within,
        );
    }

    /// Runs `change` with node 1's agent stopped (so it cannot repair anything yet) and checks
    /// the stranger gets in; then lets the agent go on.
    fn while_agent_stopped(&self, what: &str, change: impl FnOnce()) {
        let pid = self.lab.agent_pid(&self.node).to_string();
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("kill");
            assert!(ok.success(), "kill {sig} {pid}");
        };
        signal("-STOP");
        change();
        self.expect(what, true, Duration::from_secs(5));
        signal("-CONT");
    }

    /// `nft ARGS` in node 1's namespace.
    fn nft(&self, args: &[&str]) -> String {
        let mut cmd = vec!["nft"];
        cmd.extend_from_slice(args);
        self.lab.in_node(&self.node, &cmd)
    }

    /// The handle of the first rule of `chain` whose text contains `text`.
    fn rule_handle(&self, chain: &str, text: &str) -> String {
        let listing = self.nft(&["-a", "list", "chain", "ip", "weft_policy", chain]);
        listing
            .lines()
            .find(|l| l.contains(text) && l.contains("# handle"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no rule with {text:?} in {chain}:\n{listing}"))
            .to_string()
    }

    /// The profile chain isolating guarded for ingress (the verdict of its map element).
    fn profile(&self) -> String {
        let map = self.nft(&["list", "map", "ip", "weft_policy", "ingress_pods"]);
        map.split(&format!("{} : jump ", self.guarded))
            .nth(1)
            .and_then(|rest| rest.split([' ', ',', '}']).next())
            .unwrap_or_else(|| panic!("{} is not in ingress_pods:\n{map}", self.guarded))
            .to_string()
    }
}

#[test]
fn a_deleted_policy_table_is_loaded_again() {
    let d = Drift::up();
    d.while_agent_stopped("the table deleted", || {
        d.nft(&["delete", "table", "ip", "weft_policy"]);
    });
    d.expect("the table loaded again", false, REPAIRED_WITHIN);
    assert!(policy_table(&d.lab, &d.node).contains("ingress/default/guard"));
}

#[test]
fn a_rule_deleted_by_hand_is_restored() {
    let d = Drift::up();
    let profile = d.profile();
    let handle = d.rule_handle(&profile, " drop #");
    d.while_agent_stopped("the profile's drop rule deleted", || {
        d.nft(&[
            "delete",
            "rule",
            "ip",
            "weft_policy",
            &profile,
            "handle",
            &handle,
        ]);
    });
    d.expect("the drop rule restored", false, REPAIRED_WITHIN);
}

#[test]
fn a_map_element_deleted_by_hand_is_restored() {
    let d = Drift::up();
    let element = format!("{{ {} }}", d.guarded);
    d.while_agent_stopped("guarded's ingress_pods element deleted", || {
        d.nft(&[
            "delete",
            "element",
            "ip",
            "weft_policy",
            "ingress_pods",
            &element,
        ]);
    });
    d.expect("the element restored", false, REPAIRED_WITHIN);
}

/// The node's agent pod: its name.
fn agent_pod(lab: &Lab, node: &str) -> Option<String> {
    lab.pods(&["-n", "kube-system"])
        .into_iter()
        .find(|p| {
            p["spec"]["nodeName"] == node
                && p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("weft-agent-"))
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
}

#[test]
fn an_agent_restart_leaves_no_gap() {
    let lab = Lab::new();
    let nodes = up_matrix(&lab, 2, &[]);
    let m = Matrix::new(&lab, &matrix_keys());
    m.check_all("before any policy", &ALL_PORTS, &m.all(true));
    // On node 1: x/a takes only y/a (ingress), z/c sends nothing (egress).
    apply(
        &lab,
        "policies",
        &[
            policy(
                "x",
                "a-from-y-a",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: 'y'}}, podSelector: {matchLabels: {pod: a}}}]}]\n",
            ),
            policy(
                "z",
                "c-mute",
                "  podSelector: {matchLabels: {pod: c}}\n  policyTypes: [Egress]\n",
            ),
        ]
        .join("---\n"),
    );
    let mut want = m.all(true);
    want.expect("*", "x/a", false)
        .expect("y/a", "x/a", true)
        .expect("z/c", "*", false);
    m.check_all("policies in place", &ALL_PORTS, &want);
    let node = &nodes[0];
    for (ns, name) in [("x", "a"), ("z", "c")] {
        let on = lab
            .pods(&["-n", ns])
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
            .map(|p| p["spec"]["nodeName"].clone());
        assert_eq!(on, Some(Value::from(node.as_str())), "{ns}/{name}'s node");
    }
    // The table changed incrementally since its whole load: the agent writes the digest of
    // what it holds at its next resync (10 s); from then on a restarted agent keeps the table
    // (before, it would load it whole again: atomically, still no gap).
    wait_for_what("the policy table's digest written", || {
        let table = policy_table(&lab, node);
        table
            .split("set weft_digest {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .is_some_and(|set| set.contains("elements"))
    });
    let shape = policy_table_shape(&lab, node);
    assert!(shape.contains("comment \"weft:"), "{shape}");

    // Allowed and denied pairs, each way across nodes, tried without pause.
    let t = |to: &str, ok: bool| {
        vec![
            (Probe::hostname(m.ip(to), tcp(80)), ok),
            (Probe::hostname(m.ip(to), udp(81)), ok),
        ]
    };
    let jobs = vec![
        (
            Source::pod("y", "a"),
            [t("x/a", true), t("x/c", true)].concat(),
        ),
        (
            Source::pod("y", "b"),
            [t("x/a", false), t("x/c", true)].concat(),
        ),
        (Source::pod("y", "c"), t("x/a", false)),
        (
            Source::pod("z", "c"),
            [t("y/a", false), t("x/c", false)].concat(),
        ),
        (
            Source::pod("x", "a"),
            [t("y/b", true), t("z/b", true)].concat(),
        ),
    ];
    let check = |what: &str, watch: Watch| {
        let mut report = String::new();
        for w in watch.finish() {
            assert!(
                w.attempts > 0,
                "{what}: {} -> {:?} never tried",
                w.source,
                w.probe
            );
            if !w.wrong.is_empty() {
                report.push_str(&format!(
                    "{} -> {} {} (want {}): {} attempts, not as wanted at {:?}\n",
                    w.source, w.probe.ip, w.probe.port, w.want, w.attempts, w.wrong
                ));
            }
        }
        assert!(report.is_empty(), "{what}:\n{report}");
    };

    // The agent stopped (hung) for 3 s, then killed; the kubelet restarts its container.
    let pid = lab.agent_pid(node);
    let watch = Watch::start(&lab, &jobs, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let signal = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    };
    signal("-STOP", pid);
    std::thread::sleep(Duration::from_secs(3));
    signal("-KILL", pid);
    let killed = Instant::now();
    wait_for_what("the agent restarted", || {
        lab.agent_pid(node) != pid && lab.agent_alive(node)
    });
    eprintln!("agent back after {:.1}s", killed.elapsed().as_secs_f64());
    check("agent stopped, killed and restarted", watch);
    assert_eq!(
        shape,
        policy_table_shape(&lab, node),
        "the table was not touched"
    );

    // The agent's pod deleted: the DaemonSet makes a new one.
    let old = agent_pod(&lab, node).expect("the agent pod");
    let watch = Watch::start(&lab, &jobs, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    lab.kubectl_ok(&["delete", "pod", "-n", "kube-system", &old, "--wait=false"]);
    let deleted = Instant::now();
    wait_for_what("a new agent pod running", || {
        agent_pod(&lab, node).is_some_and(|p| p != old) && lab.agent_alive(node)
    });
    eprintln!(
        "new agent pod after {:.1}s",
        deleted.elapsed().as_secs_f64()
    );
    check("agent pod replaced", watch);
    assert_eq!(
        shape,
        policy_table_shape(&lab, node),
        "the table was not touched"
    );
    assert!(policy_table(&lab, node).contains("ingress/x/a-from-y-a"));
    m.check_all("policies after the restarts", &ALL_PORTS, &want);

    // A change made while the agent is down waits for it, and is applied once it is back;
    // a pod created on its node meanwhile (selected by z's c-mute, its only command a
    // prober) does not start unprotected: it waits for the agent, then its first packets
    // are dropped.
    let pid = lab.agent_pid(node);
    signal("-STOP", pid);
    apply(
        &lab,
        "while-down",
        &policy(
            "x",
            "a-from-z-b",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: b}}}]}]\n",
        ),
    );
    let probes = json!([
        Probe::hostname(m.ip("y/a"), tcp(80)).to_json(),
        Probe::hostname(m.ip("x/c"), udp(80)).to_json(),
    ])
    .to_string();
    let late = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "late", "namespace": "z", "labels": {"pod": "c"}},
        "spec": {"nodeName": node, "restartPolicy": "Never", "containers": [{
            "name": "c", "image": "busybox",
            "command": ["/usr/bin/python3", "-c", PROBER, "once", probes, "0.9"]
        }]}
    });
    let path = lab.write("late.yaml", &late.to_string());
    lab.kubectl_ok(&["apply", "-f", &path]);
    let log = || {
        let out = lab.kubectl(&["logs", "-n", "z", "late"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(log(), "", "z/late ran while its node's agent was down");
    let (z_b, to_x_a) = (Source::pod("z", "b"), Probe::hostname(m.ip("x/a"), tcp(80)));
    let got = probe_from(
        &lab,
        &z_b,
        std::slice::from_ref(&to_x_a),
        Duration::from_secs(1),
    );
    assert_eq!(
        got[0],
        Err("timeout".into()),
        "nothing applies it while the agent is down"
    );
    signal("-KILL", pid);
    wait_for_what("the agent restarted", || {
        lab.agent_pid(node) != pid && lab.agent_alive(node)
    });
    expect_probes(
        &lab,
        "the change applied by the restarted agent",
        &[(z_b, vec![(to_x_a, true)])],
        Duration::from_secs(20),
    );
    wait_for_what("z/late's log", || log().starts_with('['));
    let got: Value = serde_json::from_str(&log()).expect("the prober's JSON");
    assert_eq!(
        got,
        json!([[false, "timeout"], [false, "timeout"]]),
        "z/late's first packets"
    );
}
