//! The change log: one JSON line per change in `events.jsonl`, appended under the store lock and
//! read without it. A reader only consumes complete lines, so a half-written append is never seen.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weft_model::ObjectKey;

use super::StoreError;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, numbered by the store revision it created.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: ObjectKey,
}

/// The line format of `events.jsonl`.
#[derive(Serialize, Deserialize)]
struct Line {
    revision: u64,
    #[serde(rename = "type")]
    kind: EventKind,
    #[serde(flatten)]
    key: ObjectKey,
}

/// Appends events with one write, so concurrent readers see whole lines or nothing of them.
pub(super) fn append(path: &PathBuf, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    for event in events {
        let line = Line {
            revision: event.revision,
            kind: event.kind,
            key: event.key.clone(),
        };
        let json = serde_json::to_string(&line).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: format!("cannot encode event: {e}"),
        })?;
        text.push_str(&json);
        text.push('\n');
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| StoreError::io(path, e))
}

/// A cursor over the change log: returns each event after `from_revision` once.
#[derive(Debug)]
pub struct Watch {
    path: PathBuf,
    /// Byte offset of the first unread line.
    offset: u64,
    /// The last revision handed out (or the starting point).
    last: u64,
}

/// How often `wait` looks at the log: cheap (one stat) and well under a human's notice.
const WAIT_INTERVAL: Duration = Duration::from_millis(25);

impl Watch {
    pub(super) fn new(path: PathBuf, from_revision: u64) -> Watch {
        Watch {
            path,
            offset: 0,
            last: from_revision,
        }
    }

    /// The revision of the last event returned (or the one the watch started from).
    pub fn revision(&self) -> u64 {
        self.last
    }

    /// Events after the last one seen, without blocking.
    pub fn poll(&mut self) -> Result<Vec<Event>, StoreError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&self.path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(&self.path, e))?
            .len();
        if len <= self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| StoreError::io(&self.path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StoreError::io(&self.path, e))?;
        // Only whole lines: a writer may be in the middle of its append.
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for line in bytes[..end].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let line: Line = serde_json::from_slice(line).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("bad event line: {e}"),
            })?;
            if line.revision > self.last {
                self.last = line.revision;
                events.push(Event {
                    revision: line.revision,
                    kind: line.kind,
                    key: line.key,
                });
            }
        }
        self.offset += end as u64 + 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64, name: &str) -> Event {
        Event {
            revision,
            kind: EventKind::Added,
            key: ObjectKey::namespaced("Pod", "default", name),
        }
    }

    #[test]
    fn a_half_written_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append(&path, &[event(1, "a")]).unwrap();
        let line = "{\"revision\":2,\"type\":\"Added\",\"kind\":\"Pod\",\"namespace\":\"default\",\"name\":\"b\"}\n";
        let (head, tail) = line.split_at(20);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(head.as_bytes()).unwrap();

        let mut watch = Watch::new(path.clone(), 0);
        assert_eq!(watch.poll().unwrap(), [event(1, "a")]);
        assert!(watch.poll().unwrap().is_empty());
        file.write_all(tail.as_bytes()).unwrap();
        assert_eq!(watch.poll().unwrap(), [event(2, "b")]);
        assert_eq!(watch.revision(), 2);
    }

    #[test]
    fn line_format_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append(
            &path,
            &[Event {
                revision: 7,
                kind: EventKind::Deleted,
                key: ObjectKey::cluster_scoped("Namespace", "demo"),
            }],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"revision\":7,\"type\":\"Deleted\",\"kind\":\"Namespace\",\"name\":\"demo\"}\n"
        );
        let mut watch = Watch::new(dir.path().join("missing.jsonl"), 0);
        assert!(watch.poll().unwrap().is_empty());
    }
}
