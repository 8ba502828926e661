//! Objects as kubectl sends them, hand-encoded the way client-go's generated (gogo) marshallers
//! write them: every Go value field, zero or not, and pointer fields only when set. Each is
//! checked three ways: the exact JSON kube-apiserver would read, k8s-openapi accepting it with
//! no unknown field, and prost decoding the same bytes into k8s-pb's types (so the field
//! numbers written here are k8s-pb's, not only the schema table's).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use prost::Message;
use serde_json::json;

use super::{body, decoded, openapi_roundtrip, Msg};

/// ObjectMeta as gogo writes a Go ObjectMeta with only a name and labels set: the value
/// fields 1-7 (empty strings, generation 0) and the zero creationTimestamp (8, empty).
fn object_meta(name: &str, labels: &[(&str, &str)]) -> Msg {
    let mut meta = Msg::new()
        .string(1, name)
        .string(2, "")
        .string(3, "")
        .string(4, "")
        .string(5, "")
        .string(6, "")
        .int(7, 0)
        .msg(8, Msg::new());
    for (k, v) in labels {
        meta = meta.entry(11, k, v);
    }
    meta
}

/// A PodSpec's value fields at zero, as gogo writes them around the containers.
fn pod_spec(containers: &[Msg]) -> Msg {
    let mut spec = Msg::new();
    for c in containers {
        spec = spec.msg(2, c.clone());
    }
    spec.string(3, "") // restartPolicy
        .string(6, "") // dnsPolicy
        .string(8, "") // serviceAccountName
        .string(9, "") // serviceAccount
        .string(10, "") // nodeName
        .boolean(11, false) // hostNetwork
        .boolean(12, false) // hostPID
        .boolean(13, false) // hostIPC
        .string(16, "") // hostname
        .string(17, "") // subdomain
        .string(19, "") // schedulerName
        .string(24, "") // priorityClassName
}

/// A Container with a name and image, its other value fields at zero, `resources` empty.
fn container(name: &str, image: &str) -> Msg {
    Msg::new()
        .string(1, name)
        .string(2, image)
        .string(5, "") // workingDir
        .msg(8, Msg::new()) // resources: a value struct, always written
        .string(13, "") // terminationMessagePath
        .string(14, "") // imagePullPolicy
        .boolean(16, false)
        .boolean(17, false)
        .boolean(18, false)
        .string(20, "") // terminationMessagePolicy
}

/// `kubectl create deployment web --image=nginx --replicas=3`.
fn deployment() -> Msg {
    let labels = [("app", "web")];
    let template = Msg::new()
        .msg(1, object_meta("", &labels))
        .msg(2, pod_spec(&[container("nginx", "nginx")]));
    let spec = Msg::new()
        .int(1, 3)
        .msg(2, Msg::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, Msg::new().string(1, "")) // strategy: type ""
        .int(5, 0) // minReadySeconds
        .boolean(7, false); // paused
    let status = Msg::new()
        .int(1, 0)
        .int(2, 0)
        .int(3, 0)
        .int(4, 0)
        .int(5, 0)
        .int(7, 0);
    Msg::new()
        .msg(1, object_meta("web", &labels))
        .msg(2, spec)
        .msg(3, status)
}

#[test]
fn deployment_as_kubectl_create_sends_it() {
    let json = decoded(&body("apps/v1", "Deployment", &deployment()));
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
            },
            "strategy": {}
        },
        "status": {}
    });
    assert_eq!(json, expected);
    assert_eq!(openapi_roundtrip::<Deployment>(&json), expected);
}

