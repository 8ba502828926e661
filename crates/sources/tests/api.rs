//! The calls the API server makes (create, replace, delete_object, changes, snapshot), and what
//! guards every write: preconditions, dry runs, quotas, compaction.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::json;
use support::rv;
use weft_model::{Object, ObjectKey};
use weft_sources::{Admission, EventKind, StatusMode, Store, StoreError};

fn object(value: serde_json::Value) -> Object {
    Object::from_json(value).unwrap()
}

fn namespace(name: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
}

fn config_map(ns: &str, name: &str, value: &str) -> Object {
    object(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns}, "data": {"v": value}}))
}

fn pod(name: &str, image: &str, phase: Option<&str>) -> Object {
    let mut value = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": image}]}});
    if let Some(phase) = phase {
        value["status"] = json!({ "phase": phase });
    }
    object(value)
}

fn cm_key(name: &str) -> ObjectKey {
    ObjectKey::namespaced("ConfigMap", "default", name)
}

fn value_of(object: &Object) -> String {
    object.as_config_map().unwrap().data.as_ref().unwrap()["v"].clone()
}

fn image_of(object: &Object) -> String {
    let spec = object.as_pod().unwrap().spec.as_ref().unwrap();
    spec.containers[0].image.clone().unwrap()
}

fn phase_of(object: &Object) -> Option<String> {
    object.as_pod().unwrap().status.as_ref()?.phase.clone()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn create_replace_and_conflicts() {
    let (_dir, store) = store();
    let created = store.create(config_map("default", "a", "1")).unwrap();
    assert_eq!(rv(&created), 1);
    assert_eq!(store.get(&cm_key("a")).unwrap().unwrap(), created);
    let err = store.create(config_map("default", "a", "2")).unwrap_err();
    assert_eq!(err.to_string(), "ConfigMap default/a already exists");
    let err = store.create(config_map("nowhere", "a", "1")).unwrap_err();
    assert!(matches!(err, StoreError::NamespaceMissing { .. }), "{err}");

    let err = store
        .replace(
            config_map("default", "a", "2"),
            Some(7),
            StatusMode::KeepStored,
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { key, expected: 7, actual: 1 } if *key == cm_key("a")),
        "{err}"
    );
    assert!(err.to_string().contains("resourceVersion 1"), "{err}");
    let replaced = store
        .replace(
            config_map("default", "a", "2"),
            Some(1),
            StatusMode::KeepStored,
        )
        .unwrap();
    assert_eq!((rv(&replaced), value_of(&replaced)), (2, "2".to_string()));
    assert_eq!(replaced.metadata().uid, created.metadata().uid);
    // Without a precondition the write is unconditional; unchanged makes no event.
    let same = store
        .replace(config_map("default", "a", "2"), None, StatusMode::Replace)
        .unwrap();
    assert_eq!(same, replaced);
    assert_eq!(store.revision().unwrap(), 2);

    let err = store
        .replace(config_map("default", "b", "1"), None, StatusMode::Replace)
        .unwrap_err();
    assert_eq!(err.to_string(), "ConfigMap default/b not found");

    let changes = store.changes(0, 100).unwrap();
    let seen: Vec<(u64, EventKind)> = changes.iter().map(|c| (c.revision, c.kind)).collect();
    assert_eq!(seen, [(1, EventKind::Added), (2, EventKind::Modified)]);
    assert_eq!(changes[0].object, created);
    assert_eq!(changes[1].object, replaced);
    assert_eq!(store.changes(0, 1).unwrap().len(), 1);
    assert_eq!(store.changes(1, 100).unwrap()[0].revision, 2);
}

