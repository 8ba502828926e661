//! Every weft component is scraped by Debian's real Prometheus: `weft lab targets` lists where
//! their metrics are (the pods annotated `prometheus.io/scrape`), Prometheus runs on a lab node
//! (where every pod address is reached) with that list as its file-based service discovery,
//! and its query API returns values from each job: the reconcilers' syncs of the agents, the
//! controller, the DNS and the ingress controller, the policy table's counters naming a policy
//! that dropped packets, the DNS's answers and the ingress's requests. Also: a built-in nginx
//! workload logs the requests it answers (`kubectl logs`). Needs root; the lab is torn down in
//! Drop, Prometheus is stopped by its pid.

use std::process::{Child, Command, Stdio};

use serde_json::Value;
use weft_testutil::{client_pod, deny_ingress, wait_for_what, web_pod, Lab};

/// The web server (nginx, on node 1) that a policy closes to everyone, and a client on node 2.
fn workloads(node1: &str, node2: &str) -> String {
    [web_pod("web", node1), client_pod("client", node2)].join("---\n")
}

/// Prometheus, killed (by its pid) when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const LISTEN: &str = "127.0.0.1:19090";

/// A PromQL query's result vector, asked on node 1 where Prometheus listens.
fn query(lab: &Lab, node: &str, promql: &str) -> Vec<Value> {
    let url = format!("http://{LISTEN}/api/v1/query");
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("weft_{}_{node}", lab.name)])
        .args(["curl", "-sS", "-m", "5", "-G", &url, "--data-urlencode"])
        .arg(format!("query={promql}"))
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The sum of a query's values.
fn total(results: &[Value]) -> f64 {
    results
        .iter()
        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn prometheus_scrapes_every_component_of_a_lab() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let manifest = lab.write("app.yaml", &workloads(&node1, &node2));
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "90"]);

    // The nginx workload logs what it answers, as nginx does (combined format).
    let web_ip = weft_testutil::pod_ip(
        lab.pods(&[])
            .iter()
            .find(|p| p["metadata"]["name"] == "web")
            .unwrap(),
    );
    let url = format!("http://{web_ip}/index.html");
    assert_eq!(lab.pod_curl("client", &url, 5).0, 0);
    let log = lab.kubectl_ok(&["logs", "web"]);
    assert!(
        log.lines()
            .any(|l| l.contains("\"GET /index.html HTTP/1.1\" 200 ") && l.contains("\"curl/")),
        "{log}"
    );

    // A policy closes web: the client's connection is dropped (curl times out).
    let policy = lab.write("deny.yaml", &deny_ingress("web"));
    lab.kubectl_ok(&["apply", "-f", &policy]);
    wait_for_what("the client's connection dropped", || {
        lab.pod_curl("client", &url, 2).0 == 28
    });

    // Where the metrics are: both agents, the controller, both DNS pods, the ingress pod.
    let targets = lab.ok(&["lab", "targets"]);
    let list: Vec<Value> = serde_json::from_str(&targets).unwrap();
    let jobs: Vec<&str> = list
        .iter()
        .filter_map(|g| g["labels"]["job"].as_str())
        .collect();
    assert_eq!(
        jobs,
        ["agent", "agent", "controller", "dns", "dns", "ingress"],
        "{targets}"
    );
    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let targets_file = dir.join("targets.json");
    std::fs::write(&targets_file, &targets).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: weft\n    file_sd_configs: [{{files: [{}]}}]\n",
            targets_file.display()
        ),
    )
    .unwrap();
    let _prometheus = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &format!("weft_{}_{node1}", lab.name)])
            .arg("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (scripts/deps.sh installs it)"),
    );

    // Every target is up.
    wait_for_what("every target up", || {
        let up = query(&lab, &node1, "up");
        up.len() == 6 && total(&up) == 6.0
    });
    // Each component's reconcilers have synced, as scraped.
    for job in ["agent", "controller", "dns", "ingress"] {
        let q = format!("weft_reconciler_syncs_total{{job=\"{job}\",result=\"ok\"}}");
        wait_for_what(&format!("{job}'s syncs"), || {
            total(&query(&lab, &node1, &q)) > 0.0
        });
    }
    // The policy that dropped the client's packets, by name, from web's node.
    let q = format!(
        "weft_agent_policy_packets_total{{policy=\"deny-web\",verdict=\"dropped\",node=\"{node1}\"}}"
    );
    wait_for_what("deny-web's drops", || total(&query(&lab, &node1, &q)) > 0.0);
    assert!(total(&query(&lab, &node1, "weft_agent_conntrack_entries")) > 0.0);
    // The tables the agents loaded, their sizes, and no batch the kernel refused.
    for table in ["ip weft_policy", "ip weft_services"] {
        let q = format!("weft_agent_nft_rules{{table=\"{table}\",node=\"{node1}\"}}");
        assert!(total(&query(&lab, &node1, &q)) > 0.0, "{q}");
        let q = format!("weft_agent_nft_batches_total{{table=\"{table}\",result=\"ok\"}}");
        assert!(total(&query(&lab, &node1, &q)) > 0.0, "{q}");
    }
    let refused = query(
        &lab,
        &node1,
        "weft_agent_nft_batches_total{result=\"refused\"}",
    );
    assert!(refused.is_empty(), "a batch refused: {refused:?}");
    assert!(
        total(&query(&lab, &node1, "weft_agent_nft_batch_messages_total")) > 0.0,
        "batch messages"
    );
    // The flow log's records by verdict: the client's connections, and the drops.
    wait_for_what("flows by verdict", || {
        total(&query(
            &lab,
            &node1,
            "weft_agent_flows_total{verdict=\"FORWARDED\"}",
        )) > 0.0
            && total(&query(
                &lab,
                &node1,
                "weft_agent_flows_total{verdict=\"DROPPED\"}",
            )) > 0.0
    });
    // The DNS's answers (a name the client looks up), and the ingress's families.
    lab.pod_curl(
        "client",
        "http://kubernetes.default.svc.cluster.local:443/",
        2,
    );
    wait_for_what("the DNS's answers", || {
        !query(&lab, &node1, "weft_dns_requests_total").is_empty()
    });
    assert!(!query(&lab, &node1, "weft_ingress_route_table_compiles_total").is_empty());
}
