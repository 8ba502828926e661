//! `pods/log`: the container's output file as a response body, from its start or its last
//! `tailLines` lines, capped at `limitBytes`, and with `follow` kept open for what the
//! container writes next until the container's pod is gone or the client leaves.
//!
//! The lab's log files are the container's raw output, without the CRI timestamps, so
//! `sinceSeconds`, `sinceTime` and `timestamps` are accepted and validated but do not filter
//! or annotate; `previous` is accepted and reads the same file (the lab keeps one file per
//! container across restarts).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::follow::{self, Follower};
use super::query::{self, flag, number};
use super::StreamError;
use crate::Body;

/// The `PodLogOptions` query parameters this server acts on (`container` is the router's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Accepted, not applied: the log file carries no times.
    pub since_seconds: Option<u64>,
    /// Accepted, not applied: the log file carries no times.
    pub timestamps: bool,
    /// Accepted, not applied: the lab keeps one file per container.
    pub previous: bool,
}

impl LogOptions {
    /// Parses a request's query string (without `?`), with the API's names and validation.
    /// Unknown parameters are ignored, as the API's parameter codec does.
    pub fn from_query(query: &str) -> Result<LogOptions, StreamError> {
        let mut opts = LogOptions::default();
        let mut since_time = false;
        for (name, value) in query::pairs(query)? {
            match name.as_str() {
                "follow" => opts.follow = flag(&value),
                "timestamps" => opts.timestamps = flag(&value),
                "previous" => opts.previous = flag(&value),
                "tailLines" => opts.tail_lines = Some(number(&name, &value, 0)?),
                "limitBytes" => opts.limit_bytes = Some(number(&name, &value, 1)?),
                "sinceSeconds" => opts.since_seconds = Some(number(&name, &value, 1)?),
                "sinceTime" => since_time = !value.is_empty(),
                _ => {}
            }
        }
        if since_time && opts.since_seconds.is_some() {
            return Err(StreamError::Query {
                name: "sinceTime".into(),
                value: String::new(),
                reason: "at most one of sinceTime or sinceSeconds may be specified",
            });
        }
        Ok(opts)
    }
}

/// The body of a `pods/log` response (`text/plain`). With `follow`, it stays open and carries
/// what the container appends until `done` resolves (its output is complete: the container
/// exited for good or the pod is gone), then ends after the last bytes. Dropping the body
/// (the client left) stops the reader. Must be called within a tokio runtime.
pub fn log_body<F>(path: PathBuf, opts: LogOptions, done: F) -> Body
where
    F: Future + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(e) = produce(path, opts, done, &tx).await {
            // The status line has gone out already: aborting the body is all that is left.
            let _ = tx.send(Err(e)).await;
        }
    });
    ChannelBody { rx }.boxed()
}

async fn produce<F: Future>(
    path: PathBuf,
    opts: LogOptions,
    done: F,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let start = match opts.tail_lines {
        Some(lines) => follow::tail_offset(&path, lines).await?,
        None => 0,
    };
    let mut reader = Follower::new(path, start);
    let mut left = opts.limit_bytes;
    let mut done = std::pin::pin!(done);
    // Without follow, "done" is now: read what is there and end.
    let mut finished = !opts.follow;
    loop {
        match reader.next_chunk().await? {
            Some(mut chunk) => {
                if let Some(left) = left.as_mut() {
                    let n = usize::try_from(*left).map_or(chunk.len(), |l| l.min(chunk.len()));
                    chunk.truncate(n);
                    *left -= n as u64;
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                if left == Some(0) {
                    return Ok(());
                }
            }
            None if finished => return Ok(()),
            None => {
                tokio::select! {
                    _ = &mut done => finished = true,
                    _ = tokio::time::sleep(follow::POLL) => {}
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
    }
}

/// A body fed by a task through a channel: `Send + Sync` as `crate::Body` requires, which a
/// body holding the caller's `done` future could not promise.
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|chunk| chunk.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_queries() {
        let opts = LogOptions::from_query("container=app&follow=true&tailLines=10").expect("ok");
        assert_eq!(
            opts,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                ..LogOptions::default()
            }
        );
        let opts =
            LogOptions::from_query("limitBytes=100&timestamps=1&previous=false&sinceSeconds=5")
                .expect("ok");
        assert_eq!(opts.limit_bytes, Some(100));
        assert!(opts.timestamps);
        assert!(!opts.previous);
        assert_eq!(opts.since_seconds, Some(5));
        assert_eq!(
            LogOptions::from_query("").expect("ok"),
            LogOptions::default()
        );
        assert!(LogOptions::from_query("follow").expect("ok").follow);
        assert!(!LogOptions::from_query("follow=F").expect("ok").follow);
        assert!(LogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A00Z")
            .expect("ok")
            .since_seconds
            .is_none());
    }

    #[test]
    fn refuses_invalid_values() {
        for bad in [
            "tailLines=-1",
            "tailLines=ten",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
            "follow=%zz",
        ] {
            assert!(LogOptions::from_query(bad).is_err(), "{bad} accepted");
        }
    }
}
