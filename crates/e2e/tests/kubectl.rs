//! The real kubectl (and helm) against the lab's API server: the Kubernetes tutorial step by
//! step, asserting kubectl's own columns and messages and the objects the API stores; then bad
//! input through kubectl and through raw HTTPS with the kubeconfig's client certificate, each
//! refused with kube-apiserver's status and nothing stored. Needs root and /usr/local/bin/kubectl
//! (scripts/deps.sh). Each test runs its own lab, torn down in Drop.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_testutil::{cell, columns, name_of, pod_ip, table, wait_for_what, Lab, KUBECTL};

/// What kubectl said: exit code, stdout, stderr.
struct Said {
    code: i32,
    out: String,
    err: String,
}

fn said(out: Output) -> Said {
    Said {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn kubectl(lab: &Lab, args: &[&str]) -> Said {
    said(lab.kubectl(args))
}

fn json_of(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(&all)).expect("kubectl -o json")
}

/// `kubectl get KIND NAME` must fail with kube's NotFound message: nothing was stored.
fn assert_absent(lab: &Lab, resource: &str, name: &str) {
    let got = kubectl(lab, &["get", resource, name]);
    assert_eq!(got.code, 1, "{resource}/{name} exists: {}", got.out);
    assert_eq!(
        got.err.trim(),
        format!("Error from server (NotFound): {resource} \"{name}\" not found"),
    );
}

/// The pods with label app=APP, as the API serves them.
fn app_pods(lab: &Lab, app: &str) -> Vec<Value> {
    json_of(lab, &["get", "pods", "-l", &format!("app={app}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn running(pods: &[Value]) -> bool {
    pods.iter().all(|p| {
        p["status"]["phase"] == "Running"
            && p["metadata"]["deletionTimestamp"].is_null()
            && !pod_ip(p).is_empty()
    })
}

/// kubectl's AGE: one or two units like `5s`, `2m3s`, `4h`, `12d`.
fn is_age(s: &str) -> bool {
    let mut digits = false;
    let mut units = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits = true;
        } else if "smhdy".contains(c) && digits {
            digits = false;
            units += 1;
        } else {
            return false;
        }
    }
    !digits && (1..=2).contains(&units)
}

/// Lines of a spawned process's stdout, read by a thread so the test can wait with a deadline.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads until a line satisfies `want` (30 s at most); returns that line.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{what}: not seen within 30s; lines so far: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `script` gives kubectl a terminal (for `exec -it`); its stdin is a pipe held open until the
/// end, since script turns end of input into an EOF character that kubectl would then forward.
fn under_terminal(lab: &Lab, kubectl_args: &str) -> Said {
    let mut child = Command::new("script")
        .args(["-qec", &format!("{KUBECTL} {kubectl_args}"), "/dev/null"])
        .env("KUBECONFIG", lab.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().expect("script output");
    drop(stdin);
    said(out)
}

const MULTI: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: registry.k8s.io/e2e-test-images/agnhost:2.52
        args: [netexec, --http-port=8080]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
data:
  greeting: hello
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: api}
  ports:
  - port: 8080
    targetPort: 8080
";

fn busybox_pod(name: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, {}]\n",
        serde_json::to_string(script).unwrap()
    )
}

