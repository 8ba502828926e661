//! The CNI tests' own harness, on top of `weft-testutil`'s network-namespace fixture: `node`
//! runs the real `weft-cni` binary in a test "host" namespace with env and stdin exactly as a
//! runtime does (the ADD/DEL/CHECK/GC tests); `plugin` executes any plugin of a chain step by
//! step and `podman` is a private podman using weft-cni (`tests/chaining.rs`, `tests/podman.rs`).
//! Everything a test creates (network namespaces, podman storage, containers) carries the
//! process id and a counter in its name and is removed in `Drop`, even when the test panics.
//!
//! Each test crate uses a different subset of these helpers, so unused ones are not an error.
#![allow(dead_code)]

pub mod node;
pub mod plugin;
pub mod podman;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Where Debian's containernetworking-plugins package installs the reference plugins.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// The weft plugin under test, built by cargo for this test run (this crate defines it, so
/// cargo builds it and names it to the tests).
pub fn weft_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-cni"))
}

/// A reference plugin from Debian's containernetworking-plugins, or a failure naming the package.
pub fn reference_plugin(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_PLUGIN_DIR).join(name);
    assert!(
        path.is_file(),
        "reference CNI plugin {} is missing: install the Debian package `containernetworking-plugins`",
        path.display()
    );
    path
}

/// The pod range every test network allocates from; each test has its own host namespace, so
/// tests running in parallel may share it.
pub const SUBNET: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 244, 1, 0), 24);

/// weft-cni's conflist entry, allocating from [`SUBNET`] with its store in `ipam_dir`.
pub fn weft_plugin(ipam_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "weft-cni",
        "mtu": 1500,
        "ipam": {
            "subnet": format!("{}/{}", SUBNET.0, SUBNET.1),
            "dataDir": ipam_dir,
        }
    })
}

/// Whether `ip` lies in [`SUBNET`].
pub fn in_subnet(ip: std::net::Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SUBNET.1);
    u32::from(ip) & mask == u32::from(SUBNET.0)
}

/// Runs `attempt` (a client connecting to a test server) until it succeeds with some output, at
/// most ten times: a server container counts as running as soon as its process exists, a moment
/// before it listens. Returns the answer, or a description of the last failure to assert on.
pub fn first_answer(mut attempt: impl FnMut() -> Output) -> String {
    let mut last = None;
    for _ in 0..10 {
        let output = attempt();
        if output.status.success() && !output.stdout.is_empty() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        last = Some(output);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    match last {
        Some(output) => format!(
            "(no answer after 10 attempts; last: {}, stderr: {})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        None => "(no attempt made)".to_owned(),
    }
}

/// How long DEL's effects may take to show: weft's DEL takes the pod off the network at once
/// (route, address) but leaves the kernel's slow veth deletion to a detached process, so "the
/// host veth is gone" is only true a moment after DEL returns. Poll with
/// `weft_testutil::eventually(VETH_REAPED, ...)`.
pub const VETH_REAPED: Duration = Duration::from_secs(5);