#[test]
fn status_modes_of_a_replace() {
    let (_dir, store) = store();
    store.create(pod("p", "nginx", Some("Running"))).unwrap();
    let key = ObjectKey::namespaced("Pod", "default", "p");

    // A PUT on the resource without status keeps the stored one; a spec change bumps generation.
    let put = store
        .replace(pod("p", "nginx:2", None), None, StatusMode::KeepStored)
        .unwrap();
    assert_eq!(phase_of(&put).as_deref(), Some("Running"));
    assert_eq!(put.metadata().generation, Some(2));

    // A PUT on /status takes only the status: the spec change in it is ignored.
    let status = store
        .replace(
            pod("p", "other", Some("Succeeded")),
            None,
            StatusMode::OnlyStatus,
        )
        .unwrap();
    assert_eq!(phase_of(&status).as_deref(), Some("Succeeded"));
    assert_eq!(image_of(&status), "nginx:2");
    assert_eq!(status.metadata().generation, Some(2));
    assert_eq!(store.get(&key).unwrap().unwrap(), status);

    // Replace stores exactly the incoming object, clearing the status it lacks.
    let replaced = store
        .replace(pod("p", "nginx:2", None), None, StatusMode::Replace)
        .unwrap();
    assert_eq!(phase_of(&replaced), None);
}

#[test]
fn delete_object_returns_the_object_at_the_delete_revision() {
    let (_dir, store) = store();
    store
        .apply(vec![
            namespace("demo"),
            config_map("demo", "x", "1"),
            config_map("default", "a", "1"),
        ])
        .unwrap();
    let err = store.delete_object(&cm_key("a"), Some(1)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                actual: 3,
                ..
            }
        ),
        "{err}"
    );
    let deleted = store.delete_object(&cm_key("a"), Some(3)).unwrap().unwrap();
    assert_eq!(rv(&deleted), 4);
    assert_eq!(value_of(&deleted), "1");
    assert_eq!(store.get(&cm_key("a")).unwrap(), None);
    assert_eq!(store.delete_object(&cm_key("a"), None).unwrap(), None);
    let last = store.changes(3, 10).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        (last[0].kind, &last[0].object),
        (EventKind::Deleted, &deleted)
    );

    let ns = ObjectKey::cluster_scoped("Namespace", "demo");
    let gone = store.delete_object(&ns, None).unwrap().unwrap();
    assert_eq!(gone.key(), ns);
    assert_eq!(rv(&gone), 6);
    let keys: Vec<String> = store
        .changes(4, 10)
        .unwrap()
        .iter()
        .map(|c| format!("{:?} {}", c.kind, c.key))
        .collect();
    assert_eq!(keys, ["Deleted ConfigMap demo/x", "Deleted Namespace demo"]);
    assert!(store.list_all().unwrap().is_empty());
    // The revision counter never goes back, not even when the newest objects are gone.
    assert_eq!(store.revision().unwrap(), 6);
    let reopened = Store::open(store.dir()).unwrap();
    assert_eq!(reopened.revision().unwrap(), 6);
    assert_eq!(
        rv(&reopened.create(config_map("default", "a", "1")).unwrap()),
        7
    );
}

#[test]
fn snapshot_is_one_revision_and_its_objects() {
    let (_dir, store) = store();
    store
        .apply(vec![namespace("demo"), config_map("demo", "b", "1")])
        .unwrap();
    store.create(config_map("default", "a", "1")).unwrap();
    let (revision, objects) = store.snapshot(Some("ConfigMap")).unwrap();
    assert_eq!(revision, 3);
    let keys: Vec<String> = objects.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(keys, ["ConfigMap default/a", "ConfigMap demo/b"]);
    let (revision, all) = store.snapshot(None).unwrap();
    assert_eq!((revision, all.len()), (3, 3));
    assert_eq!(all.last().unwrap().kind(), "Namespace");
    assert_eq!(store.snapshot(Some("No/Such")).unwrap(), (3, vec![]));
}

