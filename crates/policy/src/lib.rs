//! NetworkPolicy for one node. The cluster view's NetworkPolicies, pods (labels, addresses,
//! named ports), namespaces (labels) and nodes go in; this node's `ip weft_policy` nftables
//! table comes out, loaded by the one applier of `weft_dataplane::nft`.
//!
//! - [`spec`] reads a `networking.k8s.io/v1` NetworkPolicy with its defaults made explicit;
//! - [`resolve`] says what the policies mean on this node, in addresses (pure);
//! - [`compile`] turns that into the table (pure, snapshot-tested, and checked against a
//!   reference evaluation of the v1 semantics on random clusters by simulating packets
//!   through the compiled table);
//! - [`explain`] names the policy rule behind each nft rule of a policy chain (for tools that
//!   trace packets through the table);
//! - [`track`] says which policies a change makes dirty, so [`reconcile`], the agent's
//!   reconciler, resolves and compiles only those and commits the difference;
//! - [`drops`] logs each drop the table reports through NFLOG, naming the policies;
//! - [`report`] sums the table's counters per policy and direction (the agent's `/policy`).
//!
//! Besides the policies, the table holds the isolation every pod gets: anti-spoofing at pod
//! interfaces and the overlay's port closed to anything but nodes.

pub mod attach;
pub mod compile;
pub mod drops;
pub mod explain;
pub mod reconcile;
pub mod report;
pub mod resolve;
pub mod spec;
pub mod track;

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use compile::{compile, NodeContext, TABLE};
pub use reconcile::PolicyReconciler;
pub use resolve::{resolve, NodePolicies};
pub use spec::{Direction, Policy};