#[test]
fn the_tutorial_with_the_real_kubectl() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    let node = format!("{}-node1", lab.name);

    // kubectl sends this body as application/vnd.kubernetes.protobuf.
    let created = kubectl(
        &lab,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=3",
        ],
    );
    assert_eq!(
        (created.code, created.out.as_str(), created.err.as_str()),
        (0, "deployment.apps/web created\n", "")
    );
    let deployment = json_of(&lab, &["get", "deployment", "web"]);
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app": "web"})
    );
    let containers = &deployment["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["name"], "nginx");
    assert_eq!(containers[0]["image"], "nginx");
    assert_eq!(
        lab.kubectl_ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--type=ClusterIP"
        ]),
        "service/web exposed\n"
    );

    // kubectl get services: kube's columns; web is a ClusterIP from the service CIDR on 80/TCP.
    let services = lab.kubectl_ok(&["get", "services"]);
    assert_eq!(
        columns(&services),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let rows = table(&services);
    let names: Vec<&str> = rows.iter().map(|r| cell(r, "NAME")).collect();
    assert_eq!(names, ["kubernetes", "web"], "{services}");
    let web = &rows[1];
    assert_eq!(cell(web, "TYPE"), "ClusterIP");
    let ip = cell(web, "CLUSTER-IP").to_string();
    assert!(ip.starts_with("10.96.0."), "{services}");
    assert_ne!(ip, "10.96.0.1", "the kubernetes Service's address");
    assert_eq!(cell(web, "EXTERNAL-IP"), "<none>");
    assert_eq!(cell(web, "PORT(S)"), "80/TCP");
    assert!(is_age(cell(web, "AGE")), "{services}");
    assert_eq!(cell(&rows[0], "CLUSTER-IP"), "10.96.0.1");
    assert_eq!(cell(&rows[0], "PORT(S)"), "443/TCP");

    // Three pods Running on the one node, with kubectl's wide columns.
    wait_for_what("3 web pods running", || {
        let pods = app_pods(&lab, "web");
        pods.len() == 3 && running(&pods)
    });
    let wide = lab.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        columns(&wide),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let pods = app_pods(&lab, "web");
    let web_names: BTreeSet<String> = pods.iter().map(name_of).collect();
    let web_ips: BTreeSet<String> = pods.iter().map(pod_ip).collect();
    let rows = table(&wide);
    assert_eq!(rows.len(), 3, "{wide}");
    for row in &rows {
        assert!(web_names.contains(cell(row, "NAME")), "{wide}");
        assert!(cell(row, "NAME").starts_with("web-"), "{wide}");
        assert_eq!(cell(row, "READY"), "1/1");
        assert_eq!(cell(row, "STATUS"), "Running");
        assert_eq!(cell(row, "RESTARTS"), "0");
        assert!(web_ips.contains(cell(row, "IP")), "{wide}");
        assert!(cell(row, "IP").starts_with("10.244.0."), "{wide}");
        assert_eq!(cell(row, "NODE"), node);
        assert_eq!(cell(row, "NOMINATED NODE"), "<none>");
        assert_eq!(cell(row, "READINESS GATES"), "<none>");
    }
    // Owned by the Deployment, so deleting it collects them (checked at the end).
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Deployment", "{pod}");
        assert_eq!(owner["name"], "web");
        assert_eq!(owner["controller"], true);
    }

    // Endpoints and EndpointSlices list the three pods on port 80.
    let want: BTreeSet<String> = web_ips.iter().map(|ip| format!("{ip}:80")).collect();
    wait_for_what("endpoints web lists the 3 pods", || {
        let ep = lab.kubectl_ok(&["get", "endpoints", "web"]);
        table(&ep).first().is_some_and(|row| {
            cell(row, "ENDPOINTS")
                .split(',')
                .map(String::from)
                .collect::<BTreeSet<_>>()
                == want
        })
    });
    let ep = lab.kubectl_ok(&["get", "endpoints", "web"]);
    assert_eq!(columns(&ep), ["NAME", "ENDPOINTS", "AGE"]);
    assert_eq!(cell(&table(&ep)[0], "NAME"), "web");
    let slices = lab.kubectl_ok(&["get", "endpointslices"]);
    assert_eq!(
        columns(&slices),
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    );
    let rows = table(&slices);
    let slice = rows
        .iter()
        .find(|r| cell(r, "NAME").starts_with("web-"))
        .unwrap_or_else(|| panic!("no web slice: {slices}"));
    assert_eq!(cell(slice, "ADDRESSTYPE"), "IPv4");
    assert_eq!(cell(slice, "PORTS"), "80");
    let slice_ips: BTreeSet<String> = cell(slice, "ENDPOINTS")
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(slice_ips, web_ips, "{slices}");
    let kube = rows
        .iter()
        .find(|r| cell(r, "NAME") == "kubernetes")
        .unwrap_or_else(|| panic!("no kubernetes slice: {slices}"));
    assert_eq!(cell(kube, "PORTS"), "6443");

    // apply of a multi-document file, then the same again: nothing changes.
    let multi = lab.write("multi.yaml", MULTI);
    assert_eq!(
        lab.kubectl_ok(&["apply", "-f", &multi]),
        "deployment.apps/api created\nconfigmap/api-config created\nservice/api created\n"
    );
    let rv =
        json_of(&lab, &["get", "configmap", "api-config"])["metadata"]["resourceVersion"].clone();
    assert_eq!(
        lab.kubectl_ok(&["apply", "-f", &multi]),
        "deployment.apps/api unchanged\nconfigmap/api-config unchanged\nservice/api unchanged\n"
    );
    let cm = json_of(&lab, &["get", "configmap", "api-config"]);
    assert_eq!(cm["data"], json!({"greeting": "hello"}));
    assert_eq!(
        cm["metadata"]["resourceVersion"], rv,
        "an unchanged apply wrote"
    );
    assert!(
        cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string(),
        "{cm}"
    );

    // Patches: strategic merge (containers merge by name), merge, JSON.
    assert_eq!(
        lab.kubectl_ok(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
        ]),
        "deployment.apps/web patched\n"
    );
    let containers = json_of(&lab, &["get", "deployment", "web"])["spec"]["template"]["spec"]
        ["containers"]
        .clone();
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["name"], "nginx");
    assert_eq!(containers[0]["image"], "nginx:1.27");
    wait_for_what("web pods rolled to nginx:1.27", || {
        let pods = app_pods(&lab, "web");
        pods.len() == 3
            && running(&pods)
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    });
    assert_eq!(
        lab.kubectl_ok(&[
            "patch",
            "configmap",
            "api-config",
            "--type=merge",
            "-p",
            r#"{"data":{"greeting":"hi","extra":"x"}}"#,
        ]),
        "configmap/api-config patched\n"
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "api-config"])["data"],
        json!({"greeting": "hi", "extra": "x"})
    );
    assert_eq!(
        lab.kubectl_ok(&[
            "patch",
            "configmap",
            "api-config",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/extra"},{"op":"replace","path":"/data/greeting","value":"hey"},{"op":"add","path":"/data/more","value":"y"}]"#,
        ]),
        "configmap/api-config patched\n"
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "api-config"])["data"],
        json!({"greeting": "hey", "more": "y"})
    );
    // A JSON patch whose test fails changes nothing.
    let failed = kubectl(
        &lab,
        &[
            "patch",
            "configmap",
            "api-config",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/greeting","value":"nope"},{"op":"remove","path":"/data/more"}]"#,
        ],
    );
    assert_eq!(failed.code, 1, "{}{}", failed.out, failed.err);
    // kube-apiserver answers a failed JSON patch with 422 and no kind, which kubectl words so.
    assert!(
        failed.err.starts_with("The request is invalid: "),
        "{}",
        failed.err
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "api-config"])["data"],
        json!({"greeting": "hey", "more": "y"})
    );

    // Scale down: two pods left.
    assert_eq!(
        lab.kubectl_ok(&["scale", "deployment", "web", "--replicas=2"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        json_of(&lab, &["get", "deployment", "web"])["spec"]["replicas"],
        2
    );
    wait_for_what("2 web pods", || {
        let pods = app_pods(&lab, "web");
        pods.len() == 2 && running(&pods)
    });

    // Labels.
    assert_eq!(
        lab.kubectl_ok(&["label", "deployment", "web", "tier=frontend"]),
        "deployment.apps/web labeled\n"
    );
    let overwrite = kubectl(&lab, &["label", "deployment", "web", "tier=backend"]);
    assert_eq!(overwrite.code, 1);
    assert_eq!(
        overwrite.err.trim(),
        "error: 'tier' already has a value (frontend), and --overwrite is false"
    );
    let labelled = lab.kubectl_ok(&["get", "deployments", "-l", "tier=frontend", "-o", "name"]);
    assert_eq!(labelled, "deployment.apps/web\n");
    assert_eq!(
        lab.kubectl_ok(&["label", "deployment", "web", "tier-"]),
        "deployment.apps/web unlabeled\n"
    );
    assert_eq!(
        json_of(&lab, &["get", "deployment", "web"])["metadata"]["labels"],
        json!({"app": "web"})
    );

    // Logs of a container that prints.
    let hello = lab.write(
        "hello.yaml",
        &busybox_pod("hello", "echo hello; sleep 3600"),
    );
    assert_eq!(
        lab.kubectl_ok(&["apply", "-f", &hello]),
        "pod/hello created\n"
    );
    assert_eq!(
        lab.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "pod/hello",
            "--timeout=30s"
        ]),
        "pod/hello condition met\n"
    );
    wait_for_what("hello's log", || {
        kubectl(&lab, &["logs", "hello"]).out == "hello\n"
    });

    // A watch in the background sees a pod come, run and go.
    let mut watch = Lines::spawn(lab.kubectl_cmd(&["get", "pods", "-w", "--output-watch-events"]));
    let header = watch.until("the watch's header", |l| l.starts_with("EVENT"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    watch.until("hello in the listing", |l| {
        l.split_whitespace().take(2).collect::<Vec<_>>() == ["ADDED", "hello"]
    });
    let ticker = lab.write(
        "ticker.yaml",
        &busybox_pod(
            "ticker",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done",
        ),
    );
    lab.kubectl_ok(&["apply", "-f", &ticker]);
    watch.until("ticker added", |l| {
        l.split_whitespace().take(2).collect::<Vec<_>>() == ["ADDED", "ticker"]
    });
    let line = watch.until("ticker running", |l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 6 && f[1] == "ticker" && f[3] == "Running"
    });
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &f[..5],
        ["MODIFIED", "ticker", "1/1", "Running", "0"],
        "{line}"
    );
    assert!(is_age(f[5]), "{line}");
    drop(watch);

    // logs -f follows: it keeps printing lines written after it started.
    let before = kubectl(&lab, &["logs", "ticker"]).out.lines().count();
    let mut follow = Lines::spawn(lab.kubectl_cmd(&["logs", "-f", "ticker"]));
    let target = format!("tick {}", before + 2);
    follow.until("a tick written after logs -f started", |l| l == target);
    let expected: Vec<String> = (0..=before + 2).map(|i| format!("tick {i}")).collect();
    assert_eq!(follow.seen, expected, "every line once, in order");
    drop(follow);

    // exec: a ClusterIP answered by a web pod; exit codes; a terminal.
    let web_names: BTreeSet<String> = app_pods(&lab, "web").iter().map(name_of).collect();
    let url = format!("http://{ip}/hostname");
    let answer = lab.kubectl_ok(&["exec", "hello", "--", "curl", "-s", "--max-time", "5", &url]);
    // The lab's nginx ends its answer with a newline.
    assert!(
        web_names.contains(answer.trim_end_matches('\n')),
        "{url} answered {answer:?}, web pods {web_names:?}"
    );
    let exit = kubectl(&lab, &["exec", "hello", "--", "sh", "-c", "exit 3"]);
    assert_eq!(exit.code, 3, "{}", exit.err);
    assert_eq!(exit.err, "command terminated with exit code 3\n");
    let echoed = kubectl(
        &lab,
        &["exec", "hello", "--", "sh", "-c", "echo out; echo err >&2"],
    );
    assert_eq!(
        (echoed.code, echoed.out.as_str(), echoed.err.as_str()),
        (0, "out\n", "err\n")
    );
    let tty = under_terminal(&lab, "exec -it hello -- tty");
    assert_eq!(tty.code, 0, "{}{}", tty.out, tty.err);
    let pts = tty
        .out
        .strip_prefix("/dev/pts/")
        .and_then(|r| r.strip_suffix("\r\n"));
    assert!(
        pts.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())),
        "tty printed {:?}",
        tty.out
    );
    let tty_exit = under_terminal(&lab, "exec -it hello -- sh -c 'exit 5'");
    assert_eq!(tty_exit.code, 5, "{}{}", tty_exit.out, tty_exit.err);

    // run --rm -i: the output, then the pod is deleted.
    let run = said(
        lab.kubectl_cmd(&[
            "run",
            "tmp",
            "--rm",
            "-i",
            "--image=busybox",
            "--restart=Never",
            "--",
            "wget",
            "-qO-",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("kubectl run"),
    );
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.out);
    assert!(web_names.contains(lines[0]), "{}", run.out);
    assert_eq!(lines[1], "pod \"tmp\" deleted from default namespace");
    assert_absent(&lab, "pods", "tmp");

    // api-resources: kube's columns, the kinds the lab serves.
    let resources = lab.kubectl_ok(&["api-resources"]);
    assert_eq!(
        columns(&resources),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let rows: BTreeSet<Vec<String>> = table(&resources)
        .iter()
        .map(|r| r.iter().map(|(_, v)| v.clone()).collect())
        .collect();
    for want in [
        ["pods", "po", "v1", "true", "Pod"],
        ["services", "svc", "v1", "true", "Service"],
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["nodes", "no", "v1", "false", "Node"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        [
            "endpointslices",
            "",
            "discovery.k8s.io/v1",
            "true",
            "EndpointSlice",
        ],
        [
            "networkpolicies",
            "netpol",
            "networking.k8s.io/v1",
            "true",
            "NetworkPolicy",
        ],
    ] {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert!(rows.contains(&want), "{want:?} not in\n{resources}");
    }

    // Selectors.
    let by_label = lab.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    let want: BTreeSet<String> = web_names.iter().map(|n| format!("pod/{n}")).collect();
    assert_eq!(
        by_label.lines().map(String::from).collect::<BTreeSet<_>>(),
        want
    );
    let by_name = lab.kubectl_ok(&["get", "pods", "--field-selector", "metadata.name=hello"]);
    let rows = table(&by_name);
    assert_eq!(rows.len(), 1, "{by_name}");
    assert_eq!(cell(&rows[0], "NAME"), "hello");
    let running_pods = lab.kubectl_ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running,metadata.name!=ticker",
        "-o",
        "name",
    ]);
    let mut want_running = want.clone();
    want_running.insert("pod/hello".into());
    want_running.extend(
        app_pods(&lab, "api")
            .iter()
            .map(|p| format!("pod/{}", name_of(p))),
    );
    assert_eq!(
        running_pods
            .lines()
            .map(String::from)
            .collect::<BTreeSet<_>>(),
        want_running
    );
    let none = kubectl(&lab, &["get", "pods", "-l", "app=nothing"]);
    assert_eq!((none.code, none.out.as_str()), (0, ""));
    assert_eq!(none.err, "No resources found in default namespace.\n");
    let bad = kubectl(&lab, &["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.err.starts_with("Error from server (BadRequest)"),
        "{}",
        bad.err
    );
    assert!(bad.err.contains("spec.bogus"), "{}", bad.err);

    // get all: pods, services, deployments under kind/name.
    let all = lab.kubectl_ok(&["get", "all"]);
    let sections: Vec<&str> = all.split("\n\n").collect();
    let section = |prefix: &str| -> Vec<Vec<(String, String)>> {
        let s = sections
            .iter()
            .find(|s| s.lines().nth(1).is_some_and(|l| l.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no {prefix} section in\n{all}"));
        table(s)
    };
    let pod_names: BTreeSet<String> = section("pod/")
        .iter()
        .map(|r| cell(r, "NAME").to_string())
        .collect();
    assert!(pod_names.contains("pod/hello"), "{all}");
    assert!(
        web_names
            .iter()
            .all(|n| pod_names.contains(&format!("pod/{n}"))),
        "{all}"
    );
    let svc_rows = section("service/");
    let web_svc = svc_rows
        .iter()
        .find(|r| cell(r, "NAME") == "service/web")
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(cell(web_svc, "CLUSTER-IP"), ip);
    let deploy_rows = section("deployment.apps/");
    let web_deploy = deploy_rows
        .iter()
        .find(|r| cell(r, "NAME") == "deployment.apps/web")
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(cell(web_deploy, "READY"), "2/2");
    assert_eq!(cell(web_deploy, "UP-TO-DATE"), "2");
    assert_eq!(cell(web_deploy, "AVAILABLE"), "2");

    // Deleting the Deployment collects its pods (owner references).
    assert_eq!(
        lab.kubectl_ok(&["delete", "deployment", "web"]),
        "deployment.apps \"web\" deleted from default namespace\n"
    );
    assert_absent(&lab, "deployments.apps", "web");
    wait_for_what("web pods garbage-collected", || {
        app_pods(&lab, "web").is_empty()
    });
    let gone = kubectl(&lab, &["get", "pods", "-l", "app=web"]);
    assert_eq!(gone.err, "No resources found in default namespace.\n");
    // The other pods are untouched.
    assert!(!app_pods(&lab, "api").is_empty());
}

/// Raw HTTPS to the lab's API server with curl, as the kubeconfig's user (its client
/// certificate, extracted to files) or as nobody.
struct Raw {
    server: String,
    ca: String,
    cert: String,
    key: String,
}

/// What the server answered: status code, the `Warning` headers, the body as JSON.
struct Answer {
    code: u16,
    warnings: Vec<String>,
    body: Value,
}

impl Raw {
    fn new(lab: &Lab) -> Raw {
        let field = |path: &str| {
            lab.kubectl_ok(&[
                "config",
                "view",
                "--raw",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ])
        };
        let decode = |b64: String, file: &str| {
            let out = Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().unwrap().write_all(b64.as_bytes())?;
                    child.wait_with_output()
                })
                .expect("base64 -d");
            lab.write(file, &String::from_utf8(out.stdout).expect("PEM"))
        };
        Raw {
            server: field(".clusters[0].cluster.server"),
            ca: decode(
                field(".clusters[0].cluster.certificate-authority-data"),
                "ca.crt",
            ),
            cert: decode(
                field(".users[0].user.client-certificate-data"),
                "client.crt",
            ),
            key: decode(field(".users[0].user.client-key-data"), "client.key"),
        }
    }

    /// `curl -X METHOD PATH` with a body from `file` of `content_type`; `authenticated` sends
    /// the client certificate.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
        authenticated: bool,
        extra: &[&str],
    ) -> Answer {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-i",
            "--max-time",
            "30",
            "--cacert",
            &self.ca,
            "-X",
            method,
        ]);
        if authenticated {
            cmd.args(["--cert", &self.cert, "--key", &self.key]);
        }
        if let Some((content_type, file)) = body {
            cmd.args([
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
                &format!("@{file}"),
            ]);
        }
        cmd.args(extra).arg(format!("{}{path}", self.server));
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl {method} {path}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {text}"));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let warnings = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case("warning"))
            .map(|(_, v)| v.trim().to_string())
            .collect();
        Answer {
            code,
            warnings,
            body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
        }
    }
}

