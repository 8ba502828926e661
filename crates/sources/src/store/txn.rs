//! One write: a `BEGIN IMMEDIATE` transaction that hands out revisions, writes object and log rows,
//! keeps the per-kind stamps and counts, and keeps this handle's caches in step.
//!
//! Everything a write does is one SQLite transaction, so a batch is atomic and a killed writer
//! leaves nothing half-done. Cache changes are recorded with what they replaced: a write that fails,
//! or a dry run, rolls back the database and undoes them, so the caches stay valid either way.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};
use weft_model::{Object, ObjectKey};

use super::cache::{Cached, KindCache};
use super::db::{self, decode, meta};
use super::key::{namespace_column, stub, BUILTIN_NAMESPACES};
use super::server_fields::Merged;
use super::{EventKind, StoreError};

/// A kind's cache as one transaction holds it.
enum Holder<'a> {
    /// The handle's shared cache, locked for the whole transaction so no reader sees it mid-write.
    Shared(MutexGuard<'a, KindCache>),
    /// A kind the caller did not declare: a private cache, thrown away at the end.
    Own(KindCache),
}

struct Slot<'a> {
    kind: String,
    holder: Holder<'a>,
    /// The cache matched the database when this transaction began, and follows its writes.
    maintained: bool,
    /// Loaded mid-transaction after this transaction had changed the kind: it holds uncommitted
    /// rows no undo entry covers, so a rollback must drop it.
    tainted: bool,
}

impl Slot<'_> {
    fn cache(&mut self) -> &mut KindCache {
        match &mut self.holder {
            Holder::Shared(guard) => guard,
            Holder::Own(cache) => cache,
        }
    }
}

/// A kind's stamp and object count as this transaction leaves them.
struct KindState {
    stamp: u64,
    count: u64,
    changed: bool,
}

/// A cache change and what it replaced.
struct Undo {
    slot: usize,
    key: ObjectKey,
    previous: Option<Object>,
}

/// An open write transaction.
pub(super) struct Txn<'a> {
    conn: &'a Connection,
    path: &'a Path,
    /// The last revision handed out, this transaction's included.
    pub revision: u64,
    start_revision: u64,
    slots: Vec<Slot<'a>>,
    kinds: HashMap<String, KindState>,
    undo: Vec<Undo>,
    quota: Option<usize>,
    namespaces: HashSet<String>,
    done: bool,
}

