//! Faults around the lab's API server, seen through real clients: every lab daemon SIGKILLed in
//! turn comes back and the cluster keeps serving; the API server SIGKILLed under a Python
//! `kubernetes` watch (which resumes from its last resourceVersion and misses nothing) and under
//! a 1000-object `kubectl apply` (every object whole or absent, resourceVersions increasing, the
//! re-apply completes). Needs root, kubectl and python3 with the `kubernetes` package
//! (scripts/deps.sh). Each test runs its own lab, torn down in Drop.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use weft_testutil::{cell, name_of, pod_ip, table, wait_for_what, workspace_root, Lab};

/// Two web pods (agnhost netexec on 80), their ClusterIP Service, and a client pod.
const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.52
        args: [netexec, --http-port=80]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, '3600']}]
";

fn alive(pid: u32) -> bool {
    // A SIGKILLed child its parent has not reaped yet is a zombie: dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// SIGKILLs the daemon whose pid file is `daemon` (see [`Lab::pid_file`]) and waits for its
/// replacement: a different live pid in the pid file. Returns (old, new).
/// A daemon's pid: a pid file's (`apiserver`, `nodes/NODE/kubelet`), or for `agent/NODE` the
/// node's weft-agent pod's container (the DaemonSet from deploy/).
fn pid_of(lab: &Lab, daemon: &str) -> Option<u32> {
    match daemon.strip_prefix("agent/") {
        Some(node) => Some(lab.agent_pid(node)),
        None => lab.daemon_pid(daemon),
    }
}

fn kill_and_await(lab: &Lab, daemon: &str) -> (u32, u32) {
    let old = pid_of(lab, daemon)
        .unwrap_or_else(|| panic!("no pid in {}", lab.pid_file(daemon).display()));
    assert!(alive(old), "{daemon} ({old}) not running before the kill");
    sigkill(old);
    let mut new = 0;
    wait_for_what(
        &format!("{daemon} restarted after SIGKILL of {old}"),
        || match pid_of(lab, daemon) {
            Some(pid) if pid != old && alive(pid) => {
                new = pid;
                true
            }
            _ => false,
        },
    );
    assert!(!alive(old), "{daemon}: the killed {old} still runs");
    (old, new)
}

fn api_ready(lab: &Lab) -> bool {
    lab.kubectl(&["get", "--raw", "/readyz"]).status.success()
}

fn json_of(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&lab.kubectl_ok(&all)).expect("kubectl -o json")
}

