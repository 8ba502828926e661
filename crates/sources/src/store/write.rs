//! The store's writes: `apply` (kubectl's), the controllers' `put` and `update`, the API server's
//! `create`, `replace` and `delete_object`, `delete`, and `compact`. Each is one transaction.

use std::collections::{BTreeSet, HashSet};

use weft_model::{Object, ObjectKey};

use super::key::{check_key, normalize};
use super::server_fields::{merge, with_status_of, StatusMode};
use super::txn::Txn;
use super::{ApplyResult, DeleteResult, EventKind, Store, StoreError};

impl Store {
    /// Runs admission, if this handle has any, on `object` against its kind as `txn` sees it.
    fn admit(
        &self,
        txn: &mut Txn<'_>,
        object: &mut Object,
        stored: Option<&Object>,
    ) -> Result<(), StoreError> {
        let Some(admission) = &self.admission else {
            return Ok(());
        };
        let key = object.key();
        let existing = txn.existing(&key.kind)?;
        admission
            .admit(object, stored, existing)
            .map_err(|message| StoreError::Invalid { key, message })
    }

    /// Creates or updates objects, like `kubectl apply`: all or nothing. Every object is checked
    /// before anything is written: its namespace must exist (or be created in the same batch) and no
    /// key may appear twice. Objects that differ from the stored ones only in server-set fields are
    /// Unchanged and make no event; a stored status is kept when the incoming object has none.
    pub fn apply(&self, objects: Vec<Object>) -> Result<Vec<ApplyResult>, StoreError> {
        let objects: Vec<Object> = objects.into_iter().map(normalize).collect();
        let kinds: BTreeSet<String> = objects.iter().map(|o| o.kind().to_string()).collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let batch_namespaces: HashSet<String> = objects
            .iter()
            .filter(|o| o.kind() == "Namespace")
            .map(|o| o.name().to_string())
            .collect();
        self.write(&kinds, move |txn| {
            let mut keys = HashSet::new();
            for object in &objects {
                let key = object.key();
                check_key(&key)?;
                if !keys.insert(key.clone()) {
                    return Err(StoreError::Duplicate { key });
                }
                if let Some(ns) = &key.namespace {
                    if !batch_namespaces.contains(ns) && !txn.namespace_exists(ns)? {
                        return Err(StoreError::NamespaceMissing {
                            namespace: ns.clone(),
                            key,
                        });
                    }
                }
            }
            let mut results = Vec::with_capacity(objects.len());
            for mut object in objects {
                let key = object.key();
                let handled = object.is_handled();
                let stored = txn.stored(&key)?;
                self.admit(txn, &mut object, stored.as_ref())?;
                let merged = merge(object, stored.as_ref(), StatusMode::KeepStored)?;
                results.push(match txn.write(merged)?.1 {
                    None => ApplyResult::Unchanged(key),
                    Some(_) if !handled => ApplyResult::Ignored(key),
                    Some(EventKind::Added) => ApplyResult::Created(key),
                    Some(_) => ApplyResult::Configured(key),
                });
            }
            Ok(results)
        })
    }

    /// A controller's write: creates or replaces the object, status included, and returns it as
    /// stored (with uid, creationTimestamp, generation and resourceVersion set).
    pub fn put(&self, object: Object) -> Result<Object, StoreError> {
        let object = normalize(object);
        let key = object.key();
        check_key(&key)?;
        self.write(&[&key.kind], |txn| {
            require_namespace(txn, &key)?;
            let stored = txn.stored(&key)?;
            let merged = merge(object, stored.as_ref(), StatusMode::Replace)?;
            Ok(txn.write(merged)?.0)
        })
    }

    /// Read-modify-write of one object in one transaction, so concurrent writers never lose an
    /// update. Returns None if the object does not exist; makes no event if `f` changed nothing.
    pub fn update(
        &self,
        key: &ObjectKey,
        f: impl FnOnce(&mut Object),
    ) -> Result<Option<Object>, StoreError> {
        self.write(&[&key.kind], |txn| {
            let Some(stored) = txn.stored(key)? else {
                return Ok(None);
            };
            let mut object = stored.clone();
            f(&mut object);
            let object = normalize(object);
            if object.key() != *key {
                return Err(StoreError::KeyChanged {
                    before: key.clone(),
                    after: Box::new(object.key()),
                });
            }
            let merged = merge(object, Some(&stored), StatusMode::Replace)?;
            Ok(Some(txn.write(merged)?.0))
        })
    }

