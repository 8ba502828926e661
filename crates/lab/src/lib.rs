//! The lab: a whole Kubernetes cluster on one Linux machine. Nodes and pods are network
//! namespaces, containers are processes inside them, all built from ordinary manifests.
//!
//! In the flow it sits at the end: it owns the kernel objects of a cluster (the fabric and node
//! namespaces), runs the control plane's controllers and one kubelet per node over the embedded
//! store, and wires every pod by executing the real `weft-cni` plugin, exactly as a container
//! runtime does. `weft lab down` removes exactly what `weft lab up` made.

pub mod apiserver;
pub mod cni_client;
pub mod container;
pub mod controller;
pub mod deploy;
pub mod kubelet;
pub mod lab;
pub mod layout;
pub mod nodes;
pub mod outside_dns;
pub mod probe;
pub mod process;
pub mod registry;
pub mod sandbox;
pub mod speaker;
pub mod status;
pub mod supervise;
pub mod targets;
pub mod topology;
pub mod volumes;

use std::path::PathBuf;

/// Everything that can go wrong in the lab, each saying what and with which object.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{what}: {error}")]
    Dataplane {
        what: String,
        error: weft_dataplane::Error,
    },
    #[error("CNI {op} for container {container_id}: {message}")]
    Cni {
        op: &'static str,
        container_id: String,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] weft_sources::StoreError),
    #[error(transparent)]
    Config(#[from] weft_model::config::ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error("lab {name} is already up (state in {}); run `weft lab down --name {name}` first", dir.display())]
    AlreadyUp { name: String, dir: PathBuf },
    #[error("lab {name} is not up (no state in {}); start it with `weft lab up`", dir.display())]
    NotUp { name: String, dir: PathBuf },
}

impl From<weft_dataplane::Error> for LabError {
    fn from(error: weft_dataplane::Error) -> LabError {
        LabError::Dataplane {
            what: "netlink".into(),
            error,
        }
    }
}

impl LabError {
    pub fn io(what: impl Into<String>, error: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            error,
        }
    }
}

/// Every pod in the store.
pub fn list_pods(
    store: &weft_sources::Store,
) -> Result<Vec<k8s_openapi::api::core::v1::Pod>, LabError> {
    Ok(store
        .list("Pod")?
        .into_iter()
        .filter_map(|o| o.as_pod().cloned())
        .collect())
}

/// The `weft` executable the lab's daemons run. When it was replaced while the lab runs (a
/// rebuild), the kernel names the old file "... (deleted)": the daemons then start the new one.
pub fn weft_exe() -> Result<PathBuf, LabError> {
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("finding the weft executable", e))?;
    Ok(
        match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(current) => PathBuf::from(current),
            None => exe,
        },
    )
}

/// Where `weft-cni` and the reference plugins are looked for: `WEFT_CNI_PATH`, else the
/// directory of the running `weft` executable (cargo builds both side by side).
pub fn cni_plugin_dir() -> Result<PathBuf, LabError> {
    let dir = match std::env::var_os("WEFT_CNI_PATH") {
        Some(dir) => PathBuf::from(dir),
        None => weft_exe()?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    if dir.join("weft-cni").is_file() {
        Ok(dir)
    } else {
        Err(LabError::Invalid(format!(
            "the CNI plugin weft-cni is not in {} (build it with `cargo build --release`, or set WEFT_CNI_PATH)",
            dir.display()
        )))
    }
}
