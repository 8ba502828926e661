//! Where a lab keeps things: its state directory and the names of the kernel objects it creates.
//!
//! Every namespace and file a lab makes is named from the cluster name, so two labs (and a test
//! suite) can live side by side and `weft lab down` removes exactly what `weft lab up` made.

use std::path::{Path, PathBuf};

use weft_model::config::ClusterName;

/// The default root for lab state; `WEFT_STATE_DIR` overrides it.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/weft/labs";

/// The names and paths of one lab.
#[derive(Clone, Debug)]
pub struct Layout {
    name: ClusterName,
    dir: PathBuf,
}

impl Layout {
    pub fn new(name: ClusterName, state_root: &Path) -> Layout {
        let dir = state_root.join(name.as_str());
        Layout { name, dir }
    }

    /// The state root from `WEFT_STATE_DIR`, or the default.
    pub fn state_root_from_env() -> PathBuf {
        std::env::var_os("WEFT_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT))
    }

    pub fn name(&self) -> &ClusterName {
        &self.name
    }

    /// The lab's state directory; its existence means the lab is up (or half torn down).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    pub fn controller_pid_file(&self) -> PathBuf {
        self.dir.join("controller.pid")
    }

    pub fn speaker_pid_file(&self) -> PathBuf {
        self.dir.join("speaker.pid")
    }

    /// Present once `lab up` has started every daemon and until `lab down` begins: daemons are
    /// only restarted while it is there, so supervisors never race the start or the teardown.
    pub fn supervised_marker(&self) -> PathBuf {
        self.dir.join("supervised")
    }

    pub fn apiserver_pid_file(&self) -> PathBuf {
        self.dir.join("apiserver.pid")
    }

    /// The port the API server listens on at 127.0.0.1, chosen at its first start and kept, so
    /// a restarted server is where the kubeconfig says.
    pub fn apiserver_port_file(&self) -> PathBuf {
        self.dir.join("apiserver.port")
    }

    /// The lab's CA, serving and admin certificates and tokens (root only).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// The kubeconfig `lab up` writes for this lab (root only: it holds the admin key).
    pub fn kubeconfig_file(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The kubeconfig of the lab's processes in the fabric namespace (the speaker): the API at
    /// the fabric address, where that namespace reaches it (root only: the admin's key).
    pub fn fabric_kubeconfig_file(&self) -> PathBuf {
        self.dir.join("fabric.kubeconfig")
    }

    pub fn kubelet_pid_file(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("kubelet.pid")
    }

    /// Where the node's kubelet keeps one record per pod sandbox it runs.
    pub fn sandboxes_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("sandboxes")
    }

    /// The IPAM data directory handed to weft-cni for pods of this node.
    pub fn ipam_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("ipam")
    }

    /// A pod's service account credentials (token, ca.crt, namespace), mounted into its
    /// containers.
    pub fn service_account_dir(&self, node: &str, pod_uid: &str) -> PathBuf {
        self.node_dir(node).join("serviceaccounts").join(pod_uid)
    }

    /// The pods' resolv.conf files live here, one per pod.
    pub fn resolv_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("resolv")
    }

    /// Prefix of every network namespace of this lab. `_` cannot appear in a cluster name, so
    /// lab "demo" never claims the namespaces of lab "demo-x".
    pub fn netns_prefix(&self) -> String {
        format!("weft_{}_", self.name.as_str())
    }

    /// The namespace holding the underlay bridge the nodes hang off.
    pub fn fabric_netns(&self) -> String {
        format!("{}fabric", self.netns_prefix())
    }

    /// "Outside the cluster": where external clients and servers of the lab live.
    pub fn outside_netns(&self) -> String {
        format!("{}outside", self.netns_prefix())
    }

    pub fn node_netns(&self, node: &str) -> String {
        format!("{}{}", self.netns_prefix(), node)
    }

    /// A pod's namespace name: short and unique (the pod UID), since names are per lab not per node.
    pub fn pod_netns(&self, pod_uid: &str) -> String {
        let short: String = pod_uid.chars().filter(|c| *c != '-').take(12).collect();
        format!("{}pod-{}", self.netns_prefix(), short)
    }

    /// Is `netns` one of this lab's namespaces?
    pub fn owns_netns(&self, netns: &str) -> bool {
        netns.starts_with(&self.netns_prefix())
    }
}

/// Interface names on the fabric bridge: "n" + node index, fits IFNAMSIZ for any index.
pub fn fabric_port_name(node_index: u32) -> String {
    format!("n{node_index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_cluster_prefix() {
        let layout = Layout::new("demo".parse().unwrap(), Path::new("/tmp/x"));
        assert_eq!(layout.fabric_netns(), "weft_demo_fabric");
        assert_eq!(layout.node_netns("demo-node1"), "weft_demo_demo-node1");
        assert_eq!(
            layout.pod_netns("0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
            "weft_demo_pod-0a1b2c3d4e5f"
        );
        assert!(layout.owns_netns("weft_demo_pod-0a1b"));
        assert!(!layout.owns_netns("weft_demo-x_fabric"));
        assert_eq!(layout.dir(), Path::new("/tmp/x/demo"));
    }
}
