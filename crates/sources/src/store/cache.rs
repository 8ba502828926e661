//! Parsed objects per kind, kept in process so that listing a kind, or admitting one object against
//! the 10k others of its kind, does not parse 10k JSON rows.
//!
//! A kind's cache is valid while the database's stamp for the kind (the revision of its last change,
//! written in the same transaction as the change) equals the stamp the cache was built at: one
//! indexed read tells whether any process changed the kind since. This handle's own writes update
//! the cache in place and move its stamp with them after they commit; other handles' writes are
//! replayed from the change log when they are few, else the kind is loaded again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use weft_model::{Object, ObjectKey};

use super::db::{decode, meta, stamp};
use super::key::from_columns;
use super::{EventKind, StoreError};

/// Changes a cache replays from the log rather than reloading, at least (more for larger kinds).
const MIN_REPLAY: u64 = 1000;

/// Every kind's cache of one store handle (shared by its clones).
#[derive(Default)]
pub(super) struct Caches {
    kinds: Mutex<HashMap<String, Arc<Mutex<KindCache>>>>,
}

impl Caches {
    /// The cache of `kind`. Lock order: a writer locks its kinds sorted by name, after taking the
    /// write connection; a reader holds at most one kind at a time.
    pub fn kind(&self, kind: &str) -> Arc<Mutex<KindCache>> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(kinds.entry(kind.to_string()).or_default())
    }
}

/// One kind's cache; empty until first used, and after a failure it could not undo.
#[derive(Default)]
pub(super) struct KindCache {
    pub data: Option<KindData>,
}

impl KindCache {
    /// Brings the cache to `stamp`, the kind's stamp in the transaction `conn` is in: by replaying
    /// the kind's log rows since the cache's stamp when there are few, else by loading every object
    /// of the kind (if `load`) or dropping the cache.
    fn refresh(
        &mut self,
        conn: &Connection,
        path: &Path,
        kind: &str,
        stamp: u64,
        load: bool,
    ) -> Result<(), StoreError> {
        if let Some(data) = &mut self.data {
            if data.stamp == stamp {
                return Ok(());
            }
            if data.stamp < stamp {
                match data.catch_up(conn, path, kind, stamp) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => {
                        // Half replayed: neither the old stamp's objects nor the new.
                        self.data = None;
                        return Err(e);
                    }
                }
            }
        }
        self.data = if load {
            Some(KindData::load(conn, path, kind, stamp)?)
        } else {
            None
        };
        Ok(())
    }

    /// The objects of `kind` as the transaction `conn` is in sees them, loaded if need be.
    pub fn current(
        &mut self,
        conn: &Connection,
        path: &Path,
        kind: &str,
    ) -> Result<&mut KindData, StoreError> {
        let stamp = stamp(conn, path, kind)?;
        self.refresh(conn, path, kind, stamp, true)?;
        let data = match self.data.take() {
            Some(data) => data,
            None => KindData::load(conn, path, kind, stamp)?,
        };
        Ok(self.data.insert(data))
    }

    /// The objects of `kind` as the read transaction `conn` is in sees them, sorted. A cache newer
    /// than that snapshot (a write committed after it began) is kept, and the snapshot's objects
    /// read for this call only.
    pub fn sorted_at(
        &mut self,
        conn: &Connection,
        path: &Path,
        kind: &str,
    ) -> Result<Vec<Object>, StoreError> {
        let stamp = stamp(conn, path, kind)?;
        if self.data.as_ref().is_some_and(|d| d.stamp > stamp) {
            return Ok(KindData::load(conn, path, kind, stamp)?.sorted());
        }
        Ok(self.current(conn, path, kind)?.sorted())
    }

    /// The cache, if it can be made current for the transaction `conn` is in without loading the
    /// whole kind.
    pub fn if_current(
        &mut self,
        conn: &Connection,
        path: &Path,
        kind: &str,
    ) -> Result<Option<&mut KindData>, StoreError> {
        let stamp = stamp(conn, path, kind)?;
        self.refresh(conn, path, kind, stamp, false)?;
        Ok(self.data.as_mut())
    }
}

