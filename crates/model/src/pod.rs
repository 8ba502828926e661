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

/// The pod's hostname, as the kubelet gives it: `spec.hostname` when set, else the pod's name;
/// cut to 63 characters (a DNS label, and what `sethostname` takes) without a trailing `-` or
/// `.`, as the kubelet's `truncatePodHostnameIfNeeded` does. A pod that also has
/// `spec.subdomain` is known in DNS as `<hostname>.<subdomain>` (see the EndpointSlice
/// controller), so the name it sees for itself and the name others find it by agree.
pub fn hostname(pod: &Pod) -> &str {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .or(pod.metadata.name.as_deref())
        .unwrap_or_default();
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name;
    }
    // Names are ASCII (RFC 1123); a byte that is not would fail here, not panic.
    name.get(..MAX).unwrap_or(name).trim_end_matches(['-', '.'])
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

    #[test]
    fn hostname_is_spec_hostname_else_the_name_cut_to_a_label() {
        let named = |name: &str, hostname: Option<&str>| {
            pod(json!({"metadata": {"name": name},
                "spec": {"containers": [], "hostname": hostname, "subdomain": "db"}}))
        };
        assert_eq!(hostname(&named("db-a", Some("db-0"))), "db-0");
        assert_eq!(hostname(&named("db-a", None)), "db-a");
        assert_eq!(hostname(&named("db-a", Some(""))), "db-a");
        // 62 characters, then a dash at the cut: the kubelet drops it.
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(40));
        assert_eq!(hostname(&named(&long, None)), "a".repeat(62));
        let exact = "c".repeat(70);
        assert_eq!(hostname(&named(&exact, None)), "c".repeat(63));
    }
}
