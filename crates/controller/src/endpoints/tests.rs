use serde_json::json;

use super::*;

fn service(value: serde_json::Value) -> Service {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    });
    merge(&mut v, value);
    serde_json::from_value(v).unwrap()
}

fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A running, ready pod `name` with labels app=web, IP 10.244.0.N, on node-a.
fn pod(name: &str, n: u8, patch: serde_json::Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "agnhost"}]},
        "status": {"phase": "Running", "podIP": format!("10.244.0.{n}"),
                   "conditions": [{"type": "Ready", "status": "True"}]},
    });
    merge(&mut v, patch);
    serde_json::from_value(v).unwrap()
}

fn not_ready() -> serde_json::Value {
    json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
}

fn addresses(slice: &EndpointSlice) -> Vec<&str> {
    slice
        .endpoints
        .iter()
        .map(|e| e.addresses[0].as_str())
        .collect()
}

fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    let c = e.conditions.clone().unwrap_or_default();
    (c.ready, c.serving, c.terminating)
}

#[test]
fn selects_by_labels_within_the_namespace() {
    let pods = [
        pod("a", 1, json!({})),
        pod("b", 2, json!({"metadata": {"labels": {"app": "other"}}})),
        pod("c", 3, json!({"metadata": {"namespace": "elsewhere"}})),
        pod("d", 4, json!({"status": {"podIP": null}})),
        pod("e", 5, json!({"status": {"phase": "Succeeded"}})),
        pod("f", 6, json!({"status": {"phase": "Failed"}})),
    ];
    let plan = plan_service(&service(json!({})), &pods, &[]);
    assert_eq!(plan.put.len(), 1);
    assert_eq!(addresses(&plan.put[0]), ["10.244.0.1"]);
    assert_eq!(plan.problem, None);
    let e = &plan.put[0].endpoints[0];
    assert_eq!(e.node_name.as_deref(), Some("node-a"));
    let r = e.target_ref.clone().unwrap();
    assert_eq!(
        (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("Pod"), Some("a"), Some("uid-a"))
    );
}

#[test]
fn a_slice_set_as_yaml() {
    let svc = service(json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
    ]}}));
    let with_port = |n: i32| {
        json!({"spec": {"containers": [{"name": "c", "image": "agnhost",
            "ports": [{"name": "web", "containerPort": n}]}]}})
    };
    let mut terminating = with_port(8080);
    merge(
        &mut terminating,
        json!({"metadata": {"deletionTimestamp": "2026-11-23T10:00:00Z"}}),
    );
    let mut unready = with_port(9090);
    merge(&mut unready, not_ready());
    let pods = [
        pod("web-1", 1, with_port(8080)),
        pod("web-2", 2, terminating),
        pod("web-3", 3, unready),
    ];
    let plan = plan_service(&svc, &pods, &[]);
    insta::assert_yaml_snapshot!(plan.put);
}

#[test]
fn pods_resolving_a_named_port_differently_go_to_different_slices() {
    let svc =
        service(json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}));
    let with_port = |n: i32, proto: &str| {
        json!({"spec": {"containers": [{"name": "c", "image": "agnhost",
            "ports": [{"name": "web", "containerPort": n, "protocol": proto}]}]}})
    };
    let pods = [
        pod("a", 1, with_port(8080, "TCP")),
        pod("b", 2, with_port(9090, "TCP")),
        pod("c", 3, with_port(8080, "TCP")),
        // Same name, other protocol: does not resolve for a TCP service port.
        pod("d", 4, with_port(8080, "UDP")),
    ];
    let plan = plan_service(&svc, &pods, &[]);
    let by_port: BTreeMap<i32, Vec<&str>> = plan
        .put
        .iter()
        .map(|s| (s.ports.as_ref().unwrap()[0].port.unwrap(), addresses(s)))
        .collect();
    assert_eq!(
        by_port,
        BTreeMap::from([
            (8080, vec!["10.244.0.1", "10.244.0.3"]),
            (9090, vec!["10.244.0.2"])
        ])
    );
    assert_ne!(plan.put[0].metadata.name, plan.put[1].metadata.name);
    assert_eq!(
        plan.problem.as_deref(),
        Some("targetPort \"web\" of port http names no TCP container port of pod d")
    );

    let nowhere = plan_service(&svc, &[pod("a", 1, json!({}))], &[]);
    assert_eq!(
        nowhere.problem.as_deref(),
        Some("targetPort \"web\" of port http names no TCP container port of any selected pod")
    );
    // The placeholder: one empty slice.
    assert_eq!(nowhere.put.len(), 1);
    assert!(nowhere.put[0].endpoints.is_empty());
}

