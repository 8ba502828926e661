use super::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn object(value: serde_json::Value) -> Object {
    Object::from_json(value).unwrap()
}

fn namespace(name: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
}

fn config_map(ns: &str, name: &str, data: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": {"v": data}}))
}

fn pod(ns: &str, name: &str, image: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": image}]}}))
}

fn key(kind: &str, ns: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey::new(kind, ns, name)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn apply_get_list_delete() {
    let (_dir, store) = store();
    assert_eq!(store.revision().unwrap(), 0);
    let results = store
        .apply(vec![
            namespace("demo"),
            pod("demo", "b", "nginx"),
            pod("demo", "a", "nginx"),
            pod("default", "z", "nginx"),
        ])
        .unwrap();
    let shown: Vec<String> = results.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "namespace/demo created",
            "pod/b created",
            "pod/a created",
            "pod/z created"
        ]
    );
    assert_eq!(store.revision().unwrap(), 4);

    let a = store.get(&key("Pod", Some("demo"), "a")).unwrap().unwrap();
    let meta = a.metadata();
    assert_eq!(meta.uid.as_ref().unwrap().len(), 36);
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.resource_version.as_deref(), Some("3"));
    assert_eq!(store.get(&key("Pod", Some("demo"), "nope")).unwrap(), None);

    let names: Vec<String> = store
        .list("Pod")
        .unwrap()
        .iter()
        .map(|o| o.key().to_string())
        .collect();
    assert_eq!(names, ["Pod default/z", "Pod demo/a", "Pod demo/b"]);
    assert_eq!(store.list("Service").unwrap(), vec![]);
    assert_eq!(store.list_all().unwrap().len(), 4);

    let results = store
        .delete(&[
            key("Pod", Some("demo"), "a"),
            key("Pod", Some("demo"), "gone"),
        ])
        .unwrap();
    assert_eq!(
        results,
        [
            DeleteResult::Deleted(key("Pod", Some("demo"), "a")),
            DeleteResult::NotFound(key("Pod", Some("demo"), "gone"))
        ]
    );
    assert_eq!(results[0].to_string(), "pod/a deleted");
    assert_eq!(store.get(&key("Pod", Some("demo"), "a")).unwrap(), None);
    assert_eq!(store.revision().unwrap(), 5);
}

#[test]
fn reapply_is_unchanged_and_changes_bump_generation() {
    let (_dir, store) = store();
    store.apply(vec![pod("default", "p", "nginx")]).unwrap();
    let first = store
        .get(&key("Pod", Some("default"), "p"))
        .unwrap()
        .unwrap();

    let again = store.apply(vec![pod("default", "p", "nginx")]).unwrap();
    assert_eq!(
        again,
        [ApplyResult::Unchanged(key("Pod", Some("default"), "p"))]
    );
    assert_eq!(again[0].to_string(), "pod/p unchanged");
    assert_eq!(store.revision().unwrap(), 1);

    let changed = store.apply(vec![pod("default", "p", "nginx:2")]).unwrap();
    assert_eq!(changed[0].to_string(), "pod/p configured");
    let second = store
        .get(&key("Pod", Some("default"), "p"))
        .unwrap()
        .unwrap();
    assert_eq!(second.metadata().uid, first.metadata().uid);
    assert_eq!(
        second.metadata().creation_timestamp,
        first.metadata().creation_timestamp
    );
    assert_eq!(second.metadata().generation, Some(2));
    assert_eq!(second.metadata().resource_version.as_deref(), Some("2"));

    // A label change is a change, but not of the spec: generation stays.
    let mut relabeled = pod("default", "p", "nginx:2");
    relabeled
        .metadata_mut()
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "x".into());
    store.apply(vec![relabeled]).unwrap();
    let third = store
        .get(&key("Pod", Some("default"), "p"))
        .unwrap()
        .unwrap();
    assert_eq!(third.metadata().generation, Some(2));
    assert_eq!(store.revision().unwrap(), 3);
}

