//! How long the store takes for the writes the lab and its API server make in bulk. Prints figures,
//! asserts only correctness: run with
//! `cargo test -p weft-sources --release --test timing -- --ignored --nocapture`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use weft_model::Object;
use weft_sources::{Admission, ApplyResult, Store};

fn service(name: &str, port: u16) -> Object {
    Object::from_json(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": 8080}]}}))
    .unwrap()
}

/// Looks at `existing` the way an allocator does, counting what it was shown.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
    largest: AtomicUsize,
}

impl Admission for Counting {
    fn admit(
        &self,
        _incoming: &mut Object,
        _stored: Option<&Object>,
        existing: &[Object],
    ) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(existing.len(), Ordering::Relaxed);
        Ok(())
    }
}

#[test]
#[ignore = "prints timings; run in release"]
fn bulk_and_single_writes() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let admission = Arc::new(Counting::default());
    let store = Store::open(dir.path())
        .unwrap()
        .with_admission(admission.clone());
    let batch: Vec<Object> = (0..N).map(|i| service(&format!("s{i}"), 80)).collect();

    let start = Instant::now();
    let results = store.apply(batch.clone()).unwrap();
    let create = start.elapsed();
    assert!(results.iter().all(|r| matches!(r, ApplyResult::Created(_))));

    let start = Instant::now();
    let results = store.apply(batch).unwrap();
    let reapply = start.elapsed();
    assert!(results
        .iter()
        .all(|r| matches!(r, ApplyResult::Unchanged(_))));

    // A fresh handle: its first write loads the kind once, the rest use the cache.
    let api = Store::open(dir.path())
        .unwrap()
        .with_admission(admission.clone());
    let start = Instant::now();
    for i in 0..N {
        api.create(service(&format!("t{i}"), 80)).unwrap();
    }
    let singles = start.elapsed();

    let start = Instant::now();
    let listed = api.list("Service").unwrap().len();
    let list = start.elapsed();
    let other = Store::open(dir.path()).unwrap();
    let start = Instant::now();
    other.list("Service").unwrap();
    let cold_list = start.elapsed();
    // Another handle's list after these writes replays a few, or reloads many.
    api.create(service("u0", 80)).unwrap();
    let start = Instant::now();
    other.list("Service").unwrap();
    let replayed_list = start.elapsed();

    // A handle without admission or cache re-applies by reading each stored object.
    let plain = Store::open(dir.path()).unwrap();
    let batch: Vec<Object> = (0..N).map(|i| service(&format!("s{i}"), 80)).collect();
    let start = Instant::now();
    plain.apply(batch).unwrap();
    let cold_reapply = start.elapsed();
    assert_eq!(listed, 2 * N);
    assert_eq!(admission.calls.load(Ordering::Relaxed), 3 * N + 1);
    assert_eq!(admission.largest.load(Ordering::Relaxed), 2 * N);

    println!(
        "apply {N} Services in one batch: {create:?}\n\
         re-apply them unchanged: {reapply:?} ({:.2}x the create)\n\
         {N} single creates with {N}+ stored: {singles:?} ({:.0} creates/s)\n\
         list of {}: {list:?} cached, {cold_list:?} cold, {replayed_list:?} after another handle's create\n\
         re-apply {N} through a fresh handle without admission: {cold_reapply:?}",
        reapply.as_secs_f64() / create.as_secs_f64(),
        N as f64 / singles.as_secs_f64(),
        2 * N,
    );
}
