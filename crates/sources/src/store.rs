//! The embedded store: Kubernetes objects in one SQLite database (`<dir>/store.db`, WAL mode),
//! shared by every process of the lab (controller, kubelets, agents, API server, CLI), the way k3s's
//! kine keeps the Kubernetes API on SQLite.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: it takes the next revisions from a counter that
//! never goes back, writes the objects and one change-log row per change, and commits all of it or
//! nothing; writers in other processes wait for it rather than fail. Readers never block: they read
//! one consistent snapshot, and follow changes through the log ([`Store::watch`] for the daemons,
//! [`Store::changes`] for the API server), which is compacted as it grows.
//!
//! Parsed objects are cached per kind in process (see `cache`), so admission of one object against
//! 10k others, or a list of 10k, does not parse 10k rows. The directory is root-only (0700, its
//! files 0600).

mod cache;
mod db;
mod key;
mod log;
mod read;
mod server_fields;
mod txn;
mod write;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weft_model::{Object, ObjectKey};

use cache::{Caches, KindCache};
use db::Db;
pub use key::BUILTIN_NAMESPACES;
pub use log::{Change, Event, EventKind, Watch};
pub use server_fields::StatusMode;
use txn::Txn;

/// How many change-log rows a store keeps before writes compact it to half that.
pub const DEFAULT_LOG_LIMIT: u64 = 100_000;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store database {}: {source}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store database {} cannot be used: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("{key} (revision {revision}) is corrupt in the store: {message}; delete it and create it again")]
    Corrupt {
        key: ObjectKey,
        revision: u64,
        message: String,
    },
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
    #[error("{key} already exists")]
    AlreadyExists { key: ObjectKey },
    #[error("{key} not found")]
    NotFound { key: ObjectKey },
    #[error("{key} has been modified: it is at resourceVersion {actual}, the write expected {expected}; read it again and apply the change to the latest version")]
    Conflict {
        key: ObjectKey,
        expected: u64,
        actual: u64,
    },
    /// `oldest` is the oldest revision a watch can still start from.
    #[error("revision {requested} has been compacted: the change log only holds changes after revision {oldest}; list again and watch from the listed revision")]
    Compacted { requested: u64, oldest: u64 },
    #[error("{key}: quota exceeded: this store holds at most {limit} objects of kind {kind}; delete some, or raise the limit the store was opened with (Store::with_quota)", kind = key.kind)]
    QuotaExceeded { key: ObjectKey, limit: usize },
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn db(path: &Path, source: rusqlite::Error) -> StoreError {
        StoreError::Database {
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
/// (a Service's cluster IP, node ports, load-balancer address). Runs inside the write transaction,
/// so two concurrent writers can never allocate the same thing.
pub trait Admission: Send + Sync {
    /// Checks and completes `incoming` (one object of an apply batch, or of a create or replace).
    /// `stored` is its current version; `existing` lists the stored objects of the same kind as this
    /// write sees them, in no particular order (objects admitted earlier in the batch included,
    /// `incoming`'s own stored version too). An error refuses the whole write; its text should say
    /// what is wrong and with what. It must not call the store: the write holds its locks.
    fn admit(
        &self,
        incoming: &mut Object,
        stored: Option<&Object>,
        existing: &[Object],
    ) -> Result<(), String>;
}

/// What the clones of one opened handle share: the connections, the caches.
struct Shared {
    db: Db,
    caches: Caches,
    /// Corrupt log revisions already reported, so a poller does not repeat the warning.
    warned: Mutex<HashSet<u64>>,
}

/// A handle on a store directory. Cheap to clone (clones share connections and caches); several
/// handles, in one or many processes, may open the same directory.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    dir: PathBuf,
    admission: Option<Arc<dyn Admission>>,
    dry_run: bool,
    quota: Option<usize>,
    log_limit: u64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("dry_run", &self.dry_run)
            .field("quota", &self.quota)
            .finish()
    }
}

impl Store {
    /// Opens the store in `dir`, creating the directory and database if missing. The directory
    /// is made 0700 and the database files 0600, also when they already exist.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = Db::open(dir)?;
        Ok(Store {
            shared: Arc::new(Shared {
                db,
                caches: Caches::default(),
                warned: Mutex::default(),
            }),
            dir: dir.to_path_buf(),
            admission: None,
            dry_run: false,
            quota: None,
            log_limit: DEFAULT_LOG_LIMIT,
        })
    }

    /// This handle runs `admission` on every object it applies, creates or replaces
    /// (controllers' `put`s and `update`s are not admitted: they write what the control plane
    /// decided).
    pub fn with_admission(mut self, admission: Arc<dyn Admission>) -> Store {
        self.admission = Some(admission);
        self
    }

    /// This handle refuses to create an object of a kind that already has `max_objects_per_kind`
    /// objects (all namespaces together), with [`StoreError::QuotaExceeded`]. Applies to every
    /// write that creates (`apply`, `put`, `create`); updates and deletes are never refused.
    pub fn with_quota(mut self, max_objects_per_kind: usize) -> Store {
        self.quota = Some(max_objects_per_kind);
        self
    }

    /// Writes through this handle compact the change log down to `rows / 2` rows once it holds
    /// more than `rows` (at least 2; [`DEFAULT_LOG_LIMIT`] unless set). Watchers further behind
    /// than that get [`StoreError::Compacted`] and must list again.
    pub fn with_log_limit(mut self, rows: u64) -> Store {
        self.log_limit = rows.max(2);
        self
    }

    /// A handle whose writes run everything (key checks, namespaces, admission, quotas, merging)
    /// and return what would be stored, then roll back: a server-side dry run.
    pub fn dry_run(&self) -> Store {
        let mut store = self.clone();
        store.dry_run = true;
        store
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` as one write transaction. `kinds` are the kinds whose caches it keeps in step
    /// (others are read from the database and their caches reloaded when next used).
    fn write<T>(
        &self,
        kinds: &[&str],
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut names = kinds.to_vec();
        names.sort_unstable();
        names.dedup();
        let caches: Vec<(String, Arc<Mutex<KindCache>>)> = names
            .iter()
            .map(|k| (k.to_string(), self.shared.caches.kind(k)))
            .collect();
        let conn = self.shared.db.writer();
        let mut txn = Txn::begin(&conn, &self.shared.db.path, &caches, self.quota)?;
        let value = f(&mut txn)?;
        txn.commit(self.log_limit, self.dry_run)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