#[test]
fn apply_keeps_status_and_put_replaces_it() {
    let (_dir, store) = store();
    store.apply(vec![pod("default", "p", "nginx")]).unwrap();
    let k = key("Pod", Some("default"), "p");
    let updated = store
        .update(&k, |o| {
            let pod = o.as_pod_mut().unwrap();
            pod.status = Some(
                serde_json::from_value(json!({"phase": "Running", "podIP": "10.244.0.5"})).unwrap(),
            );
        })
        .unwrap()
        .unwrap();
    assert_eq!(weft_model::pod::phase(updated.as_pod().unwrap()), "Running");
    assert_eq!(store.revision().unwrap(), 2);

    // Re-applying the manifest (no status) keeps the status and changes nothing.
    let results = store.apply(vec![pod("default", "p", "nginx")]).unwrap();
    assert_eq!(results, [ApplyResult::Unchanged(k.clone())]);
    let stored = store.get(&k).unwrap().unwrap();
    assert_eq!(weft_model::pod::phase(stored.as_pod().unwrap()), "Running");

    // An update that changes nothing makes no event.
    store.update(&k, |_| {}).unwrap();
    assert_eq!(store.revision().unwrap(), 2);
    assert_eq!(
        store
            .update(&key("Pod", Some("default"), "x"), |_| {})
            .unwrap(),
        None
    );

    // put replaces the whole object, status included.
    let put = store.put(pod("default", "p", "nginx")).unwrap();
    assert_eq!(weft_model::pod::phase(put.as_pod().unwrap()), "Pending");
    assert_eq!(put.metadata().resource_version.as_deref(), Some("3"));
    assert_eq!(store.get(&k).unwrap().unwrap(), put);
    let created = store.put(pod("default", "q", "nginx")).unwrap();
    assert_eq!(created.metadata().generation, Some(1));
    assert_eq!(store.get(&created.key()).unwrap().unwrap(), created);

    let err = store
        .update(&k, |o| o.metadata_mut().name = Some("other".into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "update of Pod default/p changed its identity to Pod default/other"
    );
}

#[test]
fn a_bad_batch_writes_nothing() {
    let (dir, store) = store();
    let err = store
        .apply(vec![
            namespace("a"),
            pod("a", "p", "x"),
            pod("missing", "p", "x"),
        ])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pod missing/p: namespace \"missing\" does not exist (create it first or apply it in the same batch)"
    );
    let err = store
        .apply(vec![pod("default", "p", "x"), pod("default", "p", "y")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pod default/p appears more than once in one apply"
    );
    assert_eq!(store.revision().unwrap(), 0);
    assert!(store.list_all().unwrap().is_empty());
    assert!(store.changes(0, usize::MAX).unwrap().is_empty());
    assert!(Store::open(dir.path())
        .unwrap()
        .watch(0)
        .unwrap()
        .poll()
        .unwrap()
        .is_empty());
    let err = store.put(pod("nowhere", "p", "x")).unwrap_err();
    assert!(matches!(err, StoreError::NamespaceMissing { .. }), "{err}");
    // kube-system always exists.
    store.apply(vec![pod("kube-system", "dns", "x")]).unwrap();
}

#[test]
fn unhandled_kinds_are_stored_and_reported_ignored() {
    let (_dir, store) = store();
    let widget = object(
        json!({"apiVersion": "widget.example.com/v1", "kind": "Widget",
        "metadata": {"name": "x"}, "spec": {"size": 1}}),
    );
    let results = store.apply(vec![widget.clone()]).unwrap();
    assert_eq!(
        results[0].to_string(),
        "widget/x stored (ignored: kind Widget is not handled by weft)"
    );
    let stored = store
        .get(&key("Widget", Some("default"), "x"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.to_json()["spec"], json!({"size": 1}));
    assert_eq!(
        store.apply(vec![widget]).unwrap(),
        [ApplyResult::Unchanged(key("Widget", Some("default"), "x"))]
    );
}

#[test]
fn deleting_a_namespace_deletes_its_objects() {
    let (_dir, store) = store();
    store
        .apply(vec![
            namespace("demo"),
            pod("demo", "a", "x"),
            config_map("demo", "c", "1"),
            pod("default", "keep", "x"),
        ])
        .unwrap();
    let mut watch = store.watch(store.revision().unwrap()).unwrap();
    let results = store.delete(&[key("Namespace", None, "demo")]).unwrap();
    assert_eq!(
        results,
        [DeleteResult::Deleted(key("Namespace", None, "demo"))]
    );
    let names: Vec<String> = store
        .list_all()
        .unwrap()
        .iter()
        .map(|o| o.key().to_string())
        .collect();
    assert_eq!(names, ["Pod default/keep"]);
    let events = watch.poll().unwrap();
    let deleted: BTreeSet<String> = events.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kind == EventKind::Deleted));
    assert!(deleted.contains("ConfigMap demo/c") && deleted.contains("Pod demo/a"));
    assert_eq!(events.last().unwrap().key, key("Namespace", None, "demo"));
}

