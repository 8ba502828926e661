//! Names unique to one test process and call, so parallel tests and parallel runs (several
//! engineers' suites on one machine) never share a namespace, network or directory.

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `<prefix>-<pid>-<n>`: unique on this machine while this process lives.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), next())
}

/// The next value of the process-wide counter behind every unique name.
pub(crate) fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}
