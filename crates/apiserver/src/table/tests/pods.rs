//! Pods in each status kubectl shows.

use serde_json::{json, Value};

use super::{ago, check, meta, DAY, HOUR, MINUTE};

fn pod(name: &str, created: i64, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, created),
        "spec": spec,
        "status": status,
    })
}

fn on_node(containers: &[&str]) -> Value {
    json!({
        "nodeName": "lab-worker",
        "containers": containers.iter().map(|c| json!({"name": c, "image": "nginx:1.27"})).collect::<Vec<_>>(),
    })
}

fn running(name: &str) -> Value {
    json!({
        "name": name, "image": "nginx:1.27", "imageID": "", "ready": true, "restartCount": 0,
        "started": true, "state": {"running": {"startedAt": ago(DAY)}},
    })
}

fn waiting(name: &str, reason: &str) -> Value {
    json!({
        "name": name, "image": "nginx:1.27", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason}},
    })
}

fn terminated(name: &str, reason: Option<&str>, exit_code: i64) -> Value {
    json!({
        "name": name, "image": "nginx:1.27", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": ago(HOUR)}},
    })
}

fn ready_conditions(ready: bool) -> Value {
    let status = if ready { "True" } else { "False" };
    json!([
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": status},
        {"type": "ContainersReady", "status": status},
        {"type": "PodScheduled", "status": "True"},
    ])
}

fn running_status(containers: Vec<Value>, ready: bool) -> Value {
    json!({
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}],
        "conditions": ready_conditions(ready),
        "containerStatuses": containers,
    })
}