#[test]
fn dry_runs_leave_no_trace() {
    let (_dir, store) = store();
    store.create(config_map("default", "a", "1")).unwrap();
    let before = store.list("ConfigMap").unwrap();
    let mut watch = store.watch(1).unwrap();
    let dry = store.dry_run();

    let would = dry.create(config_map("default", "b", "1")).unwrap();
    assert_eq!(rv(&would), 2);
    let replaced = dry
        .replace(
            config_map("default", "a", "2"),
            Some(1),
            StatusMode::Replace,
        )
        .unwrap();
    assert_eq!(value_of(&replaced), "2");
    let applied = dry
        .apply(vec![namespace("demo"), config_map("demo", "c", "1")])
        .unwrap();
    assert_eq!(applied.len(), 2);
    assert!(dry.delete_object(&cm_key("a"), None).unwrap().is_some());
    assert!(matches!(
        dry.create(config_map("default", "a", "1")),
        Err(StoreError::AlreadyExists { .. })
    ));

    assert_eq!(store.revision().unwrap(), 1);
    assert_eq!(store.list("ConfigMap").unwrap(), before);
    assert_eq!(store.list_all().unwrap(), before);
    assert_eq!(store.get(&cm_key("b")).unwrap(), None);
    assert_eq!(store.changes(0, 10).unwrap().len(), 1);
    assert!(watch.poll().unwrap().is_empty());
    let real = store.create(config_map("default", "b", "1")).unwrap();
    assert_eq!(rv(&real), 2);
}

/// Records the size of `existing` and refuses objects named "bad".
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<usize>>,
}

impl Admission for Recording {
    fn admit(
        &self,
        incoming: &mut Object,
        _stored: Option<&Object>,
        existing: &[Object],
    ) -> Result<(), String> {
        self.seen.lock().unwrap().push(existing.len());
        if incoming.name() == "bad" {
            return Err("metadata.name: \"bad\" is refused".into());
        }
        Ok(())
    }
}

