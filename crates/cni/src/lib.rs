//! weft's CNI plugin (spec 1.1, answering 0.3.0 through 1.1.0) and its built-in IPAM. The
//! container runtime executes `weft-cni` once per pod and command: config on stdin,
//! `CNI_*` environment, result or error JSON on stdout. It is the exception to weft's
//! long-running flow (see DESIGN.md): it wires the pod itself, with `weft-dataplane`'s
//! netlink client, so pods get networking while the agent restarts.
//!
//! The flow of one run: [`env`] and [`config`] parse the edge into typed values;
//! [`commands`] runs the operation; [`ipam`] allocates from the on-disk, flock-protected
//! store; [`wiring`] builds the routed veth; [`spec`] renders the result for the requested
//! version; [`error`] maps failures onto the spec's codes.

pub mod agent;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod ipam;
pub mod reaper;
pub mod spec;
pub mod wiring;

pub use commands::{run, Outcome};
pub use error::{Error, ErrorCode};
