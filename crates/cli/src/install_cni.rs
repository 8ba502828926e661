//! `weft install-cni`: what the agent DaemonSet's init container does on each node of a real
//! cluster, as Calico's and Flannel's install containers do: put the `weft-cni` binary into the
//! host's CNI bin dir and write a conflist for this node's pod CIDR (read from its Node object)
//! into the host's CNI config dir. Both are written to a temporary name and renamed, so the
//! runtime never executes a half-copied plugin or reads a half-written config.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use weft_model::ClusterConfig;

/// How long to keep trying to read the node from the API.
const API_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The conflist's file name: first in the runtime's lexical order among the usual ones.
pub const CONFLIST: &str = "10-weft.conflist";

#[derive(clap::Args, Debug)]
pub struct InstallCniArgs {
    /// The node this runs on (the DaemonSet sets it from spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// The cluster config (YAML): MTU, DNS address and cluster domain for the conflist.
    #[arg(long, value_name = "PATH", env = "WEFT_CONFIG")]
    config: PathBuf,
    /// Where the host's container runtime looks for CNI plugins.
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// Where the host's container runtime reads CNI network configs.
    #[arg(long, value_name = "DIR", default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
}

pub async fn install(args: &InstallCniArgs, kubeconfig: Option<&Path>) -> Result<()> {
    let text = fs::read_to_string(&args.config)
        .with_context(|| format!("reading the cluster config {}", args.config.display()))?;
    let config = ClusterConfig::from_yaml(&args.config.display().to_string(), &text)?;
    let client = weft_view::source::client(kubeconfig).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    // The API may not be reachable yet while the node comes up: keep trying for a while (each
    // failure said), rather than leave it to the kubelet's crash-loop back-off.
    let started = std::time::Instant::now();
    let node = loop {
        match nodes.get(&args.node).await {
            Ok(node) => break node,
            Err(e) if started.elapsed() < API_WAIT => {
                eprintln!("reading node {}: {e}; retrying", args.node);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("reading node {}", args.node)),
        }
    };
    let pod_cidr = weft_model::node::pod_cidr(&node).ok_or_else(|| {
        anyhow!(
            "node {} has no spec.podCIDR: run kube-controller-manager with --allocate-node-cidrs",
            args.node
        )
    })?;
    let plugin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("weft-cni"))
        .filter(|p| p.exists())
        .ok_or_else(|| anyhow!("weft-cni is not next to the weft binary"))?;
    fs::create_dir_all(&args.bin_dir)?;
    fs::create_dir_all(&args.conf_dir)?;
    replace(&args.bin_dir.join("weft-cni"), &fs::read(&plugin)?, 0o755)?;
    let conflist = conflist(&config, pod_cidr);
    let text = serde_json::to_string_pretty(&conflist)? + "\n";
    replace(&args.conf_dir.join(CONFLIST), text.as_bytes(), 0o644)?;
    println!(
        "installed {} and {} (pods {pod_cidr})",
        args.bin_dir.join("weft-cni").display(),
        args.conf_dir.join(CONFLIST).display()
    );
    Ok(())
}

/// The node's network config: weft-cni with its built-in IPAM over the node's range.
pub fn conflist(config: &ClusterConfig, pod_cidr: &str) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "weft",
        "plugins": [{
            "type": "weft-cni",
            "mtu": config.pod_mtu(),
            "ipam": {"subnet": pod_cidr, "dataDir": "/var/lib/weft/ipam"},
            // The agent programs each pod's policy before the pod runs.
            "agentSocket": weft_cni::agent::SOCKET,
        }],
    })
}

/// Writes `path` whole or not at all: a temporary file beside it, then a rename.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("weft-tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflist_names_the_node_range_and_the_pod_mtu() {
        let config = ClusterConfig::from_yaml(
            "t",
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: t\nnetworkMode: vxlan\n",
        )
        .unwrap();
        let c = conflist(&config, "10.244.3.0/24");
        assert_eq!(c["plugins"][0]["type"], "weft-cni");
        assert_eq!(c["plugins"][0]["ipam"]["subnet"], "10.244.3.0/24");
        assert_eq!(c["plugins"][0]["mtu"], config.pod_mtu());
    }

    #[test]
    fn replace_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.conflist");
        replace(&p, b"one", 0o644).unwrap();
        replace(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
