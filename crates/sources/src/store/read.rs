//! The store's reads. Each reads one consistent snapshot through a pooled connection and never
//! waits for writers; lists come from the per-kind cache, which one indexed read validates.

use rusqlite::Connection;
use weft_model::{Object, ObjectKey};

use super::db::{check_not_compacted, decode, meta, row};
use super::key::{check_key, valid_kind};
use super::log::{read_changes, Change, Watch};
use super::{Store, StoreError};

impl Store {
    /// The object stored under `key`. A stored row that does not parse is a Corrupt error naming
    /// the object and its revision.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        check_key(key)?;
        let path = &self.shared.db.path;
        let stored = self.shared.db.reader()?.read(|tx| row(tx, path, key))?;
        stored
            .map(|(revision, json)| decode(key, revision, &json))
            .transpose()
    }

    /// Every object of `kind`, sorted by namespace and name. Objects whose rows do not parse are
    /// left out, each with a warning naming it.
    pub fn list(&self, kind: &str) -> Result<Vec<Object>, StoreError> {
        Ok(self.snapshot(Some(kind))?.1)
    }

    /// Every object, sorted by kind, namespace and name (corrupt ones left out, as in `list`).
    pub fn list_all(&self) -> Result<Vec<Object>, StoreError> {
        Ok(self.snapshot(None)?.1)
    }

    /// The revision of the last change (0 for an empty store).
    pub fn revision(&self) -> Result<u64, StoreError> {
        let path = &self.shared.db.path;
        self.shared
            .db
            .reader()?
            .read(|tx| meta(tx, path, "revision"))
    }

    /// The store's revision and the objects of `kind` (or of every kind), read in one transaction
    /// so they are consistent: watching from the revision misses nothing and repeats nothing.
    pub fn snapshot(&self, kind: Option<&str>) -> Result<(u64, Vec<Object>), StoreError> {
        let path = &self.shared.db.path;
        let mut reader = self.shared.db.reader()?;
        match kind {
            Some(kind) if !valid_kind(kind) => {
                Ok((reader.read(|tx| meta(tx, path, "revision"))?, Vec::new()))
            }
            Some(kind) => {
                // Locked before the snapshot begins, so it is never older than the cache.
                let cache = self.shared.caches.kind(kind);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                reader.read(|tx| {
                    let revision = meta(tx, path, "revision")?;
                    Ok((revision, cache.sorted_at(tx, path, kind)?))
                })
            }
            None => reader.read(|tx| {
                let revision = meta(tx, path, "revision")?;
                let mut objects = Vec::new();
                for kind in kinds(tx, path)? {
                    let cache = self.shared.caches.kind(&kind);
                    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                    objects.extend(cache.sorted_at(tx, path, &kind)?);
                }
                Ok((revision, objects))
            }),
        }
    }

    /// Up to `limit` changes after revision `after`, oldest first: what an API server's watch
    /// sends. Fails with Compacted if the log no longer reaches back to `after`; rows that do not
    /// decode are skipped with a warning.
    pub fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let path = &self.shared.db.path;
        let warned = &self.shared.warned;
        self.shared
            .db
            .reader()?
            .read(|tx| read_changes(tx, path, after, limit, warned))
    }

    /// Follows changes after `from_revision` (0: from the beginning, unless compacted). To see a
    /// consistent picture, take a `snapshot` (or read `revision()`, then list), then watch from its
    /// revision. Fails with Compacted if the log no longer reaches back to `from_revision`.
    pub fn watch(&self, from_revision: u64) -> Result<Watch, StoreError> {
        let path = &self.shared.db.path;
        self.shared
            .db
            .reader()?
            .read(|tx| check_not_compacted(tx, path, from_revision))?;
        Ok(Watch::new(
            self.shared.db.dedicated()?,
            path.clone(),
            from_revision,
        ))
    }
}

/// The kinds that have objects, sorted.
fn kinds(conn: &Connection, path: &std::path::Path) -> Result<Vec<String>, StoreError> {
    let db_err = |e| StoreError::db(path, e);
    let mut stmt = conn
        .prepare_cached("SELECT kind FROM kinds WHERE count > 0 ORDER BY kind")
        .map_err(db_err)?;
    let kinds = stmt
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
        .map_err(db_err)?;
    Ok(kinds)
}
