//! Nodes, Namespaces, Events, Secrets, ConfigMaps and ServiceAccounts.

use serde_json::{json, Value};

use super::{ago, check, meta, DAY, HOUR, MINUTE};

fn node(name: &str, labels: Value, unschedulable: bool, ready: Option<&str>, info: bool) -> Value {
    let mut conditions = vec![json!({"type": "MemoryPressure", "status": "False"})];
    if let Some(status) = ready {
        conditions.push(json!({"type": "Ready", "status": status, "reason": "KubeletReady"}));
    }
    let node_info = if info {
        json!({"kubeletVersion": "v1.34.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
               "kernelVersion": "6.1.0-31-amd64", "containerRuntimeVersion": "weft://0.1.0"})
    } else {
        json!({})
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": ago(12 * DAY + 5 * HOUR)},
        "spec": {"podCIDR": "10.244.0.0/24", "unschedulable": unschedulable},
        "status": {
            "conditions": conditions,
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "172.18.0.2"}],
            "nodeInfo": node_info,
        },
    })
}

#[test]
fn nodes() {
    let mut external = node(
        "lab-edge",
        json!({"kubernetes.io/role": "edge", "node-role.kubernetes.io/ingress": ""}),
        false,
        Some("True"),
        true,
    );
    external["status"]["addresses"]
        .as_array_mut()
        .expect("addresses are a list")
        .push(json!({"type": "ExternalIP", "address": "203.0.113.20"}));
    let nodes = [
        node(
            "lab-control-plane",
            json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "lab-control-plane"}),
            false,
            Some("True"),
            true,
        ),
        node(
            "lab-worker",
            json!({"kubernetes.io/hostname": "lab-worker"}),
            false,
            Some("True"),
            true,
        ),
        node("lab-worker2", json!({}), false, Some("False"), true),
        node(
            "lab-cordoned",
            json!({"node-role.kubernetes.io/": "", "kubernetes.io/role": ""}),
            true,
            Some("True"),
            true,
        ),
        node("lab-new", Value::Null, true, None, false),
        external,
    ];
    check("nodes", "nodes", &nodes);
}

#[test]
fn namespaces() {
    let namespace = |name: &str, created: i64, phase: Option<&str>, deleting: bool| {
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "creationTimestamp": ago(created)}, "status": {"phase": phase}});
        if deleting {
            ns["metadata"]["deletionTimestamp"] = json!(ago(5));
        }
        ns
    };
    let namespaces = [
        namespace("default", 30 * DAY, Some("Active"), false),
        namespace("kube-system", 30 * DAY, Some("Active"), false),
        namespace("going", 2 * HOUR, Some("Terminating"), true),
        namespace("just-created", 3, None, false),
        namespace("just-deleted", 600 * DAY, None, true),
    ];
    check("namespaces", "namespaces", &namespaces);
}

#[test]
fn events() {
    let events = [
        // A core/v1 Event recorded by the scheduler, repeated.
        json!({
            "apiVersion": "v1", "kind": "Event", "metadata": meta("web-0.17f3a1b2c3d4e5f6", HOUR),
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-0", "apiVersion": "v1"},
            "reason": "FailedScheduling", "message": "0/2 nodes are available: 2 Insufficient cpu.\n", "type": "Warning",
            "source": {"component": "default-scheduler"},
            "firstTimestamp": ago(HOUR), "lastTimestamp": ago(4 * MINUTE + 30), "count": 14,
        }),
        // A kubelet Event about one container.
        json!({
            "apiVersion": "v1", "kind": "Event", "metadata": meta("web-0.17f3a1b2c3d4e5f7", 50 * MINUTE),
            "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled", "message": "Container image \"nginx:1.27\" already present on machine", "type": "Normal",
            "source": {"component": "kubelet", "host": "lab-worker"},
            "firstTimestamp": ago(50 * MINUTE), "lastTimestamp": ago(50 * MINUTE), "count": 1,
        }),
        // Written through the newer API's fields on core/v1: eventTime and a series, no count.
        json!({
            "apiVersion": "v1", "kind": "Event", "metadata": meta("web.17f3a1b2c3d4e5f8", 2 * DAY),
            "involvedObject": {"kind": "Deployment", "name": "web"},
            "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-5d4f8c7b9 from 0 to 3", "type": "Normal",
            "eventTime": "2025-05-30T11:59:59.123456Z", "reportingComponent": "deployment-controller",
            "reportingInstance": "weft-controller", "series": {"count": 3, "lastObservedTime": ago(2 * HOUR)},
        }),
        // A singleton with eventTime only.
        json!({
            "apiVersion": "v1", "kind": "Event", "metadata": meta("lab.17f3a1b2c3d4e5f9", 90),
            "involvedObject": {"kind": "Node"}, "reason": "Starting", "message": "", "type": "Normal",
            "eventTime": ago(90), "reportingComponent": "kubelet",
        }),
        // An events.k8s.io/v1 Event.
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("db.17f3a1b2c3d4e600", 3 * MINUTE),
            "regarding": {"kind": "Service", "namespace": "default", "name": "db"},
            "reason": "EnsuredLoadBalancer", "note": "  Ensured load balancer  ", "type": "Normal", "action": "Ensure",
            "eventTime": ago(3 * MINUTE), "reportingController": "weft.dev/lb", "reportingInstance": "lab-control-plane",
            "deprecatedCount": 2, "deprecatedFirstTimestamp": ago(3 * MINUTE), "deprecatedLastTimestamp": ago(MINUTE),
        }),
    ];
    check("events", "events", &events);
}

#[test]
fn secrets_config_maps_and_service_accounts() {
    let secrets = [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("tls", 9 * DAY), "type": "kubernetes.io/tls",
               "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("opaque", 30), "type": "Opaque", "data": {"password": "cw=="}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("as-written", 30),
               "data": {"a": "YQ=="}, "stringData": {"a": "override", "b": "two"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("empty", 5 * MINUTE), "type": "Opaque"}),
    ];
    check("secrets", "secrets", &secrets);

    let config_maps = [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("kube-root-ca.crt", 30 * DAY), "data": {"ca.crt": "..."}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("mixed", HOUR),
               "data": {"a": "1", "b": "2"}, "binaryData": {"blob": "AAE="}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("empty", 20)}),
    ];
    check("configmaps", "configmaps", &config_maps);

    let accounts = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("default", 30 * DAY)}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("weft-agent", 7 * MINUTE + 30)}),
    ];
    check("serviceaccounts", "serviceaccounts", &accounts);
}
