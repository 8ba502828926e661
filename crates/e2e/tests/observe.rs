//! `weft observe` on a real lab: a client on node 2 reaches a web pod on node 1 through its
//! Service, and the flow log shows the connection with both the Service and the endpoint it
//! was sent to, and the name the client looked up when it asked the cluster DNS; an address
//! no node holds is refused for want of a route; a Service without endpoints refuses it, shown as REJECTED; once a policy closes
//! the web pod, the client's dropped packets show as DROPPED naming the policy and direction.
//! Read through the real CLI, as JSON and as lines. Needs root; the lab is torn down in Drop.

use std::time::Instant;

use serde_json::Value;
use weft_testutil::{client_pod, deny_ingress, pod_ip, wait_for_what, web_pod, Lab};

/// The web pod (node 1) behind Service `web` (8080 -> 80), a Service without endpoints, and a
/// client on node 2.
fn workloads(node1: &str, node2: &str) -> String {
    let services = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080, targetPort: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec:\n  selector: {app: nobody}\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: emptynp}\nspec:\n  type: NodePort\n  selector: {app: nobody}\n  ports: [{port: 80, nodePort: 30777}]\n";
    [
        web_pod("web", node1),
        services.to_string(),
        client_pod("client", node2),
    ]
    .join("---\n")
}

