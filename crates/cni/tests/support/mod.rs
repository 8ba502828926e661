//! Harness shared by the root integration tests that drive weft-cni through real clients: podman
//! (`tests/podman.rs`) and Debian's reference plugins in a chain (`tests/chaining.rs`). Everything a
//! test creates (network namespaces, podman storage, containers) carries the process id and a
//! counter in its name and is removed in `Drop`, even when the test panics.
//!
//! Each test crate uses a different subset of these helpers, so unused ones are not an error.
#![allow(dead_code)]

pub mod netns;
pub mod plugin;
pub mod podman;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where Debian's containernetworking-plugins package installs the reference plugins.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// The weft plugin under test, built by cargo for this test run.
pub fn weft_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-cni"))
}

/// A name unique to this process and call: parallel tests and parallel runs never share an object.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// Finds `tool` on PATH or fails the test saying which Debian package provides it: these tests
/// run in CI as plain `cargo test`, and a missing tool must be a visible failure, not a skip.
pub fn require_tool(tool: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{tool}` is not on PATH: install the Debian package `{debian_package}`")
        })
}

/// A reference plugin from Debian's containernetworking-plugins, or a failure naming the package.
pub fn reference_plugin(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_PLUGIN_DIR).join(name);
    assert!(
        path.is_file(),
        "reference CNI plugin {} is missing: install the Debian package `containernetworking-plugins`",
        path.display()
    );
    path
}

/// Runs `cmd` and returns its stdout; a failure shows the command line, status, stdout and stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = run(cmd);
    assert!(output.status.success(), "{} failed", describe(cmd, &output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `cmd` to completion; only failing to spawn it at all fails the test here.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// The command line and what it printed, for assertion messages and cleanup warnings.
pub fn describe(cmd: &Command, output: &Output) -> String {
    format!(
        "{cmd:?} ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a cleanup command from a `Drop`: failures are reported on stderr, never panicked on,
/// so one failed step does not skip the others (or abort a test that is already unwinding).
pub fn cleanup(cmd: &mut Command) {
    match cmd.output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!("cleanup step failed: {}", describe(cmd, &output)),
        Err(e) => eprintln!("cleanup step {cmd:?} could not start: {e}"),
    }
}

/// The pod range every test network allocates from; each test has its own host namespace, so
/// tests running in parallel may share it.
pub const SUBNET: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 244, 1, 0), 24);

/// weft-cni's conflist entry, allocating from [`SUBNET`] with its store in `ipam_dir`.
pub fn weft_plugin(ipam_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "weft-cni",
        "mtu": 1500,
        "ipam": {
            "subnet": format!("{}/{}", SUBNET.0, SUBNET.1),
            "dataDir": ipam_dir,
        }
    })
}

/// Whether `ip` lies in [`SUBNET`].
pub fn in_subnet(ip: std::net::Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SUBNET.1);
    u32::from(ip) & mask == u32::from(SUBNET.0)
}

/// Runs `attempt` (a client connecting to a test server) until it succeeds with some output, at
/// most ten times: a server container counts as running as soon as its process exists, a moment
/// before it listens. Returns the answer, or a description of the last failure to assert on.
pub fn first_answer(mut attempt: impl FnMut() -> Output) -> String {
    let mut last = None;
    for _ in 0..10 {
        let output = attempt();
        if output.status.success() && !output.stdout.is_empty() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        last = Some(output);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    match last {
        Some(output) => format!(
            "(no answer after 10 attempts; last: {}, stderr: {})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        None => "(no attempt made)".to_owned(),
    }
}

/// Polls `done` for up to five seconds. weft's DEL takes the pod off the network at once (route,
/// address) but leaves the kernel's slow veth deletion to a detached process, so "the host veth
/// is gone" is only true a moment after DEL returns.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
