//! A row that does not parse (a disk error, a hand edit) must name itself and stop nobody: `get` of
//! it fails clearly, lists and watches go on without it, and deleting it works.

use std::sync::{Arc, Mutex};

use serde_json::json;
use weft_model::{Object, ObjectKey};
use weft_sources::{EventKind, Store, StoreError};

fn config_map(name: &str) -> Object {
    Object::from_json(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "data": {"v": "1"}}))
    .unwrap()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::namespaced("ConfigMap", "default", name)
}

/// Edits the database behind the store's back, as a disk error or a person would.
fn raw_sql(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("store.db")).unwrap();
    let changed = conn.execute(sql, []).unwrap();
    assert_eq!(changed, 1, "{sql}");
}

/// Runs `f`, returning what it logged.
/// The tests of this file run one at a time: a callsite first hit on one thread while another
/// thread's scoped subscriber is being set up can have its interest cached as "never" (a race
/// in tracing's callsite registry), and then `logged` captured nothing (seen once in CI).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (value, text)
}

#[test]
fn a_corrupt_row_names_itself_and_stops_nobody() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .apply(vec![config_map("a"), config_map("b"), config_map("c")])
        .unwrap();
    let mut watch = store.watch(0).unwrap();
    raw_sql(
        dir.path(),
        "UPDATE objects SET json = '{\"apiVersion\": \"v1\", \"kind\": \"Config' WHERE name = 'b'",
    );
    raw_sql(
        dir.path(),
        "UPDATE log SET json = 'garbage' WHERE revision = 1",
    );

    // A handle opened now has nothing cached: it reads the damaged rows.
    let store = Store::open(dir.path()).unwrap();
    let err = store.get(&key("b")).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key: k, revision: 2, .. } if *k == key("b")),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("ConfigMap default/b (revision 2) is corrupt in the store: "),
        "{text}"
    );
    assert!(text.ends_with("delete it and create it again"), "{text}");
    assert!(store.get(&key("a")).unwrap().is_some());

    let names = |objects: Vec<Object>| -> Vec<String> {
        objects.iter().map(|o| o.name().to_string()).collect()
    };
    let (listed, warnings) = logged(|| store.list("ConfigMap").unwrap());
    assert_eq!(names(listed), ["a", "c"]);
    assert!(
        warnings.contains("skipping a corrupt object in the store")
            && warnings.contains("object=ConfigMap default/b")
            && warnings.contains("revision=2"),
        "{warnings}"
    );
    assert_eq!(names(store.list_all().unwrap()), ["a", "c"]);
    assert_eq!(names(store.snapshot(None).unwrap().1), ["a", "c"]);

    // The watch needs no object: it sees all three events. changes() skips the corrupt log row.
    assert_eq!(watch.poll().unwrap().len(), 3);
    let revisions: Vec<u64> = store
        .changes(0, 2)
        .unwrap()
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(revisions, [2, 3], "a short page is filled from further on");

    // Writing over it is refused with the same error; deleting it works and is announced.
    let err = store.put(config_map("b")).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let deleted = store.delete_object(&key("b"), None).unwrap().unwrap();
    assert_eq!(
        (
            deleted.key(),
            deleted.metadata().resource_version.as_deref()
        ),
        (key("b"), Some("4"))
    );
    let events = watch.poll().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, &events[0].key),
        (EventKind::Deleted, &key("b"))
    );
    let change = &store.changes(3, 10).unwrap()[0];
    assert_eq!(
        (change.kind, change.object.key()),
        (EventKind::Deleted, key("b"))
    );
    store.put(config_map("b")).unwrap();
    assert_eq!(names(store.list("ConfigMap").unwrap()), ["a", "b", "c"]);
}

#[test]
fn a_row_that_parses_as_another_object_is_corrupt() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.apply(vec![config_map("a"), config_map("b")]).unwrap();
    raw_sql(
        dir.path(),
        "UPDATE objects SET json = (SELECT json FROM objects WHERE name = 'a') WHERE name = 'b'",
    );
    let store = Store::open(dir.path()).unwrap();
    let err = store.get(&key("b")).unwrap_err();
    assert!(
        err.to_string()
            .contains("the stored JSON is ConfigMap default/a"),
        "{err}"
    );
    assert_eq!(store.list("ConfigMap").unwrap().len(), 1);
}
