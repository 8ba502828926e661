//! The defaults kube-apiserver applies whenever it decodes or admits an object of a kind, applied here
//! when an object is parsed, so an object means the same whether it came through the lab's
//! API server, `weft apply` or `weft lab up -f`.

use serde_json::{json, Value};

/// The label kube-apiserver gives every namespace: `kubernetes.io/metadata.name` = its name
/// (policies select namespaces by it).
pub fn namespace(value: &mut Value) {
    let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let name = meta.get("name").cloned().unwrap_or(Value::Null);
    if !name.is_string() {
        return;
    }
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    if let Value::Object(labels) = labels {
        labels.insert("kubernetes.io/metadata.name".into(), name);
    }
}

/// `networking/v1`'s NetworkPolicy defaults: `policyTypes` Ingress, plus Egress when there are
/// egress rules; a port's protocol TCP. `kubectl describe` reads them (without, it says the
/// policy affects no traffic).
pub fn network_policy(value: &mut Value) {
    let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let has_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if !has_types {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
    for direction in ["ingress", "egress"] {
        let Some(rules) = spec.get_mut(direction).and_then(Value::as_array_mut) else {
            continue;
        };
        for rule in rules {
            let Some(ports) = rule.get_mut("ports").and_then(Value::as_array_mut) else {
                continue;
            };
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.entry("protocol").or_insert_with(|| json!("TCP"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;

    fn spec_of(spec: Value) -> Value {
        let v = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "x"}, "spec": spec});
        Object::from_json(v).unwrap().to_json()["spec"].clone()
    }

    #[test]
    fn namespaces_carry_their_name_as_a_label() {
        let v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
        let labels = Object::from_json(v).unwrap().to_json()["metadata"]["labels"].clone();
        assert_eq!(labels, json!({"kubernetes.io/metadata.name": "x"}));
        let v = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "y", "labels": {"team": "a", "kubernetes.io/metadata.name": "z"}}});
        let labels = Object::from_json(v).unwrap().to_json()["metadata"]["labels"].clone();
        assert_eq!(
            labels,
            json!({"kubernetes.io/metadata.name": "y", "team": "a"})
        );
    }

    #[test]
    fn network_policies_get_kube_apiservers_defaults_when_parsed() {
        let spec = spec_of(json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}));
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        assert_eq!(spec["ingress"][0]["ports"][0]["protocol"], "TCP");
        let spec = spec_of(json!({"podSelector": {}, "egress": [{}]}));
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        let spec = spec_of(json!({"podSelector": {}, "egress": []}));
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        let spec = spec_of(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        assert_eq!(spec["policyTypes"], json!(["Egress"]));
    }
}