/// What the cache knows of one key.
pub(super) enum Cached<'a> {
    Found(&'a Object),
    /// Stored, but its row does not parse: the revision and why.
    Corrupt(u64, &'a str),
    Absent,
}

/// The parsed objects of one kind at one stamp. Unordered: writes push and swap-remove, so keeping
/// 10k objects current costs nothing per write.
pub(super) struct KindData {
    pub stamp: u64,
    objects: Vec<Object>,
    index: HashMap<ObjectKey, usize>,
    corrupt: HashMap<ObjectKey, (u64, String)>,
}

impl KindData {
    fn load(
        conn: &Connection,
        path: &Path,
        kind: &str,
        stamp: u64,
    ) -> Result<KindData, StoreError> {
        let db_err = |e| StoreError::db(path, e);
        let mut stmt = conn
            .prepare_cached("SELECT namespace, name, revision, json FROM objects WHERE kind = ?1")
            .map_err(db_err)?;
        let mut rows = stmt.query([kind]).map_err(db_err)?;
        let mut data = KindData {
            stamp,
            objects: Vec::new(),
            index: HashMap::new(),
            corrupt: HashMap::new(),
        };
        while let Some(row) = rows.next().map_err(db_err)? {
            let key = from_columns(
                kind.to_string(),
                row.get(0).map_err(db_err)?,
                row.get(1).map_err(db_err)?,
            );
            let revision: u64 = row.get(2).map_err(db_err)?;
            let json: String = row.get(3).map_err(db_err)?;
            data.store(key, revision, &json);
        }
        Ok(data)
    }

    /// Replays the kind's changes after this cache's stamp up to `stamp` from the log, so a cache
    /// follows other processes' writes at the cost of those writes. False (nothing changed) when
    /// the log no longer reaches back or replaying would cost more than a load.
    fn catch_up(
        &mut self,
        conn: &Connection,
        path: &Path,
        kind: &str,
        stamp: u64,
    ) -> Result<bool, StoreError> {
        // Revisions are contiguous, so this bounds the log rows to scan (of every kind).
        let behind = stamp - self.stamp;
        if behind > (self.objects.len() as u64).max(MIN_REPLAY)
            || meta(conn, path, "compacted")? > self.stamp
        {
            return Ok(false);
        }
        let db_err = |e| StoreError::db(path, e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT revision, type, namespace, name, json FROM log \
                 WHERE revision > ?1 AND revision <= ?2 AND kind = ?3 ORDER BY revision",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query((self.stamp, stamp, kind)).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let revision: u64 = row.get(0).map_err(db_err)?;
            let change: String = row.get(1).map_err(db_err)?;
            let key = from_columns(
                kind.to_string(),
                row.get(2).map_err(db_err)?,
                row.get(3).map_err(db_err)?,
            );
            if change == EventKind::Deleted.log_type() {
                self.remove(&key);
                self.corrupt.remove(&key);
                continue;
            }
            let json: String = row.get(4).map_err(db_err)?;
            self.store(key, revision, &json);
        }
        self.stamp = stamp;
        Ok(true)
    }

    /// Stores a row's object, or records it as corrupt (with a warning) if it does not parse.
    fn store(&mut self, key: ObjectKey, revision: u64, json: &str) {
        match decode(&key, revision, json) {
            Ok(object) => {
                self.corrupt.remove(&key);
                self.upsert(object);
            }
            Err(e) => {
                // One bad row must not stop every daemon that lists this kind.
                tracing::warn!(object = %key, revision, error = %e, "skipping a corrupt object in the store");
                self.remove(&key);
                self.corrupt.insert(key, (revision, e.to_string()));
            }
        }
    }

    pub fn lookup(&self, key: &ObjectKey) -> Cached<'_> {
        if let Some(&i) = self.index.get(key) {
            return Cached::Found(&self.objects[i]);
        }
        match self.corrupt.get(key) {
            Some((revision, message)) => Cached::Corrupt(*revision, message),
            None => Cached::Absent,
        }
    }

    pub fn objects(&self) -> &[Object] {
        &self.objects
    }

    /// The objects sorted by namespace then name, as lists return them.
    pub fn sorted(&self) -> Vec<Object> {
        let mut objects = self.objects.clone();
        objects.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        objects
    }

    /// Stores `object`, returning what it replaced.
    pub fn upsert(&mut self, object: Object) -> Option<Object> {
        let key = object.key();
        match self.index.get(&key) {
            Some(&i) => Some(std::mem::replace(&mut self.objects[i], object)),
            None => {
                self.index.insert(key, self.objects.len());
                self.objects.push(object);
                None
            }
        }
    }

    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        let i = self.index.remove(key)?;
        let removed = self.objects.swap_remove(i);
        if let Some(moved) = self.objects.get(i) {
            self.index.insert(moved.key(), i);
        }
        Some(removed)
    }

    pub fn is_corrupt(&self, key: &ObjectKey) -> bool {
        self.corrupt.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn config_map(name: &str, value: u8) -> Object {
        Object::from_json(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"v": value.to_string()}}))
        .unwrap()
    }

    proptest! {
        /// Upserts and swap-removes keep the index pointing at the right objects.
        #[test]
        fn index_follows_upserts_and_removes(ops in prop::collection::vec((0u8..8, any::<Option<u8>>()), 0..60)) {
            let mut data = KindData { stamp: 0, objects: Vec::new(), index: HashMap::new(), corrupt: HashMap::new() };
            let mut model: BTreeMap<String, Object> = BTreeMap::new();
            for (name, value) in ops {
                let name = format!("cm{name}");
                match value {
                    Some(v) => {
                        let object = config_map(&name, v);
                        prop_assert_eq!(data.upsert(object.clone()), model.insert(name, object));
                    }
                    None => {
                        let key = ObjectKey::namespaced("ConfigMap", "default", &name);
                        prop_assert_eq!(data.remove(&key), model.remove(&name));
                    }
                }
            }
            prop_assert_eq!(data.sorted(), model.values().cloned().collect::<Vec<_>>());
            for (name, object) in &model {
                let key = ObjectKey::namespaced("ConfigMap", "default", name);
                prop_assert!(matches!(data.lookup(&key), Cached::Found(o) if o == object));
            }
        }
    }
}
