//! Many nodes, one flat pod network: real multi-node labs in both network modes, driven through
//! the `weft` binary. Needs root. Each test uses its own lab name and state directory and tears
//! its lab down in Drop, also when it fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use weft_testutil::{name_of, pod_ip, wait_for, Lab};

/// Six agnhost pods (HTTP 8080, UDP 8081) spread by the scheduler.
const SPREAD: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 6
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
        - name: echo
          image: registry.k8s.io/e2e-test-images/agnhost:2.53
          args: [netexec, --http-port=8080, --udp-port=8081]
";

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every pod reaches every other pod over TCP and UDP, and each receiver sees the sender's own
/// pod IP; nodes reach every pod; egress leaves with the node IP; the pod MTU fits the mode.
fn full_matrix(mode: &str, pod_mtu: &str) {
    let lab = Lab::new();
    let manifest = lab.write("spread.yaml", SPREAD);
    lab.ok(&[
        "lab",
        "up",
        "--nodes",
        "3",
        "--network-mode",
        mode,
        "-f",
        &manifest,
        "--wait",
        "60",
    ]);

    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let nodes = nodes["items"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3);
    let cidrs: Vec<&str> = nodes
        .iter()
        .map(|n| n["spec"]["podCIDR"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);

    let pods = lab.pods(&[]);
    assert_eq!(pods.len(), 6);
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for p in &pods {
        *per_node.entry(node_of(p)).or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        3,
        "pods spread over all nodes: {per_node:?}"
    );

    for src in &pods {
        let (src_name, src_ip) = (name_of(src), pod_ip(src));
        for dst in &pods {
            if src_name == name_of(dst) {
                continue;
            }
            let dst_ip = pod_ip(dst);
            let tcp = lab.curl(&src_name, &format!("http://{dst_ip}:8080/clientip"));
            assert_eq!(
                tcp.split(':').next(),
                Some(src_ip.as_str()),
                "TCP {src_name} -> {dst_ip} ({mode}) seen as {tcp:?}"
            );
            // agnhost's /dial sends the UDP datagram from the source pod itself.
            let url = format!("http://127.0.0.1:8080/dial?request=clientip&protocol=udp&host={dst_ip}&port=8081&tries=1");
            let udp: Value = serde_json::from_str(&lab.curl(&src_name, &url)).unwrap();
            let seen = udp["responses"][0].as_str().unwrap_or_default();
            assert_eq!(
                seen.split(':').next(),
                Some(src_ip.as_str()),
                "UDP {src_name} -> {dst_ip} ({mode}): {udp}"
            );
        }
        let mtu = lab.ok(&["exec", &src_name, "--", "cat", "/sys/class/net/eth0/mtu"]);
        assert_eq!(mtu.trim(), pod_mtu, "pod MTU in {mode} mode");
        // Egress to the outside host is masqueraded to the pod's node IP.
        let seen = lab.curl(&src_name, "http://203.0.113.10/clientip");
        let node_ip = nodes
            .iter()
            .find(|n| n["metadata"]["name"] == src["spec"]["nodeName"])
            .and_then(|n| n["status"]["addresses"][0]["address"].as_str())
            .unwrap()
            .to_string();
        assert_eq!(
            seen.split(':').next(),
            Some(node_ip.as_str()),
            "egress of {src_name} leaves as its node"
        );
    }
    // Every node reaches every pod (its own directly, the others' through the pod network).
    for n in &nodes {
        let node = n["metadata"]["name"].as_str().unwrap();
        for p in &pods {
            let out = lab.in_node(
                node,
                &[
                    "curl",
                    "-sS",
                    "--max-time",
                    "5",
                    &format!("http://{}:8080/hostname", pod_ip(p)),
                ],
            );
            assert_eq!(out, name_of(p), "node {node} -> pod {}", name_of(p));
        }
    }
}

#[test]
fn three_nodes_vxlan_full_matrix() {
    full_matrix("vxlan", "1450");
}

#[test]
fn three_nodes_direct_full_matrix() {
    full_matrix("direct", "1500");
}

#[test]
fn nodes_join_and_leave_a_running_lab() {
    let lab = Lab::new();
    let manifest = lab.write("spread.yaml", SPREAD);
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    let added = lab.ok(&["lab", "node", "add", "--label", "zone=c"]);
    assert!(added.contains("10.244.2.0/24"), "{added}");
    let node3 = format!("{}-node3", lab.name);
    // The other nodes learn the new pod CIDR.
    wait_for(|| {
        lab.in_node(&format!("{}-node1", lab.name), &["ip", "route"])
            .contains("10.244.2.0/24")
    });

    // Remove node2: its pods come back elsewhere, and nobody routes to its pod CIDR any more.
    let node2 = format!("{}-node2", lab.name);
    lab.ok(&["lab", "node", "remove", &node2]);
    wait_for(|| {
        !lab.in_node(&format!("{}-node1", lab.name), &["ip", "route"])
            .contains("10.244.1.0/24")
    });
    let replaced = weft_testutil::eventually(weft_testutil::wait::LAB_CONVERGES, || {
        let pods = lab.pods(&[]);
        pods.len() == 6
            && pods
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && node_of(p) != node2)
    });
    assert!(
        replaced,
        "node2's pods were not replaced on the other nodes within {:?}:\n{}\nagents:\n{}",
        weft_testutil::wait::LAB_CONVERGES,
        lab.ok(&["get", "pods", "-A", "-o", "wide"]),
        String::from_utf8_lossy(
            &lab.kubectl(&[
                "logs",
                "-n",
                "kube-system",
                "-l",
                "app.kubernetes.io/component=agent",
                "--tail=15",
                "--prefix"
            ])
            .stdout
        ),
    );
    assert!(
        !lab.netns().iter().any(|n| n.ends_with(&node2)),
        "node2's namespace is gone"
    );
    // And traffic flows between the remaining nodes' pods.
    let pods = lab.pods(&[]);
    let on3 = pods.iter().find(|p| node_of(p) == node3);
    let other = pods.iter().find(|p| node_of(p) != node3).unwrap();
    if let Some(on3) = on3 {
        let out = lab.curl(
            &name_of(other),
            &format!("http://{}:8080/clientip", pod_ip(on3)),
        );
        assert_eq!(out.split(':').next(), Some(pod_ip(other).as_str()));
    }
}