fn web_pods(lab: &Lab) -> Vec<Value> {
    json_of(lab, &["get", "pods", "-l", "app=web"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `kubectl get endpoints web`'s ENDPOINTS cell, as a set.
/// `kubectl exec client -- curl -sS --max-time 5 URL`'s arguments.
fn curl_from_client(url: &str) -> [&str; 8] {
    [
        "exec",
        "client",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        url,
    ]
}

fn uids_of(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| {
            p["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn endpoints(lab: &Lab) -> BTreeSet<String> {
    let out = lab.kubectl_ok(&["get", "endpoints", "web"]);
    table(&out)
        .first()
        .map(|row| {
            cell(row, "ENDPOINTS")
                .split(',')
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_lab_daemon_comes_back_after_sigkill_and_the_cluster_keeps_serving() {
    let lab = Lab::new();
    let manifest = lab.write("app.yaml", APP);
    lab.ok(&["lab", "up", "--nodes", "1", "-f", &manifest, "--wait", "60"]);
    let node = format!("{}-node1", lab.name);
    let ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .expect("web's cluster IP")
        .to_string();
    let url = format!("http://{ip}/hostname");

    wait_for_what("2 web pods ready", || {
        let pods = web_pods(&lab);
        pods.len() == 2 && pods.iter().all(|p| !pod_ip(p).is_empty())
    });
    let pods = web_pods(&lab);
    let names: BTreeSet<String> = pods.iter().map(name_of).collect();
    let uids = uids_of(&pods);
    let want: BTreeSet<String> = pods.iter().map(|p| format!("{}:80", pod_ip(p))).collect();
    wait_for_what("endpoints list both pods", || endpoints(&lab) == want);
    let answer = lab.kubectl_ok(&curl_from_client(&url));
    assert!(names.contains(&answer), "{url} answered {answer:?}");

    for daemon in [
        "apiserver".to_string(),
        "controller".to_string(),
        "speaker".to_string(),
        format!("nodes/{node}/kubelet"),
        format!("agent/{node}"),
    ] {
        let (old, new) = kill_and_await(&lab, &daemon);
        eprintln!("{daemon}: {old} -> {new}");
        wait_for_what(&format!("API answering after {daemon} restarted"), || {
            api_ready(&lab)
        });
        // The same pods (not recreated), still listed; the ClusterIP answers at the first try:
        // the data plane does not depend on the daemon that just restarted.
        let now = web_pods(&lab);
        let now_uids = uids_of(&now);
        assert_eq!(now_uids, uids, "web pods replaced after {daemon} restarted");
        for p in &now {
            assert_eq!(p["status"]["phase"], "Running", "after {daemon}: {p}");
            assert_eq!(
                p["status"]["containerStatuses"][0]["restartCount"], 0,
                "after {daemon}: {p}"
            );
        }
        assert_eq!(endpoints(&lab), want, "endpoints after {daemon} restarted");
        let curl = lab.kubectl(&curl_from_client(&url));
        let answer = String::from_utf8_lossy(&curl.stdout).into_owned();
        assert!(
            curl.status.success() && names.contains(&answer),
            "after {daemon} restarted, {url} answered {answer:?}: {}",
            String::from_utf8_lossy(&curl.stderr)
        );
    }

    // The restarted daemons still do their jobs: the controller scales, the kubelet starts
    // the pod, the agent and the endpoints follow.
    assert_eq!(
        lab.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    wait_for_what("a third web pod, listed in the endpoints", || {
        let pods = web_pods(&lab);
        let want: BTreeSet<String> = pods
            .iter()
            .filter(|p| !pod_ip(p).is_empty())
            .map(|p| format!("{}:80", pod_ip(p)))
            .collect();
        pods.len() == 3 && want.len() == 3 && endpoints(&lab) == want
    });
    let third: BTreeSet<String> = web_pods(&lab)
        .iter()
        .map(name_of)
        .filter(|n| !names.contains(n))
        .collect();
    assert_eq!(third.len(), 1);
    wait_for_what("the third pod answers through the ClusterIP", || {
        let out = lab.kubectl(&[
            "exec",
            "client",
            "--",
            "curl",
            "-sS",
            "--max-time",
            "2",
            &url,
        ]);
        third.contains(String::from_utf8_lossy(&out.stdout).as_ref())
    });
}

#[test]
fn a_python_watch_resumes_across_an_api_server_restart_and_misses_nothing() {
    let lab = Lab::new();
    let manifest = lab.write("app.yaml", APP);
    lab.ok(&["lab", "up", "--nodes", "1", "-f", &manifest, "--wait", "60"]);
    const COUNT: usize = 5;

    let script = workspace_root().join("crates/e2e/tests/api_client.py");
    let mut py = Command::new("python3")
        .arg(&script)
        .arg(lab.kubeconfig())
        .arg("watched")
        .arg(COUNT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = py.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(py.stdout.take().expect("stdout"));
    // The script's own deadlines (30 s per create, 30 s for the watch) bound each read.
    let mut line = String::new();
    stdout.read_line(&mut line).expect("reading the script");
    if line.trim() != "READY-TO-KILL" {
        let _ = py.kill();
        let out = py.wait_with_output().expect("python3");
        panic!(
            "the script said {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The script creates its "during" ConfigMaps as soon as it hears of the kill, while the
    // server is down.
    let old = lab.daemon_pid("apiserver").expect("the API server's pid");
    assert!(alive(old));
    sigkill(old);
    writeln!(stdin, "killed {old}").expect("telling the script");
    let mut new = old;
    wait_for_what("the API server restarted", || {
        new = lab.daemon_pid("apiserver").unwrap_or(old);
        new != old && alive(new)
    });
    let mut result = String::new();
    let mut rest = String::new();
    while stdout.read_line(&mut rest).expect("reading the script") > 0 {
        if let Some(json) = rest.strip_prefix("RESULT ") {
            result = json.to_string();
        }
        rest.clear();
    }
    let out = py.wait_with_output().expect("python3");
    assert!(
        out.status.success() && !result.is_empty(),
        "the script failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(&result).expect("the script's JSON");
    eprintln!("apiserver {old} -> {new}; {result:#}");

    // The list saw the lab's pods.
    let pods: BTreeSet<&str> = result["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(pods.contains("default/client"), "{pods:?}");
    assert_eq!(
        pods.iter()
            .filter(|p| p.starts_with("default/web-"))
            .count(),
        2,
        "{pods:?}"
    );

    // Every ConfigMap was created, and the ones sent while the server was down needed retries.
    let created = result["created"].as_object().unwrap();
    let mut names = BTreeSet::new();
    for phase in ["before", "during", "after"] {
        for i in 0..COUNT {
            names.insert(format!("{phase}-{i}"));
        }
    }
    assert_eq!(
        created.keys().cloned().collect::<BTreeSet<_>>(),
        names,
        "create errors: {}",
        result["create_errors"]
    );
    assert!(
        result["attempts"]["during-0"].as_u64().unwrap() > 1,
        "the first create after the kill went through at once: was the server down? {}",
        result["attempts"]
    );

    // The watch broke, resumed from the last resourceVersion it had (never re-listing), was
    // never told its version was gone, and saw every ConfigMap added exactly once, in order.
    assert_eq!(result["gone"], false, "{}", result["watch_errors"]);
    assert!(
        !result["resumes"].as_array().unwrap().is_empty(),
        "the watch never broke"
    );
    let events = result["events"].as_array().unwrap();
    let mut added: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last = 0u64;
    for e in events {
        let (kind, name, rv) = (
            e[0].as_str().unwrap(),
            e[1].as_str().unwrap(),
            e[2].as_str().unwrap(),
        );
        assert_eq!(kind, "ADDED", "{e}");
        let rv: u64 = rv.parse().expect("integer resourceVersion");
        assert!(rv > last, "resourceVersions out of order: {events:?}");
        last = rv;
        added
            .entry(name.to_string())
            .or_default()
            .push(rv.to_string());
    }
    assert_eq!(
        added.keys().cloned().collect::<BTreeSet<_>>(),
        names,
        "events: {events:?}"
    );
    for (name, rvs) in &added {
        assert_eq!(rvs.len(), 1, "{name} added {} times: {rvs:?}", rvs.len());
        assert_eq!(
            created[name].as_str(),
            Some(rvs[0].as_str()),
            "{name}: the create and the event disagree"
        );
    }
    // Each resume started from a version the watch had already seen (or the list's).
    let mut known: BTreeSet<String> = added.values().flatten().cloned().collect();
    known.insert(result["list_rv"].as_str().unwrap().to_string());
    for rv in result["resumes"].as_array().unwrap() {
        assert!(
            known.contains(rv.as_str().unwrap()),
            "resumed from {rv}, which it never saw"
        );
    }
    // kubectl agrees with the script.
    let listed = lab.kubectl_ok(&["get", "configmaps", "-n", "watched", "-o", "name"]);
    let listed: BTreeSet<String> = listed
        .lines()
        .map(|l| l.trim_start_matches("configmap/").to_string())
        .collect();
    assert_eq!(listed, names);
}

/// The 1000 ConfigMaps: each carries its index and a payload derived from it, so a torn or
/// mixed-up object shows.
fn thousand() -> (String, BTreeMap<String, Value>) {
    let mut docs = Vec::new();
    let mut want = BTreeMap::new();
    for i in 0..1000 {
        let name = format!("cm-{i:04}");
        let data = json!({
            "index": i.to_string(),
            "payload": format!("{i:04}-").repeat(40),
        });
        docs.push(
            serde_json::to_string(&json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"batch": "thousand"}},
                "data": data,
            }))
            .unwrap(),
        );
        want.insert(name, data);
    }
    (docs.join("\n---\n") + "\n", want)
}

#[test]
fn sigkill_of_the_api_server_during_a_big_apply_leaves_whole_objects() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    let (text, want) = thousand();
    let file = lab.write("thousand.yaml", &text);

    let mut apply = lab
        .kubectl_cmd(&["apply", "-f", &file])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    let mut stdout = BufReader::new(apply.stdout.take().expect("stdout"));
    // Kill the server once a good part has gone in, well before the end.
    let mut created = 0;
    let mut line = String::new();
    while created < 150 {
        line.clear();
        if stdout.read_line(&mut line).expect("reading kubectl") == 0 {
            break;
        }
        if line.ends_with(" created\n") {
            created += 1;
        }
    }
    assert_eq!(created, 150, "kubectl apply ended early: {line}");
    let (old, new) = kill_and_await(&lab, "apiserver");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("reading kubectl");
    let out = apply.wait_with_output().expect("kubectl apply");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "apiserver {old} -> {new}; apply exited {} after {} more lines; stderr starts {}",
        out.status,
        rest.lines().count(),
        err.lines().take(3).collect::<Vec<_>>().join(" | ")
    );
    wait_for_what("API answering", || api_ready(&lab));

    // Every ConfigMap is whole or absent, and the present ones' resourceVersions are integers
    // that increase in file order: kubectl applies a file's objects one after the other.
    let first = stored(&lab, &want);
    let absent: Vec<&String> = want.keys().filter(|n| !first.contains_key(*n)).collect();
    eprintln!("{} of 1000 present after the kill", first.len());
    assert!(first.len() >= 150, "created ones lost: {absent:?}");
    assert_increasing(
        &first,
        &format!("absent: {absent:?}\nkubectl after the kill: {rest}\n{err}"),
    );

    // Re-applying completes: the present ones unchanged (not even rewritten), the rest created,
    // in order, after everything the first pass wrote.
    let again = lab.kubectl(&["apply", "-f", &file]);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "re-apply failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000, "{out}");
    for (i, line) in lines.iter().enumerate() {
        let name = format!("cm-{i:04}");
        let verb = if first.contains_key(&name) {
            "unchanged"
        } else {
            "created"
        };
        assert_eq!(*line, format!("configmap/{name} {verb}"));
    }
    let second = stored(&lab, &want);
    assert_eq!(second.len(), 1000);
    for (name, rv) in &first {
        assert_eq!(second[name], *rv, "{name} rewritten by an unchanged apply");
    }
    let created: BTreeMap<String, u64> = second
        .into_iter()
        .filter(|(name, _)| !first.contains_key(name))
        .collect();
    assert_increasing(&created, "the re-apply's creations");
    let newest_first = first.values().max().copied().unwrap_or(0);
    if let Some(oldest_created) = created.values().min() {
        assert!(
            *oldest_created > newest_first,
            "{oldest_created} <= {newest_first}"
        );
    }
}

/// The batch's ConfigMaps as the API lists them (name -> resourceVersion), each checked whole;
/// the list's own resourceVersion is at least every item's.
fn stored(lab: &Lab, want: &BTreeMap<String, Value>) -> BTreeMap<String, u64> {
    // The API's own list: kubectl -o json builds its own List without a resourceVersion.
    let list: Value = serde_json::from_str(&lab.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dthousand",
    ]))
    .expect("the list");
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap().to_string();
        let expected = want
            .get(&name)
            .unwrap_or_else(|| panic!("unexpected ConfigMap {name}"));
        assert_eq!(&item["data"], expected, "{name} is not whole");
        let rv: u64 = item["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{name}: resourceVersion {}",
                    item["metadata"]["resourceVersion"]
                )
            });
        out.insert(name, rv);
    }
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("the list's resourceVersion");
    if let Some(max) = out.values().max() {
        assert!(list_rv >= *max, "list at {list_rv}, an item at {max}");
    }
    out
}

/// resourceVersions strictly increasing in name order (the file's order).
fn assert_increasing(rvs: &BTreeMap<String, u64>, context: &str) {
    let disorder: Vec<String> = rvs
        .iter()
        .zip(rvs.iter().skip(1))
        .filter(|((_, a), (_, b))| b <= a)
        .map(|((na, a), (nb, b))| format!("{nb} ({b}) not after {na} ({a})"))
        .collect();
    assert!(
        disorder.is_empty(),
        "resourceVersions out of file order: {disorder:#?}\n{context}"
    );
}