#[test]
fn deployment_bytes_mean_the_same_to_k8s_pb() {
    let bytes = deployment();
    let typed = match k8s_pb::api::apps::v1::Deployment::decode(bytes.as_bytes()) {
        Ok(d) => d,
        Err(e) => panic!("k8s-pb rejects the test's Deployment: {e}"),
    };
    // Every byte was a field k8s-pb knows: re-encoding keeps the length.
    assert_eq!(typed.encoded_len(), bytes.as_bytes().len());
    let spec = typed.spec.unwrap_or_default();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.min_ready_seconds, Some(0));
    assert_eq!(
        spec.selector
            .unwrap_or_default()
            .match_labels
            .get("app")
            .map(String::as_str),
        Some("web")
    );
    let pod = spec.template.unwrap_or_default().spec.unwrap_or_default();
    assert_eq!(pod.node_name.as_deref(), Some(""));
    assert_eq!(pod.host_pid, Some(false));
    let c = &pod.containers[0];
    assert_eq!(
        (c.name.as_deref(), c.image.as_deref()),
        (Some("nginx"), Some("nginx"))
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some(""));
    assert_eq!(
        typed
            .metadata
            .unwrap_or_default()
            .labels
            .get("app")
            .map(String::as_str),
        Some("web")
    );
}

/// `kubectl create service clusterip web --tcp=80:8080`, plus a port targeting a named port.
fn service() -> Msg {
    let port = |name: &str, number: i64, target: Msg| {
        Msg::new()
            .string(1, name)
            .string(2, "TCP")
            .int(3, number)
            .msg(4, target)
            .int(5, 0) // nodePort
    };
    let int_target = Msg::new().int(1, 0).int(2, 8080).string(3, "");
    let named_target = Msg::new().int(1, 1).int(2, 0).string(3, "metrics");
    let spec = Msg::new()
        .msg(1, port("80-8080", 80, int_target))
        .msg(1, port("metrics", 9090, named_target))
        .entry(2, "app", "web")
        .string(3, "") // clusterIP
        .string(4, "ClusterIP")
        .string(7, "") // sessionAffinity
        .string(8, "") // loadBalancerIP
        .string(10, "") // externalName
        .string(11, "") // externalTrafficPolicy
        .int(12, 0) // healthCheckNodePort
        .boolean(13, false); // publishNotReadyAddresses
    let status = Msg::new().msg(1, Msg::new()); // loadBalancer: a value struct
    Msg::new()
        .msg(1, object_meta("web", &[("app", "web")]))
        .msg(2, spec)
        .msg(3, status)
}

#[test]
fn service_ports_keep_int_and_named_target_ports() {
    let json = decoded(&body("v1", "Service", &service()));
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "ports": [
                {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}
            ],
            "selector": {"app": "web"},
            "type": "ClusterIP"
        },
        "status": {"loadBalancer": {}}
    });
    assert_eq!(json, expected);
    assert_eq!(openapi_roundtrip::<Service>(&json), expected);

    let typed = k8s_pb::api::core::v1::Service::decode(service().as_bytes())
        .unwrap_or_else(|e| panic!("k8s-pb rejects the test's Service: {e}"));
    assert_eq!(typed.encoded_len(), service().as_bytes().len());
    let ports = typed.spec.unwrap_or_default().ports;
    let target = ports[1].target_port.clone().unwrap_or_default();
    assert_eq!(
        (target.r#type, target.str_val.as_deref()),
        (Some(1), Some("metrics"))
    );
    assert_eq!(
        ports[0].target_port.clone().unwrap_or_default().int_val,
        Some(8080)
    );
}

/// `kubectl create secret generic creds --from-literal=user=admin --from-file=key=<binary>`.
fn secret() -> Msg {
    Msg::new()
        .msg(1, object_meta("creds", &[]))
        .msg(2, Msg::new().string(1, "user").bytes(2, b"admin"))
        .msg(
            2,
            Msg::new()
                .string(1, "key")
                .bytes(2, &[0, 159, 146, 150, 255]),
        )
        .string(3, "Opaque")
}

#[test]
fn secret_data_is_base64() {
    let json = decoded(&body("v1", "Secret", &secret()));
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"user": "YWRtaW4=", "key": "AJ+Slv8="},
        "type": "Opaque"
    });
    assert_eq!(json, expected);
    assert_eq!(openapi_roundtrip::<Secret>(&json), expected);

    let typed = k8s_pb::api::core::v1::Secret::decode(secret().as_bytes())
        .unwrap_or_else(|e| panic!("k8s-pb rejects the test's Secret: {e}"));
    assert_eq!(
        typed.data.get("user").map(Vec::as_slice),
        Some(&b"admin"[..])
    );
}

