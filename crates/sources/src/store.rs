//! The embedded store: objects as JSON files, a revision counter and a change log, shared by several
//! processes through the file system.
//!
//! Layout of a store directory:
//! - `objects/<Kind>/<namespace or _cluster>/<name>.json`: the objects, each replaced atomically;
//! - `events.jsonl`: one line per change (revision, type, key), append-only;
//! - `revision`: the last revision handed out;
//! - `lock`: `flock`ed exclusively around every write. Readers take no lock: renames are atomic.
//!
//! A write stores its objects first, then appends its events, then bumps `revision`, so a watcher
//! that sees an event can read the object it names.

mod files;
mod log;
mod server_fields;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use weft_model::{Object, ObjectKey};

use files::{Layout, WriteLock};
pub use log::{Event, EventKind, Watch};
use server_fields::{merge, Merged, StatusMode};

/// Namespaces that exist without a Namespace object, as in every Kubernetes cluster.
pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system"];

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store file {} is corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{key}: namespace {namespace:?} does not exist (create it first or apply it in the same batch)")]
    NamespaceMissing { key: ObjectKey, namespace: String },
    #[error("{key} appears more than once in one apply")]
    Duplicate { key: ObjectKey },
    #[error("{key}: {reason}")]
    InvalidKey { key: ObjectKey, reason: String },
    #[error("{key}: {message}")]
    Invalid { key: ObjectKey, message: String },
    #[error("update of {before} changed its identity to {after}")]
    KeyChanged {
        before: ObjectKey,
        // Boxed to keep every Result of this crate small.
        after: Box<ObjectKey>,
    },
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What `apply` did with one object, printed like kubectl does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    Created(ObjectKey),
    Configured(ObjectKey),
    Unchanged(ObjectKey),
    /// Stored, but of a kind weft does not act on (yet).
    Ignored(ObjectKey),
}

impl ApplyResult {
    pub fn key(&self) -> &ObjectKey {
        match self {
            ApplyResult::Created(k)
            | ApplyResult::Configured(k)
            | ApplyResult::Unchanged(k)
            | ApplyResult::Ignored(k) => k,
        }
    }
}

impl fmt::Display for ApplyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key();
        let what = key.resource_ref();
        match self {
            ApplyResult::Created(_) => write!(f, "{what} created"),
            ApplyResult::Configured(_) => write!(f, "{what} configured"),
            ApplyResult::Unchanged(_) => write!(f, "{what} unchanged"),
            ApplyResult::Ignored(_) => write!(
                f,
                "{what} stored (ignored: kind {} is not handled by weft)",
                key.kind
            ),
        }
    }
}

/// What `delete` did with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted(ObjectKey),
    NotFound(ObjectKey),
}

impl fmt::Display for DeleteResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteResult::Deleted(k) => write!(f, "{} deleted", k.resource_ref()),
            DeleteResult::NotFound(k) => write!(f, "{} not found", k.resource_ref()),
        }
    }
}

/// What an API server does to an object before storing it: defaulting, validation and allocation
/// (a Service's cluster IP, node ports, load-balancer address). Runs under the store's write lock,
/// so two concurrent applies can never allocate the same thing.
pub trait Admission: Send + Sync {
    /// Checks and completes `incoming` (one object of an apply batch). `stored` is its current
    /// version; `existing` lists the stored objects of the same kind as this batch sees them
    /// (objects admitted earlier in the batch included, `incoming`'s own stored version too).
    /// An error refuses the whole batch; its text should say what is wrong and with what.
    fn admit(
        &self,
        incoming: &mut Object,
        stored: Option<&Object>,
        existing: &[Object],
    ) -> Result<(), String>;
}

/// A handle on a store directory. Cheap; several handles (in one or many processes) may share a
/// directory.
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    admission: Option<std::sync::Arc<dyn Admission>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.layout.dir)
            .finish()
    }
}

/// The writes of one locked section, committed together at its end.
struct Txn<'a> {
    layout: &'a Layout,
    revision: u64,
    /// Pending state by key: Some(object) to write, None to delete. Reads see it first.
    pending: BTreeMap<ObjectKey, Option<Object>>,
    events: Vec<Event>,
}

