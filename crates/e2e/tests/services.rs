//! Services with real traffic: cluster IPs, node ports and load balancers reached from pods,
//! nodes and the outside host; balancing, source addresses, traffic policies, affinity, refusal
//! without endpoints, scaling. Needs root. Each test runs its own lab, torn down in Drop.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_testutil::{name_of, pod_ip, wait_for, Lab};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// `replicas` agnhost pods labelled app=NAME serving HTTP on 80 (named "http") and UDP on 5353,
/// optionally pinned to one node.
fn deployment(name: &str, replicas: u32, node: Option<&str>) -> String {
    let pin = node
        .map(|n| format!("      nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{pin}      containers:\n        - name: web\n          image: {AGNHOST}\n          ports: [{{containerPort: 80, name: http}}, {{containerPort: 5353, name: dns, protocol: UDP}}]\n"
    )
}

/// A client pod (agnhost netexec on 8080, for /dial), optionally pinned to a node.
fn client(node: Option<&str>) -> String {
    let pin = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n{pin}  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]\n"
    )
}

fn service(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{body}")
}

fn up(lab: &Lab, nodes: u32, docs: &[String]) {
    up_with(lab, None, nodes, docs);
}

/// `up`, with a cluster config of the test's when given.
fn up_with(lab: &Lab, config: Option<&str>, nodes: u32, docs: &[String]) {
    let manifest = lab.write("app.yaml", &docs.join("---\n"));
    let nodes = nodes.to_string();
    let mut args = vec![
        "lab", "up", "--nodes", &nodes, "-f", &manifest, "--wait", "60",
    ];
    let config = config.map(|c| lab.write("cluster.yaml", c));
    if let Some(path) = &config {
        args.extend(["--config", path]);
    }
    lab.ok(&args);
}

fn cluster_ip(lab: &Lab, name: &str) -> String {
    lab.service(name)["spec"]["clusterIP"]
        .as_str()
        .expect("cluster IP")
        .to_string()
}

/// Node n's address on the lab's underlay (node1 is 172.20.0.2).
fn node_ip(n: u32) -> String {
    format!("172.20.0.{}", n + 1)
}

/// Hostnames answering `n` requests to `url` from `pod` (a failed request counts as "").
fn hostnames(lab: &Lab, pod: &str, url: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|_| lab.pod_curl(pod, url, 5).1).collect()
}

fn web_pods(lab: &Lab, app: &str) -> Vec<Value> {
    lab.pods(&[])
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

#[test]
fn cluster_ips_balance_over_every_endpoint_and_keep_the_client_address() {
    let lab = Lab::new();
    up(
        &lab,
        2,
        &[
            deployment("web", 3, None),
            client(None),
            service("web", "  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, targetPort: dns, protocol: UDP}]\n"),
        ],
    );
    let ip = cluster_ip(&lab, "web");
    let names: BTreeSet<String> = web_pods(&lab, "web").iter().map(name_of).collect();
    // Endpoints appear once the pods are ready; then every one of them answers.
    wait_for(|| hostnames(&lab, "client", &format!("http://{ip}/hostname"), 30) == names);
    let client_ip = pod_ip(
        &lab.pods(&[])
            .into_iter()
            .find(|p| name_of(p) == "client")
            .unwrap(),
    );
    let seen = lab.curl("client", &format!("http://{ip}/clientip"));
    assert_eq!(
        seen.split(':').next(),
        Some(client_ip.as_str()),
        "no SNAT between pods"
    );
    // UDP through the same Service, sent from the client pod itself.
    let url = format!(
        "http://127.0.0.1:8080/dial?request=hostname&protocol=udp&host={ip}&port=53&tries=1"
    );
    let udp: Value = serde_json::from_str(&lab.curl("client", &url)).unwrap();
    let answer = udp["responses"][0].as_str().unwrap_or_default().to_string();
    assert!(names.contains(&answer), "UDP answered by a backend: {udp}");
    // From every node too.
    for n in 1..=2 {
        let node = format!("{}-node{n}", lab.name);
        let out = lab.in_node(
            &node,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://{ip}/hostname"),
            ],
        );
        assert!(names.contains(&out), "node {node} -> {ip}: {out}");
    }
}

