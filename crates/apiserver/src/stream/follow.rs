//! Reading a container's output file as it grows, for `logs -f` and `attach`.
//!
//! The kubelet appends the container's stdout and stderr to one file; the reader keeps its
//! offset and polls for growth. Polling every [`POLL`] costs nothing at lab scale and, unlike
//! inotify, needs no watch per reader and works on any filesystem. A file that shrank was
//! truncated (or replaced) and is read again from its start; a file that does not exist yet
//! reads as empty, since a container that has not started has no output.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How often a follower looks for new output.
pub(crate) const POLL: Duration = Duration::from_millis(100);

const CHUNK: usize = 32 * 1024;

pub(crate) struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
}

impl Follower {
    /// Reads `path` from byte `offset`.
    pub fn new(path: PathBuf, offset: u64) -> Self {
        Follower {
            path,
            file: None,
            offset,
        }
    }

    /// The next chunk of output, or `None` when everything written so far has been read.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.file.is_none() {
            match File::open(&self.path).await {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        let len = file.metadata().await?.len();
        if len < self.offset {
            self.offset = 0;
        }
        if len == self.offset {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(self.offset)).await?;
        let want = usize::try_from(len - self.offset).map_or(CHUNK, |left| left.min(CHUNK));
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        self.offset += n as u64;
        Ok((n > 0).then(|| Bytes::from(buf)))
    }
}

/// The offset where the last `lines` lines of `path` start (0 if it has fewer, or does not
/// exist). Like the kubelet, a final newline ends the last line rather than starting an
/// empty one, and a last line without newline counts.
pub(crate) async fn tail_offset(path: &Path, lines: u64) -> io::Result<u64> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
        Ok(mut file) => {
            let len = file.metadata()?.len();
            tail_start(&mut file, len, lines)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    })
    .await
    .map_err(io::Error::other)?
}

/// Scans backwards from `len` for the newline before the last `lines` lines.
pub(crate) fn tail_start(file: &mut (impl Read + Seek), len: u64, lines: u64) -> io::Result<u64> {
    if lines == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 8192];
    let mut end = len;
    let mut seen = 0;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &byte) in chunk.iter().enumerate().rev() {
            let pos = start + i as u64;
            if byte != b'\n' || pos + 1 == len {
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(pos + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tail(data: &str, lines: u64) -> &str {
        let mut cursor = Cursor::new(data.as_bytes());
        let start = tail_start(&mut cursor, data.len() as u64, lines).expect("tail");
        &data[start as usize..]
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc\n", 3), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("a\nb\nc", 1), "c");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("", 5), "");
        assert_eq!(tail("\n\n", 1), "\n");
    }

    #[test]
    fn tail_crosses_read_blocks() {
        let line = format!("{}\n", "x".repeat(1000));
        let data = line.repeat(30);
        assert_eq!(tail(&data, 20), line.repeat(20));
    }
}
