//! The lab's side of CNI: executing the plugin exactly as a container runtime does (the command in
//! the environment, the network config on stdin, the result or error JSON on stdout). No private
//! shortcut into the plugin's code, so every lab pod proves the real path.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use weft_model::cidr::Ipv4Cidr;

use crate::LabError;

/// The interface name pods get, as with every Kubernetes runtime.
pub const POD_IFNAME: &str = "eth0";

/// A CNI network: where the plugin binaries are and the config the runtime hands them.
#[derive(Clone, Debug)]
pub struct CniNetwork {
    plugin_dir: PathBuf,
    config: Value,
}

/// What the lab needs from an ADD result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub result: Value,
}

impl CniNetwork {
    /// The network of one node: weft-cni with the node's pod CIDR and IPAM directory, asking
    /// the node's agent to program each pod's policy before the pod runs (as the conflist of
    /// `weft install-cni` does).
    pub fn for_node(
        plugin_dir: &Path,
        pod_cidr: Ipv4Cidr,
        ipam_dir: &Path,
        mtu: u32,
    ) -> CniNetwork {
        let config = json!({
            "cniVersion": "1.1.0",
            "name": "weft",
            "type": "weft-cni",
            "mtu": mtu,
            "ipam": { "subnet": pod_cidr.to_string(), "dataDir": ipam_dir },
            "agentSocket": weft_cni::agent::SOCKET,
        });
        CniNetwork {
            plugin_dir: plugin_dir.to_path_buf(),
            config,
        }
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn add(
        &self,
        container_id: &str,
        netns: &Path,
        pod: &PodRef,
    ) -> Result<Attachment, LabError> {
        let out = self.exec("ADD", container_id, Some(netns), pod)?;
        let result: Value = serde_json::from_slice(&out).map_err(|e| LabError::Cni {
            op: "ADD",
            container_id: container_id.to_string(),
            message: format!("plugin printed no valid result JSON: {e}"),
        })?;
        let ip = first_ipv4(&result).ok_or_else(|| LabError::Cni {
            op: "ADD",
            container_id: container_id.to_string(),
            message: format!("result has no IPv4 address: {result}"),
        })?;
        Ok(Attachment { ip, result })
    }

    /// DEL is idempotent in the plugin, so the lab calls it whenever it is unsure.
    pub fn del(
        &self,
        container_id: &str,
        netns: Option<&Path>,
        pod: &PodRef,
    ) -> Result<(), LabError> {
        self.exec("DEL", container_id, netns, pod).map(|_| ())
    }

    fn exec(
        &self,
        op: &'static str,
        container_id: &str,
        netns: Option<&Path>,
        pod: &PodRef,
    ) -> Result<Vec<u8>, LabError> {
        let plugin = self.plugin_dir.join("weft-cni");
        let cni_error = |message: String| LabError::Cni {
            op,
            container_id: container_id.to_string(),
            message,
        };
        let mut cmd = Command::new(&plugin);
        cmd.env("CNI_COMMAND", op)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", POD_IFNAME)
            .env("CNI_PATH", &self.plugin_dir)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    pod.namespace, pod.name, container_id, pod.uid
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The spec allows an empty CNI_NETNS for DEL when the namespace is already gone.
        cmd.env(
            "CNI_NETNS",
            netns.map(|p| p.as_os_str().to_owned()).unwrap_or_default(),
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| cni_error(format!("cannot execute {}: {e}", plugin.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.config.to_string().as_bytes())
                .map_err(|e| cni_error(format!("writing config to the plugin: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| cni_error(format!("waiting for the plugin: {e}")))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // A failing plugin prints the spec's error JSON: {"code": N, "msg": "...", "details": "..."}.
        let message = match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(err) => format!(
                "code {}: {}{}",
                err["code"],
                err["msg"].as_str().unwrap_or("(no msg)"),
                err["details"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Err(_) => format!(
                "exited with {} and no error JSON; stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        Err(cni_error(message))
    }
}

/// The pod a CNI call is for (sent in CNI_ARGS the way kubelet does).
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

fn first_ipv4(result: &Value) -> Option<Ipv4Addr> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["address"].as_str()?;
        addr.split('/').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_network_config_names_the_node_range() {
        let net = CniNetwork::for_node(
            Path::new("/x"),
            "10.244.3.0/24".parse().unwrap(),
            Path::new("/s/ipam"),
            1500,
        );
        assert_eq!(net.config()["type"], "weft-cni");
        assert_eq!(net.config()["ipam"]["subnet"], "10.244.3.0/24");
        assert_eq!(net.config()["ipam"]["dataDir"], "/s/ipam");
    }

    #[test]
    fn the_pod_ip_is_read_from_the_result() {
        let result = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.244.0.7/32", "gateway": "169.254.1.1", "interface": 1}]});
        assert_eq!(first_ipv4(&result), Some("10.244.0.7".parse().unwrap()));
        assert_eq!(first_ipv4(&json!({"ips": []})), None);
    }
}
