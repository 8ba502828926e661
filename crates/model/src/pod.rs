//! Small questions asked of a Pod all over the project (phase, readiness, address, node).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// (ready, total) containers, from `status.containerStatuses`; total falls back to the spec's
/// container count while the pod has no status yet.
pub fn containers_ready(pod: &Pod) -> (usize, usize) {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let ready = statuses.iter().filter(|c| c.ready).count();
    let spec_total = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    (ready, spec_total.max(statuses.len()))
}

/// `status.phase`, or "Pending" when the pod has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's IPv4 address from `status.podIP`, if assigned and parseable.
pub fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// The node the pod is bound to (`spec.nodeName`).
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Whether the pod uses the node's network namespace instead of its own.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn pending_pod_without_status() {
        let p = pod(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c"}, {"name": "d"}]}}),
        );
        assert_eq!(phase(&p), "Pending");
        assert_eq!(containers_ready(&p), (0, 2));
        assert!(!is_ready(&p));
        assert_eq!(pod_ip(&p), None);
        assert_eq!(node_name(&p), None);
        assert!(!host_network(&p));
    }

    #[test]
    fn running_pod() {
        let p = pod(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"nodeName": "weft-node1", "containers": [{"name": "c"}, {"name": "d"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": 0, "image": "x", "imageID": ""},
                    {"name": "d", "ready": false, "restartCount": 0, "image": "x", "imageID": ""}]}}),
        );
        assert_eq!(phase(&p), "Running");
        assert_eq!(containers_ready(&p), (1, 2));
        assert!(is_ready(&p));
        assert_eq!(pod_ip(&p), Some(Ipv4Addr::new(10, 244, 0, 5)));
        assert_eq!(node_name(&p), Some("weft-node1"));
    }
}
