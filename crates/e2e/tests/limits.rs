//! The lab under a runaway request: a Deployment of 100000 replicas fills its node's pod
//! capacity, leaves the rest Pending with the scheduler's reason, and follows a scale-down at
//! once; the object quota refuses what is over it with a clear event, and stores nothing more.
//! Root, real lab, the real kubectl.

use serde_json::Value;
use weft_testutil::{wait_for_what, Lab};

fn count_pods(lab: &Lab, selector: &str, phase: Option<&str>) -> usize {
    let mut args = vec!["get", "pods", "-l", selector, "-o", "json"];
    let field;
    if let Some(phase) = phase {
        field = format!("status.phase={phase}");
        args.extend(["--field-selector", field.as_str()]);
    }
    let out = lab.kubectl(&args);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["items"].as_array().map(Vec::len).unwrap_or(0)
}

#[test]
fn a_deployment_of_100000_replicas_stays_under_control() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    lab.kubectl_ok(&[
        "create",
        "deployment",
        "big",
        "--image=busybox",
        "--replicas=100000",
    ]);
    // The node takes its 110 pods (the kubelet's default --max-pods); the others wait.
    wait_for_what("pods beyond the node's capacity", || {
        count_pods(&lab, "app=big", Some("Pending")) > 0
            && count_pods(&lab, "app=big", Some("Running")) >= 100
    });
    let pending = lab.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=big",
        "--field-selector",
        "status.phase=Pending",
        "-o",
        "jsonpath={.items[0].status.conditions[0].message}",
    ]);
    assert_eq!(pending, "0/1 nodes are available: 1 Too many pods.");
    let running = count_pods(&lab, "app=big", Some("Running"));
    assert!(running <= 110, "{running} pods running on one node");

    // Still responsive: a scale-down is followed at once, however many pods are pending.
    lab.kubectl_ok(&["scale", "deployment", "big", "--replicas=2"]);
    wait_for_what("the scale-down to 2", || {
        count_pods(&lab, "app=big", None) == 2
    });
    lab.kubectl_ok(&["delete", "deployment", "big"]);
    wait_for_what("the Deployment's pods to go", || {
        count_pods(&lab, "app=big", None) == 0
    });
}

#[test]
fn the_object_quota_refuses_creations_with_a_clear_error() {
    let lab = Lab::new();
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 1\nobjectQuota: 120\n",
            lab.name
        ),
    );
    lab.ok(&["lab", "up", "--config", &config]);
    // The quota counts every ConfigMap of the cluster, weft's own `kube-system/weft-config`
    // (deploy/) among them.
    let existing = lab
        .kubectl_ok(&["get", "configmaps", "-A", "--no-headers"])
        .lines()
        .count();
    assert_eq!(existing, 1, "only weft-config");
    // A ConfigMap per request until the quota says no.
    let mut refused = None;
    for i in 0..130 {
        let out = lab.kubectl(&["create", "configmap", &format!("c{i}")]);
        if !out.status.success() {
            refused = Some((i, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (at, message) = refused.expect("the quota refused a ConfigMap");
    assert_eq!(at, 120 - existing, "the 121st ConfigMap is refused");
    assert!(
        message.contains(&format!(
            "configmaps \"c{at}\" is forbidden: exceeded quota: at most 120 objects of this kind"
        )),
        "{message}"
    );
    let out = lab.kubectl(&["get", "configmap", &format!("c{at}")]);
    assert!(
        !out.status.success(),
        "the refused ConfigMap was not stored"
    );

    // A controller meeting the quota says so where users look.
    lab.kubectl_ok(&[
        "create",
        "deployment",
        "many",
        "--image=busybox",
        "--replicas=200",
    ]);
    wait_for_what("a FailedCreate event", || {
        let events = lab.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedCreate",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&events).unwrap_or_default();
        list["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["involvedObject"]["name"] == "many"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("exceeded"))
            })
        })
    });
    assert!(count_pods(&lab, "app=many", None) <= 120);
}
