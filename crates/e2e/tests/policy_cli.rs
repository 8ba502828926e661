//! `weft policy check` and `weft policy matrix` on a lab: the verdicts the command computes from
//! the API (the agents' compiler, simulated) name the deciding policy and rule, and agree with
//! real connections (`--probe`). Needs root; the lab is torn down in Drop.

use serde_json::Value;
use weft_testutil::{wait_for_what, Lab, AGNHOST};

/// Pod `ns/name` on `node`, labelled app=`app`: agnhost netexec, HTTP on 80 (named http),
/// UDP on 81 (named echo, answering `hostname`).
fn server(ns: &str, name: &str, app: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec:\n  nodeName: {node}\n  containers:\n    - name: c\n      image: {AGNHOST}\n      args: [netexec, --http-port=80, --udp-port=81]\n      ports: [{{containerPort: 80, name: http}}, {{containerPort: 81, name: echo, protocol: UDP}}]\n      readinessProbe: {{httpGet: {{path: /healthz, port: 80}}, periodSeconds: 1}}\n"
    )
}

/// Namespaces x and y; x/a and y/a (app=a) on node 1, x/b (app=b) on node 2 behind Service
/// x/web. Policy x/web: every pod of x takes HTTP only from x's app=a pods. Policy y/udp-only:
/// y's pods send only UDP 81.
fn manifest(lab: &Lab) -> String {
    let n1 = format!("{}-node1", lab.name);
    let n2 = format!("{}-node2", lab.name);
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x}}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {ns: y}}\n".to_string(),
        server("x", "a", "a", &n1),
        server("x", "b", "b", &n2),
        server("y", "a", "a", &n1),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec:\n  selector: {app: b}\n  ports: [{name: http, port: 8080, targetPort: http}]\n".to_string(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - from: [{podSelector: {matchLabels: {app: a}}}]\n      ports: [{port: http}]\n".to_string(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: udp-only, namespace: y}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - ports: [{protocol: UDP, port: 81}]\n".to_string(),
    ]
    .join("---\n")
}

/// `weft policy ARGS`: (exit code, stdout, stderr).
fn policy(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["policy"];
    all.extend_from_slice(args);
    let out = lab.weft(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let (code, out, err) = policy(lab, &all);
    assert!(code == 0, "policy {all:?}: exit {code}: {err}\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const MATRIX_80: &str = "-\tx/a\tx/b\ty/a\nx/a\t.\t.\t.\nx/b\tX\t.\t.\ny/a\tX\tX\t.\n";

#[test]
fn check_and_matrix_explain_the_policies_and_agree_with_real_connections() {
    let lab = Lab::new();
    let file = lab.write("app.yaml", &manifest(&lab));
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &file, "--wait", "90"]);

    // Allowed at the destination by x/web's only rule; the Service resolves to its endpoint.
    let (code, out, err) = policy(&lab, &["check", "x/a", "x/svc/web", "8080"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("to   svc/x/web: ready endpoints x/b ("),
        "{out}"
    );
    assert!(
        out.contains("svc port 8080/tcp (http) -> 80: allowed"),
        "{out}"
    );
    assert!(
        out.contains("not isolated: no policy selects x/a for egress"),
        "{out}"
    );
    assert!(
        out.contains("allowed by x/web ingress rule 0: from pods app=a; ports tcp/http"),
        "{out}"
    );

    // Denied, with the isolating policy named, at the destination.
    let (_, out, _) = policy(&lab, &["check", "x/b", "x/a", "80"]);
    assert!(out.contains(": denied\n"), "{out}");
    assert!(
        out.contains("isolated by x/web; no rule allows tcp/80 from x/b: dropped"),
        "{out}"
    );

    // The computed verdicts agree with real connections, TCP and UDP, to pods and outside;
    // the agents may still be programming a moment after the pods are ready.
    let probes: [(&str, &str, &str, bool); 5] = [
        ("x/a", "x/b", "80", true),
        ("x/b", "x/a", "http", false),
        ("y/a", "x/b", "81/udp", false),
        ("y/a", "y/a", "81/udp", true),
        ("x/a", "203.0.113.10", "80", true),
    ];
    for (from, to, port, allowed) in probes {
        let mut last = Value::Null;
        wait_for_what(&format!("{from} -> {to} {port}: probe agrees"), || {
            last = check_json(&lab, &[from, to, port, "--probe"]);
            last["paths"][0]["probe"]["agrees"] == true
        });
        let path = &last["paths"][0];
        assert_eq!(path["allowed"], allowed, "{from} -> {to} {port}: {last:#}");
        assert_eq!(path["probe"]["allowed"], allowed, "{last:#}");
    }
    // What decided, for machines: policy and rule index, and the nft trace.
    let v = check_json(&lab, &["y/a", "x/b", "81/udp"]);
    let egress = &v["paths"][0]["egress"];
    assert_eq!(egress["decision"]["kind"], "allowed", "{v:#}");
    assert_eq!(egress["decision"]["policy"], "y/udp-only");
    assert_eq!(egress["decision"]["rule"], 0);
    assert!(egress["trace"][0]["chain"] == "prerouting", "{v:#}");
    assert_eq!(v["paths"][0]["ingress"]["decision"]["kind"], "dropped");
    assert_eq!(
        v["paths"][0]["ingress"]["decision"]["isolating"][0],
        "x/web"
    );

    // The matrix, computed, then probed: every cell agrees.
    let (code, out, err) = policy(&lab, &["matrix", "-n", "x,y"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("80/tcp computed:\n{MATRIX_80}")),
        "{out}"
    );
    let (code, out, err) = policy(
        &lab,
        &[
            "matrix", "-n", "x,y", "--port", "80", "--port", "81/udp", "--probe",
        ],
    );
    assert_eq!(code, 0, "probes disagree: {err}\n{out}");
    assert!(
        out.contains(&format!("80/tcp probed:\n{MATRIX_80}")),
        "{out}"
    );
    assert!(
        out.contains(
            "81/udp computed:\n-\tx/a\tx/b\ty/a\nx/a\t.\tX\t.\nx/b\tX\t.\t.\ny/a\tX\tX\t.\n"
        ),
        "{out}"
    );
    assert_eq!(
        out.matches("every probe agrees with the computed verdicts")
            .count(),
        2,
        "{out}"
    );

    // Errors say what was wrong.
    let (code, _, err) = policy(&lab, &["check", "x/nope", "x/a", "80"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown pod \"nope\" in namespace x"), "{err}");
    let (code, _, err) = policy(&lab, &["check", "a", "x/b", "80"]);
    assert_ne!(code, 0);
    assert!(err.contains("ambiguous name \"a\""), "{err}");
    let (code, _, err) = policy(&lab, &["check", "x/a", "x/b", "80/icmp"]);
    assert_ne!(code, 0);
    assert!(err.contains("bad port \"80/icmp\""), "{err}");
}