#[test]
fn conditions_follow_readiness_and_termination() {
    let terminating = json!({"metadata": {"deletionTimestamp": "2026-11-23T10:00:00Z"}});
    let mut terminating_unready = terminating.clone();
    merge(&mut terminating_unready, not_ready());
    let pods = [
        pod("a", 1, json!({})),
        pod("b", 2, not_ready()),
        pod("c", 3, terminating),
        pod("d", 4, terminating_unready),
    ];
    let got = |svc: &Service| -> Vec<_> {
        plan_service(svc, &pods, &[]).put[0]
            .endpoints
            .iter()
            .map(conditions)
            .collect()
    };
    let t = Some(true);
    let f = Some(false);
    assert_eq!(
        got(&service(json!({}))),
        [(t, t, f), (f, f, f), (f, t, t), (f, f, t)]
    );
    assert_eq!(
        got(&service(
            json!({"spec": {"publishNotReadyAddresses": true}})
        )),
        [(t, t, f), (t, f, f), (t, t, t), (t, f, t)]
    );
}

#[test]
fn more_than_a_hundred_endpoints_split() {
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            let mut p = pod(&format!("p{i:03}"), 0, json!({}));
            p.status.as_mut().unwrap().pod_ip = Some(format!("10.244.{}.{}", i / 200, i % 200));
            p
        })
        .collect();
    let plan = plan_service(&service(json!({})), &pods, &[]);
    let sizes: Vec<usize> = plan.put.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let names: BTreeSet<_> = plan.put.iter().map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3);
}

#[test]
fn nothing_to_write_when_unchanged() {
    let svc = service(json!({}));
    let pods = [pod("a", 1, json!({})), pod("b", 2, json!({}))];
    let first = plan_service(&svc, &pods, &[]);
    // As the store returns them: with server-set fields.
    let stored: Vec<EndpointSlice> = first
        .put
        .iter()
        .cloned()
        .map(|mut s| {
            s.metadata.uid = Some("slice-uid".into());
            s.metadata.resource_version = Some("7".into());
            s
        })
        .collect();
    assert_eq!(plan_service(&svc, &pods, &stored), ServicePlan::default());

    // One pod becomes unready: the same slice is rewritten, nothing deleted.
    let changed = [pod("a", 1, json!({})), pod("b", 2, not_ready())];
    let plan = plan_service(&svc, &changed, &stored);
    assert_eq!(plan.put.len(), 1);
    assert_eq!(plan.put[0].metadata.name, stored[0].metadata.name);
    assert!(plan.delete.is_empty());

    // The target port changes: a new slice, the old one goes.
    let moved =
        service(json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9090}]}}));
    let plan = plan_service(&moved, &pods, &stored);
    assert_eq!(plan.put.len(), 1);
    assert_ne!(plan.put[0].metadata.name, stored[0].metadata.name);
    assert_eq!(
        plan.delete,
        [ObjectKey::new(
            "EndpointSlice",
            Some("default"),
            stored[0].metadata.name.clone().unwrap()
        )]
    );
}

#[test]
fn selectorless_services_keep_their_slices() {
    let svc = service(json!({"spec": {"selector": null}}));
    let user: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-manual", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.1"]}],
    }))
    .unwrap();
    let pods = [pod("a", 1, json!({}))];
    assert_eq!(
        plan_service(&svc, &pods, std::slice::from_ref(&user)),
        ServicePlan::default()
    );
    // Nor are they touched when a selector exists, or the Service is gone.
    let with_selector = plan_service(&service(json!({})), &pods, std::slice::from_ref(&user));
    assert!(with_selector.delete.is_empty());
    assert!(orphans(std::slice::from_ref(&user)).is_empty());
}

#[test]
fn external_name_services_get_no_slices() {
    let svc = service(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let managed = plan_service(&service(json!({})), &[pod("a", 1, json!({}))], &[]).put;
    let plan = plan_service(&svc, &[pod("a", 1, json!({}))], &managed);
    assert!(plan.put.is_empty());
    assert_eq!(plan.delete.len(), 1);
}

#[test]
fn no_matching_pods_is_a_visible_problem() {
    let svc = service(json!({"spec": {"selector": {"app": "x", "tier": "db"}}}));
    let plan = plan_service(&svc, &[pod("a", 1, json!({}))], &[]);
    assert_eq!(
        plan.problem.as_deref(),
        Some("no pods match selector app=x,tier=db")
    );
    assert_eq!(plan.put.len(), 1);
    assert!(plan.put[0].endpoints.is_empty());
}

#[test]
fn slices_of_deleted_services_are_orphans() {
    let svc = service(json!({}));
    let pods = [pod("a", 1, json!({}))];
    let slices = plan_service(&svc, &pods, &[]).put;
    let gone = orphans(&slices);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        Some(gone[0].name.as_str()),
        slices[0].metadata.name.as_deref()
    );
}
