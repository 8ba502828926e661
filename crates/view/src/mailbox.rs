//! A reconciler's inbox: the view delivers the changes the reconciler subscribed to, and the
//! reconciler's thread waits for them (or for its resync period), then takes them all at once,
//! so a burst of events becomes one recompile.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::view::Change;

/// The kinds of change a reconciler wants to hear about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    pub nodes: bool,
    pub services: bool,
    pub pods: bool,
    pub namespaces: bool,
    pub network_policies: bool,
    /// Deployments and DaemonSets (the lab's workload controllers).
    pub workloads: bool,
    /// Ingresses and IngressClasses.
    pub ingresses: bool,
    pub secrets: bool,
}

impl Interest {
    /// Everything `self` or `other` covers (what a process hosting both must watch).
    pub fn union(self, other: Interest) -> Interest {
        Interest {
            nodes: self.nodes || other.nodes,
            services: self.services || other.services,
            pods: self.pods || other.pods,
            namespaces: self.namespaces || other.namespaces,
            network_policies: self.network_policies || other.network_policies,
            workloads: self.workloads || other.workloads,
            ingresses: self.ingresses || other.ingresses,
            secrets: self.secrets || other.secrets,
        }
    }
}

/// What a reconciler finds when it wakes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wake {
    /// The changes since the last wake, in delivery order (may repeat an object).
    pub changes: Vec<Change>,
    /// A watch was relisted since the last wake (its first list, or after a restart).
    pub relisted: bool,
}

pub struct Mailbox {
    interest: Interest,
    pending: Mutex<Wake>,
    ready: Condvar,
}

impl Mailbox {
    pub(crate) fn new(interest: Interest) -> Mailbox {
        Mailbox {
            interest,
            pending: Mutex::new(Wake::default()),
            ready: Condvar::new(),
        }
    }

    pub(crate) fn deliver(&self, changes: &[Change], relisted: bool) {
        let wanted: Vec<Change> = changes
            .iter()
            .filter(|c| c.wanted_by(&self.interest))
            .cloned()
            .collect();
        if wanted.is_empty() && !relisted {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.changes.extend(wanted);
        pending.relisted |= relisted;
        self.ready.notify_all();
    }

    /// Waits up to `timeout` for something to be delivered, then takes everything delivered so
    /// far (an empty [`Wake`] when the time ran out).
    pub fn wait(&self, timeout: Duration) -> Wake {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut pending, _) = self
            .ready
            .wait_timeout_while(pending, timeout, |p| p.changes.is_empty() && !p.relisted)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn delivers_only_what_was_asked_for_and_batches() {
        let m = Arc::new(Mailbox::new(Interest {
            services: true,
            ..Default::default()
        }));
        m.deliver(&[Change::Node("n1".into())], false);
        assert_eq!(m.wait(Duration::ZERO), Wake::default());
        let svc = Change::Service(crate::NsName::new("default", "web"));
        m.deliver(&[svc.clone(), Change::Node("n1".into())], false);
        m.deliver(std::slice::from_ref(&svc), false);
        let woke = m.wait(Duration::from_secs(5));
        assert_eq!(woke.changes, [svc.clone(), svc]);
        assert!(!woke.relisted);
        // A relist wakes even with no change in the kinds asked for.
        m.deliver(&[], true);
        assert!(m.wait(Duration::from_secs(5)).relisted);
    }

    #[test]
    fn a_waiting_thread_is_woken() {
        let m = Arc::new(Mailbox::new(Interest {
            nodes: true,
            ..Default::default()
        }));
        let waiter = {
            let m = m.clone();
            std::thread::spawn(move || m.wait(Duration::from_secs(60)))
        };
        m.deliver(&[Change::Node("n2".into())], false);
        assert_eq!(waiter.join().unwrap().changes, [Change::Node("n2".into())]);
    }
}