impl<'a> Txn<'a> {
    fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        match self.pending.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => files::read_object(&self.layout.object(key)),
        }
    }

    /// Records a change under the next revision and returns the object as it will be stored.
    fn write(&mut self, merged: Merged) -> Result<(Object, Option<EventKind>), StoreError> {
        match merged {
            Merged::Unchanged(object) => Ok((object, None)),
            Merged::Changed(mut object, kind) => {
                self.revision += 1;
                Merged::commit(&mut object, self.revision);
                let key = object.key();
                self.events.push(Event {
                    revision: self.revision,
                    kind,
                    key: key.clone(),
                });
                self.pending.insert(key, Some(object.clone()));
                Ok((object, Some(kind)))
            }
        }
    }

    fn remove(&mut self, key: &ObjectKey) {
        self.revision += 1;
        self.events.push(Event {
            revision: self.revision,
            kind: EventKind::Deleted,
            key: key.clone(),
        });
        self.pending.insert(key.clone(), None);
    }

    /// The objects of one kind as this transaction sees them (its pending writes included).
    fn list(&self, kind: &str) -> Result<Vec<Object>, StoreError> {
        let mut by_key: BTreeMap<ObjectKey, Object> = files::read_kind(self.layout, kind)?
            .into_iter()
            .map(|o| (o.key(), o))
            .collect();
        for (key, pending) in self.pending.iter().filter(|(k, _)| k.kind == kind) {
            match pending {
                Some(object) => by_key.insert(key.clone(), object.clone()),
                None => by_key.remove(key),
            };
        }
        Ok(by_key.into_values().collect())
    }

    fn namespace_exists(&self, namespace: &str) -> Result<bool, StoreError> {
        if BUILTIN_NAMESPACES.contains(&namespace) {
            return Ok(true);
        }
        Ok(self
            .get(&ObjectKey::cluster_scoped("Namespace", namespace))?
            .is_some())
    }

    fn commit(self) -> Result<(), StoreError> {
        for (key, object) in &self.pending {
            let path = self.layout.object(key);
            match object {
                Some(object) => {
                    let bytes = serde_json::to_vec_pretty(&object.to_json()).map_err(|e| {
                        StoreError::Invalid {
                            key: key.clone(),
                            message: format!("cannot encode: {e}"),
                        }
                    })?;
                    files::write_atomic(&path, &bytes)?;
                }
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(&path, e)),
                },
            }
        }
        log::append(&self.layout.events(), &self.events)?;
        if !self.events.is_empty() {
            files::write_atomic(
                &self.layout.revision(),
                self.revision.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }
}

/// Gives namespaced objects a namespace (`default`) and takes it from cluster-scoped ones, so keys
/// are the same whether or not the object came through the manifest parser.
fn normalize(mut object: Object) -> Object {
    let namespaced = Object::is_namespaced_kind(object.kind());
    let meta = object.metadata_mut();
    if !namespaced {
        meta.namespace = None;
    } else if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".to_string());
    }
    object
}

