//! Polling for what happens a moment later: a server that starts listening, a veth the kernel
//! deletes in the background, a lab daemon that converges.

use std::time::{Duration, Instant};

/// How long [`wait_for`] and [`wait_for_what`] poll: a lab converges in seconds, a shared and
/// busy CI machine needs the margin.
pub const LAB_CONVERGES: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or `within` has passed; whether it held. The poll interval is a
/// hundredth of `within`, between 10 and 100 ms.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let every = (within / 100).clamp(Duration::from_millis(10), Duration::from_millis(100));
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Polls for up to [`LAB_CONVERGES`]; fails the test if `cond` never holds.
pub fn wait_for(cond: impl FnMut() -> bool) {
    wait_for_what("condition", cond)
}

/// Polls for up to [`LAB_CONVERGES`]; the failure names `what` was awaited.
pub fn wait_for_what(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        eventually(LAB_CONVERGES, cond),
        "{what}: not met within {}s",
        LAB_CONVERGES.as_secs()
    );
}
