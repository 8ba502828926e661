//! End-to-end tests of the lab as a user drives it: the real `weft` binary, real namespaces, real
//! `weft-cni`, real traffic. Needs root. Each test uses its own lab name and state directory, and
//! tears its lab down in Drop, also when it fails.

use std::process::Command;

use serde_json::Value;
use weft_testutil::{name_of, netns_list, pod_ip, wait_for, Lab, TestNetns};

fn root_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    // Only names: counters and flags of the machine's own links may change meanwhile.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string()))
        .collect();
    names.sort();
    names.join(",")
}

#[test]
fn quickstart_pods_get_addresses_and_talk_without_nat() {
    let links_before = root_links();
    let lab = Lab::new();
    lab.ok(&[
        "lab",
        "up",
        "-f",
        "examples/quickstart.yaml",
        "--wait",
        "60",
    ]);

    let pods = lab.pods(&[]);
    // 3 web replicas + client in default; site lives in demo.
    assert_eq!(pods.len(), 4, "pods: {pods:#?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Running", "{p:#?}");
        assert!(!pod_ip(p).is_empty());
    }
    let mut ips: Vec<String> = pods.iter().map(pod_ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "every pod has its own IP: {ips:?}");
    for ip in &ips {
        assert!(
            ip.starts_with("10.244.0."),
            "from the node's pod CIDR: {ip}"
        );
    }
    let web: Vec<&Value> = pods
        .iter()
        .filter(|p| name_of(p).starts_with("web-"))
        .collect();
    assert_eq!(web.len(), 3);
    for w in &web {
        // ReplicaSet-style names: web-<hash>-<5 chars>, with the template's labels.
        assert_eq!(name_of(w).split('-').count(), 3, "{}", name_of(w));
        assert_eq!(w["metadata"]["labels"]["app"], "web");
    }

    let client = pods
        .iter()
        .find(|p| name_of(p) == "client")
        .expect("client pod");
    let client_ip = pod_ip(client);
    for w in &web {
        let url = format!("http://{}/hostname", pod_ip(w));
        assert_eq!(lab.curl("client", &url), name_of(w));
        // The server sees the client's own pod IP: no NAT between pods.
        let url = format!("http://{}/clientip", pod_ip(w));
        let seen = lab.curl("client", &url);
        assert_eq!(
            seen.split(':').next(),
            Some(client_ip.as_str()),
            "clientip answer {seen:?}"
        );
    }
    // Containers of one pod share its network: the sidecar reaches the app on localhost.
    let local = lab.ok(&[
        "exec",
        "client",
        "-c",
        "sidecar",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://127.0.0.1:8080/hostname",
    ]);
    assert_eq!(local, "client");
    // The namespaced nginx answers with its pod name.
    let site = lab.pods(&["-n", "demo"]);
    assert_eq!(site.len(), 1);
    let url = format!("http://{}/", pod_ip(&site[0]));
    assert_eq!(lab.curl("client", &url).trim(), "site");
    // Each pod has the cluster's resolv.conf.
    let resolv = lab.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    let table = lab.ok(&["get", "pods", "-o", "wide"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("IP") && table.contains("NODE"), "{table}");

    lab.ok(&["lab", "down"]);
    assert!(lab.netns().is_empty(), "left behind: {:?}", lab.netns());
    // Twice is fine.
    lab.ok(&["lab", "down"]);
    assert_eq!(
        root_links(),
        links_before,
        "the machine's own links are untouched"
    );
}

#[test]
fn apply_scale_and_delete_on_a_running_lab() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--wait", "30"]);
    assert!(lab.pods(&[]).is_empty());
    // Sandboxes there before ours (weft's controller pod).
    let sandboxes = || -> Vec<String> {
        lab.netns()
            .into_iter()
            .filter(|n| n.contains("_pod-"))
            .collect()
    };
    let before = sandboxes();
    let dir = tempfile::tempdir().unwrap();
    let manifest = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: echo}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: echo}}}}\n  template:\n    metadata: {{labels: {{app: echo}}}}\n    spec:\n      containers: [{{name: echo, image: registry.k8s.io/e2e-test-images/agnhost:2.53, ports: [{{containerPort: 8080}}]}}]\n"
        )
    };
    let path = dir.path().join("echo.yaml");
    std::fs::write(&path, manifest(2)).unwrap();
    let p = path.to_str().unwrap();
    assert!(lab.ok(&["apply", "-f", p]).contains("created"));
    wait_for(|| running(&lab.pods(&[])) == 2);
    std::fs::write(&path, manifest(1)).unwrap();
    lab.ok(&["apply", "-f", p]);
    wait_for(|| lab.pods(&[]).len() == 1 && running(&lab.pods(&[])) == 1);
    // A deleted pod's sandbox goes away with it.
    lab.ok(&["delete", "-f", p]);
    wait_for(|| lab.pods(&[]).is_empty() && sandboxes() == before);
}