#[test]
fn scaling_changes_the_endpoints_and_no_endpoints_means_refused() {
    let lab = Lab::new();
    up(
        &lab,
        2,
        &[
            deployment("web", 3, None),
            client(None),
            service("web", "  selector: {app: web}\n  ports: [{port: 80}]\n"),
        ],
    );
    let ip = cluster_ip(&lab, "web");
    let url = format!("http://{ip}/hostname");
    wait_for(|| hostnames(&lab, "client", &url, 20).len() == 3);

    let scaled = lab.write("one.yaml", &deployment("web", 1, None));
    lab.ok(&["apply", "-f", &scaled]);
    let start = Instant::now();
    wait_for(|| hostnames(&lab, "client", &url, 10).len() == 1);
    eprintln!("scale 3 -> 1 seen by the proxy after {:?}", start.elapsed());
    let only = web_pods(&lab, "web");
    assert_eq!(
        hostnames(&lab, "client", &url, 10),
        only.iter().map(name_of).collect()
    );

    // No pod matches: new connections are refused at once (curl exit 7), not left to time out.
    let none = lab.write("zero.yaml", &deployment("web", 0, None));
    lab.ok(&["apply", "-f", &none]);
    wait_for(|| lab.pod_curl("client", &url, 5).0 == 7);
    let t = Instant::now();
    assert_eq!(lab.pod_curl("client", &url, 5).0, 7, "connection refused");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "refused, not timed out"
    );

    let back = lab.write("two.yaml", &deployment("web", 2, None));
    lab.ok(&["apply", "-f", &back]);
    wait_for(|| hostnames(&lab, "client", &url, 20).len() == 2);
}

#[test]
fn node_ports_and_load_balancers_from_outside_with_both_traffic_policies() {
    let lab = Lab::new();
    let node2 = format!("{}-node2", lab.name);
    // externalIPs are refused unless the cluster config allows their range.
    up_with(
        &lab,
        Some("apiVersion: weft.dev/v1alpha1\nkind: Cluster\nexternalIPRanges: [192.0.2.0/24]\n"),
        2,
        &[
            deployment("web", 2, Some(&node2)),
            service("np", "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30080}]\n"),
            service("lb", "  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n"),
            service(
                "local",
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30081}]\n",
            ),
            service("ext", "  externalIPs: [192.0.2.50]\n  selector: {app: web}\n  ports: [{port: 8080, targetPort: 80}]\n"),
        ],
    );
    let names: BTreeSet<String> = web_pods(&lab, "web").iter().map(name_of).collect();
    let outside = |url: &str| {
        let (code, out) = lab.outside_curl(url, 5);
        assert_eq!(code, 0, "{url}: {out}");
        out
    };
    // NodePort on every node, even the one without endpoints (Cluster policy: forwarded, SNATed).
    for n in 1..=2 {
        let url = format!("http://{}:30080/hostname", node_ip(n));
        wait_for(|| lab.outside_curl(&url, 5).0 == 0);
        assert!(names.contains(&outside(&url)), "{url}");
        // Cluster policy masquerades: the backend sees one of the node's own addresses (its
        // underlay IP, or its overlay address when the packet leaves through weft.vxlan).
        let seen = outside(&format!("http://{}:30080/clientip", node_ip(n)));
        let source = seen.split(':').next().unwrap_or_default().to_string();
        let own = [node_ip(n), format!("10.244.{}.0", n - 1)];
        assert!(
            own.contains(&source),
            "node{n}: backend saw {source}, not one of {own:?}"
        );
    }
    // The LoadBalancer address, routed by the lab's speaker.
    let lb = lab.lb_ip("lb");
    assert!(lb.starts_with("198.51.100."), "{lb}");
    let lb_url = format!("http://{lb}/hostname");
    wait_for(|| lab.outside_curl(&lb_url, 5).0 == 0);
    assert_eq!(
        (0..20).map(|_| outside(&lb_url)).collect::<BTreeSet<_>>(),
        names,
        "both backends behind the LB"
    );

    // Local: the client address survives; the node without endpoints drops.
    let local = lab.lb_ip("local");
    let url = format!("http://{local}/clientip");
    wait_for(|| lab.outside_curl(&url, 5).0 == 0);
    assert_eq!(
        outside(&url).split(':').next(),
        Some("203.0.113.10"),
        "client address preserved"
    );
    let on2 = outside(&format!("http://{}:30081/clientip", node_ip(2)));
    assert_eq!(on2.split(':').next(), Some("203.0.113.10"));
    let (code, _) = lab.outside_curl(&format!("http://{}:30081/clientip", node_ip(1)), 2);
    assert_eq!(
        code, 28,
        "node1 has no local endpoint: dropped (timeout), not refused"
    );

    // externalIPs are served like node ports, and the speaker routes them too.
    let url = "http://192.0.2.50:8080/hostname";
    wait_for(|| lab.outside_curl(url, 5).0 == 0);
    assert!(names.contains(&outside(url)));
}

