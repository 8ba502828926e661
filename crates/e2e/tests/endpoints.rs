//! EndpointSlices and readiness on a real lab: the controller keeps one slice per Service port
//! set in step with the pods it selects, readiness probes run by the kubelets decide the
//! endpoints' conditions, and a Service that selects nothing says so. Needs root. Each test runs
//! its own lab, torn down in Drop.
//!
//! Services set `spec.clusterIP` explicitly (10.96.0.x), so the tests do not depend on how
//! cluster IPs are allocated.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use weft_testutil::{name_of, pod_ip, wait_for, Lab};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
const MANAGED_BY: &str = "endpointslice-controller.weft.dev";

fn deployment(replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n        - name: web\n          image: {AGNHOST}\n          ports: [{{containerPort: 80, name: http}}, {{containerPort: 5353, name: dns, protocol: UDP}}]\n"
    )
}

fn service(name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {ip}\n  selector: {{app: {app}}}\n  ports:\n    - {{name: http, port: 8000, targetPort: http}}\n    - {{name: dns, port: 53, protocol: UDP, targetPort: 5353}}\n"
    )
}

/// An agnhost pod labelled app=`app` with a readinessProbe (YAML flow mapping), on `node` (pinned,
/// so re-applying it keeps the same sandbox: `apply` replaces the spec, scheduler's choice too).
fn probed_pod(node: &str, name: &str, app: &str, probe: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  containers:\n    - name: web\n      image: {AGNHOST}\n      ports: [{{containerPort: 80, name: http}}, {{containerPort: 5353, name: dns, protocol: UDP}}]\n      readinessProbe: {probe}\n"
    )
}

