//! The store's on-disk layout and the file operations it is built from: the exclusive lock around
//! writes, atomic replacement (temp file + rename, so lock-free readers see old or new, never half),
//! and reading objects back.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use weft_model::{Object, ObjectKey};

use super::StoreError;

/// Directory name used for cluster-scoped objects; the underscore can never be a namespace name.
const CLUSTER_DIR: &str = "_cluster";

/// Paths inside a store directory.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    pub fn revision(&self) -> PathBuf {
        self.dir.join("revision")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn kind_dir(&self, kind: &str) -> PathBuf {
        self.objects().join(kind)
    }

    pub fn object(&self, key: &ObjectKey) -> PathBuf {
        let scope = key.namespace.as_deref().unwrap_or(CLUSTER_DIR);
        self.kind_dir(&key.kind)
            .join(scope)
            .join(format!("{}.json", key.name))
    }
}

/// Refuses keys that could escape or confuse the directory layout.
pub(super) fn check_key(key: &ObjectKey) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.clone(),
            reason: reason.to_string(),
        })
    };
    if key.kind.is_empty() || !key.kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return bad("kind must be non-empty and alphanumeric");
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && !s.contains(['/', '\0', '%'])
    };
    if !name_ok(&key.name) {
        return bad(
            "name must be 1-253 characters, not start with '.', and not contain '/' or '%'",
        );
    }
    if let Some(ns) = &key.namespace {
        if weft_model::names::check_rfc1123_label(ns).is_err() {
            return bad("namespace must be an RFC 1123 label");
        }
    }
    Ok(())
}

/// An exclusive `flock` on the store's lock file, released on drop. Each holder opens the file
/// itself, so the lock also excludes other threads of this process, not only other processes.
pub(super) struct WriteLock {
    _file: File,
}

impl WriteLock {
    pub fn acquire(path: &Path) -> Result<WriteLock, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(WriteLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::io(path, err));
            }
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically (creating parent directories).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dot-prefixed so listings skip it; pid and counter so no two writers ever share one.
    let temp = parent.join(format!(
        ".{file_name}.tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        StoreError::io(path, e)
    })
}

/// Reads one object file; None if it does not exist (deleted, or never written).
pub(super) fn read_object(path: &Path) -> Result<Option<Object>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Object::from_json(value)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Entries of a directory that are visible store entries (no temp files); empty if it is missing.
pub(super) fn entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let iter = match std::fs::read_dir(dir) {
        Ok(iter) => iter,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in iter {
        let path = entry.map_err(|e| StoreError::io(dir, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Every object of one kind, sorted by namespace then name (cluster-scoped ones have no namespace).
pub(super) fn read_kind(layout: &Layout, kind: &str) -> Result<Vec<Object>, StoreError> {
    let mut objects = Vec::new();
    for scope in entries(&layout.kind_dir(kind))? {
        for file in entries(&scope)? {
            if file.extension().is_some_and(|e| e == "json") {
                // A concurrent delete between listing and reading just means one object fewer.
                if let Some(object) = read_object(&file)? {
                    objects.push(object);
                }
            }
        }
    }
    objects.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
    Ok(objects)
}

/// The kinds that have (or had) objects in the store.
pub(super) fn kinds(layout: &Layout) -> Result<Vec<String>, StoreError> {
    Ok(entries(&layout.objects())?
        .into_iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect())
}

/// The stored revision counter (0 for a new store).
pub(super) fn read_revision(path: &Path) -> Result<u64, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!("{:?} is not a revision number", text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::io(path, e)),
    }
}
