//! Deployments and ReplicaSets.

use serde_json::json;

use super::{check, meta, DAY, HOUR, MINUTE};

fn template() -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [
            {"name": "web", "image": "nginx:1.27"},
            {"name": "log", "image": "fluent-bit:3"},
        ]},
    })
}

#[test]
fn deployments() {
    let deployments = [
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", 3 * DAY),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("rolling-out", 90),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "api"}, "matchExpressions": [{"key": "track", "operator": "In", "values": ["stable", "canary"]}]},
                "template": template(),
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2},
        }),
        // Replicas left to the default, no status yet.
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("new", 5),
            "spec": {"selector": {"matchLabels": {"app": "new"}}, "template": template()},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("scaled-down", 10 * HOUR),
            "spec": {"replicas": 0, "selector": {}, "template": template()},
            "status": {},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("bad-selector", 7 * MINUTE),
            "spec": {"replicas": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}, "template": template()},
        }),
    ];
    check("deployments", "deployments", &deployments);
}

#[test]
fn replica_sets() {
    let replica_sets = [
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("web-5d4f8c7b9", 3 * DAY),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f8c7b9"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("web-old", 4 * DAY),
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 0},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("everything", 30),
            "spec": {"selector": {}, "template": template()},
        }),
    ];
    check("replicasets", "replicasets", &replica_sets);
}