#[test]
fn persists_across_reopen_and_watch_resumes() {
    let (dir, store) = store();
    store
        .apply(vec![namespace("demo"), pod("demo", "a", "x")])
        .unwrap();
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.revision().unwrap(), 2);
    assert!(reopened
        .get(&key("Pod", Some("demo"), "a"))
        .unwrap()
        .is_some());
    let mut watch = reopened.watch(0).unwrap();
    let all = watch.poll().unwrap();
    assert_eq!(
        all.iter().map(|e| (e.revision, e.kind)).collect::<Vec<_>>(),
        [(1, EventKind::Added), (2, EventKind::Added)]
    );
    let mut resumed = reopened.watch(1).unwrap();
    assert_eq!(resumed.poll().unwrap().len(), 1);
    assert!(resumed.poll().unwrap().is_empty());
}

#[test]
fn watch_across_two_handles() {
    let (dir, writer) = store();
    let reader = Store::open(dir.path()).unwrap();
    let mut watch = reader.watch(reader.revision().unwrap()).unwrap();
    assert!(watch.wait(Duration::from_millis(60)).unwrap().is_empty());
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        writer.apply(vec![pod("default", "p", "x")]).unwrap();
        writer.apply(vec![pod("default", "p", "y")]).unwrap();
        writer.delete(&[key("Pod", Some("default"), "p")]).unwrap();
    });
    let mut events = watch.wait(Duration::from_secs(10)).unwrap();
    handle.join().unwrap();
    while events.len() < 3 {
        let more = watch.wait(Duration::from_secs(5)).unwrap();
        assert!(!more.is_empty(), "events stopped at {events:?}");
        events.extend(more);
    }
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Added, EventKind::Modified, EventKind::Deleted]
    );
    assert_eq!(
        events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(watch.revision(), 3);
}

#[test]
fn threads_never_lose_updates_or_share_revisions() {
    let (_dir, store) = store();
    store
        .apply(vec![config_map("default", "counter", "0")])
        .unwrap();
    let store = Arc::new(store);
    let k = key("ConfigMap", Some("default"), "counter");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            // Its own handle exercises the file lock between handles; the shared one, the same
            // lock taken by several threads through one handle.
            let own = Store::open(store.dir()).unwrap();
            let shared = Arc::clone(&store);
            let k = k.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    own.update(&k, |o| {
                        let cm = o.as_config_map_mut().unwrap();
                        let data = cm.data.get_or_insert_with(Default::default);
                        let n: u64 = data["v"].parse().unwrap();
                        data.insert("v".into(), (n + 1).to_string());
                    })
                    .unwrap();
                    shared
                        .apply(vec![config_map("default", &format!("t{t}-{i}"), "x")])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let counter = store.get(&k).unwrap().unwrap();
    assert_eq!(
        counter.as_config_map().unwrap().data.as_ref().unwrap()["v"],
        "100"
    );
    assert_eq!(store.revision().unwrap(), 1 + 100 + 100);
    let events = store.watch(0).unwrap().poll().unwrap();
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (1..=201).collect::<Vec<u64>>());
    assert_eq!(store.list("ConfigMap").unwrap().len(), 101);
}

#[test]
fn refuses_keys_that_would_escape_the_layout() {
    let (_dir, store) = store();
    let bad = object(json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "../../etc"}}));
    let err = store.apply(vec![bad]).unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    assert!(store.get(&key("Pod", Some("../x"), "a")).is_err());
}
