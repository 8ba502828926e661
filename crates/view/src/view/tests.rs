use serde_json::json;

use super::*;

fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn node(name: &str, rv: &str, ready: bool) -> Node {
    obj(json!({"metadata": {"name": name, "resourceVersion": rv},
        "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
}

fn slice(name: &str, svc: &str, rv: &str) -> EndpointSlice {
    obj(
        json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": []}),
    )
}

fn pod(ns: &str, name: &str, node: &str, labels: serde_json::Value) -> Pod {
    obj(
        json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": "1", "labels": labels},
        "spec": {"nodeName": node, "containers": []}}),
    )
}

fn svc(name: &str) -> NsName {
    NsName::new("default", name)
}

#[test]
fn slices_are_indexed_by_their_service_and_changes_name_it() {
    let mut v = ClusterView::new();
    assert_eq!(
        v.apply(Event::Apply(slice("web-1", "web", "1"))),
        [Change::Service(svc("web"))]
    );
    v.apply(Event::Apply(slice("web-2", "web", "2")));
    let names: Vec<_> = v
        .slices_of(&svc("web"))
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
    // The same version again (a restarted watch) changes nothing.
    assert!(v.apply(Event::Apply(slice("web-1", "web", "1"))).is_empty());
    // A slice moving to another Service touches both.
    assert_eq!(
        v.apply(Event::Apply(slice("web-2", "api", "3"))),
        [Change::Service(svc("web")), Change::Service(svc("api"))]
    );
    assert_eq!(v.slices_of(&svc("web")).count(), 1);
    assert_eq!(v.slices_of(&svc("api")).count(), 1);
    assert_eq!(
        v.apply(Event::Delete(slice("web-1", "web", "4"))),
        [Change::Service(svc("web"))]
    );
    assert_eq!(v.slices_of(&svc("web")).count(), 0);
    assert!(
        !v.slices_by_service.contains_key(&svc("web")),
        "no empty index entries"
    );
}

#[test]
fn a_relist_removes_what_it_no_longer_lists() {
    let mut v = ClusterView::new();
    assert!(!v.listed(&["Node"]));
    v.apply(Event::Relisted(vec![
        node("n1", "1", true),
        node("n2", "1", false),
    ]));
    assert!(v.listed(&["Node"]));
    let ready: Vec<_> = v
        .ready_nodes()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(ready, ["n1"]);
    // n1 unchanged, n2 gone, n3 new.
    let changes = v.apply(Event::Relisted(vec![
        node("n1", "1", true),
        node("n3", "5", true),
    ]));
    assert_eq!(
        changes,
        [Change::Node("n2".into()), Change::Node("n3".into())]
    );
    let names: Vec<_> = v
        .nodes()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n3"]);
    assert_eq!(v.ready_nodes().count(), 2);
    // A node going not-ready leaves the ready index.
    v.apply(Event::Apply(node("n3", "6", false)));
    assert_eq!(v.ready_nodes().count(), 1);
}

#[test]
fn pods_by_node_namespace_and_labels() {
    let mut v = ClusterView::new();
    v.apply(Event::Apply(pod("a", "p1", "n1", json!({"app": "web"}))));
    v.apply(Event::Apply(pod("a", "p2", "n2", json!({"app": "db"}))));
    v.apply(Event::Apply(pod("b", "p3", "n1", json!({"app": "web"}))));
    v.apply(Event::Apply(pod("ab", "p4", "n1", json!({}))));
    let names = |pods: Vec<&Pod>| -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    };
    // By namespace, then name: a/p1, ab/p4, b/p3.
    assert_eq!(names(v.pods_on("n1").collect()), ["p1", "p4", "p3"]);
    assert_eq!(names(v.pods_in("a").collect()), ["p1", "p2"]);
    let web: LabelSelector = obj(json!({"matchLabels": {"app": "web"}}));
    assert_eq!(names(v.select_pods(None, &web)), ["p1", "p3"]);
    assert_eq!(names(v.select_pods(Some("b"), &web)), ["p3"]);
    // The empty selector selects every pod of the namespace, labelled or not.
    assert_eq!(
        names(v.select_pods(Some("ab"), &LabelSelector::default())),
        ["p4"]
    );
    // Rescheduled and relabelled: every index follows.
    let mut moved = pod("a", "p1", "n2", json!({"app": "db"}));
    moved.metadata.resource_version = Some("2".into());
    assert_eq!(
        v.apply(Event::Apply(moved)),
        [Change::Pod(NsName::new("a", "p1"))]
    );
    assert_eq!(names(v.pods_on("n1").collect()), ["p4", "p3"]);
    assert_eq!(names(v.select_pods(None, &web)), ["p3"]);
    v.apply(Event::Delete(pod("b", "p3", "n1", json!({}))));
    assert!(v.select_pods(None, &web).is_empty());
    assert_eq!(names(v.pods_on("n1").collect()), ["p4"]);
}

#[test]
fn namespaces_by_labels() {
    let mut v = ClusterView::new();
    let ns = |name: &str, labels: serde_json::Value| -> Namespace {
        obj(json!({"metadata": {"name": name, "resourceVersion": "1", "labels": labels}}))
    };
    v.apply(Event::Relisted(vec![
        ns("prod", json!({"env": "prod"})),
        ns("dev", json!({"env": "dev"})),
    ]));
    let prod: LabelSelector = obj(json!({"matchLabels": {"env": "prod"}}));
    assert_eq!(v.select_namespaces(&prod), ["prod"]);
    assert_eq!(
        v.select_namespaces(&LabelSelector::default()),
        ["dev", "prod"]
    );
    assert!(v.namespace("dev").is_some());
}

#[test]
fn mailboxes_get_what_they_subscribed_to() {
    let shared = Shared::new();
    let proxy = shared.subscribe(Interest {
        nodes: true,
        services: true,
        ..Default::default()
    });
    let policy = shared.subscribe(Interest {
        pods: true,
        ..Default::default()
    });
    shared.apply(Event::Apply(slice("web-1", "web", "1")));
    shared.apply(Event::Apply(pod("a", "p1", "n1", json!({}))));
    let woke = proxy.wait(std::time::Duration::ZERO);
    assert_eq!(woke.changes, [Change::Service(svc("web"))]);
    let woke = policy.wait(std::time::Duration::ZERO);
    assert_eq!(woke.changes, [Change::Pod(NsName::new("a", "p1"))]);
    assert_eq!(shared.read().slices().count(), 1);
}
