//! Small questions asked of a Node by every consumer (the agent, the scheduler, the speaker, the
//! CLI), answered once so they agree.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

/// The kubelet's default `--max-pods`: what a node takes when its Node does not say.
pub const DEFAULT_MAX_PODS: usize = 110;

/// The node's `InternalIP` address from `status.addresses`, if it has a parseable IPv4 one.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// Whether the node's `Ready` condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `spec.podCIDR`, as written.
pub fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref()?.pod_cidr.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_address_readiness_and_cidr() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"},
                              {"type": "InternalIP", "address": "172.20.0.3"}],
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(internal_ip(&n), Some(Ipv4Addr::new(172, 20, 0, 3)));
        assert!(is_ready(&n));
        assert_eq!(pod_cidr(&n), Some("10.244.1.0/24"));
        let bare = Node::default();
        assert_eq!(internal_ip(&bare), None);
        assert!(!is_ready(&bare));
        assert_eq!(pod_cidr(&bare), None);
    }
}
