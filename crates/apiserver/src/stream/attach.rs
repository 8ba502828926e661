//! `pods/attach`: the running container's output, and its stdin if it has one, over the same
//! WebSocket session as exec.
//!
//! The lab's containers write to a log file, not to a runtime's attach socket, so attach
//! follows that file from where the current run of the container started: a
//! `kubectl run -i` that attaches a moment after a fast command already printed still sees
//! everything. Stdin goes to a FIFO the kubelet may give the container.
//!
//! When the container exits the session ends with `Success`, whatever the exit code, as the
//! kubelet's attach does: kubectl treats a failed attach as "could not attach", prints a
//! warning and prints the logs again, and `kubectl run` reads the exit code from the pod's
//! status anyway.

use std::future::Future;
use std::path::PathBuf;

use tokio::net::unix::pipe;

use super::exec::feed;
use super::follow::{self, Follower};
use super::status;
use super::websocket::{self, Upgrade, Wants, STDOUT};

/// What to attach to, and which streams the client asked for (`stdin`, `stdout`, `stderr`,
/// `tty` query parameters of `pods/attach`).
#[derive(Clone, Debug, Default)]
pub struct AttachSpec {
    /// The container's output file (stdout and stderr together).
    pub log: PathBuf,
    /// Where the current run of the container starts in `log` (the file is appended to
    /// across restarts).
    pub log_offset: u64,
    /// The container's stdin FIFO, if the kubelet made one (`stdin: true` in the spec).
    pub stdin_pipe: Option<PathBuf>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Completes the upgrade and streams the container's output (on stdout: the file merges
/// both) until `done` resolves, meaning the container exited; then sends what it wrote last
/// and a `Success` status. Spawn this; it returns when the session is over.
pub async fn run_attach<F>(upgrade: Upgrade, spec: AttachSpec, done: F)
where
    F: Future + Send + 'static,
{
    let wants = Wants {
        stdin: spec.stdin,
        stdout: spec.stdout,
        stderr: spec.stderr && !spec.tty,
    };
    let Some((output, input)) = websocket::open(upgrade, wants).await else {
        return;
    };
    let feeder = match (&spec.stdin_pipe, spec.stdin) {
        (Some(fifo), true) => match pipe::OpenOptions::new().open_sender(fifo) {
            Ok(sender) => Some(tokio::spawn(feed(sender, input.stdin))),
            Err(e) => {
                // No reader on the FIFO (the container does not read stdin): output only.
                tracing::debug!(fifo = %fifo.display(), error = %e, "attach without stdin");
                None
            }
        },
        _ => None,
    };

    let mut reader = Follower::new(spec.log.clone(), spec.log_offset);
    let mut done = std::pin::pin!(done);
    let mut exited = false;
    let end = loop {
        let chunk = match reader.next_chunk().await {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(log = %spec.log.display(), error = %e, "attach: reading output");
                let what = format!("reading {}: {e}", spec.log.display());
                break Some(status::internal_error(&what));
            }
        };
        match chunk {
            Some(chunk) => {
                if spec.stdout && output.send(STDOUT, &chunk).await.is_err() {
                    break None;
                }
            }
            None if exited => break Some(status::success()),
            None => {
                tokio::select! {
                    _ = &mut done => exited = true,
                    _ = output.gone() => break None,
                    _ = tokio::time::sleep(follow::POLL) => {}
                }
            }
        }
    };
    // Closes our end of the FIFO (the container sees end of file if we were its only
    // writer), and lets the session discard stdin while it waits for the client's close.
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    if let Some(status) = end {
        output.finish(&status).await;
    }
}