impl Store {
    /// Opens the store in `dir`, creating the directory and its layout if missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let layout = Layout {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(layout.objects()).map_err(|e| StoreError::io(dir, e))?;
        let _lock = WriteLock::acquire(&layout.lock())?;
        let events = layout.events();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events)
            .map_err(|e| StoreError::io(&events, e))?;
        if !layout.revision().exists() {
            files::write_atomic(&layout.revision(), b"0")?;
        }
        Ok(Store {
            layout,
            admission: None,
        })
    }

    /// This handle runs `admission` on every object it applies (controllers' `put`s and
    /// `update`s are not admitted: they write what the control plane decided).
    pub fn with_admission(mut self, admission: std::sync::Arc<dyn Admission>) -> Store {
        self.admission = Some(admission);
        self
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = WriteLock::acquire(&self.layout.lock())?;
        let mut txn = Txn {
            layout: &self.layout,
            revision: files::read_revision(&self.layout.revision())?,
            pending: BTreeMap::new(),
            events: Vec::new(),
        };
        let value = f(&mut txn)?;
        txn.commit()?;
        Ok(value)
    }

    /// Creates or updates objects, like `kubectl apply`: all or nothing. Every object is checked
    /// before anything is written: its namespace must exist (or be created in the same batch) and no
    /// key may appear twice. Objects that differ from the stored ones only in server-set fields are
    /// Unchanged and make no event; a stored status is kept when the incoming object has none.
    pub fn apply(&self, objects: Vec<Object>) -> Result<Vec<ApplyResult>, StoreError> {
        let objects: Vec<Object> = objects.into_iter().map(normalize).collect();
        self.locked(|txn| {
            let mut keys = BTreeSet::new();
            let batch_namespaces: BTreeSet<&str> = objects
                .iter()
                .filter(|o| o.kind() == "Namespace")
                .map(|o| o.name())
                .collect();
            for object in &objects {
                let key = object.key();
                files::check_key(&key)?;
                if !keys.insert(key.clone()) {
                    return Err(StoreError::Duplicate { key });
                }
                if let Some(ns) = &key.namespace {
                    if !batch_namespaces.contains(ns.as_str()) && !txn.namespace_exists(ns)? {
                        return Err(StoreError::NamespaceMissing {
                            namespace: ns.clone(),
                            key,
                        });
                    }
                }
            }
            let mut results = Vec::with_capacity(objects.len());
            // What admission sees of each kind, read once per batch and kept current as the
            // batch writes (a batch of 10k Services must not re-read the store 10k times).
            let mut seen: BTreeMap<String, Vec<Object>> = BTreeMap::new();
            for mut object in objects {
                let key = object.key();
                let handled = object.is_handled();
                let stored = txn.get(&key)?;
                if let Some(admission) = &self.admission {
                    if !seen.contains_key(&key.kind) {
                        seen.insert(key.kind.clone(), txn.list(&key.kind)?);
                    }
                    let existing = seen.get(&key.kind).map(Vec::as_slice).unwrap_or_default();
                    admission
                        .admit(&mut object, stored.as_ref(), existing)
                        .map_err(|message| StoreError::Invalid {
                            key: key.clone(),
                            message,
                        })?;
                }
                let merged = merge(object, stored.as_ref(), StatusMode::KeepStored)?;
                let (written, event) = txn.write(merged)?;
                if let Some(list) = seen.get_mut(&key.kind) {
                    list.retain(|o| o.key() != key);
                    list.push(written);
                }
                results.push(match event {
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
        self.locked(|txn| {
            let key = object.key();
            files::check_key(&key)?;
            if let Some(ns) = &key.namespace {
                if !txn.namespace_exists(ns)? {
                    return Err(StoreError::NamespaceMissing {
                        namespace: ns.clone(),
                        key,
                    });
                }
            }
            let stored = txn.get(&key)?;
            let merged = merge(object, stored.as_ref(), StatusMode::Replace)?;
            Ok(txn.write(merged)?.0)
        })
    }

    /// Read-modify-write of one object under the lock, so concurrent writers never lose an update.
    /// Returns None if the object does not exist; makes no event if `f` changed nothing.
    pub fn update(
        &self,
        key: &ObjectKey,
        f: impl FnOnce(&mut Object),
    ) -> Result<Option<Object>, StoreError> {
        self.locked(|txn| {
            let Some(stored) = txn.get(key)? else {
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
    /// object in it (each with its own Deleted event).
    pub fn delete(&self, keys: &[ObjectKey]) -> Result<Vec<DeleteResult>, StoreError> {
        self.locked(|txn| {
            let mut results = Vec::with_capacity(keys.len());
            for key in keys {
                if txn.get(key)?.is_none() {
                    results.push(DeleteResult::NotFound(key.clone()));
                    continue;
                }
                if key.kind == "Namespace" && key.namespace.is_none() {
                    for kind in files::kinds(&self.layout)? {
                        for object in files::read_kind(&self.layout, &kind)? {
                            let inner = object.key();
                            if inner.namespace.as_deref() == Some(key.name.as_str())
                                && txn.get(&inner)?.is_some()
                            {
                                txn.remove(&inner);
                            }
                        }
                    }
                    // Objects created earlier in this same call are only in the pending set.
                    let pending: Vec<ObjectKey> = txn
                        .pending
                        .iter()
                        .filter(|(k, v)| {
                            v.is_some() && k.namespace.as_deref() == Some(key.name.as_str())
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    for inner in pending {
                        txn.remove(&inner);
                    }
                }
                txn.remove(key);
                results.push(DeleteResult::Deleted(key.clone()));
            }
            Ok(results)
        })
    }

    pub fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        files::check_key(key)?;
        files::read_object(&self.layout.object(key))
    }

    /// Every object of `kind`, sorted by namespace and name.
    pub fn list(&self, kind: &str) -> Result<Vec<Object>, StoreError> {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(Vec::new());
        }
        files::read_kind(&self.layout, kind)
    }

    /// Every object, sorted by kind, namespace and name.
    pub fn list_all(&self) -> Result<Vec<Object>, StoreError> {
        let mut all = Vec::new();
        for kind in files::kinds(&self.layout)? {
            all.extend(files::read_kind(&self.layout, &kind)?);
        }
        Ok(all)
    }

    /// The revision of the last change (0 for an empty store).
    pub fn revision(&self) -> Result<u64, StoreError> {
        files::read_revision(&self.layout.revision())
    }

    /// Follows changes after `from_revision` (0: from the beginning). To see a consistent picture,
    /// read `revision()`, list, then watch from that revision.
    pub fn watch(&self, from_revision: u64) -> Result<Watch, StoreError> {
        Ok(Watch::new(self.layout.events(), from_revision))
    }
}

#[cfg(test)]
mod tests;
