//! LoadBalancer Services with `externalTrafficPolicy: Local`, driven from outside the cluster
//! the way a user meets them: the lab's speaker spreads the address over every node with a
//! local endpoint (one ECMP route, hashed by ports), replies carry the client's real address,
//! and each node's `healthCheckNodePort` answers as kube-proxy's does (200 with the local
//! endpoint count, 503 without), following the endpoints as they go. Needs root; the lab is
//! torn down in Drop.

use std::collections::BTreeSet;

use weft_testutil::{wait_for_what, Lab};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// A bare agnhost pod labelled app=web, pinned to `node`.
fn pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: web, image: {AGNHOST}, ports: [{{containerPort: 80}}]}}]\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: local}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80}]\n";

/// Node n's address on the lab's underlay (node1 is 172.20.0.2).
fn node_ip(n: u32) -> String {
    format!("172.20.0.{}", n + 1)
}

/// From the outside host, one curl fetching `url` `times` times, each over a new connection
/// (so from a new source port): the answers, one per line ("" for a failed one).
fn outside_many(lab: &Lab, url: &str, times: usize) -> Vec<String> {
    let mut args = vec![
        "lab",
        "outside",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-H",
        "Connection: close",
        "-w",
        "\\n",
    ];
    args.extend(std::iter::repeat_n(url, times));
    let out = lab.weft(&args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// From the outside host, GET `url`: (HTTP status, headers and body), or None if it failed.
fn outside_get(lab: &Lab, url: &str) -> Option<(u16, String)> {
    let out = lab.weft(&[
        "lab",
        "outside",
        "--",
        "curl",
        "-sS",
        "-i",
        "--max-time",
        "3",
        "-w",
        "\n%{http_code}",
        url,
    ]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (response, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, response.to_string()))
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[test]
fn local_load_balancers_spread_over_nodes_with_endpoints_and_answer_health_checks() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let manifest = lab.write(
        "app.yaml",
        &[pod("web-1", &node1), pod("web-2", &node2), SERVICE.into()].join("---\n"),
    );
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    let svc = lab.service("local");
    let lb = lab.lb_ip("local");
    let hc = svc["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("the API server allocates a healthCheckNodePort");
    assert!((30000..=32767).contains(&hc), "{hc}");
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64();
    assert_ne!(Some(hc), node_port, "distinct from the Service's node port");

    // Many connections, from distinct source ports: both nodes' pods answer.
    let hostnames = format!("http://{lb}/hostname");
    let mut seen = BTreeSet::new();
    wait_for_what("both pods behind the LB address", || {
        seen = outside_many(&lab, &hostnames, 40).into_iter().collect();
        seen == BTreeSet::from(["web-1".to_string(), "web-2".to_string()])
    });
    // Each reply saw the client's own address: no SNAT on the way in.
    let clients = outside_many(&lab, &format!("http://{lb}/clientip"), 20);
    assert_eq!(clients.len(), 20, "{clients:?}");
    for c in &clients {
        assert_eq!(c.split(':').next(), Some("203.0.113.10"), "{clients:?}");
    }
    let ports: BTreeSet<&str> = clients.iter().filter_map(|c| c.split(':').nth(1)).collect();
    assert_eq!(ports.len(), 20, "a new source port per connection");

    // The health check node port on each node, from outside: kube-proxy's answer.
    for n in 1..=2 {
        let url = format!("http://{}:{hc}/", node_ip(n));
        let mut got = None;
        wait_for_what(&format!("node{n}'s health check"), || {
            got = outside_get(&lab, &url);
            got.as_ref().is_some_and(|(code, _)| *code == 200)
        });
        let (_, response) = got.unwrap();
        let head = response.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json"),
            "{response}"
        );
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{response}"
        );
        let body: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"service": {"namespace": "default", "name": "local"},
                "localEndpoints": 1, "serviceProxyHealthy": true})
        );
    }

    // node2 loses its endpoint: its health check fails, and the speaker takes it out.
    lab.kubectl_ok(&["delete", "pod", "web-2", "--wait=false"]);
    let url2 = format!("http://{}:{hc}/", node_ip(2));
    let mut got = None;
    wait_for_what("node2's health check failing", || {
        got = outside_get(&lab, &url2);
        got.as_ref().is_some_and(|(code, _)| *code == 503)
    });
    let (_, response) = got.unwrap();
    let body: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
    assert_eq!(body["localEndpoints"], 0, "{response}");
    let (code, _) = outside_get(&lab, &format!("http://{}:{hc}/", node_ip(1))).unwrap();
    assert_eq!(code, 200);
    wait_for_what("only web-1 behind the LB address", || {
        outside_many(&lab, &hostnames, 20)
            .into_iter()
            .collect::<BTreeSet<_>>()
            == BTreeSet::from(["web-1".to_string()])
    });
}