impl<'a> Txn<'a> {
    /// Begins the transaction (waiting for other processes' writes), then locks `caches`.
    pub fn begin(
        conn: &'a Connection,
        path: &'a Path,
        caches: &'a [(String, Arc<Mutex<KindCache>>)],
        quota: Option<usize>,
    ) -> Result<Txn<'a>, StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| StoreError::db(path, e))?;
        let mut txn = Txn {
            conn,
            path,
            revision: 0,
            start_revision: 0,
            slots: Vec::new(),
            kinds: HashMap::new(),
            undo: Vec::new(),
            quota,
            namespaces: HashSet::new(),
            done: false,
        };
        // From here on, dropping `txn` rolls back.
        txn.revision = meta(conn, path, "revision")?;
        txn.start_revision = txn.revision;
        for (kind, cache) in caches {
            let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
            let maintained = guard.if_current(conn, path, kind)?.is_some();
            txn.slots.push(Slot {
                kind: kind.clone(),
                holder: Holder::Shared(guard),
                maintained,
                tainted: false,
            });
        }
        Ok(txn)
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::db(self.path, e)
    }

    fn slot(&self, kind: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.kind == kind)
    }

    fn maintained(&mut self, kind: &str) -> Option<usize> {
        self.slot(kind).filter(|&i| self.slots[i].maintained)
    }

    /// The stored object under `key`, as this transaction sees it.
    pub fn stored(&mut self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        if let Some(i) = self.maintained(&key.kind) {
            if let Some(data) = self.slots[i].cache().data.as_ref() {
                return match data.lookup(key) {
                    Cached::Found(object) => Ok(Some(object.clone())),
                    Cached::Absent => Ok(None),
                    Cached::Corrupt(revision, message) => Err(StoreError::Corrupt {
                        key: key.clone(),
                        revision,
                        message: message.to_string(),
                    }),
                };
            }
        }
        match db::row(self.conn, self.path, key)? {
            Some((revision, json)) => decode(key, revision, &json).map(Some),
            None => Ok(None),
        }
    }

    /// The revision of the stored object under `key`, without parsing it.
    pub fn stored_revision(&self, key: &ObjectKey) -> Result<Option<u64>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT revision FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row((&key.kind, namespace_column(key), &key.name), |row| {
                    row.get(0)
                })
                .optional()
            })
            .map_err(self.db_err())
    }

    /// Every stored object of `kind` as this transaction sees it, from the cache (loaded once).
    pub fn existing(&mut self, kind: &str) -> Result<&[Object], StoreError> {
        let i = match self.slot(kind) {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    kind: kind.to_string(),
                    holder: Holder::Own(KindCache::default()),
                    maintained: false,
                    tainted: false,
                });
                self.slots.len() - 1
            }
        };
        let (conn, path) = (self.conn, self.path);
        let changed_here = self.kinds.get(kind).is_some_and(|s| s.changed);
        let slot = &mut self.slots[i];
        if !slot.maintained {
            // Loaded whole, with this transaction's own rows: the log cannot replay those (the
            // kind's stamp moves only at commit).
            slot.cache().data = None;
            slot.tainted = changed_here;
            slot.maintained = true;
        }
        Ok(slot.cache().current(conn, path, kind)?.objects())
    }

    pub fn namespace_exists(&mut self, namespace: &str) -> Result<bool, StoreError> {
        if BUILTIN_NAMESPACES.contains(&namespace) || self.namespaces.contains(namespace) {
            return Ok(true);
        }
        let key = ObjectKey::cluster_scoped("Namespace", namespace);
        let exists = self.stored_revision(&key)?.is_some();
        if exists {
            self.namespaces.insert(namespace.to_string());
        }
        Ok(exists)
    }

    /// Keys of every object in `namespace`, sorted by kind and name.
    pub fn keys_in_namespace(&self, namespace: &str) -> Result<Vec<ObjectKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, name FROM objects WHERE namespace = ?1 ORDER BY kind, name",
            )
            .map_err(self.db_err())?;
        let keys = stmt
            .query_map([namespace], |row| {
                Ok(ObjectKey::namespaced(
                    row.get::<_, String>(0)?,
                    namespace,
                    row.get::<_, String>(1)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.db_err())?;
        Ok(keys)
    }

    fn kind_state(&mut self, kind: &str) -> Result<&mut KindState, StoreError> {
        if !self.kinds.contains_key(kind) {
            let row: Option<(u64, u64)> = self
                .conn
                .prepare_cached("SELECT stamp, count FROM kinds WHERE kind = ?1")
                .and_then(|mut stmt| {
                    stmt.query_row([kind], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(self.db_err())?;
            let (stamp, count) = row.unwrap_or_default();
            self.kinds.insert(
                kind.to_string(),
                KindState {
                    stamp,
                    count,
                    changed: false,
                },
            );
        }
        match self.kinds.get_mut(kind) {
            Some(state) => Ok(state),
            None => Err(StoreError::Unusable {
                path: self.path.to_path_buf(),
                reason: format!("the state of kind {kind} vanished mid-transaction"),
            }),
        }
    }

    fn log(&self, kind: EventKind, key: &ObjectKey, json: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO log (revision, type, kind, namespace, name, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute((
                    self.revision,
                    kind.log_type(),
                    &key.kind,
                    namespace_column(key),
                    &key.name,
                    json,
                ))
            })
            .map_err(self.db_err())?;
        Ok(())
    }

    /// Records a change under the next revision and returns the object as it will be stored.
    pub fn write(&mut self, merged: Merged) -> Result<(Object, Option<EventKind>), StoreError> {
        let (mut object, kind) = match merged {
            Merged::Unchanged(object) => return Ok((object, None)),
            Merged::Changed(object, kind) => (object, kind),
        };
        let key = object.key();
        let quota = self.quota;
        let revision = self.revision + 1;
        let state = self.kind_state(&key.kind)?;
        if kind == EventKind::Added {
            if let Some(limit) = quota.filter(|&limit| state.count >= limit as u64) {
                return Err(StoreError::QuotaExceeded { key, limit });
            }
            state.count += 1;
        }
        state.stamp = revision;
        state.changed = true;
        self.revision = revision;
        Merged::commit(&mut object, self.revision);
        let json = serde_json::to_string(&object).map_err(|e| StoreError::Invalid {
            key: key.clone(),
            message: format!("cannot encode: {e}"),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO objects (kind, namespace, name, revision, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (kind, namespace, name) \
                 DO UPDATE SET revision = excluded.revision, json = excluded.json",
            )
            .and_then(|mut stmt| {
                stmt.execute((
                    &key.kind,
                    namespace_column(&key),
                    &key.name,
                    self.revision,
                    &json,
                ))
            })
            .map_err(self.db_err())?;
        self.log(kind, &key, &json)?;
        if let Some(i) = self.maintained(&key.kind) {
            if let Some(data) = self.slots[i].cache().data.as_mut() {
                let previous = data.upsert(object.clone());
                self.undo.push(Undo {
                    slot: i,
                    key,
                    previous,
                });
            }
        }
        Ok((object, Some(kind)))
    }

    /// Deletes the object under `key` with the next revision; returns it as last stored, its
    /// resourceVersion set to the delete's revision (as kube-apiserver returns deleted objects).
    /// A corrupt object is deleted too, and logged as a stub naming it, so watchers hear of it.
    pub fn remove(&mut self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let Some((stored_revision, json)) = db::row(self.conn, self.path, key)? else {
            return Ok(None);
        };
        let (mut object, log_json, corrupt) = match decode(key, stored_revision, &json) {
            Ok(object) => (object, json, false),
            Err(e) => {
                tracing::warn!(object = %key, revision = stored_revision, error = %e, "deleting a corrupt object");
                let value = stub(key);
                let object = Object::from_json(value.clone()).map_err(|e| StoreError::Invalid {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                (object, value.to_string(), true)
            }
        };
        let revision = self.revision + 1;
        let state = self.kind_state(&key.kind)?;
        state.count = state.count.saturating_sub(1);
        state.stamp = revision;
        state.changed = true;
        self.revision = revision;
        self.log(EventKind::Deleted, key, &log_json)?;
        self.conn
            .prepare_cached("DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
            .and_then(|mut stmt| stmt.execute((&key.kind, namespace_column(key), &key.name)))
            .map_err(self.db_err())?;
        if key.kind == "Namespace" {
            self.namespaces.remove(&key.name);
        }
        if let Some(i) = self.maintained(&key.kind) {
            let slot = &mut self.slots[i];
            let cache = slot.cache();
            if corrupt || cache.data.as_ref().is_some_and(|d| d.is_corrupt(key)) {
                // Rare enough not to undo piecemeal: the cache is rebuilt when next needed.
                cache.data = None;
                slot.maintained = false;
            } else if let Some(data) = cache.data.as_mut() {
                let previous = data.remove(key);
                self.undo.push(Undo {
                    slot: i,
                    key: key.clone(),
                    previous,
                });
            }
        }
        Merged::commit(&mut object, self.revision);
        Ok(Some(object))
    }

    /// Drops log rows at or below `keep_after` (never past the last revision); returns how many.
    pub fn compact(&mut self, keep_after: u64) -> Result<u64, StoreError> {
        let compacted = meta(self.conn, self.path, "compacted")?;
        let target = keep_after.min(self.revision);
        if target <= compacted {
            return Ok(0);
        }
        let dropped = self
            .conn
            .prepare_cached("DELETE FROM log WHERE revision <= ?1")
            .and_then(|mut stmt| stmt.execute([target]))
            .map_err(self.db_err())?;
        self.conn
            .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")
            .and_then(|mut stmt| stmt.execute([target]))
            .map_err(self.db_err())?;
        Ok(dropped as u64)
    }

    /// Writes the revision and kind stamps, compacts the log past `log_limit` rows, and commits
    /// (or, for a dry run, rolls everything back).
    pub fn commit(mut self, log_limit: u64, dry_run: bool) -> Result<(), StoreError> {
        if self.revision != self.start_revision {
            self.conn
                .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
                .and_then(|mut stmt| stmt.execute([self.revision]))
                .map_err(self.db_err())?;
            for (kind, state) in self.kinds.iter().filter(|(_, s)| s.changed) {
                self.conn
                    .prepare_cached(
                        "INSERT INTO kinds (kind, stamp, count) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (kind) DO UPDATE SET stamp = excluded.stamp, count = excluded.count",
                    )
                    .and_then(|mut stmt| stmt.execute((kind, state.stamp, state.count)))
                    .map_err(self.db_err())?;
            }
            // Log rows are exactly the revisions after `compacted`, so their count is free.
            let compacted = meta(self.conn, self.path, "compacted")?;
            if self.revision - compacted > log_limit {
                self.compact(self.revision - log_limit / 2)?;
            }
        }
        if dry_run {
            // Dropping rolls back and undoes the cache changes.
            return Ok(());
        }
        self.conn.execute_batch("COMMIT").map_err(self.db_err())?;
        self.done = true;
        for slot in self.slots.iter_mut().filter(|s| s.maintained) {
            let Some(state) = self.kinds.get(&slot.kind).filter(|s| s.changed) else {
                continue;
            };
            if let Some(data) = slot.cache().data.as_mut() {
                data.stamp = state.stamp;
            }
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Fails only if SQLite already rolled back on its own (after some I/O errors).
        let _ = self.conn.execute_batch("ROLLBACK");
        for slot in self.slots.iter_mut().filter(|s| s.tainted) {
            slot.cache().data = None;
        }
        for undo in self.undo.drain(..).rev() {
            if let Some(data) = self.slots[undo.slot].cache().data.as_mut() {
                match undo.previous {
                    Some(previous) => {
                        data.upsert(previous);
                    }
                    None => {
                        data.remove(&undo.key);
                    }
                }
            }
        }
    }
}
