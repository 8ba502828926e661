//! Where desired state comes from. This crate holds weft's embedded store: the lab's stand-in for the
//! Kubernetes API server. Objects ([`weft_model::Object`]) are kept as JSON files with a revision
//! counter and an append-only change log, so several processes (the `weft apply` CLI writing, the
//! lab's node daemons watching and writing pod status) share one store through the file system, and
//! everything survives restarts. Downstream code reads objects and follows changes through
//! [`Store::watch`], the same way it would follow Kubernetes watchers.

pub mod store;

pub use store::{Admission, ApplyResult, DeleteResult, Event, EventKind, Store, StoreError, Watch};
