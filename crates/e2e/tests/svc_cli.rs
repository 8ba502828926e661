//! The service side of the CLI on a real lab: `get svc|endpoints|endpointslices`, `describe
//! svc`, and `port-forward` to a pod and through a Service, driven through the `weft` binary.
//! Needs root. The Services here have no selector and a fixed cluster IP, and their
//! EndpointSlices are written by hand, so these tests read only what they wrote, whatever the
//! allocators and the endpoints controller do. Each test owns its lab (torn down in Drop), and
//! every `weft port-forward` child is killed in Drop too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use weft_testutil::{name_of, pod_ip, Lab};

/// Two agnhost pods serving HTTP on their declared port 80 (one named `http`, one unnamed),
/// /hostname answering the pod's name.
const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: echo-a, labels: {app: echo}}
spec:
  containers:
    - name: echo
      image: registry.k8s.io/e2e-test-images/agnhost:2.53
      ports: [{name: http, containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, labels: {app: echo}}
spec:
  containers:
    - name: echo
      image: registry.k8s.io/e2e-test-images/agnhost:2.53
      ports: [{containerPort: 80}]
";

/// Selector-less Services with hand-made slices: `hand` (port 8000 -> 80 on echo-a, plus a
/// not-ready address), `many` (five ready addresses) and `empty` (no slices at all).
fn services(a_ip: &str, b_ip: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: hand, labels: {{team: net}}}}
spec:
  clusterIP: 10.96.0.41
  ports: [{{name: http, port: 8000, targetPort: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hand-1
  labels: {{kubernetes.io/service-name: hand}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
  - addresses: [{b_ip}]
    conditions: {{ready: false}}
    targetRef: {{kind: Pod, name: echo-b, namespace: default}}
  - addresses: [{a_ip}]
    conditions: {{ready: true}}
    targetRef: {{kind: Pod, name: echo-a, namespace: default}}
---
apiVersion: v1
kind: Service
metadata: {{name: many}}
spec:
  clusterIP: 10.96.0.42
  ports: [{{port: 9000, protocol: UDP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: many-1
  labels: {{kubernetes.io/service-name: many}}
addressType: IPv4
ports: [{{port: 9000, protocol: UDP}}]
endpoints:
  - addresses: [10.244.9.1]
  - addresses: [10.244.9.2]
  - addresses: [10.244.9.3]
  - addresses: [10.244.9.4]
  - addresses: [10.244.9.5]
---
apiVersion: v1
kind: Service
metadata: {{name: empty}}
spec:
  clusterIP: 10.96.0.43
  ports: [{{port: 80}}]
"
    )
}

/// A lab with the two pods running and the hand-made Services applied; the pods' IPs.
fn lab_with_services() -> (Lab, String, String) {
    let lab = Lab::new();
    let pods = lab.write("pods.yaml", PODS);
    lab.ok(&["lab", "up", "-f", &pods, "--wait", "60"]);
    let ip = |name: &str| {
        let pods = lab.pods(&[]);
        let pod = pods.iter().find(|p| name_of(p) == name).expect(name);
        pod_ip(pod)
    };
    let (a, b) = (ip("echo-a"), ip("echo-b"));
    assert!(!a.is_empty() && !b.is_empty(), "pods have IPs: {a:?} {b:?}");
    let svcs = lab.write("svcs.yaml", &services(&a, &b));
    lab.ok(&["apply", "-f", &svcs]);
    (lab, a, b)
}

/// The row of `table` whose first column is `name`, split into columns.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

#[test]
fn get_and_describe_services_endpoints_and_slices() {
    let (lab, a, b) = lab_with_services();

    let svc = lab.ok(&["get", "svc"]);
    assert!(svc.starts_with("NAME "), "header first:\n{svc}");
    let header: Vec<&str> = svc.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        row(&svc, "hand")[..5],
        ["hand", "ClusterIP", "10.96.0.41", "<none>", "8000/TCP"]
    );
    assert_eq!(
        row(&svc, "many")[..5],
        ["many", "ClusterIP", "10.96.0.42", "<none>", "9000/UDP"]
    );
    let wide = lab.ok(&["get", "services", "hand", "-o", "wide"]);
    assert_eq!(
        row(&wide, "hand").last().unwrap(),
        "<none>",
        "SELECTOR:\n{wide}"
    );
    let all = lab.ok(&["get", "svc", "-A"]);
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq(["default", "hand"])),
        "NAMESPACE first with -A:\n{all}"
    );

    // Endpoints: ready addresses only, truncated after three, <none> when empty.
    let ep = lab.ok(&["get", "endpoints"]);
    assert_eq!(row(&ep, "hand")[1], format!("{a}:80"), "{ep}");
    assert_eq!(
        row(&ep, "many")[1..5],
        [
            "10.244.9.1:9000,10.244.9.2:9000,10.244.9.3:9000",
            "+",
            "2",
            "more..."
        ]
    );
    assert_eq!(row(&ep, "empty")[1], "<none>");
    let out = lab.weft(&["get", "ep", "empty"]);
    assert!(out.status.success());
    let hint = String::from_utf8_lossy(&out.stderr);
    assert!(
        hint.contains("service empty has no selector")
            && hint.contains("kubernetes.io/service-name=empty"),
        "hint for a selector-less Service: {hint}"
    );
    let out = lab.weft(&["get", "ep", "hand"]);
    assert!(out.stderr.is_empty(), "no hint when there are endpoints");
    let json: Value = serde_json::from_str(&lab.ok(&["get", "ep", "hand", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "Endpoints");
    assert_eq!(json["subsets"][0]["addresses"][0]["ip"], a.as_str());
    assert_eq!(json["subsets"][0]["notReadyAddresses"][0]["ip"], b.as_str());
    assert_eq!(json["subsets"][0]["ports"][0]["port"], 80);
    let missing = lab.weft(&["get", "ep", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("endpoints \"nope\" not found"));

    // EndpointSlices: every address, ready or not.
    let eps = lab.ok(&["get", "eps"]);
    assert_eq!(
        row(&eps, "hand-1")[1..4],
        ["IPv4".to_string(), "80".into(), format!("{b},{a}")]
    );
    assert_eq!(
        row(&eps, "many-1")[1..7],
        [
            "IPv4",
            "9000",
            "10.244.9.1,10.244.9.2,10.244.9.3",
            "+",
            "2",
            "more..."
        ]
    );

    let text = lab.ok(&["describe", "svc", "hand"]);
    for line in [
        "Name:                     hand",
        "Labels:                   team=net",
        "Selector:                 <none>",
        "Type:                     ClusterIP",
        "IP:                       10.96.0.41",
        "Port:                     http  8000/TCP",
        "TargetPort:               80/TCP",
        &format!("Endpoints:                {a}:80"),
        "Session Affinity:         None",
        "Internal Traffic Policy:  Cluster",
        "Events:  <none>",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    let text = lab.ok(&["describe", "service", "empty"]);
    assert!(
        text.contains("\nEndpoints:                <none>\n"),
        "{text}"
    );
    let pod = lab.ok(&["describe", "pod", "echo-a"]);
    assert!(pod.contains(&format!("\nIP:           {a}\n")), "{pod}");
    assert!(pod.contains("\n  echo:\n"), "{pod}");
    let missing = lab.weft(&["describe", "svc", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("service \"nope\" not found"));
}

/// A running `weft port-forward`, killed when dropped.
struct Forwarder {
    child: Child,
    /// The local port of each "Forwarding from 127.0.0.1:PORT -> REMOTE" line, in order.
    ports: Vec<u16>,
}

impl Forwarder {
    fn start(lab: &Lab, args: &[&str], forwards: usize) -> Forwarder {
        let mut child = lab
            .weft_cmd(&["port-forward"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weft port-forward");
        let stdout = child.stdout.take().expect("stdout");
        let mut forwarder = Forwarder {
            child,
            ports: Vec::new(),
        };
        let mut lines = BufReader::new(stdout).lines();
        while forwarder.ports.len() < forwards {
            let Some(Ok(line)) = lines.next() else {
                let mut err = String::new();
                let _ = forwarder
                    .child
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                panic!("port-forward {args:?} ended early: {err}");
            };
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let port = rest.split_once(' ').expect("a port").0;
                forwarder.ports.push(port.parse().expect("a port number"));
            }
        }
        // Keep reading ("Handling connection for ...") so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        forwarder
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl :{port}{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A plain HTTP/1.0 GET on an open connection: the body.
fn get_on(mut conn: TcpStream, path: &str) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or(reply)
}

fn fails_with(lab: &Lab, args: &[&str], message: &str) {
    let mut all = vec!["port-forward"];
    all.extend_from_slice(args);
    let out = lab.weft(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "port-forward {args:?} should fail");
    assert!(
        err.contains(message),
        "port-forward {args:?}: {err:?} should say {message:?}"
    );
}

#[test]
fn port_forward_to_pods_and_through_services() {
    let (lab, _, _) = lab_with_services();

    // pod/NAME with a free local port, and a named container port on a second forward.
    let pod = Forwarder::start(&lab, &["pod/echo-a", "0:80", ":http"], 2);
    assert_eq!(curl(pod.ports[0], "/hostname"), "echo-a");
    assert_eq!(curl(pod.ports[1], "/hostname"), "echo-a");

    // Two connections at once: the first held open while the second is served.
    let held = TcpStream::connect(("127.0.0.1", pod.ports[0])).unwrap();
    assert_eq!(curl(pod.ports[0], "/hostname"), "echo-a");
    assert_eq!(get_on(held, "/hostname"), "echo-a");

    // A bare NAME is a pod; echo-b answers with its own name.
    let bare = Forwarder::start(&lab, &["echo-b", "0:80"], 1);
    assert_eq!(curl(bare.ports[0], "/hostname"), "echo-b");

    // svc/NAME: service port 8000 targets 80 on the one ready endpoint (echo-a; echo-b's
    // address is not ready).
    let svc = Forwarder::start(&lab, &["svc/hand", "0:8000"], 1);
    let conns: Vec<_> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", svc.ports[0])).unwrap())
        .collect();
    let answers: Vec<String> = conns
        .into_iter()
        .map(|c| std::thread::spawn(move || get_on(c, "/hostname")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(answers, ["echo-a", "echo-a"]);

    // A taken local port.
    fails_with(
        &lab,
        &["pod/echo-a", &format!("{}:80", pod.ports[0])],
        "already in use",
    );
    // Unknown targets, ports and specs.
    fails_with(
        &lab,
        &["pod/nope", "80"],
        "pod \"nope\" not found in namespace default",
    );
    fails_with(&lab, &["svc/nope", "80"], "service \"nope\" not found");
    fails_with(&lab, &["svc/hand", "0:81"], "service hand has no port 81");
    fails_with(&lab, &["svc/empty", "0:80"], "no ready endpoint");
    fails_with(
        &lab,
        &["echo-b", "0:http"],
        "pod echo-b has no container port named \"http\"",
    );
    fails_with(&lab, &["echo-a", "x:80"], "bad port spec \"x:80\"");
    fails_with(&lab, &["echo-a", "80:"], "remote port is missing");
    fails_with(&lab, &["echo-a", "1:2:3"], "bad port spec");
}