/// A Pod as a client copying a running one would send it: a creation time and pod IPs.
fn pod() -> Msg {
    let time = Msg::new().int(1, 1_704_164_645).int(2, 0);
    let mut meta = Msg::new()
        .string(1, "web-0")
        .string(2, "")
        .string(3, "default")
        .string(4, "")
        .string(5, "3f1c2a9e-0000-4000-8000-000000000001")
        .string(6, "42")
        .int(7, 0)
        .msg(8, time.clone());
    meta = meta.entry(11, "app", "web");
    let status = Msg::new()
        .string(1, "Running")
        .string(3, "")
        .string(4, "")
        .string(5, "192.168.0.2") // hostIP
        .string(6, "10.244.1.7") // podIP
        .msg(7, time) // startTime
        .string(9, "BestEffort")
        .string(11, "")
        .msg(12, Msg::new().string(1, "10.244.1.7"))
        .msg(12, Msg::new().string(1, "fd00::7"));
    Msg::new()
        .msg(1, meta)
        .msg(2, pod_spec(&[container("web", "nginx")]))
        .msg(3, status)
}

#[test]
fn pod_times_and_ips() {
    let json = decoded(&body("v1", "Pod", &pod()));
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "uid": "3f1c2a9e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "labels": {"app": "web"}
        },
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]},
        "status": {
            "phase": "Running",
            "hostIP": "192.168.0.2",
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
            "startTime": "2024-01-02T03:04:05Z",
            "qosClass": "BestEffort"
        }
    });
    assert_eq!(json, expected);
    assert_eq!(openapi_roundtrip::<Pod>(&json), expected);

    let typed = k8s_pb::api::core::v1::Pod::decode(pod().as_bytes())
        .unwrap_or_else(|e| panic!("k8s-pb rejects the test's Pod: {e}"));
    assert_eq!(typed.encoded_len(), pod().as_bytes().len());
    let status = typed.status.unwrap_or_default();
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.7"));
    assert_eq!(status.pod_ips.len(), 2);
    let created = typed
        .metadata
        .unwrap_or_default()
        .creation_timestamp
        .unwrap_or_default();
    assert_eq!(created.seconds, Some(1_704_164_645));
}

#[test]
fn namespace_as_kubectl_create_sends_it() {
    // Spec and status are value structs: written (empty) even when nothing is set.
    let ns = Msg::new()
        .msg(1, object_meta("team-a", &[]))
        .msg(2, Msg::new())
        .msg(3, Msg::new().string(1, ""));
    let json = decoded(&body("v1", "Namespace", &ns));
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a"},
        "spec": {},
        "status": {}
    });
    assert_eq!(json, expected);
    assert_eq!(openapi_roundtrip::<Namespace>(&json), expected);
    let typed = k8s_pb::api::core::v1::Namespace::decode(ns.as_bytes())
        .unwrap_or_else(|e| panic!("k8s-pb rejects the test's Namespace: {e}"));
    assert_eq!(typed.encoded_len(), ns.as_bytes().len());
}

#[test]
fn pointer_zeros_are_kept() {
    // replicas (a *int32) at 0 means "scale to zero", not "unset": it must survive, while
    // minReadySeconds (an int32) at 0 is dropped.
    let spec = Msg::new().int(1, 0).int(5, 0);
    let d = Msg::new().msg(1, object_meta("web", &[])).msg(2, spec);
    let json = decoded(&body("apps/v1", "Deployment", &d));
    assert_eq!(json["spec"], json!({"replicas": 0}));
    // automountServiceAccountToken (a *bool) false is kept; hostNetwork (bool) false is not.
    let pod = Msg::new().msg(2, Msg::new().boolean(21, false).boolean(11, false));
    let json = decoded(&body("v1", "Pod", &pod));
    assert_eq!(json["spec"], json!({"automountServiceAccountToken": false}));
}

