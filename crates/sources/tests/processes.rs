//! Several processes writing one store at once: transactions must serialize them so that no update
//! is lost and no revision is handed out twice, whether writers update in one transaction or, like
//! API clients, read and then replace with a resourceVersion precondition, retrying on Conflict.
//! The test binary re-runs itself as the writer processes.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;
use weft_model::{Object, ObjectKey};
use weft_sources::{EventKind, StatusMode, Store, StoreError};
use weft_testutil::rerun_test;

const DIR_ENV: &str = "WEFT_SOURCES_TEST_STORE_DIR";
const ID_ENV: &str = "WEFT_SOURCES_TEST_WRITER_ID";
const WRITERS: usize = 4;
const ROUNDS: usize = 30;

fn counter_key() -> ObjectKey {
    ObjectKey::namespaced("ConfigMap", "default", "counter")
}

fn optimistic_key() -> ObjectKey {
    ObjectKey::namespaced("ConfigMap", "default", "optimistic")
}

fn value(object: &Object) -> u64 {
    object.as_config_map().unwrap().data.as_ref().unwrap()["v"]
        .parse()
        .unwrap()
}

/// Adds one to the optimistic counter as an API client would.
fn increment_optimistically(store: &Store) {
    loop {
        let current = store.get(&optimistic_key()).unwrap().unwrap();
        let expected = current
            .metadata()
            .resource_version
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        let next = config_map("optimistic", &(value(&current) + 1).to_string());
        match store.replace(next, Some(expected), StatusMode::Replace) {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("replace failed: {e}"),
        }
    }
}

fn config_map(name: &str, value: &str) -> Object {
    Object::from_json(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "data": {"v": value}}))
    .unwrap()
}

fn write_rounds(dir: &Path, id: &str) {
    let store = Store::open(dir).unwrap();
    for round in 0..ROUNDS {
        store
            .update(&counter_key(), |o| {
                let data = o
                    .as_config_map_mut()
                    .unwrap()
                    .data
                    .get_or_insert_with(Default::default);
                let n: u64 = data["v"].parse().unwrap();
                data.insert("v".into(), (n + 1).to_string());
            })
            .unwrap()
            .unwrap();
        store
            .apply(vec![config_map(&format!("w{id}-{round}"), "x")])
            .unwrap();
        increment_optimistically(&store);
    }
}

/// The writer process's body; does nothing when run as an ordinary test.
#[test]
fn writer_process() {
    let (Ok(dir), Ok(id)) = (std::env::var(DIR_ENV), std::env::var(ID_ENV)) else {
        return;
    };
    write_rounds(Path::new(&dir), &id);
}

#[test]
fn concurrent_processes_never_lose_updates_or_duplicate_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .apply(vec![
            config_map("counter", "0"),
            config_map("optimistic", "0"),
        ])
        .unwrap();
    let mut children = Vec::new();
    for id in 0..WRITERS {
        let child = rerun_test("writer_process")
            .env(DIR_ENV, dir.path())
            .env(ID_ENV, id.to_string())
            .spawn()
            .unwrap();
        children.push(child);
    }
    // This process writes too, at the same time.
    write_rounds(dir.path(), "parent");
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "writer process failed: {status}");
    }

    let writers = WRITERS + 1;
    let counter = store.get(&counter_key()).unwrap().unwrap();
    let value = &counter.as_config_map().unwrap().data.as_ref().unwrap()["v"];
    assert_eq!(value, &(writers * ROUNDS).to_string());
    let optimistic = store.get(&optimistic_key()).unwrap().unwrap();
    assert_eq!(self::value(&optimistic), (writers * ROUNDS) as u64);
    let total = 2 + 3 * writers * ROUNDS;
    assert_eq!(store.revision().unwrap(), total as u64);
    assert_eq!(store.list("ConfigMap").unwrap().len(), 2 + writers * ROUNDS);

    let events = store.watch(0).unwrap().poll().unwrap();
    let revisions: Vec<u64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (1..=total as u64).collect::<Vec<_>>());
    let created: BTreeSet<&ObjectKey> = events
        .iter()
        .filter(|e| e.kind == EventKind::Added)
        .map(|e| &e.key)
        .collect();
    assert_eq!(created.len(), 2 + writers * ROUNDS);
    let changes = store.changes(0, usize::MAX).unwrap();
    let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, (1..=total as u64).collect::<Vec<_>>());
    assert!(changes
        .iter()
        .all(|c| c.object.metadata().resource_version == Some(c.revision.to_string())));
    // The counter's resourceVersion is the revision of its last change.
    let rv: u64 = counter
        .metadata()
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let last_counter_event = events
        .iter()
        .rev()
        .find(|e| e.key == counter_key())
        .unwrap();
    assert_eq!(rv, last_counter_event.revision);
}
