//! The test binary re-run as a child process: tests that need several processes (writers killed
//! mid-transaction, a server inside another namespace) start themselves again, running one
//! `#[test]` function that does nothing unless the parent set its environment variable.

use std::process::Command;

/// This test executable, running only the test function `test` (by exact name, one thread,
/// output not captured). Add `.arg("--ignored")` when the entry point is `#[ignore]`d so that a
/// plain run of the suite skips it; set the environment it reads with `.env`.
pub fn rerun_test(test: &str) -> Command {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--test-threads=1", "--nocapture"]);
    cmd
}
