//! Where desired state comes from. This crate holds weft's embedded store: the lab's stand-in for the
//! Kubernetes API server's etcd. Objects ([`weft_model::Object`]) live in one SQLite database with a
//! revision counter and a change log, so several processes (the API server and `weft apply` writing,
//! the lab's node daemons watching and writing pod status) share one store, every write is atomic,
//! and everything survives restarts and crashes. Downstream code reads objects and follows changes
//! through [`Store::watch`] (or [`Store::changes`], with the objects), the same way it would follow
//! Kubernetes watchers.

pub mod store;

pub use store::{
    Admission, ApplyResult, Change, DeleteResult, Event, EventKind, StatusMode, Store, StoreError,
    Watch,
};
