//! The SQLite database under a store directory: opening it (permissions, pragmas, schema), the
//! connections a handle reads and writes through, and decoding rows into objects.
//!
//! Schema (kine-like: current state plus a change log, both keyed by revision):
//! - `objects(kind, namespace, name, revision, json)`: the current objects; `namespace` is empty for
//!   cluster-scoped ones, `revision` is the object's last change (its resourceVersion);
//! - `log(revision, type, kind, namespace, name, json)`: one row per change, the object as written
//!   (for a delete, as it was last stored); compaction drops the oldest rows;
//! - `kinds(kind, stamp, count)`: per kind, the revision of its last change (what in-process caches
//!   compare against) and how many objects it has (what quotas check);
//! - `meta(name, value)`: `revision`, the last revision handed out, which never goes back, and
//!   `compacted`, the revision at or below which the log has been dropped.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use weft_model::{Object, ObjectKey};

use super::key::namespace_column;
use super::StoreError;

/// The database file inside a store directory.
pub const DB_FILE: &str = "store.db";

/// The schema this code writes; a store written by a newer schema is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another process's write to finish. Writes hold the lock for
/// milliseconds (a 10k-object apply for about a second), so reaching this means something is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle read connections a handle keeps for reuse; more are opened when more threads read at once.
const IDLE_READERS: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS kinds (
    kind TEXT PRIMARY KEY,
    stamp INTEGER NOT NULL,
    count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// The connections of one store handle (shared by its clones).
pub(super) struct Db {
    pub path: PathBuf,
    /// Every write of this handle goes through this one connection, so threads of one process
    /// queue on a mutex instead of spinning in SQLite's busy handler.
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database in `dir`, root-only.
    pub fn open(dir: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        restrict(dir, 0o700)?;
        let path = dir.join(DB_FILE);
        // The files are only ever touched by path here (chmod, never open and close): closing any
        // descriptor of the database would drop every POSIX lock this process holds on it, which
        // lets another process's closing connection checkpoint and truncate the WAL under this
        // process's readers. SQLite creates the file; the 0700 directory keeps it private until
        // it is 0600, and SQLite gives the -wal and -shm files the main file's mode.
        let mut writer = connect(&path)?;
        restrict_files(dir, &path)?;
        let db_err = |e| StoreError::db(&path, e);
        // WAL: readers (every daemon's watch) never block the writer nor wait for it.
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unusable {
                path,
                reason: format!("SQLite cannot switch it to WAL mode (it stays in {mode} mode)"),
            });
        }
        let tx = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unusable {
                path: path.clone(),
                reason: format!(
                    "its schema version {version} is newer than this weft's ({SCHEMA_VERSION}); \
                     use the weft that wrote it"
                ),
            });
        }
        tx.execute_batch(SCHEMA).map_err(db_err)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        restrict_files(dir, &path)?;
        Ok(Db {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The write connection, exclusively.
    pub fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere while holding it left no transaction open: rusqlite rolls back a
        // dropped transaction, so the connection is still good.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read connection for this thread, returned to the pool when dropped.
    pub fn reader(&self) -> Result<Reader<'_>, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        Ok(Reader {
            db: self,
            conn: Some(conn),
        })
    }

    /// A connection of its own, for a long-lived reader such as a watch.
    pub fn dedicated(&self) -> Result<Connection, StoreError> {
        connect(&self.path)
    }
}

/// A pooled read connection.
pub(super) struct Reader<'a> {
    db: &'a Db,
    conn: Option<Connection>,
}

impl Reader<'_> {
    /// Runs `f` in one read transaction: everything it reads is one consistent state.
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = &self.db.path;
        let conn = self.conn.as_mut().ok_or_else(|| StoreError::Unusable {
            path: path.clone(),
            reason: "a read connection was used after its return to the pool".into(),
        })?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| StoreError::db(path, e))?;
        let value = f(&tx)?;
        // Read-only: finishing it just releases the snapshot.
        tx.rollback().map_err(|e| StoreError::db(path, e))?;
        Ok(value)
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut pool = self.db.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < IDLE_READERS {
                pool.push(conn);
            }
        }
    }
}

/// Makes the database and its -wal and -shm files (those that exist) 0600.
fn restrict_files(dir: &Path, db: &Path) -> Result<(), StoreError> {
    restrict(db, 0o600)?;
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("{DB_FILE}{suffix}"));
        match std::fs::set_permissions(&side, Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.map_err(|e| StoreError::io(&side, e))?,
        }
    }
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> Result<(), StoreError> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| StoreError::io(path, e))
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let db_err = |e| StoreError::db(path, e);
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    // NORMAL, not FULL: in WAL mode NORMAL syncs at checkpoints, not at every commit. A killed
    // process (the crash that happens in the lab: a ^C'd or OOM-killed `weft apply`) loses no
    // committed write either way, since the WAL is in the OS page cache; only a power loss can
    // drop the last commits, and never corrupts the database. The lab's cluster dies with the
    // machine anyway, while FULL would cap single-object writes at the disk's flush rate.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_err)?;
    Ok(conn)
}

/// One stored row, decoded: a corrupt row names its object and revision.
pub(super) fn decode(key: &ObjectKey, revision: u64, json: &str) -> Result<Object, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        key: key.clone(),
        revision,
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
    let object = Object::from_json(value).map_err(|e| corrupt(e.to_string()))?;
    if object.key() != *key {
        return Err(corrupt(format!("the stored JSON is {}", object.key())));
    }
    Ok(object)
}

/// The stored row of `key`: its revision and JSON.
pub(super) fn row(
    conn: &Connection,
    path: &Path,
    key: &ObjectKey,
) -> Result<Option<(u64, String)>, StoreError> {
    conn.prepare_cached(
        "SELECT revision, json FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
    )
    .and_then(|mut stmt| {
        stmt.query_row((&key.kind, namespace_column(key), &key.name), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
    })
    .map_err(|e| StoreError::db(path, e))
}

/// A `meta` value (`revision` or `compacted`).
pub(super) fn meta(conn: &Connection, path: &Path, name: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::db(path, e))
}

/// The revision of a kind's last change (0 if it never had one).
pub(super) fn stamp(conn: &Connection, path: &Path, kind: &str) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT stamp FROM kinds WHERE kind = ?1")
        .and_then(|mut stmt| stmt.query_row([kind], |row| row.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::db(path, e))
}

/// Fails with Compacted if changes after `after` are no longer all in the log.
pub(super) fn check_not_compacted(
    conn: &Connection,
    path: &Path,
    after: u64,
) -> Result<(), StoreError> {
    let compacted = meta(conn, path, "compacted")?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            oldest: compacted,
        });
    }
    Ok(())
}
