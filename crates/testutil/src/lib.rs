//! Test support shared by weft's integration tests, written once instead of copied into each
//! crate's `tests/` (as linkerd2-proxy keeps `linkerd/app/test` beside its integration crate).
//! [`TestNetns`] is the one network-namespace fixture: a uniquely named namespace the test
//! creates, runs closures and commands in, wires with veths, and deletes in `Drop`, also when the
//! test panics. [`Lab`] is the harness of the cluster tests in `crates/e2e`: a lab with a unique
//! name and state directory, driven through the real `weft` binary and kubectl, torn down with
//! `weft lab down` in `Drop`. Around them: finding the workspace's binaries ([`bins`]), running
//! commands with readable failures ([`command`]), re-running the test binary as a child process
//! ([`child`]), polling ([`wait`]), reading kubectl tables ([`table`]), and NetworkPolicy truth
//! tables probed with real connections ([`netpol`]), and metrics read by Prometheus's own parser
//! ([`prometheus`]). Nothing here touches anything a test did
//! not create.

pub mod bins;
pub mod child;
pub mod command;
pub mod lab;
pub mod names;
pub mod netns;
pub mod netpol;
pub mod prometheus;
pub mod table;
pub mod wait;

pub use child::rerun_test;
pub use command::{cleanup, describe, require_tool, run, run_ok};
pub use lab::{
    client_pod, deny_ingress, name_of, netns_list, pod_ip, web_pod, workspace_root, Lab, AGNHOST,
    KUBECTL,
};
pub use names::unique_name;
pub use netns::TestNetns;
pub use prometheus::parsed_by_prometheus;
pub use table::{cell, columns, table};
pub use wait::{eventually, wait_for, wait_for_what};