#[test]
fn bad_input_is_refused_and_creates_nothing() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: three\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n").unwrap();
    let out = lab.weft(&["lab", "up", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("spec.replicas"),
        "{err}"
    );
    assert!(lab.netns().is_empty());
    assert!(
        !lab.state.path().join(&lab.name).exists(),
        "no state left behind"
    );

    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        "apiVersion: weft.dev/v1alpha1\nkind: Cluster\npodCIDR: 10.96.0.0/16\n",
    )
    .unwrap();
    let out = lab.weft(&["lab", "up", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10.96.0.0/16") && err.contains("10.96.0.0/12"),
        "both ranges named: {err}"
    );
    assert!(lab.netns().is_empty());
}

fn running(pods: &[Value]) -> usize {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count()
}

#[test]
fn up_and_down_twice_leave_the_machine_as_it_was() {
    let lab = Lab::new();
    // A namespace whose name starts like the lab's own (`weft_<lab>_...`) without being one:
    // `lab down` must remove exactly what its lab made, not everything that merely matches.
    let neighbour = TestNetns::new(&format!("weft_{}x", lab.name));
    let links_before = root_links();
    for _ in 0..2 {
        lab.ok(&["lab", "up", "--wait", "30"]);
        // The fabric, the outside, one node, and a sandbox for each of weft's own pod-network
        // pods (deploy/: the controller, the DNS and the ingress controller's pods).
        let netns = lab.netns();
        let pods = netns.iter().filter(|n| n.contains("_pod-")).count();
        let weft_pods = lab
            .pods(&["-A"])
            .iter()
            .filter(|p| {
                let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
                (ns == "kube-system" || ns == "weft-system") && p["spec"]["hostNetwork"] != true
            })
            .count();
        assert_eq!(
            (netns.len() - pods, pods),
            (3, weft_pods),
            "fabric, outside, one node, weft's pods: {netns:?}"
        );
        let nodes: Value = serde_json::from_str(&lab.ok(&["get", "nodes", "-o", "json"])).unwrap();
        assert_eq!(nodes["items"][0]["spec"]["podCIDR"], "10.244.0.0/24");
        lab.ok(&["lab", "down"]);
        lab.ok(&["lab", "down"]);
        assert!(lab.netns().is_empty());
    }
    // Ours must all be gone and nothing that existed before may have been removed. Other tests
    // add and remove their own namespaces meanwhile, so a namespace of theirs missing proves
    // nothing: the neighbour, which only this test touches, is the one that must have survived.
    let after = netns_list();
    let ours = format!("weft_{}_", lab.name);
    let left: Vec<&String> = after.iter().filter(|ns| ns.starts_with(&ours)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        after.iter().any(|ns| ns == neighbour.name()),
        "{} was removed by lab down",
        neighbour.name()
    );
    assert_eq!(root_links(), links_before);
}

#[test]
fn a_killed_workload_is_reported_and_restarted() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pod.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lone}\nspec:\n  containers: [{name: srv, image: registry.k8s.io/e2e-test-images/agnhost:2.53, ports: [{containerPort: 8080}]}]\n",
    )
    .unwrap();
    lab.ok(&["lab", "up", "-f", path.to_str().unwrap(), "--wait", "30"]);
    let pod = &lab.pods(&[])[0];
    let uid: String = pod["metadata"]["uid"]
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| *c != '-')
        .take(12)
        .collect();
    let netns = format!("weft_{}_pod-{uid}", lab.name);
    let out = Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 1, "one workload process in {netns}: {pids:?}");
    assert!(Command::new("kill")
        .args(["-9", &pids[0]])
        .status()
        .unwrap()
        .success());
    wait_for(|| {
        let p = &lab.pods(&[])[0];
        p["status"]["containerStatuses"][0]["restartCount"] == 1
            && p["status"]["phase"] == "Running"
    });
    let ip = pod_ip(&lab.pods(&[])[0]);
    let url = format!("http://{ip}:8080/hostname");
    wait_for(|| {
        lab.weft(&["exec", "lone", "--", "curl", "-sS", "--max-time", "2", &url])
            .stdout
            == b"lone"
    });
}
