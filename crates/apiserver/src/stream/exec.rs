//! `pods/exec`: runs a process and pumps its stdio through the WebSocket session until it
//! exits, then reports its exit code on the error stream.
//!
//! Without a terminal the process gets pipes (stdout and stderr on their own streams); with
//! one (`tty=true`) it gets a pseudo-terminal as controlling terminal, stdout and stderr merged
//! on the stdout stream as in Kubernetes, and resize messages set the window size. The process
//! leads its own process group, so a client that goes away takes the whole command with it.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pty;
use super::status;
use super::websocket::{self, Input, Output, Upgrade, Wants, STDERR, STDOUT};

/// After the process exits, how long to keep reading output that is still buffered. A
/// background child that inherited stdout could keep the stream open forever; Kubernetes'
/// runtimes also stop waiting for such output.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run and which streams the client asked for (`stdin`, `stdout`, `stderr`, `tty`
/// query parameters of `pods/exec`).
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the server's environment (the lab's exec path needs PATH and friends).
    pub env: Vec<(String, String)>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// How a session ended.
enum Outcome {
    Exited(i32),
    Failed(io::Error),
    ClientGone,
}

/// Completes the upgrade, runs the process and pumps its stdio until it exits; sends its exit
/// status on the error stream and closes. Spawn this; it returns when the session is over.
pub async fn run_exec(upgrade: Upgrade, spec: ExecSpec) {
    let wants = Wants {
        stdin: spec.stdin,
        stdout: spec.stdout,
        // With a terminal client-go opens no stderr stream: the terminal merges them.
        stderr: spec.stderr && !spec.tty,
    };
    let Some((output, input)) = websocket::open(upgrade, wants).await else {
        return;
    };
    let outcome = if spec.tty {
        run_tty(&spec, &output, input).await
    } else {
        run_piped(&spec, &output, input).await
    };
    match outcome {
        Outcome::Exited(code) => output.finish(&status::exited(code)).await,
        Outcome::Failed(e) => {
            let what = format!(
                "error executing command in container: {}: {e}",
                spec.program.display()
            );
            output.finish(&status::internal_error(&what)).await
        }
        Outcome::ClientGone => {}
    }
}

fn command(spec: &ExecSpec) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    cmd
}

async fn run_piped(spec: &ExecSpec, output: &Output, input: Input) -> Outcome {
    let piped = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut cmd = command(spec);
    cmd.stdin(piped(spec.stdin))
        .stdout(piped(spec.stdout))
        .stderr(piped(spec.stderr))
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(e),
    };
    let feeder = child
        .stdin
        .take()
        .map(|stdin| tokio::spawn(feed(stdin, input.stdin)));
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(stdout, output.clone(), STDOUT)));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(stderr, output.clone(), STDERR)));
    }
    wait_and_drain(child, output, pumps, feeder.into_iter().collect()).await
}

async fn run_tty(spec: &ExecSpec, output: &Output, mut input: Input) -> Outcome {
    let (master, slave) = match pty::open() {
        Ok(pair) => pair,
        Err(e) => return Outcome::Failed(e),
    };
    // kubectl sends the terminal's size first thing: set what has arrived before the program
    // starts, so its first look at the size is right.
    while let Ok(size) = input.resize.try_recv() {
        if let Err(e) = master.resize(size) {
            tracing::debug!(error = %e, "sizing exec terminal");
        }
    }
    let child = {
        let mut cmd = command(spec);
        let (stdin, stdout) = match (slave.try_clone(), slave.try_clone()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return Outcome::Failed(e),
        };
        cmd.stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(slave));
        // SAFETY: the hook only makes async-signal-safe syscalls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(pty::take_controlling_terminal);
        }
        // The command, and with it our copies of the slave, is dropped at the end of this
        // block: only the child's copies keep the terminal open.
        cmd.spawn()
    };
    let child = match child {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(e),
    };

    let out = {
        let master = master.clone();
        let output = output.clone();
        let forward = spec.stdout;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match master.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) if forward => {
                        if output.send(STDOUT, &buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    // Not asked for, but still read so the process never blocks writing.
                    Ok(_) => {}
                }
            }
        })
    };
    let typing = {
        let master = master.clone();
        let mut stdin = input.stdin;
        tokio::spawn(async move {
            // A terminal cannot be half-closed: closing stdin (v5 close) just stops typing.
            while let Some(data) = stdin.recv().await {
                if master.write_all(&data).await.is_err() {
                    return;
                }
            }
        })
    };
    let resizing = tokio::spawn(async move {
        while let Some(size) = input.resize.recv().await {
            if let Err(e) = master.resize(size) {
                tracing::debug!(error = %e, "resizing exec terminal");
            }
        }
    });
    wait_and_drain(child, output, vec![out], vec![typing, resizing]).await
}

/// Waits for the process (or the client leaving, which kills its process group), then for
/// the output pumps to reach end of stream, at most [`DRAIN_GRACE`].
async fn wait_and_drain(
    mut child: Child,
    output: &Output,
    pumps: Vec<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
) -> Outcome {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = output.gone() => {
            kill_group(&child);
            let _ = child.wait().await;
            for task in pumps.iter().chain(&helpers) {
                task.abort();
            }
            return Outcome::ClientGone;
        }
    };
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
    for mut pump in pumps {
        if tokio::time::timeout_at(deadline, &mut pump).await.is_err() {
            pump.abort();
        }
    }
    // Dropping stdin's receiver lets the session discard what the client still types.
    for task in helpers {
        task.abort();
    }
    match status {
        Ok(status) => Outcome::Exited(exit_code(status)),
        Err(e) => Outcome::Failed(e),
    }
}

fn kill_group(child: &Child) {
    // The child leads its group (process_group(0), or setsid for a terminal).
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The shell's convention for a process killed by a signal, so kubectl reports e.g. 137.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies one output of the process to a stream until end of file or the client leaves.
async fn pump(mut from: impl AsyncRead + Unpin, output: Output, id: u8) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(id, &buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Feeds the client's stdin to the process; returning drops the pipe, so the process reads
/// end of file when the client closes stdin (v5) or leaves.
pub(crate) async fn feed(mut to: impl AsyncWrite + Unpin, mut stdin: mpsc::Receiver<Bytes>) {
    while let Some(data) = stdin.recv().await {
        if to.write_all(&data).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
}