#[test]
fn a_killed_agent_restarts_without_breaking_connections() {
    let lab = Lab::new();
    let pods = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  nodeName: {0}-node1\n  containers: [{{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b}}\nspec:\n  nodeName: {0}-node2\n  containers: [{{name: b, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}}]\n",
        lab.name
    );
    let manifest = lab.write("pods.yaml", &pods);
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    let all = lab.pods(&[]);
    let a = all.iter().find(|p| name_of(p) == "a").unwrap();
    let b_ip = pod_ip(all.iter().find(|p| name_of(p) == "b").unwrap());

    // A long-lived TCP connection from pod a to pod b (agnhost echoes non-HTTP bytes).
    let netns = weft_dataplane::NetNs::open(lab.pod_netns(a)).unwrap();
    let addr: SocketAddr = format!("{b_ip}:8080").parse().unwrap();
    let mut conn = netns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut echo = |msg: &[u8]| {
        conn.write_all(msg).unwrap();
        let mut buf = vec![0; msg.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg);
    };
    echo(b"\x01before\n");

    let node1 = format!("{}-node1", lab.name);
    let kernel_state = || {
        [
            "ip route",
            "ip neigh show dev weft.vxlan",
            "bridge fdb show dev weft.vxlan",
            "nft list table ip weft_egress",
        ]
        .map(|cmd| lab.in_node(&node1, &["sh", "-c", cmd]))
    };
    let before = kernel_state();
    let mut killed = Vec::new();
    for node in ["node1", "node2"] {
        let node = format!("{}-{node}", lab.name);
        let pid = lab.agent_pid(&node);
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        killed.push((node, pid));
    }
    echo(b"\x01while the agents are down\n");
    // The kubelets restart the DaemonSet's containers; the kernel state they find is already
    // right.
    for (node, old) in &killed {
        wait_for(|| lab.agent_pid(node) != *old && lab.agent_alive(node));
        // The new run's first pass (its log is its own) finds the kernel as the old one left
        // it: nothing to redo.
        let first_sync = || {
            lab.agent_log(node)
                .lines()
                .find(|l| l.contains("first sync after start"))
                .map(str::to_string)
        };
        wait_for(|| first_sync().is_some());
        let first = first_sync().unwrap();
        assert!(
            first.contains("first sync after start: 0 change(s)"),
            "{node}: {first}"
        );
    }
    echo(b"\x01after the restart\n");
    assert_eq!(before, kernel_state(), "nothing duplicated or lost");
}

