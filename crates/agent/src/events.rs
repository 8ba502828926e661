//! The agent's problems as Kubernetes Events on its Node, where `kubectl get events` and
//! `kubectl describe node` look: a reconciler whose sync fails (the kernel refused the Service
//! table, a route cannot be added) gets a Warning (`PolicySyncFailed`, `NetSyncFailed`...)
//! once per distinct error, its count bumped if the error repeats after a recovery, and a
//! Normal event when it syncs again; a part of the agent that cannot start (the flow log)
//! gets one at start.

use weft_controller::writer::Involved;
use weft_controller::Writer;
use weft_view::{Interest, Reconciler, Shared, Wake};

/// Where the agent's events go: its Node.
#[derive(Clone)]
pub struct NodeEvents {
    writer: Writer,
    node: String,
}

impl NodeEvents {
    pub fn new(writer: Writer, node: &str) -> NodeEvents {
        NodeEvents {
            writer,
            node: node.to_string(),
        }
    }

    fn about(&self) -> Involved<'_> {
        Involved {
            api_version: "v1",
            kind: "Node",
            namespace: "",
            name: &self.node,
            uid: None,
        }
    }

    /// A Warning; failing to record it is only logged (the problem is in the log already).
    pub fn warn(&self, reason: &str, message: &str) {
        if let Err(e) = self.writer.warn(&self.about(), reason, message) {
            tracing::warn!(node = %self.node, "recording event {reason}: {e}");
        }
    }

    fn normal(&self, reason: &str, message: &str) {
        if let Err(e) = self.writer.normal(&self.about(), reason, message) {
            tracing::warn!(node = %self.node, "recording event {reason}: {e}");
        }
    }
}

/// A reconciler whose failed syncs become Events on the node.
pub struct Reporting<R> {
    inner: R,
    events: NodeEvents,
    /// The error last reported, until a sync succeeds.
    failing: Option<String>,
}

impl<R: Reconciler> Reporting<R> {
    pub fn new(inner: R, events: NodeEvents) -> Reporting<R> {
        Reporting {
            inner,
            events,
            failing: None,
        }
    }

    fn reason(&self, what: &str) -> String {
        let name = self.inner.name();
        let mut upper = name[..1].to_ascii_uppercase();
        upper.push_str(&name[1..]);
        format!("{upper}{what}")
    }
}

impl<R: Reconciler> Reconciler for Reporting<R> {
    type Error = R::Error;

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn interest(&self) -> Interest {
        self.inner.interest()
    }

    fn note(&mut self, wake: Wake) {
        self.inner.note(wake);
    }

    fn sync(&mut self, view: &Shared) -> Result<(), R::Error> {
        let result = self.inner.sync(view);
        match &result {
            Err(e) => {
                let message = e.to_string();
                if self.failing.as_deref() != Some(message.as_str()) {
                    self.events.warn(&self.reason("SyncFailed"), &message);
                    self.failing = Some(message);
                }
            }
            Ok(()) => {
                if self.failing.take().is_some() {
                    let message = format!("the {} reconciler syncs again", self.inner.name());
                    self.events.normal(&self.reason("Synced"), &message);
                }
            }
        }
        result
    }

    fn resync_period(&self) -> std::time::Duration {
        self.inner.resync_period()
    }
}