/// A failure Status as kube-apiserver sends it.
fn assert_status(answer: &Answer, code: u16, reason: &str) {
    assert_eq!(answer.code, code, "{}", answer.body);
    assert_eq!(answer.body["kind"], "Status", "{}", answer.body);
    assert_eq!(answer.body["apiVersion"], "v1");
    assert_eq!(answer.body["status"], "Failure");
    assert_eq!(answer.body["code"], code);
    assert_eq!(answer.body["reason"], reason, "{}", answer.body);
}

fn message(answer: &Answer) -> &str {
    answer.body["message"].as_str().unwrap_or_default()
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn bad_input_is_refused_with_kubes_status_and_nothing_is_stored() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    let raw = Raw::new(&lab);

    // Malformed JSON: 400, said to be JSON that does not parse.
    let bad_json = lab.write("bad.json", r#"{"apiVersion":"v1","kind":"ConfigMap","#);
    let answer = raw.call(
        "POST",
        CONFIGMAPS,
        Some(("application/json", &bad_json)),
        true,
        &[],
    );
    assert_status(&answer, 400, "BadRequest");
    assert!(
        message(&answer).starts_with("couldn't get version/kind; json parse error: "),
        "{}",
        answer.body
    );
    // The same bytes through kubectl to the server (create --raw sends them as they are).
    let sent = kubectl(&lab, &["create", "--raw", CONFIGMAPS, "-f", &bad_json]);
    assert_eq!(sent.code, 1);
    assert!(
        sent.err.starts_with(
            "Error from server (BadRequest): couldn't get version/kind; json parse error: "
        ),
        "{}",
        sent.err
    );
    // kubectl's own parser refuses the file before sending anything.
    let parsed = kubectl(&lab, &["create", "-f", &bad_json]);
    assert_eq!(parsed.code, 1);
    assert!(
        parsed.err.starts_with("error: error parsing "),
        "{}",
        parsed.err
    );

    // Malformed YAML: 400, said to be YAML that does not convert.
    let bad_yaml = lab.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n",
    );
    let answer = raw.call(
        "POST",
        CONFIGMAPS,
        Some(("application/yaml", &bad_yaml)),
        true,
        &[],
    );
    assert_status(&answer, 400, "BadRequest");
    assert!(
        message(&answer).starts_with("error converting YAML to JSON: "),
        "{}",
        answer.body
    );
    let cms = lab.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    assert_eq!(cms, "", "nothing stored by the malformed bodies");

    // An unknown field: kubectl validates strictly on the server by default; the error names
    // the field and nothing is stored.
    let unknown = lab.write(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogusField: 1\ndata:\n  a: b\n",
    );
    let expected = format!(
        "Error from server (BadRequest): error when creating \"{unknown}\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogusField\"\n"
    );
    for args in [
        vec!["apply", "-f", &unknown],
        vec!["apply", "--validate=strict", "-f", &unknown],
        vec!["create", "--validate=strict", "-f", &unknown],
    ] {
        let refused = kubectl(&lab, &args);
        assert_eq!((refused.code, refused.out.as_str()), (1, ""), "{args:?}");
        assert_eq!(refused.err, expected, "{args:?}");
        assert_absent(&lab, "configmaps", "strict");
    }
    let answer = raw.call(
        "POST",
        &format!("{CONFIGMAPS}?fieldValidation=Strict"),
        Some(("application/yaml", &unknown)),
        true,
        &[],
    );
    assert_status(&answer, 400, "BadRequest");
    assert_absent(&lab, "configmaps", "strict");
    // --validate=warn: stored without the field, with kube's warning.
    let warned = kubectl(&lab, &["apply", "--validate=warn", "-f", &unknown]);
    assert_eq!(warned.code, 0, "{}", warned.err);
    assert_eq!(warned.out, "configmap/strict created\n");
    assert_eq!(warned.err, "Warning: unknown field \"bogusField\"\n");
    let stored = json_of(&lab, &["get", "configmap", "strict"]);
    assert_eq!(stored["data"], json!({"a": "b"}));
    assert!(stored.get("bogusField").is_none(), "{stored}");
    let answer = raw.call(
        "POST",
        &format!("{CONFIGMAPS}?fieldValidation=Warn"),
        Some((
            "application/json",
            &lab.write(
                "warned.json",
                r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"bogus":1}"#,
            ),
        )),
        true,
        &[],
    );
    assert_eq!(answer.code, 201, "{}", answer.body);
    assert_eq!(answer.warnings, [r#"299 - "unknown field \"bogus\"""#]);

    // A Service on port 70000: 422 Invalid, naming spec.ports[0].port.
    let port = lab.write(
        "port.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  selector: {app: x}\n  ports: [{port: 70000}]\n",
    );
    let refused = kubectl(&lab, &["apply", "-f", &port]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.err,
        format!("The Service \"bad\" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive\n")
    );
    let answer = raw.call(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(("application/yaml", &port)),
        true,
        &[],
    );
    assert_status(&answer, 422, "Invalid");
    assert_eq!(answer.body["details"]["kind"], "Service");
    assert_eq!(answer.body["details"]["name"], "bad");
    assert_eq!(
        answer.body["details"]["causes"][0]["field"],
        "spec.ports[0].port"
    );
    assert_eq!(
        answer.body["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );
    assert_absent(&lab, "services", "bad");

    // The same name twice: 409 AlreadyExists, the first one kept.
    let dup = lab.write(
        "dup.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  k: first\n",
    );
    assert_eq!(
        lab.kubectl_ok(&["create", "-f", &dup]),
        "configmap/dup created\n"
    );
    let again = kubectl(&lab, &["create", "-f", &dup]);
    assert_eq!(again.code, 1);
    assert_eq!(
        again.err,
        format!("Error from server (AlreadyExists): error when creating \"{dup}\": configmaps \"dup\" already exists\n")
    );
    let answer = raw.call(
        "POST",
        CONFIGMAPS,
        Some(("application/yaml", &dup)),
        true,
        &[],
    );
    assert_status(&answer, 409, "AlreadyExists");
    assert_eq!(message(&answer), "configmaps \"dup\" already exists");
    assert_eq!(
        answer.body["details"],
        json!({"name": "dup", "kind": "configmaps"})
    );

    // An update from a stale resourceVersion: 409 Conflict in kube's words; the newer write
    // stays.
    let stale = lab.kubectl_ok(&["get", "configmap", "dup", "-o", "json"]);
    lab.kubectl_ok(&[
        "patch",
        "configmap",
        "dup",
        "-p",
        r#"{"data":{"k":"second"}}"#,
    ]);
    let mut old: Value = serde_json::from_str(&stale).unwrap();
    old["data"]["k"] = json!("stale");
    let stale_file = lab.write("stale.json", &old.to_string());
    let replaced = kubectl(&lab, &["replace", "-f", &stale_file]);
    assert_eq!(replaced.code, 1);
    assert_eq!(
        replaced.err,
        format!("Error from server (Conflict): error when replacing \"{stale_file}\": Operation cannot be fulfilled on configmaps \"dup\": the object has been modified; please apply your changes to the latest version and try again\n")
    );
    let answer = raw.call(
        "PUT",
        &format!("{CONFIGMAPS}/dup"),
        Some(("application/json", &stale_file)),
        true,
        &[],
    );
    assert_status(&answer, 409, "Conflict");
    assert_eq!(
        message(&answer),
        "Operation cannot be fulfilled on configmaps \"dup\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "dup"])["data"],
        json!({"k": "second"})
    );

    // 10 MB: 413 RequestEntityTooLarge, nothing stored.
    let huge = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "huge"},
        "data": {"a": "x".repeat(10 * 1024 * 1024)},
    });
    let huge_file = lab.write("huge.json", &huge.to_string());
    let refused = kubectl(&lab, &["create", "-f", &huge_file]);
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.err,
        format!("Error from server (RequestEntityTooLarge): error when creating \"{huge_file}\": Request entity too large: limit is 3145728\n")
    );
    // HTTP/1.1: over HTTP/2, curl 7.88 fails (exit 92, no response shown) when the server
    // answers before reading the body and then resets the stream, which RFC 9113 8.1 allows
    // (kubectl, above, reads the same 413 over HTTP/2).
    let answer = raw.call(
        "POST",
        CONFIGMAPS,
        Some(("application/json", &huge_file)),
        true,
        &["--http1.1"],
    );
    assert_status(&answer, 413, "RequestEntityTooLarge");
    assert_eq!(
        message(&answer),
        "Request entity too large: limit is 3145728"
    );
    assert_absent(&lab, "configmaps", "huge");

    // No client certificate: 401, for reads and writes; public paths stay open.
    let answer = raw.call("GET", CONFIGMAPS, None, false, &[]);
    assert_status(&answer, 401, "Unauthorized");
    assert_eq!(message(&answer), "Unauthorized");
    // HTTP/1.1: refused before its body is read (see the 413 above).
    let answer = raw.call(
        "POST",
        CONFIGMAPS,
        Some(("application/yaml", &dup)),
        false,
        &["--http1.1"],
    );
    assert_status(&answer, 401, "Unauthorized");
    let answer = raw.call("GET", "/version", None, false, &[]);
    assert_eq!(answer.code, 200);
    assert!(answer.body["gitVersion"].is_string(), "{}", answer.body);
    // kubectl with a token the server does not know.
    let token = lab.write(
        "token.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: u, user: {{token: not-a-token}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n",
            raw.server, raw.ca
        ),
    );
    let denied = said(
        lab.kubectl_cmd(&["--kubeconfig", &token, "get", "configmaps"])
            .stdin(Stdio::null())
            .output()
            .expect("kubectl"),
    );
    assert_eq!(denied.code, 1);
    assert_eq!(
        denied.err,
        "error: You must be logged in to the server (Unauthorized)\n"
    );

    // Server-side dry runs store nothing: create, and delete of one that exists.
    let dry = lab.write(
        "dry.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n",
    );
    assert_eq!(
        lab.kubectl_ok(&["create", "--dry-run=server", "-f", &dry]),
        "configmap/dry created (server dry run)\n"
    );
    assert_absent(&lab, "configmaps", "dry");
    let answer = raw.call(
        "POST",
        &format!("{CONFIGMAPS}?dryRun=All"),
        Some(("application/yaml", &dry)),
        true,
        &[],
    );
    assert_eq!(answer.code, 201, "{}", answer.body);
    assert_eq!(answer.body["metadata"]["name"], "dry");
    assert_absent(&lab, "configmaps", "dry");
    assert_eq!(
        lab.kubectl_ok(&["delete", "configmap", "dup", "--dry-run=server"]),
        "configmap \"dup\" deleted from default namespace (server dry run)\n"
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "dup"])["data"],
        json!({"k": "second"}),
        "a dry-run delete deleted"
    );
    let answer = raw.call(
        "DELETE",
        &format!("{CONFIGMAPS}/dup?dryRun=All"),
        None,
        true,
        &[],
    );
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert_eq!(
        lab.kubectl_ok(&["delete", "configmaps", "--all", "--dry-run=server"]),
        "configmap \"dup\" deleted from default namespace (server dry run)\nconfigmap \"strict\" deleted from default namespace (server dry run)\nconfigmap \"warned\" deleted from default namespace (server dry run)\n"
    );

    // After all of it: exactly what was accepted is stored.
    assert_eq!(
        lab.kubectl_ok(&["get", "configmaps", "-o", "name"]),
        "configmap/dup\nconfigmap/strict\nconfigmap/warned\n"
    );
}

