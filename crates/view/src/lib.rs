//! The cluster view: the middle of weft's flow (API watches -> view -> pure compilers ->
//! appliers). [`source`] runs kube-rs watchers against the Kubernetes API (the lab's or a real
//! cluster's) and feeds their events into one [`ClusterView`], which keeps the objects
//! weft's reconcilers read and the indexes they need (pods by node, by namespace and by label;
//! namespaces by label; EndpointSlices by Service; ready nodes). Every applied event yields the
//! [`Change`]s it made, and each reconciler receives only the kinds it subscribed to through its
//! own [`Mailbox`], so it recompiles only what a change touches.
//!
//! Nothing here does I/O apart from [`source`]; the view itself is plain data, tested without a
//! cluster.

pub mod health;
mod index;
mod mailbox;
pub mod metrics;
pub mod reconciler;
pub mod ring;
pub mod source;
mod view;

pub use index::LabelIndex;
pub use mailbox::{Interest, Mailbox, Wake};
pub use reconciler::Reconciler;
pub use view::{Change, ClusterView, Event, NsName, Shared, Watched};
