//! The real kubectl (and helm) against the lab's API server: the Kubernetes tutorial step by
//! step, asserting kubectl's own columns and messages and the objects the API stores; then bad
//! input through kubectl and through raw HTTPS with the kubeconfig's client certificate, each
//! refused with kube-apiserver's status and nothing stored. Needs root and /usr/local/bin/kubectl
//! (scripts/deps.sh). Each test runs its own lab, torn down in Drop.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cell, columns, name_of, pod_ip, table, wait_for_what, Lab, KUBECTL};

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

fn web_deployment(replicas: u32) -> String {
    // What `kubectl create deployment web --image=nginx --replicas=N --dry-run=client -o yaml`
    // prints, less its empty strategy/resources/status.
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels:\n    app: web\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - image: nginx\n        name: nginx\n"
    )
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

    // TODO(protobuf decoder): this step is `kubectl create deployment web --image=nginx
    // --replicas=3`, but kubectl sends that request body as application/vnd.kubernetes.protobuf,
    // which the API server refuses with 415 until its protobuf decoder lands; until then the
    // same Deployment goes in with `kubectl apply -f`. The create itself is checked by the
    // ignored test `create_deployment_sends_protobuf` below.
    let manifest = lab.write("web.yaml", &web_deployment(3));
    assert_eq!(
        lab.kubectl_ok(&["apply", "-f", &manifest]),
        "deployment.apps/web created\n"
    );
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

/// Blocked on the protobuf decoder: kubectl sends `create deployment` as protobuf.
#[test]
#[ignore = "needs the API server's protobuf request decoder (415 unknown format until then)"]
fn create_deployment_sends_protobuf() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
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
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    wait_for_what("3 web pods running", || {
        let pods = app_pods(&lab, "web");
        pods.len() == 3 && running(&pods)
    });
}
