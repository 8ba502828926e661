//! `weft lab targets`: where a lab's metrics are, as a list Prometheus reads with
//! `file_sd_configs` (its file-based service discovery). Every running pod whose template
//! carries the conventional `prometheus.io/scrape: "true"` annotation (weft's own components
//! in `deploy/`, and any workload of the user's that asks) is a target at its address and
//! `prometheus.io/port`, labelled with its job (the `app.kubernetes.io/component` or `name`
//! label), namespace, pod and node.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// The targets among `pods`, in Prometheus's file_sd JSON form, sorted by job and pod.
pub fn file_sd(pods: &[Pod]) -> Value {
    let mut groups: Vec<(String, String, Value)> = pods
        .iter()
        .filter_map(|pod| {
            let meta = &pod.metadata;
            let annotations = meta.annotations.as_ref()?;
            if annotations.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
                return None;
            }
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip = status.pod_ip.as_deref()?;
            let port: u16 = annotations.get("prometheus.io/port")?.parse().ok()?;
            let labels = meta.labels.clone().unwrap_or_default();
            let job = labels
                .get("app.kubernetes.io/component")
                .or_else(|| labels.get("app.kubernetes.io/name"))
                .or_else(|| labels.get("app"))
                .cloned()
                .unwrap_or_else(|| "pods".to_string());
            let name = meta.name.clone().unwrap_or_default();
            let path = annotations
                .get("prometheus.io/path")
                .cloned()
                .unwrap_or_else(|| "/metrics".to_string());
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let group = json!({
                "targets": [format!("{ip}:{port}")],
                "labels": {
                    "job": job,
                    "namespace": meta.namespace.clone().unwrap_or_default(),
                    "pod": name,
                    "node": node,
                    "__metrics_path__": path,
                },
            });
            Some((job, name, group))
        })
        .collect();
    groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Value::Array(groups.into_iter().map(|(_, _, g)| g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, annotations: Value, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "annotations": annotations,
                "labels": {"app.kubernetes.io/name": "weft", "app.kubernetes.io/component": "agent"}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": phase, "podIP": "172.20.0.2"},
        }))
        .unwrap()
    }

    #[test]
    fn running_pods_that_ask_to_be_scraped_are_targets() {
        let pods = [
            pod(
                "weft-agent-a",
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9876"}),
                "Running",
            ),
            pod(
                "pending",
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9876"}),
                "Pending",
            ),
            pod("quiet", json!({"prometheus.io/port": "9876"}), "Running"),
            pod(
                "bad-port",
                json!({"prometheus.io/scrape": "true", "prometheus.io/port": "x"}),
                "Running",
            ),
        ];
        assert_eq!(
            file_sd(&pods),
            json!([{
                "targets": ["172.20.0.2:9876"],
                "labels": {"job": "agent", "namespace": "kube-system", "pod": "weft-agent-a",
                    "node": "n1", "__metrics_path__": "/metrics"},
            }])
        );
    }
}