/// helm's release objects: `kubectl get deploy,svc,cm -l app.kubernetes.io/instance=demo`.
fn release_objects(lab: &Lab) -> BTreeSet<String> {
    lab.kubectl_ok(&[
        "get",
        "deployments,services,configmaps",
        "-l",
        "app.kubernetes.io/instance=demo",
        "-o",
        "name",
    ])
    .lines()
    .map(String::from)
    .collect()
}

fn helm(lab: &Lab, args: &[&str]) -> Said {
    said(
        Command::new("/usr/local/bin/helm")
            .args(args)
            .env("KUBECONFIG", lab.kubeconfig())
            .env("HELM_CACHE_HOME", lab.dir().join("helm/cache"))
            .env("HELM_CONFIG_HOME", lab.dir().join("helm/config"))
            .env("HELM_DATA_HOME", lab.dir().join("helm/data"))
            .current_dir(weft_testutil::workspace_root())
            .output()
            .expect("running helm"),
    )
}

fn demo_pods(lab: &Lab) -> Vec<Value> {
    json_of(
        lab,
        &["get", "pods", "-l", "app.kubernetes.io/instance=demo"],
    )["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn helm_installs_upgrades_and_uninstalls_the_example_chart() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);

    let install = helm(&lab, &["install", "demo", "examples/chart"]);
    assert_eq!(install.code, 0, "{}{}", install.out, install.err);
    let lines: Vec<&str> = install.out.lines().collect();
    assert_eq!(lines[0], "NAME: demo", "{}", install.out);
    assert!(lines.contains(&"STATUS: deployed"), "{}", install.out);
    assert!(lines.contains(&"REVISION: 1"), "{}", install.out);
    assert_eq!(
        release_objects(&lab),
        BTreeSet::from([
            "deployment.apps/demo".to_string(),
            "service/demo".to_string(),
            "configmap/demo-config".to_string(),
        ])
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "demo-config"])["data"],
        json!({"greeting": "hello from weft-demo", "url": "http://demo.default.svc:80"})
    );
    wait_for_what("2 demo pods running", || {
        let pods = demo_pods(&lab);
        pods.len() == 2 && running(&pods)
    });
    let list = helm(&lab, &["list", "-o", "json"]);
    let releases: Value = serde_json::from_str(&list.out).expect("helm list json");
    assert_eq!(releases.as_array().map(Vec::len), Some(1), "{releases}");
    assert_eq!(releases[0]["name"], "demo");
    assert_eq!(releases[0]["namespace"], "default");
    assert_eq!(releases[0]["revision"], "1");
    assert_eq!(releases[0]["status"], "deployed");
    assert_eq!(releases[0]["chart"], "weft-demo-0.1.0");
    // The chart's Service answers from one of its pods.
    let ip = lab.service("demo")["spec"]["clusterIP"]
        .as_str()
        .expect("demo's cluster IP")
        .to_string();
    let names: BTreeSet<String> = demo_pods(&lab).iter().map(name_of).collect();
    let first = names.iter().next().unwrap().clone();
    let answer = lab.kubectl_ok(&[
        "exec",
        &first,
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        &format!("http://{ip}/hostname"),
    ]);
    assert!(names.contains(&answer), "{answer:?} not in {names:?}");

    let upgrade = helm(
        &lab,
        &[
            "upgrade",
            "demo",
            "examples/chart",
            "--set",
            "replicas=3",
            "--set",
            "greeting=bonjour",
        ],
    );
    assert_eq!(upgrade.code, 0, "{}{}", upgrade.out, upgrade.err);
    assert_eq!(
        upgrade.out.lines().next(),
        Some("Release \"demo\" has been upgraded. Happy Helming!")
    );
    assert!(
        upgrade.out.lines().any(|l| l == "REVISION: 2"),
        "{}",
        upgrade.out
    );
    assert_eq!(
        json_of(&lab, &["get", "deployment", "demo"])["spec"]["replicas"],
        3
    );
    assert_eq!(
        json_of(&lab, &["get", "configmap", "demo-config"])["data"]["greeting"],
        "bonjour"
    );
    wait_for_what("3 demo pods running", || {
        let pods = demo_pods(&lab);
        pods.len() == 3 && running(&pods)
    });
    let history = helm(&lab, &["history", "demo", "-o", "json"]);
    let history: Value = serde_json::from_str(&history.out).expect("helm history json");
    let statuses: Vec<(i64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [(1, "superseded"), (2, "deployed")]);

    let uninstall = helm(&lab, &["uninstall", "demo"]);
    assert_eq!(
        (uninstall.code, uninstall.out.as_str()),
        (0, "release \"demo\" uninstalled\n"),
        "{}",
        uninstall.err
    );
    assert_eq!(release_objects(&lab), BTreeSet::new());
    assert_absent(&lab, "deployments.apps", "demo");
    assert_absent(&lab, "services", "demo");
    assert_absent(&lab, "configmaps", "demo-config");
    wait_for_what("demo pods collected", || demo_pods(&lab).is_empty());
    assert_eq!(helm(&lab, &["list", "-o", "json"]).out.trim(), "[]");
    // helm's release records (Secrets) are gone too.
    assert_eq!(
        lab.kubectl_ok(&["get", "secrets", "-l", "owner=helm", "-o", "name"]),
        ""
    );
}

