//! How a reconciler is driven: it subscribes to the changes it cares about, folds each batch
//! into its own change tracking ([`Reconciler::note`]), and makes its part of the node match the
//! view ([`Reconciler::sync`]), at once after a change and every resync period anyway, so state
//! removed behind its back comes back. A failed sync is retried after [`RETRY`]. Nothing runs
//! before every watched kind has been listed once: a partial view would remove what it misses.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::mailbox::{Interest, Wake};
use crate::source;
use crate::view::Shared;

/// How long to wait before retrying after a failed sync.
pub const RETRY: Duration = Duration::from_secs(1);
/// How often to look whether every watched kind has been listed, until it has.
const LIST_POLL: Duration = Duration::from_millis(200);

pub trait Reconciler: Send + 'static {
    type Error: std::fmt::Display;

    /// For logs: "net", "proxy".
    fn name(&self) -> &'static str;

    /// The changes that concern it.
    fn interest(&self) -> Interest;

    /// Folds changes into its own tracking (what to recompile at the next sync).
    fn note(&mut self, wake: Wake);

    /// Makes what it owns match the view: compile (reading the view under its lock), then apply
    /// (with the lock released).
    fn sync(&mut self, view: &Shared) -> Result<(), Self::Error>;

    /// How often to sync with no change, to repair drift.
    fn resync_period(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// Which reconcilers have not yet completed a sync: a process is ready (its readiness probe
/// passes) once every one has, so a node's pods are not counted as served before the node's
/// routes and Service table are in place.
#[derive(Default)]
pub struct Readiness {
    pending: Mutex<BTreeSet<&'static str>>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    /// Counts `name` as not synced yet.
    pub fn expect(&self, name: &'static str) {
        self.lock().insert(name);
    }

    fn synced(&self, name: &'static str) {
        self.lock().remove(name);
    }

    /// Whether every expected reconciler has synced once.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// The reconcilers still to sync once, for a probe's answer.
    pub fn pending(&self) -> Vec<&'static str> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<&'static str>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `r` on the calling thread for as long as the process lives, reporting its first
/// successful sync to `readiness` (which must have been told to [`Readiness::expect`] it).
pub fn run<R: Reconciler>(mut r: R, shared: Arc<Shared>, readiness: Arc<Readiness>) -> ! {
    let interest = r.interest();
    let mailbox = shared.subscribe(interest);
    let kinds = source::kinds(&interest);
    // Due at once: the watches may have listed everything before this mailbox existed, and
    // then no wake would ever come for that.
    let mut due = Instant::now();
    loop {
        let wake = mailbox.wait(due.saturating_duration_since(Instant::now()));
        let woken = !wake.changes.is_empty() || wake.relisted;
        r.note(wake);
        if !shared.read().listed(&kinds) {
            // Not every kind is listed yet: its relist wakes us; look again soon regardless.
            due = Instant::now() + LIST_POLL;
            continue;
        }
        if !woken && Instant::now() < due {
            continue;
        }
        let started = Instant::now();
        let synced = r.sync(&shared);
        crate::metrics::record_sync(r.name(), synced.is_ok(), started.elapsed());
        due = match synced {
            Ok(()) => {
                readiness.synced(r.name());
                tracing::debug!(reconciler = r.name(), took = ?started.elapsed(), "synced");
                Instant::now() + r.resync_period()
            }
            Err(e) => {
                tracing::warn!(reconciler = r.name(), "sync failed, retrying: {e}");
                Instant::now() + RETRY
            }
        };
    }
}

/// Runs a reconciler on a blocking thread of the current tokio runtime (its applies are
/// synchronous: netlink, or API writes through `Handle::block_on`, and must not stall the
/// watchers), counting it in `readiness` until its first sync.
pub fn host<R: Reconciler>(
    r: R,
    shared: &Arc<Shared>,
    readiness: &Arc<Readiness>,
) -> tokio::task::JoinHandle<()> {
    let (shared, readiness) = (shared.clone(), readiness.clone());
    readiness.expect(r.name());
    tokio::task::spawn_blocking(move || run(r, shared, readiness))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::core::v1::Node;

    use super::*;
    use crate::view::Event;

    struct Counting(Arc<AtomicUsize>);

    impl Reconciler for Counting {
        type Error = String;

        fn name(&self) -> &'static str {
            "counting"
        }

        fn interest(&self) -> Interest {
            Interest {
                nodes: true,
                ..Interest::default()
            }
        }

        fn note(&mut self, _wake: Wake) {}

        fn sync(&mut self, _view: &Shared) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn syncs_when_everything_was_listed_before_it_subscribed() {
        let shared = Shared::new();
        // The watch lists before the reconciler's mailbox exists: no wake will come.
        shared.apply(Event::<Node>::Relisted(Vec::new()));
        let syncs = Arc::new(AtomicUsize::new(0));
        let readiness = Readiness::new();
        readiness.expect("counting");
        let (s, r, c) = (shared.clone(), readiness.clone(), Counting(syncs.clone()));
        std::thread::spawn(move || run(c, s, r));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !readiness.is_ready() {
            assert!(Instant::now() < deadline, "never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(syncs.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn waits_for_every_kind_before_the_first_sync() {
        let shared = Shared::new();
        let readiness = Readiness::new();
        readiness.expect("counting");
        let syncs = Arc::new(AtomicUsize::new(0));
        let (s, r, c) = (shared.clone(), readiness.clone(), Counting(syncs.clone()));
        std::thread::spawn(move || run(c, s, r));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            0,
            "synced before Nodes were listed"
        );
        shared.apply(Event::<Node>::Relisted(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !readiness.is_ready() {
            assert!(Instant::now() < deadline, "never synced");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
