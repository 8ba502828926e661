//! The manifests that install weft on a real cluster (`deploy/`), checked the way a cluster
//! would take them: the real kubectl sends them to the lab's API server with
//! `--dry-run=server` (validation and admission, nothing stored), and the commands they run
//! work against an API given by a kubeconfig: `weft install-cni` (the DaemonSet's init
//! container) writes the plugin and a conflist for the node's pod CIDR, and `weft agent`
//! compiles the node's plan from the API. Needs root and kubectl (scripts/deps.sh).

use std::path::Path;
use std::process::Command;

use weft_testutil::{cell, table, wait_for_what, workspace_root, Lab};

#[test]
fn the_lab_runs_the_agent_from_the_daemonset_and_the_manifests_validate() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "2"]);
    // weft's agent is a DaemonSet pod on every node, as on a real cluster, and kubectl shows it
    // with the DaemonSet columns.
    wait_for_what("the weft-agent DaemonSet ready on both nodes", || {
        let out = lab.kubectl_ok(&["get", "ds", "-n", "kube-system"]);
        let rows = table(&out);
        rows.len() == 1 && cell(&rows[0], "READY") == "2"
    });
    let out = lab.kubectl_ok(&["get", "ds", "-n", "kube-system"]);
    let rows = table(&out);
    for (column, want) in [
        ("NAME", "weft-agent"),
        ("DESIRED", "2"),
        ("CURRENT", "2"),
        ("UP-TO-DATE", "2"),
        ("AVAILABLE", "2"),
    ] {
        assert_eq!(cell(&rows[0], column), want, "{column} in\n{out}");
    }
    let pods = lab.kubectl_ok(&["get", "pods", "-n", "kube-system", "-o", "wide"]);
    for node in ["node1", "node2"] {
        assert!(pods.contains(&format!("{}-{node}", lab.name)), "{pods}");
    }
    // And weft's controller is the Deployment from deploy/controller.yaml, ready.
    wait_for_what("the weft-controller Deployment ready", || {
        let out = lab.kubectl_ok(&["get", "deploy", "-n", "kube-system", "weft-controller"]);
        table(&out)
            .first()
            .is_some_and(|row| cell(row, "READY") == "1/1")
    });

    // The manifests themselves, as a user applies them to a cluster: validated and admitted by
    // the server, nothing stored.
    let deploy = workspace_root().join("deploy");
    let out = lab.kubectl_ok(&["apply", "--dry-run=server", "-f", &deploy.to_string_lossy()]);
    // The lab applied them already: a server-side dry run of an unchanged object.
    for object in [
        "serviceaccount/weft-agent",
        "clusterrole.rbac.authorization.k8s.io/weft-agent",
        "clusterrolebinding.rbac.authorization.k8s.io/weft-agent",
        "configmap/weft-config",
        "daemonset.apps/weft-agent",
        "serviceaccount/weft-controller",
        "clusterrole.rbac.authorization.k8s.io/weft-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/weft-controller",
        "deployment.apps/weft-controller",
        "serviceaccount/weft-dns",
        "clusterrole.rbac.authorization.k8s.io/weft-dns",
        "service/kube-dns",
        "deployment.apps/weft-dns",
    ] {
        assert!(out.contains(object), "missing {object:?} in:\n{out}");
    }
    assert!(out.contains("(server dry run)"), "{out}");
}

#[test]
fn install_cni_and_the_agent_work_from_a_kubeconfig() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "2"]);
    let node = format!("{}-node2", lab.name);
    let kubeconfig = lab.kubeconfig();
    let config = lab.dir().join("cluster.yaml");
    let host = tempfile::tempdir().unwrap();
    let (bin, conf) = (host.path().join("bin"), host.path().join("net.d"));
    let out = lab.ok(&[
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "install-cni",
        "--node",
        &node,
        "--config",
        &config.to_string_lossy(),
        "--bin-dir",
        &bin.to_string_lossy(),
        "--conf-dir",
        &conf.to_string_lossy(),
    ]);
    assert!(out.contains("10.244.1.0/24"), "{out}");
    let conflist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conf.join("10-weft.conflist")).unwrap())
            .unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "weft-cni");
    assert_eq!(conflist["plugins"][0]["ipam"]["subnet"], "10.244.1.0/24");
    // The installed plugin runs: a runtime's VERSION call.
    let version = Command::new(bin.join("weft-cni"))
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains("supportedVersions"), "{version}");

    // The agent, given only a kubeconfig and the cluster config, compiles the node's plan from
    // the API: a route to the other node's pods and the kubernetes Service's rule.
    let plan = lab.ok(&[
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "agent",
        "--node",
        &node,
        "--config",
        &config.to_string_lossy(),
        "--plan",
    ]);
    assert!(plan.contains("ip route replace 10.244.0.0/24"), "{plan}");
    assert!(plan.contains("10.96.0.1"), "{plan}");
    assert!(plan.contains("table ip weft_policy"), "{plan}");
    assert!(Path::new(&config).exists());
}

#[test]
fn the_controller_allocates_load_balancer_addresses_from_a_kubeconfig() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    // Without the lab's own controller pod, a new LoadBalancer Service stays pending...
    lab.kubectl_ok(&[
        "scale",
        "deploy",
        "-n",
        "kube-system",
        "weft-controller",
        "--replicas=0",
    ]);
    wait_for_what("the in-lab controller pod gone", || {
        !lab.kubectl_ok(&["get", "pods", "-n", "kube-system"])
            .contains("weft-controller")
    });
    let manifest = lab.write(
        "lb.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 198.51.100.7\n  ports: [{port: 80}]\n",
    );
    lab.kubectl_ok(&["apply", "-f", &manifest]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        lab.service("lb")["status"]["loadBalancer"]["ingress"].is_null(),
        "{}",
        lab.service("lb")
    );
    // ...until `weft controller` runs, from anywhere with a kubeconfig and the cluster config.
    let config = lab.dir().join("cluster.yaml");
    let controller = lab
        .weft_cmd(&[
            "--kubeconfig",
            &lab.kubeconfig().to_string_lossy(),
            "controller",
            "--config",
            &config.to_string_lossy(),
            "--health-port",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(controller);
    let ip = lab.lb_ip("lb");
    assert_eq!(ip, "198.51.100.7", "the requested address, from the pool");
}

/// Stops a child process when the test ends, passing or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
