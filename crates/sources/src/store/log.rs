//! The change log as readers see it: [`Event`]s (what changed) for the lab's daemons through a
//! [`Watch`], and [`Change`]s (what changed, with the object) for the API server's watch cache.
//!
//! A log row that cannot be read is skipped with a warning naming it, never an error: one bad row
//! must not stop every watcher of the store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use weft_model::{Object, ObjectKey};

use super::db::{check_not_compacted, decode};
use super::key::from_columns;
use super::server_fields::Merged;
use super::StoreError;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    /// The `type` column of a log row, spelled like a Kubernetes watch event's type.
    pub(super) fn log_type(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }

    fn from_log_type(text: &str) -> Option<EventKind> {
        match text {
            "ADDED" => Some(EventKind::Added),
            "MODIFIED" => Some(EventKind::Modified),
            "DELETED" => Some(EventKind::Deleted),
            _ => None,
        }
    }
}

/// One change, numbered by the store revision it created.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: ObjectKey,
}

/// One change with its object: as written for Added and Modified; for Deleted, as last stored,
/// with its resourceVersion set to the delete's revision (as kube-apiserver sends deletions).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub revision: u64,
    pub kind: EventKind,
    pub key: ObjectKey,
    pub object: Object,
}

/// A log row's identity columns, read without its object.
struct Row {
    revision: u64,
    kind: Option<EventKind>,
    type_text: String,
    key: ObjectKey,
}

fn row_head(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let type_text: String = row.get(1)?;
    Ok(Row {
        revision: row.get(0)?,
        kind: EventKind::from_log_type(&type_text),
        type_text,
        key: from_columns(row.get(2)?, row.get(3)?, row.get(4)?),
    })
}

fn warn_bad_type(row: &Row) {
    tracing::warn!(object = %row.key, revision = row.revision, r#type = %row.type_text,
        "skipping a change log row of unknown type");
}

/// Up to `limit` changes after revision `after`, read in the transaction `conn` is in. Rows that do
/// not decode are skipped, with one warning per row and process (`warned` remembers them).
pub(super) fn read_changes(
    conn: &Connection,
    path: &Path,
    after: u64,
    limit: usize,
    warned: &Mutex<HashSet<u64>>,
) -> Result<Vec<Change>, StoreError> {
    check_not_compacted(conn, path, after)?;
    let db_err = |e| StoreError::db(path, e);
    let mut stmt = conn
        .prepare_cached(
            "SELECT revision, type, kind, namespace, name, json FROM log \
             WHERE revision > ?1 ORDER BY revision LIMIT ?2",
        )
        .map_err(db_err)?;
    let mut changes = Vec::new();
    let mut from = after;
    // Skipped rows would leave a page short: read on until it is full or the log ends.
    while changes.len() < limit {
        let want = limit - changes.len();
        let mut rows = stmt
            .query((from, i64::try_from(want).unwrap_or(i64::MAX)))
            .map_err(db_err)?;
        let mut read = 0;
        while let Some(row) = rows.next().map_err(db_err)? {
            read += 1;
            let head = row_head(row).map_err(db_err)?;
            from = head.revision;
            let json: String = row.get(5).map_err(db_err)?;
            let Some(kind) = head.kind else {
                if warned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(head.revision)
                {
                    warn_bad_type(&head);
                }
                continue;
            };
            match decode(&head.key, head.revision, &json) {
                Ok(mut object) => {
                    if kind == EventKind::Deleted {
                        Merged::commit(&mut object, head.revision);
                    }
                    changes.push(Change {
                        revision: head.revision,
                        kind,
                        key: head.key,
                        object,
                    });
                }
                Err(e) => {
                    if warned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(head.revision)
                    {
                        tracing::warn!(object = %head.key, revision = head.revision, error = %e,
                            "skipping a corrupt change log row");
                    }
                }
            }
        }
        if read < want {
            break;
        }
    }
    Ok(changes)
}

/// A cursor over the change log: returns each event after its starting revision once. It has its
/// own database connection, so polling costs one `PRAGMA data_version` while nothing changes.
#[derive(Debug)]
pub struct Watch {
    conn: Connection,
    path: PathBuf,
    /// The last revision handed out (or the starting point).
    last: u64,
    /// The database's data version at the last read: unchanged means no commit since.
    data_version: Option<i64>,
}

/// How often `wait` polls: a poll that finds nothing costs one pragma, and 5 ms is well under what
/// any watcher notices.
const WAIT_INTERVAL: Duration = Duration::from_millis(5);

impl Watch {
    pub(super) fn new(conn: Connection, path: PathBuf, from_revision: u64) -> Watch {
        Watch {
            conn,
            path,
            last: from_revision,
            data_version: None,
        }
    }

    /// The revision of the last event returned (or the one the watch started from).
    pub fn revision(&self) -> u64 {
        self.last
    }

    /// Events after the last one seen, without blocking. Fails with Compacted if the log has been
    /// compacted past this watch (list again, then watch from the listed revision).
    pub fn poll(&mut self) -> Result<Vec<Event>, StoreError> {
        let path = &self.path;
        let db_err = |e| StoreError::db(path, e);
        let version: i64 = self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(db_err)?;
        if self.data_version == Some(version) {
            return Ok(Vec::new());
        }
        let tx = self.conn.transaction().map_err(db_err)?;
        check_not_compacted(&tx, path, self.last)?;
        let mut events = Vec::new();
        let mut last = self.last;
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT revision, type, kind, namespace, name FROM log \
                     WHERE revision > ?1 ORDER BY revision",
                )
                .map_err(db_err)?;
            let mut rows = stmt.query([last]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let head = row_head(row).map_err(db_err)?;
                // Past a bad row too: it is reported once, not at every poll.
                last = head.revision;
                match head.kind {
                    Some(kind) => events.push(Event {
                        revision: head.revision,
                        kind,
                        key: head.key,
                    }),
                    None => warn_bad_type(&head),
                }
            }
        }
        tx.rollback().map_err(db_err)?;
        self.last = last;
        self.data_version = Some(version);
        Ok(events)
    }

    /// Blocks until at least one event arrives or `timeout` passes (then returns no events).
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Event>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.poll()?;
            if !events.is_empty() {
                return Ok(events);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(events);
            }
            std::thread::sleep(WAIT_INTERVAL.min(deadline - now));
        }
    }
}
