//! Which policy dropped a connection, and what a policy did, on a real lab: a NetworkPolicy lets
//! only `role: client` pods reach the database pod; a connection from another pod is dropped,
//! the agent of the database's node logs the drop naming the policy and the direction
//! (`kubectl logs -n kube-system <agent pod>`), its `/policy` endpoint counts the allowed and
//! dropped packets per policy, and `weft describe netpol` shows kubectl's description, the
//! selected pods and those counters. Needs root; the lab is torn down in Drop.

use std::process::Command;

use serde_json::Value;
use weft_testutil::{client_pod, name_of, pod_ip, wait_for_what, Lab, AGNHOST};

/// The database (agnhost serving HTTP on 8080) on node 1; a client and an intruder on node 2.
fn workloads(node1: &str, node2: &str) -> String {
    let db = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: db, labels: {{app: db}}}}\nspec:\n  nodeName: {node1}\n  containers: [{{name: db, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]\n"
    );
    let client = client_pod("client", node2).replace(
        "metadata: {name: client}",
        "metadata: {name: client, labels: {role: client}}",
    );
    [db, client, client_pod("intruder", node2)].join("---\n")
}

const POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-db, labels: {team: data}}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {role: client}}}]
      ports: [{protocol: TCP, port: 8080}]
";

/// The `weft-agent` pod of `node`.
fn agent_pod(lab: &Lab, node: &str) -> String {
    let pods = lab.pods(&["-n", "kube-system"]);
    let agent = pods.iter().find(|p| {
        name_of(p).starts_with("weft-agent-") && p["spec"]["nodeName"].as_str() == Some(node)
    });
    name_of(agent.expect("an agent pod on the node"))
}

/// `N` of the first "N packets" in `cell`.
fn packets(cell: &str) -> u64 {
    cell.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_dropped_connection_names_its_policy_in_the_log_and_the_counters() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let manifest = lab.write("app.yaml", &workloads(&node1, &node2));
    let policy = lab.write("policy.yaml", POLICY);
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    // Through the API, as a user applies it (the server fills in policyTypes, which kubectl
    // describe reads).
    lab.kubectl_ok(&["apply", "-f", &policy]);
    let pods = lab.pods(&[]);
    let ip_of = |name: &str| pod_ip(pods.iter().find(|p| name_of(p) == name).unwrap());
    let (db, intruder) = (ip_of("db"), ip_of("intruder"));
    let url = format!("http://{db}:8080/hostname");

    // Once the agent has the policy, the intruder's connection is dropped (curl times out)
    // and the client's is allowed.
    wait_for_what("the intruder's connection dropped", || {
        lab.pod_curl("intruder", &url, 2).0 == 28
    });
    assert_eq!(lab.pod_curl("client", &url, 5), (0, "db".to_string()));

    // The agent of db's node says which policy dropped it, and in which direction.
    let agent = agent_pod(&lab, &node1);
    let want = format!("policy drop: ingress default/deny-db {intruder}:");
    let mut log = String::new();
    wait_for_what("the drop in the agent's log", || {
        log = lab.kubectl_ok(&["logs", "-n", "kube-system", &agent]);
        log.lines()
            .any(|l| l.contains(&want) && l.contains(&format!("-> {db}:8080 tcp")))
    });

    // The agent's /policy, from the fabric (where the nodes' addresses are reachable).
    let node: Value =
        serde_json::from_str(&lab.kubectl_ok(&["get", "node", &node1, "-o", "json"])).unwrap();
    let node_ip = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .unwrap()
        .to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("weft_{}_fabric", lab.name)])
        .args(["curl", "-sS", "--max-time", "5"])
        .arg(format!("http://{node_ip}:9876/policy"))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["node"], node1.as_str(), "{report}");
    let deny = &report["policies"][0];
    assert_eq!(
        (&deny["namespace"], &deny["name"]),
        (&"default".into(), &"deny-db".into()),
        "{report}"
    );
    assert_eq!(deny["pods"][0]["name"], "db", "{report}");
    assert_eq!(deny["pods"][0]["ip"], db.as_str(), "{report}");
    assert!(
        deny["ingress"]["allowed"]["packets"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(
        deny["ingress"]["dropped"]["packets"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(deny.get("egress").is_none(), "{report}");
    assert!(
        report["podNetwork"]["spoofed"]["packets"].is_u64(),
        "{report}"
    );

    // weft describe: kubectl's description first, then the pods and the counters.
    let text = lab.ok(&["describe", "netpol", "deny-db"]);
    let kubectl = lab
        .kubectl_cmd(&["describe", "networkpolicy", "deny-db"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(kubectl.status.success(), "{kubectl:?}");
    let kubectl = String::from_utf8_lossy(&kubectl.stdout);
    assert!(kubectl.contains("PodSelector:     app=db"), "{kubectl}");
    assert!(kubectl.contains("Allowing ingress traffic:"), "{kubectl}");
    assert!(
        text.starts_with(kubectl.trim_end()),
        "weft:\n{text}\nkubectl:\n{kubectl}"
    );
    let rest = &text[kubectl.trim_end().len()..];
    assert!(rest.starts_with("\nSelected pods:\n"), "{text}");
    let db_row = rest
        .lines()
        .find(|l| l.split_whitespace().next() == Some("db"))
        .unwrap_or_else(|| panic!("no db row: {text}"));
    assert_eq!(
        db_row.split_whitespace().collect::<Vec<_>>(),
        ["db", node1.as_str(), db.as_str()],
        "{text}"
    );
    // The row of db's node: "<node>  ingress  N packets, B bytes  M packets, C bytes".
    let row = rest
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{node1}  ingress")))
        .unwrap_or_else(|| panic!("no counters for {node1}: {text}"));
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(packets(cells[2]) >= 1, "allowed: {row}");
    assert!(packets(cells[3]) >= 1, "dropped: {row}");

    // kubectl get lists it with its selector.
    let listed = lab.kubectl_ok(&["get", "netpol"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("deny-db") && l.contains("app=db")),
        "{listed}"
    );
}
