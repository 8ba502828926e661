//! Cluster networking as one node sees it: the other nodes' pod CIDRs must be reachable without
//! NAT, and this node's pods must leave the cluster masqueraded to the node's address.
//!
//! Two halves, kept apart so the rules are testable without a kernel:
//! - [`compile`]: a pure function from the cluster view (nodes, their IPs and pod CIDRs) and
//!   this node to a [`NodePlan`]: the VXLAN device, routes, neighbour and forwarding entries,
//!   and the nftables egress table this node should have.
//! - [`apply`]: makes the kernel match a plan through rtnetlink and nftables netlink batches
//!   ([`NodeApplier`] keeps state between applies, to repair a hand-edited egress table),
//!   touching only what weft owns (routes of protocol [`ROUTE_PROTOCOL`], the
//!   [`VXLAN_DEVICE`], the [`EGRESS_TABLE`]), and reporting each change it made. Applying a
//!   plan twice changes nothing the second time.
//!
//! ```
//! use weft_net::{compile, Mode, NetworkConfig, NodeInfo};
//! let cfg = NetworkConfig {
//!     mode: Mode::Vxlan { vni: 1, port: 4789 },
//!     underlay_mtu: 1500,
//!     cluster_cidr: "10.244.0.0/16".parse().unwrap(),
//!     service_cidr: "10.96.0.0/12".parse().unwrap(),
//! };
//! let nodes = vec![
//!     NodeInfo::new("a", "172.20.0.2".parse().unwrap(), "10.244.0.0/24".parse().unwrap()),
//!     NodeInfo::new("b", "172.20.0.3".parse().unwrap(), "10.244.1.0/24".parse().unwrap()),
//! ];
//! let plan = compile(&cfg, "a", &nodes).unwrap();
//! assert_eq!(plan.routes.len(), 1);
//! ```

mod apply;
mod compile;
mod reconcile;

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;
use weft_model::cidr::Ipv4Cidr;
use weft_model::config::{ClusterConfig, NetworkMode};

pub use apply::{apply, sync_owned_routes, Applied, NodeApplier, OwnedRoute};
pub use compile::{compile, vtep_mac, NodePlan, PlannedRoute, Via, VxlanPlan, REJECT_NO_ROUTE};
pub use reconcile::NetReconciler;

/// The VXLAN device every node of a vxlan-mode cluster has.
pub const VXLAN_DEVICE: &str = "weft.vxlan";
/// The routing protocol number weft's routes carry (`ip route ... proto 0x57`), so the applier
/// finds its own routes and never touches anybody else's.
pub const ROUTE_PROTOCOL: u8 = 0x57;
/// The nftables table (family ip) holding the node's egress masquerade.
pub const EGRESS_TABLE: &str = "weft_egress";

/// One node as the network sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The node's underlay address (its InternalIP).
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Cidr,
}

impl NodeInfo {
    pub fn new(name: &str, ip: Ipv4Addr, pod_cidr: Ipv4Cidr) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ip,
            pod_cidr,
        }
    }

    /// Reads a Node object: its name, first IPv4 InternalIP and `spec.podCIDR`.
    pub fn from_node(node: &Node) -> Result<NodeInfo, NetError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let bad = |reason: String| NetError::Node {
            node: name.clone(),
            reason,
        };
        let cidr = weft_model::node::pod_cidr(node)
            .ok_or_else(|| bad("has no spec.podCIDR yet".into()))?;
        let pod_cidr = cidr
            .parse()
            .map_err(|e| bad(format!("spec.podCIDR {cidr:?}: {e}")))?;
        let ip = weft_model::node::internal_ip(node)
            .ok_or_else(|| bad("has no IPv4 InternalIP in status.addresses".into()))?;
        Ok(NodeInfo { name, ip, pod_cidr })
    }
}

/// How pods on different nodes reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Encapsulated in VXLAN between node IPs: works over any underlay that carries UDP.
    Vxlan { vni: u32, port: u16 },
    /// Routed to the owning node's IP (Flannel's host-gw): needs the nodes on one L2 segment.
    Direct,
}

/// The cluster-wide network settings the compiler needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    pub mode: Mode,
    pub underlay_mtu: u32,
    /// All pods' addresses: never masqueraded as a destination.
    pub cluster_cidr: Ipv4Cidr,
    /// All Services' addresses: never masqueraded as a destination.
    pub service_cidr: Ipv4Cidr,
}

impl NetworkConfig {
    pub fn from_cluster(config: &ClusterConfig) -> NetworkConfig {
        NetworkConfig {
            mode: match config.network_mode {
                NetworkMode::Vxlan => Mode::Vxlan {
                    vni: config.vxlan_vni,
                    port: config.vxlan_port,
                },
                NetworkMode::Direct => Mode::Direct,
            },
            underlay_mtu: config.underlay_mtu,
            cluster_cidr: config.pod_cidr,
            service_cidr: config.service_cidr,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("node {node} {reason}")]
    Node { node: String, reason: String },
    #[error("this node ({0}) is not in the cluster view")]
    UnknownSelf(String),
    #[error("nodes {a} and {b} both claim pod CIDR range {cidr}")]
    OverlappingPodCidrs { a: String, b: String, cidr: String },
    #[error(
        "no link in this namespace holds the node IP {0}: cannot tell which device is the underlay"
    )]
    NoUplink(Ipv4Addr),
    #[error(transparent)]
    Kernel(#[from] weft_dataplane::Error),
}