/// `weft observe ARGS -o json`: its records.
fn observe(lab: &Lab, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["observe", "--last", "1000", "-o", "json"];
    all.extend_from_slice(args);
    lab.ok(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn connections_and_drops_show_in_the_flow_log() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let manifest = lab.write("app.yaml", &workloads(&node1, &node2));
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "90"]);
    let web_ip = pod_ip(
        lab.pods(&[])
            .iter()
            .find(|p| p["metadata"]["name"] == "web")
            .unwrap(),
    );
    let cluster_ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();

    // Through the Service: the record names the Service and the endpoint it chose.
    let url = format!("http://{cluster_ip}:8080/");
    assert_eq!(lab.pod_curl("client", &url, 5).0, 0);
    let mut seen = Vec::new();
    wait_for_what("the connection through the Service", || {
        seen = observe(&lab, &["--pod", "client", "--service", "web"]);
        !seen.is_empty()
    });
    let f = &seen[0];
    assert_eq!(f["source"], "default/client", "{f}");
    assert_eq!(f["destination"], "service default/web", "{f}");
    assert_eq!(f["endpoint"], "default/web", "{f}");
    assert_eq!(
        (f["dst_port"].as_u64(), f["nat_dst_port"].as_u64()),
        (Some(8080), Some(80)),
        "{f}"
    );
    assert_eq!(
        (f["verdict"].as_str(), f["protocol"].as_str()),
        (Some("FORWARDED"), Some("tcp")),
        "{f}"
    );
    assert_eq!(f["node"].as_str(), Some(node2.as_str()), "{f}");
    // The person-readable line says the same.
    let lines = lab.ok(&[
        "observe",
        "--pod",
        "client",
        "--port",
        "80",
        "--protocol",
        "tcp",
    ]);
    assert!(
        lines.contains("default/client:")
            && lines.contains(" -> service default/web:8080 => default/web:80 tcp FORWARDED"),
        "{lines}"
    );

    // By name: the record carries the name the client looked up (the search path made `web`
    // web.default.svc.cluster.local), and --to takes it.
    assert_eq!(lab.pod_curl("client", "http://web:8080/", 5).0, 0);
    let mut by_name = Vec::new();
    wait_for_what("the connection by name, with its name", || {
        by_name = observe(&lab, &["--to", "web.default.svc.cluster.local"]);
        !by_name.is_empty()
    });
    let f = &by_name[0];
    assert_eq!(f["dns"], "web.default.svc.cluster.local", "{f}");
    assert_eq!(f["source"], "default/client", "{f}");
    assert_eq!(f["destination"], "service default/web", "{f}");
    // The connection by address before it was not looked up: no name on it.
    assert!(seen.iter().all(|f| f.get("dns").is_none()), "{seen:?}");
    let lines = lab.ok(&["observe", "--to", "web.default.svc.cluster.local"]);
    assert!(
        lines.contains(
            "-> service default/web:8080 (dns web.default.svc.cluster.local) => default/web:80"
        ),
        "{lines}"
    );

    // A Service without endpoints refuses the connection (curl: connection refused), and the
    // flow log says so.
    let empty_ip = lab.service("empty")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lab.pod_curl("client", &format!("http://{empty_ip}/"), 5).0,
        7
    );
    let mut rejected = Vec::new();
    wait_for_what("the refusal in the flow log", || {
        rejected = observe(&lab, &["--verdict", "REJECTED", "--service", "empty"]);
        !rejected.is_empty()
    });
    let r = &rejected[0];
    assert_eq!(r["by"], "no endpoints", "{r}");
    assert_eq!(r["source"], "default/client", "{r}");
    assert_eq!(r["destination"], "service default/empty", "{r}");
    // A NodePort without endpoints, refused by the node it was sent to.
    let node1_ip = lab.kubectl_ok(&[
        "get",
        "node",
        &node1,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(
        lab.pod_curl("client", &format!("http://{}:30777/", node1_ip.trim()), 5)
            .0,
        7
    );
    wait_for_what("the node port's refusal in the flow log", || {
        rejected = observe(&lab, &["--verdict", "REJECTED", "--port", "30777"]);
        !rejected.is_empty()
    });
    let r = &rejected[0];
    assert_eq!(r["by"], "no endpoints", "{r}");
    assert_eq!(r["destination"], format!("node {node1}"), "{r}");

    // An address of the pod network that no node holds: refused at once ("Network is
    // unreachable", curl's 7), shown as REJECTED for want of a route.
    assert_eq!(lab.pod_curl("client", "http://10.244.250.9/", 5).0, 7);
    wait_for_what("the refusal for want of a route", || {
        rejected = observe(&lab, &["--verdict", "REJECTED", "--to", "10.244.250.9"]);
        !rejected.is_empty()
    });
    let r = &rejected[0];
    assert_eq!(r["by"], "no route", "{r}");
    assert_eq!(r["source"], "default/client", "{r}");
    assert_eq!(r["node"].as_str(), Some(node2.as_str()), "{r}");

    // A policy closes web: the client's packets are dropped at web's node, by that policy.
    let policy = lab.write("deny.yaml", &deny_ingress("web"));
    lab.kubectl_ok(&["apply", "-f", &policy]);
    let direct = format!("http://{web_ip}/");
    wait_for_what("the client's connection dropped", || {
        lab.pod_curl("client", &direct, 2).0 == 28
    });
    // How soon a new drop is listed: a curl runs meanwhile, and weft observe is asked until a
    // drop logged since it began shows (each ask is a whole `weft observe` process).
    let mut drops = Vec::new();
    let since_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| lab.pod_curl("client", &direct, 3));
        wait_for_what("the drop in the flow log", || {
            drops = observe(&lab, &["--verdict", "DROPPED", "--to", "default/web"]);
            drops.iter().any(|d| {
                d["by"] == "ingress default/deny-web"
                    && d["time_ms"].as_u64().is_some_and(|t| t >= since_ms)
            })
        });
        println!(
            "a drop was listed by weft observe {:?} after its connection began",
            started.elapsed()
        );
    });
    let d = drops
        .iter()
        .find(|d| d["by"] == "ingress default/deny-web")
        .unwrap();
    assert_eq!(d["source"], "default/client", "{d}");
    assert_eq!(d["node"].as_str(), Some(node1.as_str()), "{d}");
    assert_eq!(d["event"], "drop", "{d}");
    // Nothing forwarded is listed as dropped, and the filter keeps out other verdicts.
    assert!(drops.iter().all(|d| d["verdict"] == "DROPPED"), "{drops:?}");
    // The agents' own logs, where the tutorials look, say it too.
    let logs = lab.kubectl_ok(&[
        "logs",
        "-n",
        "kube-system",
        "-l",
        "app.kubernetes.io/name=weft-agent",
        "--tail=-1",
    ]);
    assert!(
        logs.contains("policy drop: ingress default/deny-web"),
        "{logs}"
    );
}