#[test]
fn pods_in_each_status() {
    let mut crash = waiting("app", "CrashLoopBackOff");
    crash["restartCount"] = json!(5);
    crash["lastState"] =
        json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(5 * MINUTE)}});

    let mut oom_restarted = running("app");
    oom_restarted["restartCount"] = json!(3);
    oom_restarted["lastState"] = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": ago(2 * HOUR + 3 * MINUTE)}});

    let mut terminating = pod(
        "terminating",
        DAY,
        on_node(&["app"]),
        running_status(vec![running("app")], true),
    );
    terminating["metadata"]["deletionTimestamp"] = json!(ago(10));

    let mut node_lost = pod(
        "node-lost",
        DAY,
        on_node(&["app"]),
        json!({"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("app")]}),
    );
    node_lost["metadata"]["deletionTimestamp"] = json!(ago(MINUTE));

    let mut finished_and_deleted = pod(
        "completed-deleted",
        DAY,
        on_node(&["job"]),
        json!({"phase": "Succeeded", "containerStatuses": [terminated("job", Some("Completed"), 0)]}),
    );
    finished_and_deleted["metadata"]["deletionTimestamp"] = json!(ago(MINUTE));

    let init_spec = |restart_policy: Option<&str>| {
        let mut spec = on_node(&["app"]);
        spec["initContainers"] = json!([
            {"name": "setup", "image": "busybox", "restartPolicy": restart_policy},
            {"name": "migrate", "image": "busybox"},
        ]);
        spec
    };
    let init_status = |statuses: Vec<Value>| {
        json!({
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": statuses,
            "containerStatuses": [waiting("app", "PodInitializing")],
        })
    };

    let mut sidecar = running("setup");
    sidecar["restartCount"] = json!(1);
    sidecar["lastState"] = json!({"terminated": {"exitCode": 1, "finishedAt": ago(30 * MINUTE)}});
    let mut sidecar_pod_status = running_status(vec![running("app")], true);
    sidecar_pod_status["initContainerStatuses"] =
        json!([sidecar, terminated("migrate", Some("Completed"), 0)]);

    let mut gated = json!({"containers": [{"name": "app", "image": "nginx"}], "readinessGates": [
        {"conditionType": "example.com/ready"}, {"conditionType": "example.com/warm"}
    ]});
    gated["schedulingGates"] = json!([{"name": "example.com/quota"}]);

    let mut gates_status = running_status(vec![running("app")], false);
    gates_status["conditions"]
        .as_array_mut()
        .expect("conditions are a list")
        .extend([
            json!({"type": "example.com/ready", "status": "True"}),
            json!({"type": "example.com/warm", "status": "False"}),
        ]);
    gates_status["nominatedNodeName"] = json!("lab-worker2");
    let mut gates_spec = on_node(&["app"]);
    gates_spec["readinessGates"] = gated["readinessGates"].clone();

    let pods = [
        pod(
            "running",
            3 * DAY + 4 * HOUR,
            on_node(&["app"]),
            running_status(vec![running("app")], true),
        ),
        pod(
            "bare",
            45,
            json!({"containers": [{"name": "app", "image": "nginx"}]}),
            Value::Null,
        ),
        pod(
            "unschedulable",
            5 * MINUTE + 12,
            json!({"containers": [{"name": "app", "image": "nginx"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
        ),
        pod(
            "scheduling-gated",
            MINUTE,
            gated,
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
        pod(
            "creating",
            20,
            on_node(&["app", "sidecar"]),
            json!({"phase": "Pending", "containerStatuses": [waiting("app", "ContainerCreating"), waiting("sidecar", "ContainerCreating")]}),
        ),
        pod(
            "image-pull",
            3 * MINUTE,
            on_node(&["app"]),
            json!({"phase": "Pending", "containerStatuses": [waiting("app", "ImagePullBackOff")]}),
        ),
        pod(
            "crash-loop",
            2 * HOUR,
            on_node(&["app"]),
            running_status(vec![crash], false),
        ),
        pod(
            "restarted",
            3 * HOUR,
            on_node(&["app"]),
            running_status(vec![oom_restarted], true),
        ),
        pod(
            "completed",
            2 * DAY,
            on_node(&["job"]),
            json!({"phase": "Succeeded", "conditions": ready_conditions(false), "containerStatuses": [terminated("job", Some("Completed"), 0)]}),
        ),
        pod(
            "failed",
            2 * DAY,
            on_node(&["job"]),
            json!({"phase": "Failed", "containerStatuses": [terminated("job", Some("Error"), 1)]}),
        ),
        pod(
            "killed",
            2 * DAY,
            on_node(&["job"]),
            json!({"phase": "Failed", "containerStatuses": [{
                "name": "job", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "signal": 9}},
            }]}),
        ),
        pod(
            "evicted",
            9 * DAY,
            on_node(&["app"]),
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        ),
        pod(
            "not-ready",
            HOUR,
            on_node(&["app", "once"]),
            running_status(
                vec![running("app"), terminated("once", Some("Completed"), 0)],
                false,
            ),
        ),
        pod(
            "half-done",
            HOUR,
            on_node(&["app", "once"]),
            running_status(
                vec![running("app"), terminated("once", Some("Completed"), 0)],
                true,
            ),
        ),
        terminating,
        node_lost,
        finished_and_deleted,
        pod(
            "init-waiting",
            40,
            init_spec(None),
            init_status(vec![waiting("setup", "PodInitializing")]),
        ),
        pod(
            "init-running",
            40,
            init_spec(None),
            init_status(vec![{
                let mut setup = running("setup");
                setup["ready"] = json!(false);
                setup
            }]),
        ),
        pod(
            "init-second",
            40,
            init_spec(None),
            init_status(vec![
                terminated("setup", Some("Completed"), 0),
                waiting("migrate", ""),
            ]),
        ),
        pod(
            "init-crash",
            40,
            init_spec(None),
            init_status(vec![waiting("setup", "CrashLoopBackOff")]),
        ),
        pod(
            "init-failed",
            40,
            init_spec(None),
            init_status(vec![terminated("setup", None, 2)]),
        ),
        pod(
            "init-signal",
            40,
            init_spec(None),
            init_status(vec![{
                let mut setup = terminated("setup", None, 0);
                setup["state"]["terminated"] = json!({"exitCode": 143, "signal": 15});
                setup
            }]),
        ),
        pod(
            "with-sidecar",
            2 * HOUR,
            init_spec(Some("Always")),
            sidecar_pod_status,
        ),
        pod("readiness-gates", 10 * MINUTE, gates_spec, gates_status),
    ];
    check("pods", "pods", &pods);
}