/// `helm install --wait` and `kubectl wait --for=condition=Available` read a Deployment's
/// status conditions (kstatus); when they return, the pods are ready, no polling needed.
#[test]
fn helm_wait_and_kubectl_wait_see_deployments_available() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    let install = helm(
        &lab,
        &[
            "install",
            "demo",
            "examples/chart",
            "--wait",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(install.code, 0, "{}{}", install.out, install.err);
    assert_eq!(
        lab.kubectl_ok(&[
            "wait",
            "--for=condition=Available",
            "deployment/demo",
            "--timeout=30s"
        ]),
        "deployment.apps/demo condition met\n"
    );
    let upgrade = helm(
        &lab,
        &[
            "upgrade",
            "demo",
            "examples/chart",
            "--set",
            "replicas=3",
            "--wait",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(upgrade.code, 0, "{}{}", upgrade.out, upgrade.err);
    // --wait returned: the third pod is ready now, not eventually.
    let deploy = lab.kubectl_ok(&["get", "deployment", "demo"]);
    let rows = table(&deploy);
    assert_eq!(cell(&rows[0], "READY"), "3/3", "{deploy}");
    assert_eq!(cell(&rows[0], "UP-TO-DATE"), "3");
    assert_eq!(cell(&rows[0], "AVAILABLE"), "3");
    let conditions = json_of(&lab, &["get", "deployment", "demo"])["status"]["conditions"].clone();
    let available = conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
        .unwrap_or_else(|| panic!("no Available condition: {conditions}"));
    assert_eq!(available["status"], "True");
    assert_eq!(
        lab.kubectl_ok(&["rollout", "status", "deployment/demo", "--timeout=30s"]),
        "deployment \"demo\" successfully rolled out\n"
    );
}