#[test]
fn delete_options_under_any_group_version() {
    // client-go encodes DeleteOptions under the group version of the resource it deletes.
    let opts = Msg::new()
        .int(1, 0)
        .msg(2, Msg::new().string(1, "3f1c2a9e").string(2, "42"))
        .string(4, "Foreground")
        .string(5, "All");
    for api_version in ["apps/v1", "v1", "meta.k8s.io/v1", "batch/v1"] {
        let json = decoded(&body(api_version, "DeleteOptions", &opts));
        assert_eq!(
            json,
            json!({
                "apiVersion": api_version,
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "3f1c2a9e", "resourceVersion": "42"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            })
        );
    }
}

#[test]
fn scale_and_eviction() {
    let scale = Msg::new()
        .msg(1, object_meta("web", &[]))
        .msg(2, Msg::new().int(1, 0))
        .msg(3, Msg::new().int(1, 3).string(2, "app=web"));
    let json = decoded(&body("autoscaling/v1", "Scale", &scale));
    // ScaleSpec.replicas is an int32 value field: 0 is left out, as kube's JSON does.
    assert_eq!(json["spec"], json!({}));
    assert_eq!(
        json["status"],
        json!({"replicas": 3, "selector": "app=web"})
    );

    let eviction = Msg::new()
        .msg(1, object_meta("web-0", &[]))
        .msg(2, Msg::new().int(1, 30));
    let json = decoded(&body("policy/v1", "Eviction", &eviction));
    assert_eq!(json["deleteOptions"], json!({"gracePeriodSeconds": 30}));
}

#[test]
fn special_forms() {
    // A Job's activeDeadlineSeconds, a Probe's inline handler, a Quantity map, a Duration
    // (HPA behaviour is seconds; Duration appears in e.g. meta's watch timeouts).
    let probe = Msg::new()
        .msg(
            1,
            Msg::new().msg(
                2,
                Msg::new()
                    .string(1, "/healthz")
                    .msg(2, Msg::new().int(1, 1).string(3, "http")),
            ),
        )
        .int(2, 5);
    let resources = Msg::new()
        .entry_msg(1, "memory", Msg::new().string(1, "128Mi"))
        .entry_msg(2, "cpu", Msg::new().string(1, "100m"));
    let c = Msg::new().string(1, "app").msg(8, resources).msg(10, probe);
    let pod = Msg::new().msg(2, Msg::new().msg(2, c));
    let json = decoded(&body("v1", "Pod", &pod));
    let expected = json!({
        "name": "app",
        "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5}
    });
    assert_eq!(json["spec"]["containers"][0], expected);
    assert_eq!(
        openapi_roundtrip::<Pod>(&json)["spec"]["containers"][0],
        expected
    );
}

#[test]
fn raw_extensions_hold_json_or_nested_protobuf() {
    let inner = body(
        "v1",
        "ConfigMap",
        &Msg::new().msg(1, object_meta("cm", &[])).entry(2, "k", "v"),
    );
    let list = Msg::new()
        .msg(1, Msg::new())
        .msg(
            2,
            Msg::new().bytes(
                1,
                br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#,
            ),
        )
        .msg(2, Msg::new().bytes(1, &inner));
    let json = decoded(&body("v1", "List", &list));
    assert_eq!(
        json["items"],
        json!([
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}
        ])
    );
}

#[test]
fn duplicate_messages_merge_and_scalars_take_the_last_value() {
    let d = Msg::new()
        .msg(1, Msg::new().string(1, "first").entry(11, "a", "1"))
        .msg(1, Msg::new().string(1, "second").entry(11, "b", "2"));
    let json = decoded(&body("apps/v1", "Deployment", &d));
    assert_eq!(
        json["metadata"],
        json!({"name": "second", "labels": {"a": "1", "b": "2"}})
    );
}

#[test]
fn packed_and_unpacked_repeated_numbers() {
    // PodSecurityContext.supplementalGroups (field 4, repeated int64), both encodings.
    let packed = Msg::new().bytes(4, &[1, 2, 0x80, 0x01]);
    let unpacked = Msg::new().int(4, 5);
    let pod = Msg::new().msg(2, Msg::new().msg(14, packed.raw(unpacked.as_bytes())));
    let json = decoded(&body("v1", "Pod", &pod));
    assert_eq!(
        json["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 128, 5])
    );
}
