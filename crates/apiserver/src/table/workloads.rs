//! Pods, Deployments and ReplicaSets, as kube-apiserver prints them (`printPod`,
//! `printDeployment`, `printReplicaSet`).

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::format::{containers, format_label_selector, label_map, label_selector, since};
use super::json::Json;
use super::{age, docs, name, Column, Printer, Row};

const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    "Names of each container in the template.",
)
.wide();
const IMAGES: Column = Column::new(
    "Images",
    "string",
    "Images referenced by each container in the template.",
)
.wide();

pub(super) const PODS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        Column::new(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        Column::new(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last \
             container in this pod has restarted.",
        ),
        Column::AGE,
        Column::new("IP", "string", docs::POD_STATUS_POD_IP).wide(),
        Column::new("Node", "string", docs::POD_SPEC_NODE_NAME).wide(),
        Column::new(
            "Nominated Node",
            "string",
            docs::POD_STATUS_NOMINATED_NODE_NAME,
        )
        .wide(),
        Column::new("Readiness Gates", "string", docs::POD_SPEC_READINESS_GATES).wide(),
    ],
    row: pod_row,
};

/// The pod's row: READY counts ready containers (sidecars included), STATUS is the most telling
/// reason among the pod's and its containers' states, RESTARTS adds when the last one was.
fn pod_row(pod: Json, now: Timestamp) -> Row {
    let spec = pod.at("spec");
    let status = pod.at("status");
    let conditions = status.at("conditions");
    // kube-apiserver sets Pending when a pod is created, so a stored pod without a phase is one
    // nobody has looked at yet.
    let phase = status.at("phase").non_empty().unwrap_or("Pending");
    let mut reason = status.at("reason").non_empty().unwrap_or(phase).to_string();
    if conditions
        .items()
        .any(|c| c.at("type").str() == "PodScheduled" && c.at("reason").str() == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_containers = spec.at("initContainers");
    // Sidecars (init containers that keep running) count as containers of the pod.
    let is_sidecar = |name: &str| {
        init_containers
            .items()
            .any(|c| c.at("name").str() == name && c.at("restartPolicy").str() == "Always")
    };
    let sidecars = init_containers
        .items()
        .filter(|c| c.at("restartPolicy").str() == "Always")
        .count();
    let total = spec.at("containers").len() + sidecars;
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let mut initializing = false;
    for (i, container) in status.at("initContainerStatuses").items().enumerate() {
        let count = container.at("restartCount").int();
        let finished = last_termination(container);
        restarts += count;
        keep_latest(&mut last_restart, finished);
        let sidecar = is_sidecar(container.at("name").str());
        if sidecar {
            sidecar_restarts += count;
            keep_latest(&mut last_sidecar_restart, finished);
        }
        let state = container.at("state");
        let terminated = state.at("terminated");
        if terminated.is_set() && terminated.at("exitCode").int() == 0 {
            continue;
        }
        if sidecar && container.at("started").bool() {
            if container.at("ready").bool() {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_set() {
            // Initialization failed.
            match terminated.at("reason").non_empty() {
                Some(why) => format!("Init:{why}"),
                None => match terminated.at("signal").int() {
                    0 => format!("Init:ExitCode:{}", terminated.at("exitCode").int()),
                    signal => format!("Init:Signal:{signal}"),
                },
            }
        } else if let Some(why) = state
            .path(&["waiting", "reason"])
            .non_empty()
            .filter(|why| *why != "PodInitializing")
        {
            format!("Init:{why}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .items()
        .find(|c| c.at("type").str() == "Initialized")
        .is_some_and(|c| c.at("status").str() == "True");
    if !initializing || initialized {
        // Failed init attempts no longer matter once the pod runs; sidecar restarts still do.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        let mut error_reason = None;
        for container in status.at("containerStatuses").items().rev() {
            restarts += container.at("restartCount").int();
            keep_latest(&mut last_restart, last_termination(container));
            let state = container.at("state");
            let terminated = state.at("terminated");
            if let Some(why) = state.path(&["waiting", "reason"]).non_empty() {
                reason = why.to_string();
            } else if terminated.is_set() {
                let exit_code = terminated.at("exitCode").int();
                reason = match terminated.at("reason").non_empty() {
                    Some(why) => why.to_string(),
                    None => match terminated.at("signal").int() {
                        0 => format!("ExitCode:{exit_code}"),
                        signal => format!("Signal:{signal}"),
                    },
                };
                if exit_code != 0 {
                    error_reason = Some(reason.clone());
                }
            } else if container.at("ready").bool() && state.at("running").is_set() {
                has_running = true;
                ready += 1;
            }
        }
        // A container that completed while others still run does not make the pod Completed.
        if reason == "Completed" {
            let pod_ready = conditions
                .items()
                .any(|c| c.at("type").str() == "Ready" && c.at("status").str() == "True");
            if has_running && pod_ready {
                reason = "Running".to_string();
            } else if let Some(error) = error_reason {
                reason = error;
            } else if has_running {
                reason = "NotReady".to_string();
            }
        }
    }

    if pod.path(&["metadata", "deletionTimestamp"]).is_set() {
        if status.at("reason").str() == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts = match last_restart {
        Some(when) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(when), now)),
        _ => restarts.to_string(),
    };

    // kube-apiserver mirrors status.podIP into podIPs[0]; read podIP too for pods written by
    // something that sets only the older field.
    let ip = status
        .at("podIPs")
        .items()
        .next()
        .map(|ip| ip.at("ip").str())
        .or_else(|| status.at("podIP").non_empty())
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let gates = spec.at("readinessGates");
    let readiness_gates = if gates.len() == 0 {
        "<none>".to_string()
    } else {
        let passed = gates
            .items()
            .filter(|gate| {
                let wanted = gate.at("conditionType").str();
                conditions
                    .items()
                    .find(|c| c.at("type").str() == wanted)
                    .is_some_and(|c| c.at("status").str() == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    Row {
        cells: vec![
            name(pod),
            format!("{ready}/{total}").into(),
            reason.into(),
            restarts.into(),
            age(pod, now),
            ip.into(),
            spec.at("nodeName").non_empty().unwrap_or("<none>").into(),
            status
                .at("nominatedNodeName")
                .non_empty()
                .unwrap_or("<none>")
                .into(),
            readiness_gates.into(),
        ],
        conditions: match phase {
            "Succeeded" => Some(completed(
                "Succeeded",
                "The pod has completed successfully.",
            )),
            "Failed" => Some(completed("Failed", "The pod failed.")),
            _ => None,
        },
    }
}

/// When a container last stopped (`lastState.terminated.finishedAt`).
fn last_termination(container: Json) -> Option<Timestamp> {
    container
        .path(&["lastState", "terminated", "finishedAt"])
        .time()
}

fn keep_latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(candidate) = candidate {
        if latest.is_none_or(|latest| latest < candidate) {
            *latest = Some(candidate);
        }
    }
}

/// The row condition kube-apiserver puts on finished pods.
fn completed(reason: &str, message: &str) -> Value {
    json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}])
}

/// `spec.replicas`, which kube-apiserver defaults to 1 when it is not given.
fn desired_replicas(object: Json) -> i64 {
    object.path(&["spec", "replicas"]).opt_int().unwrap_or(1)
}

pub(super) const DEPLOYMENTS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Ready", "string", "Number of the pod with ready state"),
        Column::new(
            "Up-to-date",
            "string",
            docs::DEPLOYMENT_STATUS_UPDATED_REPLICAS,
        ),
        Column::new(
            "Available",
            "string",
            docs::DEPLOYMENT_STATUS_AVAILABLE_REPLICAS,
        ),
        Column::AGE,
        CONTAINERS,
        IMAGES,
        Column::new("Selector", "string", docs::DEPLOYMENT_SPEC_SELECTOR).wide(),
    ],
    row: deployment_row,
};

fn deployment_row(deployment: Json, now: Timestamp) -> Row {
    let status = deployment.at("status");
    let (names, images) = containers(deployment.path(&["spec", "template", "spec"]));
    // Unlike other printers, printDeployment shows an empty selector as nothing, not `<none>`.
    let selector = label_selector(deployment.path(&["spec", "selector"]))
        .unwrap_or_else(|_| "<invalid>".to_string());
    Row::new(vec![
        name(deployment),
        format!(
            "{}/{}",
            status.at("readyReplicas").int(),
            desired_replicas(deployment)
        )
        .into(),
        status.at("updatedReplicas").int().into(),
        status.at("availableReplicas").int().into(),
        age(deployment, now),
        names.into(),
        images.into(),
        selector.into(),
    ])
}

pub(super) const DAEMON_SETS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
        Column::new("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
        Column::new("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        Column::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        Column::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
        Column::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node."),
        Column::AGE,
        CONTAINERS,
        IMAGES,
        Column::new("Selector", "string", "A label query over pods that are managed by the daemon set.").wide(),
    ],
    row: daemon_set_row,
};

fn daemon_set_row(ds: Json, now: Timestamp) -> Row {
    let status = ds.at("status");
    let pod_spec = ds.path(&["spec", "template", "spec"]);
    let (names, images) = containers(pod_spec);
    Row::new(vec![
        name(ds),
        status.at("desiredNumberScheduled").int().into(),
        status.at("currentNumberScheduled").int().into(),
        status.at("numberReady").int().into(),
        status.at("updatedNumberScheduled").int().into(),
        status.at("numberAvailable").int().into(),
        label_map(pod_spec.at("nodeSelector")).into(),
        age(ds, now),
        names.into(),
        images.into(),
        format_label_selector(ds.path(&["spec", "selector"])).into(),
    ])
}

pub(super) const REPLICA_SETS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Desired", "integer", docs::REPLICA_SET_SPEC_REPLICAS),
        Column::new("Current", "integer", docs::REPLICA_SET_STATUS_REPLICAS),
        Column::new("Ready", "integer", docs::REPLICA_SET_STATUS_READY_REPLICAS),
        Column::AGE,
        CONTAINERS,
        IMAGES,
        Column::new("Selector", "string", docs::REPLICA_SET_SPEC_SELECTOR).wide(),
    ],
    row: replica_set_row,
};

fn replica_set_row(replica_set: Json, now: Timestamp) -> Row {
    let status = replica_set.at("status");
    let (names, images) = containers(replica_set.path(&["spec", "template", "spec"]));
    Row::new(vec![
        name(replica_set),
        desired_replicas(replica_set).into(),
        status.at("replicas").int().into(),
        status.at("readyReplicas").int().into(),
        age(replica_set, now),
        names.into(),
        images.into(),
        format_label_selector(replica_set.path(&["spec", "selector"])).into(),
    ])
}