#[test]
fn session_affinity_sticks_then_expires_and_internal_local_stays_on_the_node() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    up(
        &lab,
        2,
        &[
            deployment("web", 3, None),
            deployment("far", 1, Some(&node2)),
            client(Some(&node1)),
            service(
                "sticky",
                "  selector: {app: web}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}\n  ports: [{port: 80}]\n",
            ),
            service("web", "  selector: {app: web}\n  ports: [{port: 80}]\n"),
            service("far-local", "  selector: {app: far}\n  internalTrafficPolicy: Local\n  ports: [{port: 80}]\n"),
            service("far", "  selector: {app: far}\n  ports: [{port: 80}]\n"),
        ],
    );
    let web = cluster_ip(&lab, "web");
    wait_for(|| hostnames(&lab, "client", &format!("http://{web}/hostname"), 20).len() == 3);
    let url = format!("http://{}/hostname", cluster_ip(&lab, "sticky"));
    let first = hostnames(&lab, "client", &url, 15);
    assert_eq!(
        first.len(),
        1,
        "all 15 requests go to one backend: {first:?}"
    );
    // After the timeout the choice is made afresh; with 3 backends a different one turns up
    // within a few expiries (each has a 1/3 chance of picking the same again).
    let mut moved = false;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(2500));
        if hostnames(&lab, "client", &url, 1) != first {
            moved = true;
            break;
        }
    }
    assert!(moved, "affinity expired after its timeout");

    // internalTrafficPolicy: Local from node1, whose node has no `far` endpoint: dropped.
    let far_local = cluster_ip(&lab, "far-local");
    wait_for(|| {
        lab.pod_curl(
            "client",
            &format!("http://{}/hostname", cluster_ip(&lab, "far")),
            3,
        )
        .0 == 0
    });
    assert_eq!(
        lab.pod_curl("client", &format!("http://{far_local}/hostname"), 2)
            .0,
        28
    );
    // From node2, where the endpoint lives, it answers.
    let out = lab.in_node(
        &node2,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{far_local}/hostname"),
        ],
    );
    assert!(out.starts_with("far-"), "{out}");
}

#[test]
fn a_pod_reaches_itself_through_its_own_service() {
    let lab = Lab::new();
    up(
        &lab,
        1,
        &[
            deployment("solo", 1, None),
            service("solo", "  selector: {app: solo}\n  ports: [{port: 80}]\n"),
        ],
    );
    let ip = cluster_ip(&lab, "solo");
    let pod = name_of(&web_pods(&lab, "solo")[0]);
    wait_for(|| lab.pod_curl(&pod, &format!("http://{ip}/hostname"), 3).1 == pod);
    // Hairpin: the reply must come back through the node, so the source is rewritten.
    let seen = lab.curl(&pod, &format!("http://{ip}/clientip"));
    assert_ne!(
        seen.split(':').next(),
        Some(pod_ip(&web_pods(&lab, "solo")[0]).as_str()),
        "{seen}"
    );
}

#[test]
fn bad_services_are_refused_with_reasons_and_disturb_nothing() {
    let lab = Lab::new();
    up(
        &lab,
        1,
        &[
            deployment("web", 1, None),
            client(None),
            service("web", "  clusterIP: 10.96.7.7\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, nodePort: 30090}]\n"),
            service("headless", "  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80}]\n"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: elsewhere}\nspec: {type: ExternalName, externalName: example.com}\n".to_string(),
        ],
    );
    let url = "http://10.96.7.7/hostname";
    wait_for(|| lab.pod_curl("client", url, 3).0 == 0);
    let cases = [
        (
            "  ports: [{port: 80, targetPort: 70000}]\n",
            "targetPort: 70000 is not a valid port",
        ),
        ("  ports: [{port: 0}]\n", "port: 0 is not a valid port"),
        (
            "  clusterIP: 10.96.7.7\n  ports: [{port: 80}]\n",
            "10.96.7.7 is already allocated to service default/web",
        ),
        (
            "  clusterIP: 10.50.0.1\n  ports: [{port: 80}]\n",
            "10.50.0.1 is not a usable address of the service CIDR",
        ),
        (
            "  type: NodePort\n  ports: [{port: 80, nodePort: 30090}]\n",
            "30090 is already allocated to service default/web",
        ),
        (
            "  type: NodePort\n  ports: [{port: 80, nodePort: 29999}]\n",
            "29999 is outside the node port range 30000-32767",
        ),
    ];
    for (body, expected) in cases {
        let file = lab.write("bad.yaml", &service("bad", body));
        let out = lab.weft(&["apply", "-f", &file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{body}: {err}"
        );
        assert!(
            err.contains("default/bad") || err.contains("Service"),
            "the object is named: {err}"
        );
    }
    // Nothing else moved: the old Service still answers, and no "bad" was stored.
    assert_eq!(lab.pod_curl("client", url, 3).0, 0);
    assert_eq!(
        lab.service("bad"),
        Value::Null,
        "the refused Service was not stored"
    );
    // Headless and ExternalName are stored and not proxied.
    assert_eq!(lab.service("headless")["spec"]["clusterIP"], "None");
    assert_eq!(
        lab.service("elsewhere")["spec"]["externalName"],
        "example.com"
    );
    let table = lab.in_node(
        &format!("{}-node1", lab.name),
        &["nft", "list", "table", "ip", "weft_services"],
    );
    assert!(
        !table.contains("headless") && !table.contains("elsewhere"),
        "{table}"
    );
}
