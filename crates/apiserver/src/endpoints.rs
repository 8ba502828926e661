//! The core/v1 `Endpoints` view, computed from EndpointSlices (grouped by their
//! `kubernetes.io/service-name` label, one subset per slice), as `kubectl get endpoints` reads it.
//! The slices are the truth; this view is never stored.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use weft_model::Object;

use weft_model::endpoints::SERVICE_NAME_LABEL;

/// The Endpoints of every Service with slices (in `namespace`, or all), or only of `name`.
pub fn endpoints(slices: &[Object], namespace: Option<&str>, name: Option<&str>) -> Vec<Value> {
    let mut by_service: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for slice in slices {
        let Some(slice) = slice.as_endpoint_slice() else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        if namespace.is_some_and(|n| n != ns) || name.is_some_and(|n| n != service) {
            continue;
        }
        if let Ok(v) = serde_json::to_value(slice) {
            by_service.entry((ns, service.clone())).or_default().push(v);
        }
    }
    by_service
        .into_iter()
        .map(|((ns, service), slices)| view(&ns, &service, &slices))
        .collect()
}

fn view(namespace: &str, service: &str, slices: &[Value]) -> Value {
    let address = |e: &Value, ip: &Value| {
        let mut a = json!({ "ip": ip });
        if let Some(node) = e.get("nodeName") {
            a["nodeName"] = node.clone();
        }
        if let Some(target) = e.get("targetRef") {
            a["targetRef"] = target.clone();
        }
        a
    };
    let mut revision = 0u64;
    let mut created: Option<String> = None;
    let mut subsets = Vec::new();
    for s in slices {
        let rv = s["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        revision = revision.max(rv);
        if let Some(c) = s["metadata"]["creationTimestamp"].as_str() {
            if created.as_deref().is_none_or(|old| c < old) {
                created = Some(c.to_string());
            }
        }
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for e in s["endpoints"].as_array().into_iter().flatten() {
            // Kubernetes: an endpoint without a ready condition counts as ready.
            let is_ready = e["conditions"]["ready"].as_bool() != Some(false);
            for ip in e["addresses"].as_array().into_iter().flatten() {
                if is_ready {
                    ready.push(address(e, ip));
                } else {
                    not_ready.push(address(e, ip));
                }
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let ports: Vec<Value> = s["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let mut port = json!({"port": p["port"], "protocol": p["protocol"]});
                if let Some(n) = p["name"].as_str().filter(|n| !n.is_empty()) {
                    port["name"] = json!(n);
                }
                port
            })
            .collect();
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        subsets.push(subset);
    }
    let mut metadata =
        json!({"name": service, "namespace": namespace, "resourceVersion": revision.to_string()});
    if let Some(c) = created {
        metadata["creationTimestamp"] = json!(c);
    }
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": subsets})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, svc: &str, ready: bool) -> Object {
        Object::from_json(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7", "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": ready}, "nodeName": "n1"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
        .unwrap()
    }

    #[test]
    fn groups_slices_by_service() {
        let slices = vec![
            slice("web-a", "web", true),
            slice("web-b", "web", false),
            slice("db-a", "db", true),
        ];
        let all = endpoints(&slices, Some("default"), None);
        assert_eq!(all.len(), 2);
        let web = endpoints(&slices, None, Some("web"));
        assert_eq!(web[0]["subsets"][0]["addresses"][0]["ip"], "10.244.0.5");
        assert_eq!(
            web[0]["subsets"][1]["notReadyAddresses"][0]["nodeName"],
            "n1"
        );
        assert_eq!(web[0]["metadata"]["resourceVersion"], "7");
        assert!(endpoints(&slices, Some("other"), None).is_empty());
    }
}
