//! The patches kubectl and helm really send (shapes taken from `kubectl apply`'s three-way
//! diff and `kubectl patch`/`label`/`rollout restart`), applied to objects as the server
//! stores them, with fields clients never set.

use super::*;
use serde_json::json;

fn schema(api_version: &str, kind: &str) -> Schema {
    match Schema::for_kind(api_version, kind) {
        Some(schema) => schema,
        None => panic!("no schema for {api_version} {kind}"),
    }
}

fn deployment_schema() -> Schema {
    schema("apps/v1", "Deployment")
}

/// A Deployment as stored: defaults filled in, a sidecar added by someone else, status.
fn stored_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6f1c",
            "resourceVersion": "41",
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "finalizers": ["example.com/keep"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}],
                        },
                        {"name": "sidecar", "image": "proxy:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    })
}

fn apply(doc: &Value, patch: Value, schema: &Schema) -> Value {
    match strategic_merge_patch(doc, &patch, schema) {
        Ok(result) => result,
        Err(e) => panic!("{patch}: {e}"),
    }
}

fn containers(doc: &Value) -> &Value {
    &doc["spec"]["template"]["spec"]["containers"]
}

#[test]
fn kubectl_apply_changing_an_image_and_dropping_the_ports() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"image": "nginx:1.27", "name": "web", "ports": null}],
    }}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    let web = &containers(&result)[0];
    assert_eq!(web["image"], json!("nginx:1.27"));
    assert!(web.get("ports").is_none());
    assert_eq!(
        web["imagePullPolicy"],
        json!("IfNotPresent"),
        "server defaults survive"
    );
    assert_eq!(
        containers(&result)[1]["name"],
        json!("sidecar"),
        "containers apply does not own survive"
    );
    assert_eq!(result["status"], stored_deployment()["status"]);
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(true);
    settings.bind(|| insta::assert_json_snapshot!(result));
}

#[test]
fn kubectl_apply_deleting_an_env_var() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
            "env": [{"$patch": "delete", "name": "B"}],
            "name": "web",
        }],
    }}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    assert_eq!(
        containers(&result)[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(
        containers(&result)[0]["ports"],
        stored_deployment()["spec"]["template"]["spec"]["containers"][0]["ports"]
    );
}

#[test]
fn kubectl_apply_reordering_env_and_removing_a_port() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{
            "$setElementOrder/env": [{"name": "C"}, {"name": "A"}, {"name": "B"}],
            "$setElementOrder/ports": [{"containerPort": 443}],
            "ports": [{"$patch": "delete", "containerPort": 80}],
            "name": "web",
        }],
    }}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    let web = &containers(&result)[0];
    let env_names: Vec<&Value> = web["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert_eq!(env_names, [&json!("C"), &json!("A"), &json!("B")]);
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 443, "protocol": "TCP"}])
    );
}

#[test]
fn kubectl_apply_adding_a_container_in_order() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "init-logs"}, {"name": "web"}],
        "containers": [{"image": "busybox", "name": "init-logs"}],
    }}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    let names: Vec<&Value> = containers(&result)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(
        names,
        [&json!("init-logs"), &json!("web"), &json!("sidecar")]
    );
}

#[test]
fn kubectl_apply_switching_the_rollout_strategy_clears_rolling_update() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn kubectl_apply_switching_a_volume_source() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "site"}, "emptyDir": null, "name": "data"}],
    }}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    assert_eq!(
        result["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "site"}}])
    );
}

#[test]
fn kubectl_edit_removing_a_toleration_replaces_the_list() {
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    assert_eq!(
        result["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
}

#[test]
fn kubectl_rollout_restart_and_label() {
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
    let result = apply(&stored_deployment(), restart, &deployment_schema());
    assert_eq!(
        result["spec"]["template"]["metadata"],
        json!({"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}})
    );
    let relabel = json!({"metadata": {"labels": {"app": null, "tier": "fe"}}});
    let result = apply(&stored_deployment(), relabel, &deployment_schema());
    assert_eq!(result["metadata"]["labels"], json!({"tier": "fe"}));
}

#[test]
fn finalizers_merge_as_a_set_and_leave_by_deletion_list() {
    let add = json!({"metadata": {"finalizers": ["example.com/other", "example.com/keep"]}});
    let result = apply(&stored_deployment(), add, &deployment_schema());
    assert_eq!(
        result["metadata"]["finalizers"],
        json!(["example.com/other", "example.com/keep"])
    );
    let remove = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/keep"],
                                     "$setElementOrder/finalizers": ["example.com/other"]}});
    let result = apply(&result, remove, &deployment_schema());
    assert_eq!(
        result["metadata"]["finalizers"],
        json!(["example.com/other"])
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "Available"}, {"type": "Progressing"}],
        "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}],
    }});
    let result = apply(&stored_deployment(), patch, &deployment_schema());
    assert_eq!(
        result["status"]["conditions"],
        json!([
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ])
    );
}

#[test]
fn a_node_heartbeat_and_a_service_port_change() {
    let node = json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}],
                   "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t0"}]}});
    let heartbeat = json!({"status": {"$setElementOrder/conditions": [{"type": "Ready"}],
        "conditions": [{"type": "Ready", "lastHeartbeatTime": "t1"}]}, "spec": {"taints": []}});
    let result = apply(&node, heartbeat, &schema("v1", "Node"));
    assert_eq!(
        result["status"]["conditions"],
        json!([{"type": "Ready", "status": "True", "lastHeartbeatTime": "t1"}])
    );
    assert_eq!(result["status"]["addresses"], node["status"]["addresses"]);
    assert_eq!(
        result["spec"]["taints"],
        json!([]),
        "taints have no strategy: an empty list clears them"
    );

    let service = json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}]}});
    let result = apply(&service, patch, &schema("v1", "Service"));
    assert_eq!(
        result["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": 9090}])
    );
}

#[test]
fn a_cronjob_template_merges_containers_by_name() {
    let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "job", "image": "busybox", "args": ["a", "b"]}, {"name": "log", "image": "x"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "job", "args": ["c"]}]}}}}}});
    let result = apply(&cronjob, patch, &schema("batch/v1", "CronJob"));
    assert_eq!(
        result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        json!([{"name": "job", "image": "busybox", "args": ["c"]}, {"name": "log", "image": "x"}])
    );
}

#[test]
fn an_endpoint_slice_replaces_its_lists() {
    let slice = json!({"endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.2.7"]}], "ports": [{"port": 80}]});
    let patch = json!({"endpoints": [{"addresses": ["10.244.1.5"]}]});
    let result = apply(
        &slice,
        patch,
        &schema("discovery.k8s.io/v1", "EndpointSlice"),
    );
    assert_eq!(result["endpoints"], json!([{"addresses": ["10.244.1.5"]}]));
    assert_eq!(result["ports"], slice["ports"]);
}