    /// Deletes objects; missing ones are reported as NotFound. Deleting a Namespace deletes every
    /// object in it (each with its own Deleted event, the Namespace's last).
    pub fn delete(&self, keys: &[ObjectKey]) -> Result<Vec<DeleteResult>, StoreError> {
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        self.write(&kinds, |txn| {
            let mut results = Vec::with_capacity(keys.len());
            for key in keys {
                if txn.stored_revision(key)?.is_none() {
                    results.push(DeleteResult::NotFound(key.clone()));
                    continue;
                }
                remove_with_contents(txn, key)?;
                results.push(DeleteResult::Deleted(key.clone()));
            }
            Ok(results)
        })
    }

    /// Creates one object, as a POST to the API does: admission (if set), its namespace must
    /// exist, and nothing may be stored under its key. Returns the object as stored.
    pub fn create(&self, object: Object) -> Result<Object, StoreError> {
        let mut object = normalize(object);
        let key = object.key();
        check_key(&key)?;
        self.write(&[&key.kind], |txn| {
            require_namespace(txn, &key)?;
            if txn.stored_revision(&key)?.is_some() {
                return Err(StoreError::AlreadyExists { key: key.clone() });
            }
            self.admit(txn, &mut object, None)?;
            keep_identity(&key, &object)?;
            Ok(txn.write(merge(object, None, StatusMode::Replace)?)?.0)
        })
    }

    /// Replaces one stored object, as a PUT to the API does: admission (if set), NotFound if it is
    /// absent, Conflict if `expected_revision` is given and the stored resourceVersion differs.
    /// `status` says which status is stored. An unchanged object makes no event and is returned as
    /// stored.
    pub fn replace(
        &self,
        object: Object,
        expected_revision: Option<u64>,
        status: StatusMode,
    ) -> Result<Object, StoreError> {
        let object = normalize(object);
        let key = object.key();
        check_key(&key)?;
        self.write(&[&key.kind], |txn| {
            let Some(stored) = txn.stored(&key)? else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            check_expected(txn, &key, expected_revision)?;
            // Admission sees what will be stored, not a spec a status write will discard.
            let mut object = match status {
                StatusMode::OnlyStatus => with_status_of(&stored, &object)?,
                StatusMode::KeepStored | StatusMode::Replace => object,
            };
            self.admit(txn, &mut object, Some(&stored))?;
            keep_identity(&key, &object)?;
            Ok(txn.write(merge(object, Some(&stored), status)?)?.0)
        })
    }

    /// Deletes one object, as a DELETE to the API does (a Namespace with its contents), and returns
    /// it as last stored with the delete's revision as its resourceVersion; None if it is absent.
    /// Conflict if `expected_revision` is given and the stored resourceVersion differs.
    pub fn delete_object(
        &self,
        key: &ObjectKey,
        expected_revision: Option<u64>,
    ) -> Result<Option<Object>, StoreError> {
        self.write(&[&key.kind], |txn| {
            if txn.stored_revision(key)?.is_none() {
                return Ok(None);
            }
            check_expected(txn, key, expected_revision)?;
            remove_with_contents(txn, key)
        })
    }

    /// Drops the change-log rows at or below revision `keep_after` (never past the last revision)
    /// and returns how many were dropped. Watches and `changes` from before it then fail with
    /// [`StoreError::Compacted`].
    pub fn compact(&self, keep_after: u64) -> Result<u64, StoreError> {
        self.write(&[], |txn| txn.compact(keep_after))
    }
}

fn require_namespace(txn: &mut Txn<'_>, key: &ObjectKey) -> Result<(), StoreError> {
    match &key.namespace {
        Some(ns) if !txn.namespace_exists(ns)? => Err(StoreError::NamespaceMissing {
            namespace: ns.clone(),
            key: key.clone(),
        }),
        _ => Ok(()),
    }
}

fn check_expected(txn: &Txn<'_>, key: &ObjectKey, expected: Option<u64>) -> Result<(), StoreError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = txn.stored_revision(key)?.unwrap_or(0);
    if actual != expected {
        return Err(StoreError::Conflict {
            key: key.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Admission completes objects; renaming one would write it under a key nothing checked.
fn keep_identity(key: &ObjectKey, object: &Object) -> Result<(), StoreError> {
    let after = object.key();
    if after != *key {
        return Err(StoreError::KeyChanged {
            before: key.clone(),
            after: Box::new(after),
        });
    }
    Ok(())
}

/// Removes `key`, first every object in it if it is a Namespace.
fn remove_with_contents(txn: &mut Txn<'_>, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
    if key.kind == "Namespace" && key.namespace.is_none() {
        for inner in txn.keys_in_namespace(&key.name)? {
            txn.remove(&inner)?;
        }
    }
    txn.remove(key)
}