#[test]
fn admission_sees_other_handles_writes_and_no_rolled_back_ones() {
    let (dir, _) = store();
    let admission = Arc::new(Recording::default());
    let api = Store::open(dir.path())
        .unwrap()
        .with_admission(admission.clone());
    let other = Store::open(dir.path()).unwrap();
    api.create(config_map("default", "a", "1")).unwrap();
    other.create(config_map("default", "b", "1")).unwrap();
    api.create(config_map("default", "c", "1")).unwrap();
    let err = api.create(config_map("default", "bad", "1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap default/bad: metadata.name: \"bad\" is refused"
    );
    api.dry_run()
        .create(config_map("default", "d", "1"))
        .unwrap();
    let err = api
        .apply(vec![
            config_map("default", "e", "1"),
            config_map("default", "bad", "1"),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    api.replace(config_map("default", "a", "2"), None, StatusMode::Replace)
        .unwrap();
    // a; a, b (written by another handle); a, b, c (bad refused); a, b, c (dry run rolled back);
    // a, b, c then e within the batch (rolled back); a, b, c.
    assert_eq!(*admission.seen.lock().unwrap(), [0, 2, 3, 3, 3, 4, 3]);
    let names: Vec<String> = api
        .list("ConfigMap")
        .unwrap()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn quota_limits_creates_per_kind() {
    let (_dir, store) = store();
    let store = store.with_quota(2);
    store.create(config_map("default", "a", "1")).unwrap();
    store.apply(vec![config_map("default", "b", "1")]).unwrap();
    let err = store.create(config_map("default", "c", "1")).unwrap_err();
    assert!(
        matches!(err, StoreError::QuotaExceeded { limit: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("at most 2 objects of kind ConfigMap"),
        "{text}"
    );
    assert!(text.contains("with_quota"), "{text}");
    // Nothing of a refused batch is written; updates and other kinds are not limited.
    let err = store
        .apply(vec![
            config_map("default", "b", "2"),
            config_map("default", "c", "1"),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
    assert_eq!(value_of(&store.get(&cm_key("b")).unwrap().unwrap()), "1");
    store
        .replace(config_map("default", "b", "2"), None, StatusMode::Replace)
        .unwrap();
    store.create(pod("p", "x", None)).unwrap();
    store.delete_object(&cm_key("a"), None).unwrap();
    store.put(config_map("default", "c", "1")).unwrap();
    assert_eq!(store.list("ConfigMap").unwrap().len(), 2);
}

#[test]
fn compaction_keeps_the_revision_and_refuses_old_watches() {
    let (_dir, store) = store();
    for i in 0..10 {
        store
            .put(config_map("default", "a", &i.to_string()))
            .unwrap();
    }
    assert_eq!(store.compact(5).unwrap(), 5);
    assert_eq!(store.compact(3).unwrap(), 0);
    let err = store.changes(4, 10).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: 4,
                oldest: 5
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("list again"), "{err}");
    assert!(matches!(
        store.watch(0),
        Err(StoreError::Compacted {
            requested: 0,
            oldest: 5
        })
    ));
    let kept: Vec<u64> = store
        .changes(5, 10)
        .unwrap()
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(kept, [6, 7, 8, 9, 10]);

    // A watch that falls behind a compaction is told so, not silently moved on.
    let mut watch = store.watch(6).unwrap();
    assert_eq!(store.compact(1_000).unwrap(), 5);
    assert!(matches!(
        watch.poll(),
        Err(StoreError::Compacted {
            requested: 6,
            oldest: 10
        })
    ));
    assert_eq!(store.revision().unwrap(), 10);
    assert!(store.changes(10, 10).unwrap().is_empty());
    assert_eq!(rv(&store.put(config_map("default", "b", "1")).unwrap()), 11);
}

#[test]
fn writes_compact_a_long_log() {
    let (_dir, store) = store();
    let store = store.with_log_limit(10);
    let mut watch = store.watch(0).unwrap();
    for i in 0..25 {
        store
            .put(config_map("default", "a", &i.to_string()))
            .unwrap();
        let revision = store.revision().unwrap();
        let after = revision.saturating_sub(5);
        assert_eq!(
            store.changes(after, 100).unwrap().len() as u64,
            revision - after
        );
    }
    let oldest = match store.changes(0, 100) {
        Err(StoreError::Compacted { oldest, .. }) => oldest,
        other => panic!("expected Compacted, got {other:?}"),
    };
    let kept = store.changes(oldest, 100).unwrap().len() as u64;
    assert!((5..=10).contains(&kept), "{kept} rows kept");
    assert_eq!(oldest + kept, 25);
    assert!(matches!(watch.poll(), Err(StoreError::Compacted { .. })));
}

#[cfg(unix)]
#[test]
fn the_store_is_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = parent.path().join("store");
    let store = Store::open(&dir).unwrap();
    store.create(config_map("default", "a", "1")).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for file in ["store.db", "store.db-wal", "store.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }

    // A store that was left open to others is closed again when next opened (the first handle
    // keeps the WAL files in place).
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["store.db", "store.db-wal", "store.db-shm"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let again = Store::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for file in ["store.db", "store.db-wal", "store.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert!(again.get(&cm_key("a")).unwrap().is_some());
    drop(store);
}

#[test]
fn a_handle_follows_other_handles_writes() {
    let (dir, reader) = store();
    let writer = Store::open(dir.path()).unwrap();
    let names = |store: &Store| -> Vec<String> {
        let listed = store.list("ConfigMap").unwrap();
        listed
            .iter()
            .map(|o| format!("{}={}", o.name(), value_of(o)))
            .collect()
    };
    writer.create(config_map("default", "a", "1")).unwrap();
    writer.create(config_map("default", "b", "1")).unwrap();
    assert_eq!(names(&reader), ["a=1", "b=1"]);

    // A few changes: replayed from the log.
    writer.create(config_map("default", "c", "1")).unwrap();
    writer.put(config_map("default", "a", "2")).unwrap();
    writer.delete_object(&cm_key("b"), None).unwrap();
    assert_eq!(names(&reader), ["a=2", "c=1"]);

    // Changes the log no longer holds: loaded again.
    writer.put(config_map("default", "c", "2")).unwrap();
    writer.compact(u64::MAX).unwrap();
    assert_eq!(names(&reader), ["a=2", "c=2"]);

    // More changes than objects: loaded again rather than replayed.
    for i in 0..1_100 {
        writer
            .put(config_map("default", "a", &i.to_string()))
            .unwrap();
    }
    assert_eq!(names(&reader), ["a=1099", "c=2"]);
    assert_eq!(reader.snapshot(Some("ConfigMap")).unwrap().1.len(), 2);
}
