//! `weft trace` on a real lab: one working path (a Service by its DNS name, every hop passing,
//! and `--probe` joined with the flow log), then each way a path breaks, found at its hop with
//! what to change: no DNS record, a selector matching no pods, an endpoint that is not ready,
//! a policy denying at egress, a policy denying at ingress, nothing listening on the port.
//! Needs root; the lab is torn down in Drop.

use serde_json::Value;
use weft_testutil::{client_pod, wait_for_what, web_pod, Lab};

fn workloads(node1: &str, node2: &str) -> String {
    let more = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 8080, targetPort: 80}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: typo}}\nspec:\n  selector: {{app: web-typo}}\n  ports: [{{port: 80}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: wrongport}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 9090}}]\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: slow, labels: {{app: slow}}}}\nspec:\n  nodeName: {node1}\n  containers:\n  - name: web\n    image: nginx:1.27\n    ports: [{{containerPort: 80}}]\n    readinessProbe: {{httpGet: {{path: /, port: 9999}}, periodSeconds: 1}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: slow}}\nspec:\n  selector: {{app: slow}}\n  ports: [{{port: 80}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: guarded}}\nspec:\n  selector: {{app: guarded}}\n  ports: [{{port: 80}}]\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-guarded}}\nspec:\n  podSelector: {{matchLabels: {{app: guarded}}}}\n  policyTypes: [Ingress]\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: muted, labels: {{role: muted}}}}\nspec:\n  nodeName: {node2}\n  containers: [{{name: c, image: busybox, command: [sleep, \"3600\"]}}]\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: mute}}\nspec:\n  podSelector: {{matchLabels: {{role: muted}}}}\n  policyTypes: [Egress]\n"
    );
    [
        web_pod("web", node1),
        web_pod("guarded", node1),
        client_pod("client", node2),
        more,
    ]
    .join("---\n")
}

/// `weft trace ARGS -o json`: the exit code and the trace.
fn trace(lab: &Lab, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = lab.weft(&all);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "weft {all:?}: {e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The failed hop of a trace: (hop, text, fix).
fn failed(t: &Value) -> (String, String, String) {
    let hop = t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["outcome"] == "failed")
        .unwrap_or_else(|| panic!("no failed hop: {t:#}"));
    (
        hop["hop"].as_str().unwrap().to_string(),
        hop["text"].as_str().unwrap().to_string(),
        hop["fix"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn trace_finds_the_failing_hop() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let manifest = lab.write("app.yaml", &workloads(&node1, &node2));
    // `slow` never becomes ready, so lab up waits only for the others.
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "0"]);
    wait_for_what("web, guarded, client and muted running", || {
        let pods = lab.pods(&[]);
        ["web", "guarded", "client", "muted", "slow"]
            .iter()
            .all(|n| {
                pods.iter().any(|p| {
                    p["metadata"]["name"] == *n
                        && p["status"]["phase"] == "Running"
                        && p["status"]["podIP"].is_string()
                })
            })
    });
    wait_for_what("web's endpoint and slow's unready one", || {
        let slices = lab.kubectl_ok(&["get", "endpointslices", "-o", "json"]);
        let v: Value = serde_json::from_str(&slices).unwrap();
        let eps = |svc: &str| -> Vec<Value> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .collect()
        };
        eps("web").iter().any(|e| e["conditions"]["ready"] == true)
            && eps("guarded")
                .iter()
                .any(|e| e["conditions"]["ready"] == true)
            && eps("slow")
                .iter()
                .any(|e| e["conditions"]["ready"] == false)
    });

    // The working path: name -> Service -> endpoint -> route across nodes -> policies -> nginx.
    let (code, t) = trace(&lab, &["client", "web:8080"]);
    assert_eq!(code, 0, "{t:#}");
    let hops: Vec<&str> = t["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hop"].as_str().unwrap())
        .collect();
    assert_eq!(
        hops,
        ["dns", "service", "endpoints", "route", "policy", "listen"],
        "{t:#}"
    );
    let text = |i: usize| t["hops"][i]["text"].as_str().unwrap().to_string();
    assert!(
        text(0).starts_with("web.default.svc.cluster.local. -> "),
        "{t:#}"
    );
    assert!(
        text(1).contains("port 8080/TCP (http) -> target port 80"),
        "{t:#}"
    );
    assert!(
        text(2).contains("default/web") && text(2).contains(":80 ready"),
        "{t:#}"
    );
    assert!(
        text(3).contains(&format!("node {node2} -> node {node1}")),
        "{t:#}"
    );
    assert!(text(5).contains("default/web listens on 80/TCP"), "{t:#}");
    // And for real: the probe gets through, and the flow log has the connection.
    let (code, t) = trace(&lab, &["client", "web:8080", "--probe"]);
    assert_eq!(code, 0, "{t:#}");
    let flows: Vec<String> = t["probe"]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(
        flows
            .iter()
            .any(|f| f.contains("service default/web:8080 => default/web:80")
                && f.contains("FORWARDED")),
        "{t:#}"
    );

    // No DNS record: the name's near miss is named.
    let (code, t) = trace(&lab, &["client", "wbe:8080"]);
    assert_eq!(code, 1);
    let (hop, text, fix) = failed(&t);
    assert_eq!(hop, "dns", "{t:#}");
    assert!(text.contains("no DNS record for wbe"), "{t:#}");
    assert!(fix.contains("did you mean web"), "{t:#}");

    // A selector that matches no pods: the pods that carry the key are named.
    let (_, t) = trace(&lab, &["client", "typo:80"]);
    let (hop, text, fix) = failed(&t);
    assert_eq!(hop, "endpoints", "{t:#}");
    assert!(
        text.contains("selector app=web-typo matches no pods"),
        "{t:#}"
    );
    assert!(fix.contains("pods with app=web exist (web"), "{t:#}");

    // An endpoint that is not ready, and why.
    let (_, t) = trace(&lab, &["client", "slow:80"]);
    let (hop, text, _) = failed(&t);
    assert_eq!(hop, "endpoints", "{t:#}");
    assert!(
        text.contains("default/slow") && text.contains("NOT ready"),
        "{t:#}"
    );
    assert!(text.contains("readiness probe"), "{t:#}");

    // A policy denying at the source (egress).
    let (_, t) = trace(&lab, &["muted", "web:8080"]);
    let (hop, text, fix) = failed(&t);
    assert_eq!(hop, "egress", "{t:#}");
    assert!(text.contains("default/mute"), "{t:#}");
    assert!(
        fix.contains("egress rule") && fix.contains("default/mute"),
        "{t:#}"
    );

    // A policy denying at the destination (ingress).
    let (_, t) = trace(&lab, &["client", "guarded:80"]);
    let (hop, text, fix) = failed(&t);
    assert_eq!(hop, "ingress", "{t:#}");
    assert!(text.contains("default/deny-guarded"), "{t:#}");
    assert!(
        fix.contains("ingress rule") && fix.contains("default/client"),
        "{t:#}"
    );

    // Nothing listening on the target port: what the pod listens on instead.
    let (_, t) = trace(&lab, &["client", "wrongport:80"]);
    let (hop, text, fix) = failed(&t);
    assert_eq!(hop, "listen", "{t:#}");
    assert!(
        text.contains("nothing listens on 9090/TCP in default/web"),
        "{t:#}"
    );
    assert!(fix.contains("80/TCP"), "{t:#}");

    // An address of the pod network that no node holds: no route.
    let (_, t) = trace(&lab, &["client", "10.244.250.9:80"]);
    let (hop, text, _) = failed(&t);
    assert_eq!(hop, "route", "{t:#}");
    assert!(
        text.contains("no route") && text.contains("no node's pod CIDR holds it"),
        "{t:#}"
    );

    // The text form marks the hop and says what to change.
    let out = lab.weft(&["trace", "client", "typo:80"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("FAIL endpoints"), "{text}");
    assert!(text.contains("fix: pods with app=web exist"), "{text}");
}
