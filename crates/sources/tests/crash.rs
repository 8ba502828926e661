//! A writer killed at any moment (SIGKILL, mid-batch) leaves a store with every batch whole or
//! absent, no revision handed out twice or skipped, and watchers that carry on. The test binary
//! re-runs itself as the writer.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use support::rv;
use weft_model::{Object, ObjectKey};
use weft_sources::{EventKind, Store};
use weft_testutil::rerun_test;

const DIR_ENV: &str = "WEFT_SOURCES_CRASH_STORE_DIR";
const OBJECTS: usize = 1000;
const KILLS: usize = 3;

fn config_map(name: &str, value: &str) -> Object {
    Object::from_json(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "data": {"v": value}}))
    .unwrap()
}

fn value_of(object: &Object) -> &str {
    &object.as_config_map().unwrap().data.as_ref().unwrap()["v"]
}

/// The writer process's body: applies all objects, one batch after another, until killed. Does
/// nothing when run as an ordinary test.
#[test]
fn crash_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    let pid = std::process::id();
    for round in 0.. {
        let value = format!("{pid}-{round}");
        let batch = (0..OBJECTS)
            .map(|i| config_map(&format!("cm-{i}"), &value))
            .collect();
        store.apply(batch).unwrap();
    }
}

/// What must hold after any crash; returns the revision the store is at.
fn check_consistent(dir: &Path) -> u64 {
    let store = Store::open(dir).unwrap();
    let mut objects = store.list("ConfigMap").unwrap();
    objects.retain(|o| o.name().starts_with("cm-"));
    assert!(
        objects.is_empty() || objects.len() == OBJECTS,
        "a batch was cut: {} objects",
        objects.len()
    );
    if let Some(first) = objects.first() {
        assert!(
            objects.iter().all(|o| value_of(o) == value_of(first)),
            "objects from different batches"
        );
    }
    for object in &objects {
        assert_eq!(store.get(&object.key()).unwrap().as_ref(), Some(object));
    }

    let revision = store.revision().unwrap();
    let changes = store.changes(0, usize::MAX).unwrap();
    let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, (1..=revision).collect::<Vec<_>>());
    let mut replayed: BTreeMap<ObjectKey, Object> = BTreeMap::new();
    for change in changes {
        assert_eq!(rv(&change.object), change.revision);
        match change.kind {
            EventKind::Deleted => replayed.remove(&change.key),
            _ => replayed.insert(change.key, change.object),
        };
    }
    let stored: BTreeMap<ObjectKey, Object> = store
        .list_all()
        .unwrap()
        .into_iter()
        .map(|o| (o.key(), o))
        .collect();
    assert_eq!(replayed, stored, "the log does not rebuild the objects");
    revision
}

#[test]
fn killed_writers_leave_whole_batches_and_contiguous_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut watch = store.watch(0).unwrap();
    let mut rng = rand::thread_rng();
    let mut markers = 0;
    for kill in 0..KILLS {
        let mut child = rerun_test("crash_writer")
            .env(DIR_ENV, dir.path())
            .spawn()
            .unwrap();
        // The first round waits long enough that some batches commit; all rounds then kill the
        // writer wherever it happens to be, usually inside a batch.
        let base = if kill == 0 { 800 } else { 50 };
        std::thread::sleep(Duration::from_millis(base + rng.gen_range(0..1200)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer ended on its own: {status}");

        let revision = check_consistent(dir.path());
        let before = watch.revision();
        let mut seen = Vec::new();
        while watch.revision() < revision {
            seen.extend(watch.wait(Duration::from_secs(5)).unwrap());
        }
        assert_eq!(watch.revision(), revision);
        let expected: Vec<u64> = (before + 1..=revision).collect();
        assert_eq!(
            seen.iter().map(|e| e.revision).collect::<Vec<_>>(),
            expected
        );

        // The killed writer's lock is gone: this process writes, and its watch sees that too.
        markers += 1;
        store
            .put(config_map("marker", &markers.to_string()))
            .unwrap();
        let events = watch.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].revision, revision + 1);
    }
    assert_eq!(
        store.list("ConfigMap").unwrap().len(),
        OBJECTS + 1,
        "no batch committed before the kills"
    );
}
