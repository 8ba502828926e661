//! Owner-reference garbage collection on delete, as `propagationPolicy` asks: `Background`
//! deletes the dependents after the owner, `Foreground` before it, `Orphan` strips the owner's
//! reference from them and leaves them be. Dependents of dependents go the same way.

use weft_model::{Object, ObjectKey};
use weft_sources::{Store, StoreError};

use crate::api::Api;
use crate::crud::blocking;

/// The objects that name `uid` among their owners.
fn dependents(objects: &[Object], uid: &str) -> Vec<ObjectKey> {
    objects
        .iter()
        .filter(|o| {
            o.metadata()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
        })
        .map(Object::key)
        .collect()
}

/// Deletes every dependent of the `uids`, depth first, from one look at the store.
fn delete_dependents(store: &Store, uids: Vec<String>) -> Result<(), StoreError> {
    let (_, all) = store.snapshot(None)?;
    let mut pending = uids;
    while let Some(owner) = pending.pop() {
        for key in dependents(&all, &owner) {
            if let Some(deleted) = store.delete_object(&key, None)? {
                if let Some(uid) = deleted.metadata().uid.clone() {
                    pending.push(uid);
                }
            }
        }
    }
    Ok(())
}

/// The owners deleted with `Background` propagation whose dependents are still to collect, and
/// whether a collector task is running. A burst of deletes (a Deployment scaled from 10000 pods
/// to 2) is collected in a few passes, each one look at the store, instead of one per delete.
#[derive(Default)]
pub(crate) struct Backlog {
    state: std::sync::Mutex<(Vec<String>, bool)>,
}

/// Deletes the dependents before answering (`Foreground`).
pub(crate) async fn collect(api: &Api, uid: &str) -> Result<(), StoreError> {
    let store = api.store.clone();
    let uid = uid.to_string();
    blocking(move || delete_dependents(&store, vec![uid])).await?;
    api.hub.poke();
    Ok(())
}

/// Deletes the dependents after the response (`Background`), as kube-controller-manager's
/// collector does: queued, and collected by one task at a time.
pub(crate) fn collect_later(api: &Api, uid: String) {
    {
        let mut state = api.gc.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.push(uid);
        if state.1 {
            return;
        }
        state.1 = true;
    }
    let store = api.store.clone();
    let hub = api.hub.clone();
    let backlog = api.gc.clone();
    tokio::spawn(async move {
        loop {
            let uids = {
                let mut state = backlog.state.lock().unwrap_or_else(|e| e.into_inner());
                if state.0.is_empty() {
                    state.1 = false;
                    return;
                }
                std::mem::take(&mut state.0)
            };
            let store = store.clone();
            let result = blocking(move || delete_dependents(&store, uids)).await;
            hub.poke();
            if let Err(e) = result {
                tracing::warn!("garbage collection: {e}");
            }
        }
    });
}

/// Removes the owner reference to `uid` from every dependent.
pub(crate) async fn orphan(api: &Api, uid: &str) -> Result<(), StoreError> {
    let store = api.store.clone();
    let uid = uid.to_string();
    blocking(move || {
        let (_, all) = store.snapshot(None)?;
        for key in dependents(&all, &uid) {
            store.update(&key, |o| {
                if let Some(refs) = o.metadata_mut().owner_references.as_mut() {
                    refs.retain(|r| r.uid != uid);
                }
            })?;
        }
        Ok(())
    })
    .await?;
    api.hub.poke();
    Ok(())
}
