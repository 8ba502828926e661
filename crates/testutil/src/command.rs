//! Running commands from tests: a failure shows the command line, its status and everything it
//! printed, and cleanup steps report failures without panicking.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `cmd` to completion; only failing to spawn it at all fails the test here.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs `cmd` and returns its stdout; a failure shows the command line, status, stdout and stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = run(cmd);
    assert!(output.status.success(), "{} failed", describe(cmd, &output));
    String::from_utf8_lossy(&output.stdout).into_owned()
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