#[test]
fn scheduling_honours_node_name_and_selectors_and_explains_what_fits_nowhere() {
    let lab = Lab::new();
    let config = lab.write(
        "cluster.yaml",
        &format!("apiVersion: weft.dev/v1alpha1\nkind: Cluster\nnodes: 3\nnodeLabels:\n  {}-node3: {{disk: ssd}}\n", lab.name),
    );
    let pod = |name: &str, placement: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  {placement}\n  containers: [{{name: c, image: busybox, command: [sleep, '3600']}}]\n")
    };
    let manifest = lab.write(
        "pods.yaml",
        &[
            pod("fast", "nodeSelector: {disk: ssd}"),
            pod("pinned", &format!("nodeName: {}-node2", lab.name)),
            pod(
                "by-hostname",
                &format!(
                    "nodeSelector: {{kubernetes.io/hostname: {}-node1}}",
                    lab.name
                ),
            ),
            pod("nowhere", "nodeSelector: {disk: tape}"),
        ]
        .join("---\n"),
    );
    lab.ok(&["lab", "up", "--config", &config, "-f", &manifest]);

    let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
    for n in nodes["items"].as_array().unwrap() {
        let name = n["metadata"]["name"].as_str().unwrap();
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], name);
        assert_eq!(
            n["metadata"]["labels"]["disk"] == "ssd",
            name.ends_with("node3"),
            "{name}"
        );
    }
    let wide = lab.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .contains(&"POD-CIDR"),
        "{wide}"
    );
    assert!(
        wide.contains("172.20.0.4") && wide.contains("10.244.2.0/24"),
        "{wide}"
    );

    wait_for(|| {
        lab.pods(&[])
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 3
    });
    let pods = lab.pods(&[]);
    let placed = |name: &str| node_of(pods.iter().find(|p| name_of(p) == name).unwrap());
    assert_eq!(placed("fast"), format!("{}-node3", lab.name));
    assert_eq!(placed("pinned"), format!("{}-node2", lab.name));
    assert_eq!(placed("by-hostname"), format!("{}-node1", lab.name));
    let nowhere = pods.iter().find(|p| name_of(p) == "nowhere").unwrap();
    assert_eq!(node_of(nowhere), "");
    assert_eq!(nowhere["status"]["phase"], "Pending");
    let cond = &nowhere["status"]["conditions"][0];
    assert_eq!(cond["reason"], "Unschedulable", "{nowhere}");
    assert_eq!(
        cond["message"],
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    assert!(lab
        .ok(&["get", "pods"])
        .lines()
        .any(|l| l.starts_with("nowhere") && l.contains("Pending")));
}

#[test]
fn cluster_shapes_that_cannot_work_are_refused_before_anything_exists() {
    let lab = Lab::new();
    let cases = [
        // More nodes than /24s in the pod CIDR.
        (
            "nodes: 5\npodCIDR: 10.244.0.0/22\n",
            "has room for 4 /24 node ranges, cluster has 5 nodes",
        ),
        // A per-node mask wider than the cluster CIDR.
        (
            "podCIDR: 10.244.0.0/16\nnodeCIDRMaskSize: 12\n",
            "node CIDR mask /12",
        ),
        // The node network inside the service range.
        (
            "nodeNetwork: 10.100.0.0/24\n",
            "overlaps node network 10.100.0.0/24",
        ),
    ];
    for (body, expected) in cases {
        let config = lab.write(
            "bad.yaml",
            &format!("apiVersion: weft.dev/v1alpha1\nkind: Cluster\n{body}"),
        );
        let out = lab.weft(&["lab", "up", "--config", &config]);
        assert!(!out.status.success(), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{body}: {err}");
        assert!(lab.netns().is_empty(), "{body}: no namespace created");
        assert!(
            !lab.state.path().join(&lab.name).exists(),
            "{body}: no state left behind"
        );
    }
    let out = lab.weft(&["lab", "up", "--nodes", "300"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cluster has 300 nodes"),
        "{err}"
    );
    assert!(lab.netns().is_empty());
}
