//! The policy table repaired when it is changed behind the agent's back (ARCHITECTURE: "a sync
//! with nothing noted (every 10 s) compiles the whole table and lets the applier diff it,
//! which repairs drift"): the pod it isolates, reachable for as long as the table is wrong,
//! is isolated again within a resync or two. Each change is made with the node's agent
//! stopped, so the open window is certain to be seen; the agent then goes on. Needs root;
//! each lab is torn down in Drop.

use std::time::Duration;

use weft_testutil::netpol::{expect_probes, policy, policy_table, tcp, udp, Probe, Source};
use weft_testutil::{pod_ip, Lab, AGNHOST};

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
#[ignore = "bug: the policy reconciler's Applier has no check_rules (crates/policy/src/reconcile.rs: Applier::new()), so a rule deleted from the table by hand is never restored and the pod stays open"]
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
#[ignore = "bug: the applier compares set and map elements with what it loaded, never with the kernel's (crates/dataplane/src/nft/applier.rs; rule checking does not cover elements either), so an element deleted by hand is never restored and the pod stays open"]
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