/// The managed EndpointSlices of a Service, read through the lab's API.
fn slices(lab: &Lab, service: &str) -> Vec<Value> {
    let out = lab.weft(&["get", "endpointslices", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let entries = list["items"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = entries
        .into_iter()
        .filter(|s| {
            let labels = &s["metadata"]["labels"];
            labels["kubernetes.io/service-name"] == service
                && labels["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY
        })
        .collect();
    out.sort_by_key(|s| {
        s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    out
}

fn problem(lab: &Lab, name: &str) -> Option<String> {
    lab.service(name)["metadata"]["annotations"]["endpoints.weft.dev/problem"]
        .as_str()
        .map(String::from)
}

/// (address, ready, serving) of every endpoint of the Service's slices.
fn endpoints(lab: &Lab, service: &str) -> BTreeSet<(String, bool, bool)> {
    slices(lab, service)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"] == true,
                e["conditions"]["serving"] == true,
            )
        })
        .collect()
}

/// The ready pods of app=web as endpoints would list them.
fn ready_web_pods(lab: &Lab) -> BTreeSet<(String, bool, bool)> {
    lab.pods(&[])
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "web")
        .filter(|p| ready(p))
        .map(|p| (pod_ip(p), true, true))
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn pod(lab: &Lab, name: &str) -> Value {
    lab.pods(&[])
        .into_iter()
        .find(|p| name_of(p) == name)
        .unwrap_or_default()
}

#[test]
fn one_slice_follows_a_deployment_as_it_scales() {
    let lab = Lab::new();
    let manifest = lab.write(
        "app.yaml",
        &[deployment(3), service("web", "web", "10.96.0.50")].join("---\n"),
    );
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);

    wait_for(|| {
        let want = ready_web_pods(&lab);
        want.len() == 3 && endpoints(&lab, "web") == want
    });
    let got = slices(&lab, "web");
    assert_eq!(got.len(), 1, "one slice: {got:#?}");
    let slice = &got[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["ports"],
        serde_json::json!([
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
        ])
    );
    let svc = lab.service("web");
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["uid"],
        svc["metadata"]["uid"]
    );
    for e in slice["endpoints"].as_array().unwrap() {
        let pod = pod(&lab, e["targetRef"]["name"].as_str().unwrap());
        assert_eq!(e["nodeName"], pod["spec"]["nodeName"]);
        assert_eq!(e["targetRef"]["uid"], pod["metadata"]["uid"]);
        assert_eq!(e["conditions"]["terminating"], false);
    }
    assert_eq!(problem(&lab, "web"), None);

    // A settled cluster is not rewritten on every controller pass.
    let version = slice["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        slices(&lab, "web")[0]["metadata"]["resourceVersion"],
        version
    );

    for replicas in [1usize, 4] {
        let manifest = lab.write("web.yaml", &deployment(replicas));
        lab.ok(&["apply", "-f", &manifest]);
        wait_for(|| {
            let want = ready_web_pods(&lab);
            want.len() == replicas
                && lab.pods(&[]).len() == replicas
                && endpoints(&lab, "web") == want
        });
        assert_eq!(slices(&lab, "web").len(), 1);
    }

    // The Service goes, its slices go.
    let manifest = lab.write("svc.yaml", &service("web", "web", "10.96.0.50"));
    lab.ok(&["delete", "-f", &manifest]);
    wait_for(|| slices(&lab, "web").is_empty());
}

#[test]
fn readiness_probes_decide_endpoint_conditions() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "2", "--wait", "30"]);
    let node1 = format!("{}-node1", lab.name);
    let node2 = format!("{}-node2", lab.name);
    let failing_http =
        "{httpGet: {path: /nope, port: http}, periodSeconds: 1, failureThreshold: 1}";
    let docs = [
        service("probed", "probed", "10.96.0.51"),
        probed_pod(&node1, "http-probe", "probed", failing_http),
        probed_pod(
            &node2,
            "tcp-closed",
            "probed",
            "{tcpSocket: {port: 81}, periodSeconds: 1}",
        ),
        probed_pod(
            &node2,
            "exec-false",
            "probed",
            "{exec: {command: [\"false\"]}, periodSeconds: 1}",
        ),
        probed_pod(
            &node2,
            "exec-true",
            "probed",
            "{exec: {command: [\"true\"]}, periodSeconds: 1}",
        ),
        probed_pod(
            &node2,
            "tcp-open",
            "probed",
            "{tcpSocket: {port: http}, periodSeconds: 1}",
        ),
    ];
    let manifest = lab.write("probed.yaml", &docs.join("---\n"));
    lab.ok(&["apply", "-f", &manifest]);

    let ip_of = |name: &str| pod_ip(&pod(&lab, name));
    wait_for(|| {
        let all_running = [
            "http-probe",
            "tcp-closed",
            "exec-false",
            "exec-true",
            "tcp-open",
        ]
        .iter()
        .all(|n| pod(&lab, n)["status"]["phase"] == "Running");
        all_running
            && endpoints(&lab, "probed").len() == 5
            && ready(&pod(&lab, "exec-true"))
            && ready(&pod(&lab, "tcp-open"))
    });
    // Give the failing probes a few periods: they must stay not ready.
    std::thread::sleep(Duration::from_secs(3));
    let want: BTreeSet<(String, bool, bool)> = [
        (ip_of("http-probe"), false, false),
        (ip_of("tcp-closed"), false, false),
        (ip_of("exec-false"), false, false),
        (ip_of("exec-true"), true, true),
        (ip_of("tcp-open"), true, true),
    ]
    .into_iter()
    .collect();
    assert_eq!(endpoints(&lab, "probed"), want);
    let p = pod(&lab, "http-probe");
    assert_eq!(p["status"]["phase"], "Running");
    assert!(!ready(&p));
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
    assert_eq!(p["status"]["containerStatuses"][0]["started"], true);
    let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
    let log = lab.log(&format!("kubelet-{node}"));
    assert!(
        log.contains("HTTP probe failed with statuscode: 404"),
        "the kubelet says why: {log}"
    );

    // Fix the probe in place: the same pod becomes ready, and so does its endpoint.
    let fixed = probed_pod(
        &node1,
        "http-probe",
        "probed",
        "{httpGet: {path: /healthz, port: http}, periodSeconds: 1}",
    );
    let manifest = lab.write("fixed.yaml", &fixed);
    lab.ok(&["apply", "-f", &manifest]);
    let ip = ip_of("http-probe");
    wait_for(|| ready(&pod(&lab, "http-probe")));
    wait_for(|| endpoints(&lab, "probed").contains(&(ip.clone(), true, true)));
    assert_eq!(ip_of("http-probe"), ip, "the same pod, not a new one");
}

#[test]
fn a_service_selecting_nothing_says_so() {
    let lab = Lab::new();
    let manifest = lab.write("svc.yaml", &service("lonely", "nothing", "10.96.0.52"));
    lab.ok(&["lab", "up", "-f", &manifest, "--wait", "30"]);
    let node1 = format!("{}-node1", lab.name);
    wait_for(|| problem(&lab, "lonely").is_some());
    assert_eq!(
        problem(&lab, "lonely").as_deref(),
        Some("no pods match selector app=nothing")
    );
    wait_for(|| slices(&lab, "lonely").len() == 1);
    assert!(endpoints(&lab, "lonely").is_empty());

    // A matching pod arrives: an endpoint, and the problem is gone.
    let always = "{tcpSocket: {port: http}, periodSeconds: 1}";
    let manifest = lab.write("pod.yaml", &probed_pod(&node1, "found", "nothing", always));
    lab.ok(&["apply", "-f", &manifest]);
    wait_for(|| {
        let ip = pod_ip(&pod(&lab, "found"));
        !ip.is_empty() && endpoints(&lab, "lonely").contains(&(ip, true, true))
    });
    wait_for(|| problem(&lab, "lonely").is_none());
}
