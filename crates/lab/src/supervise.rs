//! Keeping the lab's daemons alive, as systemd and the kubelet keep a real control plane alive:
//! the controller restarts the API server, the speaker and every node's kubelet when they die;
//! the API server restarts the controller; each kubelet restarts its node's agent. Every daemon
//! rebuilds its state from the store when it starts, so a restart is harmless.

use weft_sources::Store;

use crate::layout::Layout;
use crate::{process, LabError};

pub fn spawn_controller(layout: &Layout) -> Result<(), LabError> {
    crate::lab::spawn_daemon(
        layout,
        &["lab", "controller"],
        None,
        "controller",
        &layout.controller_pid_file(),
    )
}

pub fn spawn_speaker(layout: &Layout) -> Result<(), LabError> {
    crate::lab::spawn_daemon(
        layout,
        &["lab", "speaker"],
        Some(&layout.fabric_netns()),
        "speaker",
        &layout.speaker_pid_file(),
    )
}

pub fn spawn_kubelet(layout: &Layout, node: &str) -> Result<(), LabError> {
    crate::lab::spawn_daemon(
        layout,
        &["lab", "kubelet", "--node", node],
        Some(&layout.node_netns(node)),
        &format!("kubelet-{node}"),
        &layout.kubelet_pid_file(node),
    )
}

/// Starts `spawn` again when the daemon of `pid_file` is not running (and the lab is neither
/// being built nor torn down).
fn keep(
    layout: &Layout,
    what: &str,
    pid_file: &std::path::Path,
    spawn: impl FnOnce() -> Result<(), LabError>,
) -> Result<(), LabError> {
    if !layout.supervised_marker().exists() || process::running_daemon(pid_file).is_some() {
        return Ok(());
    }
    tracing::warn!("{what} is not running; restarting it");
    spawn()
}

/// Lets the supervisors restart what dies (the end of `lab up`).
pub fn begin(layout: &Layout) -> Result<(), LabError> {
    std::fs::write(layout.supervised_marker(), b"")
        .map_err(|e| LabError::io("writing the supervision marker", e))
}

/// Stops all restarting (the start of `lab down`).
pub fn end(layout: &Layout) {
    let _ = std::fs::remove_file(layout.supervised_marker());
}

/// The API server's part: the controller.
pub fn controller(layout: &Layout) -> Result<(), LabError> {
    keep(
        layout,
        "the controller",
        &layout.controller_pid_file(),
        || spawn_controller(layout),
    )
}

/// The controller's part: the API server, the speaker, and the kubelet of every Node.
pub fn control_plane(layout: &Layout, store: &Store) -> Result<(), LabError> {
    keep(
        layout,
        "the API server",
        &layout.apiserver_pid_file(),
        || crate::apiserver::spawn(layout),
    )?;
    keep(layout, "the speaker", &layout.speaker_pid_file(), || {
        spawn_speaker(layout)
    })?;
    for node in crate::nodes::list_nodes(store)? {
        let name = node.metadata.name.clone().unwrap_or_default();
        // A node whose namespace is gone is being removed: nothing to restart.
        if !std::path::Path::new("/run/netns")
            .join(layout.node_netns(&name))
            .exists()
        {
            continue;
        }
        keep(
            layout,
            &format!("the kubelet of {name}"),
            &layout.kubelet_pid_file(&name),
            || spawn_kubelet(layout, &name),
        )?;
    }
    Ok(())
}
