//! The cluster's shape: name, node count and address ranges, read from a `kind: Cluster` document and
//! validated as a whole before anything is created.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cidr::Ipv4Cidr;
use crate::names;

mod document;

/// The API version of weft's own cluster config document.
pub const CONFIG_API_VERSION: &str = "weft.dev/v1alpha1";
/// The kind of weft's own cluster config document.
pub const CONFIG_KIND: &str = "Cluster";

/// Why a cluster config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid cluster name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    #[error("{first_role} {first} overlaps {second_role} {second}")]
    Overlap {
        first_role: &'static str,
        first: Ipv4Cidr,
        second_role: &'static str,
        second: Ipv4Cidr,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The cluster's name: `[a-z0-9-]`, starting with a letter, 1 to 12 characters, because it prefixes
/// the names of network namespaces and links (Linux limits link names to 15 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

impl ClusterName {
    pub const MAX_LEN: usize = 12;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClusterName {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ConfigError::Name {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(fail(
                "must be 1 to 12 characters (it prefixes netns and link names)",
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(fail("may only contain a-z, 0-9 and '-'"));
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(fail("must start with a letter"));
        }
        if s.ends_with('-') {
            return Err(fail("must not end with '-'"));
        }
        Ok(ClusterName(s.to_string()))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for ClusterName {
    fn default() -> Self {
        ClusterName("weft".to_string())
    }
}

impl Serialize for ClusterName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The shape of one cluster. Defaults are Kubernetes' own (see DESIGN.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: ClusterName,
    pub nodes: u32,
    pub pod_cidr: Ipv4Cidr,
    /// Prefix length of each node's slice of `pod_cidr`.
    pub node_cidr_mask: u8,
    pub service_cidr: Ipv4Cidr,
    pub dns_service_ip: Ipv4Addr,
    pub cluster_domain: String,
    /// The lab's underlay; it exists only inside the lab's own namespaces.
    pub node_network: Ipv4Cidr,
    pub node_port_range: (u16, u16),
    /// Node name -> extra labels for that node.
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// How pods on different nodes reach each other.
    pub network_mode: NetworkMode,
    /// The VXLAN network identifier and UDP port of the overlay (vxlan mode).
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    /// MTU of the nodes' underlay; pods get it less the overlay's 50 bytes in vxlan mode.
    pub underlay_mtu: u32,
    /// Addresses handed to LoadBalancer Services (the lab routes each to a node).
    pub load_balancer_pool: Ipv4Cidr,
    /// How the network learns which node takes a load-balancer address.
    pub load_balancer_announcement: Announcement,
    /// The ranges a Service's `spec.externalIPs` may come from. Empty (the default): none, so no
    /// one who may create a Service can capture traffic meant for an outside address
    /// (CVE-2020-8554); the lab's API refuses others, and the proxy serves no others.
    pub external_ip_ranges: Vec<Ipv4Cidr>,
    /// Log every question the cluster DNS answers (errors are always logged).
    pub dns_query_log: bool,
    /// The TTL of the cluster DNS's records, in seconds (kubeadm's CoreDNS: 30).
    pub dns_ttl: u32,
    /// Where the cluster DNS forwards names outside the cluster. Empty: the nameservers of the
    /// DNS pod's own resolv.conf (dnsPolicy Default, the node's resolvers; in the lab, the outside
    /// host's DNS server), as CoreDNS's `forward . /etc/resolv.conf`.
    pub upstream_dns: Vec<SocketAddr>,
    /// Answers from upstream the cluster DNS keeps (positive and negative); 0: no cache.
    pub dns_cache_size: u32,
    /// The most objects of one kind the lab's API stores (a ResourceQuota for the whole lab), so
    /// a runaway client or a Deployment of 100000 replicas meets a clear error, not a full disk.
    pub object_quota: u32,
    /// Whether weft's ingress controller also serves Ingresses of class `nginx`
    /// (`ingressClassName: nginx` or the legacy `kubernetes.io/ingress.class` annotation), so
    /// manifests written for ingress-nginx work unchanged. Off when an ingress-nginx serves them.
    pub ingress_nginx_class: bool,
    /// Whether each node's agent keeps the node's connections in its flow log (`weft
    /// observe`), from conntrack's events; the drops and refusals are kept either way.
    pub flow_log: bool,
}

/// The default [`ClusterConfig::object_quota`]: room for the benchmarks' 10k Services and
/// their slices, far below what makes the lab slow.
pub const DEFAULT_OBJECT_QUOTA: u32 = 50_000;

/// The lab's "outside world": a documentation range (RFC 5737 TEST-NET-3) that no cluster range
/// may overlap, since the outside host lives there.
pub const OUTSIDE_NETWORK: Ipv4Cidr = cidr([203, 0, 113, 0], 24);

/// Cross-node pod traffic: encapsulated in VXLAN between nodes (works on any underlay), or
/// routed directly to the node that owns the pod CIDR (needs the nodes on one L2, like
/// Flannel's host-gw).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Vxlan,
    Direct,
}

/// How load-balancer addresses reach the nodes. `routes`: a router on the path is told (the
/// lab's fabric routes each address to its nodes, as MetalLB's BGP mode or a cloud balancer
/// would); `arp`: one node per address holds it on its uplink and answers ARP for it on the
/// node network (MetalLB's L2 mode), for a real cluster with no router to tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Announcement {
    #[default]
    Routes,
    Arp,
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkMode::Vxlan => "vxlan",
            NetworkMode::Direct => "direct",
        })
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vxlan" => Ok(NetworkMode::Vxlan),
            "direct" => Ok(NetworkMode::Direct),
            other => Err(format!(
                "network mode {other:?} is neither \"vxlan\" nor \"direct\""
            )),
        }
    }
}

/// The bytes VXLAN adds to every packet (outer Ethernet, IPv4, UDP and VXLAN headers).
pub const VXLAN_OVERHEAD: u32 = 50;

/// How many upstream answers the cluster DNS caches by default (CoreDNS's cache: 9984 of each kind).
pub const DEFAULT_DNS_CACHE_SIZE: u32 = 10_000;

const fn cidr(addr: [u8; 4], prefix: u8) -> Ipv4Cidr {
    Ipv4Cidr::containing(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]), prefix)
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: ClusterName::default(),
            nodes: 1,
            pod_cidr: cidr([10, 244, 0, 0], 16),
            node_cidr_mask: 24,
            service_cidr: cidr([10, 96, 0, 0], 12),
            dns_service_ip: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".to_string(),
            node_network: cidr([172, 20, 0, 0], 24),
            node_port_range: (30000, 32767),
            node_labels: BTreeMap::new(),
            network_mode: NetworkMode::Vxlan,
            vxlan_vni: 1,
            vxlan_port: 4789,
            underlay_mtu: 1500,
            // RFC 5737 TEST-NET-2: never a real destination.
            load_balancer_pool: cidr([198, 51, 100, 0], 24),
            load_balancer_announcement: Announcement::Routes,
            external_ip_ranges: Vec::new(),
            dns_query_log: false,
            dns_ttl: 30,
            upstream_dns: Vec::new(),
            dns_cache_size: DEFAULT_DNS_CACHE_SIZE,
            object_quota: DEFAULT_OBJECT_QUOTA,
            ingress_nginx_class: true,
            flow_log: true,
        }
    }
}

impl ClusterConfig {
    /// Checks the config as a whole: ranges that overlap, ranges too small for the node count, and
    /// values Kubernetes would refuse. The first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.nodes == 0 {
            return invalid("cluster must have at least 1 node (nodes: 0)".into());
        }
        // An allowed external IP range inside a cluster range would let a Service capture pod,
        // Service, node or load-balancer addresses, and inside the outside network the lab's
        // outside host: the very capture the field exists to prevent.
        let mut ranges = vec![
            ("pod CIDR", self.pod_cidr),
            ("service CIDR", self.service_cidr),
            ("node network", self.node_network),
            ("load-balancer pool", self.load_balancer_pool),
            ("outside network", OUTSIDE_NETWORK),
        ];
        ranges.extend(
            self.external_ip_ranges
                .iter()
                .map(|r| ("external IP range", *r)),
        );
        for (i, (first_role, first)) in ranges.iter().enumerate() {
            for (second_role, second) in &ranges[i + 1..] {
                if first.overlaps(second) {
                    return Err(ConfigError::Overlap {
                        first_role,
                        first: *first,
                        second_role,
                        second: *second,
                    });
                }
            }
        }
        let mask = self.node_cidr_mask;
        if mask < self.pod_cidr.prefix() || mask > 30 {
            return invalid(format!(
                "node CIDR mask /{mask} must be between the pod CIDR's prefix /{} and /30",
                self.pod_cidr.prefix()
            ));
        }
        let room = self.pod_cidr.subnet_count(mask);
        if room < u64::from(self.nodes) {
            return invalid(format!(
                "pod CIDR {} has room for {room} /{mask} node ranges, cluster has {} nodes",
                self.pod_cidr, self.nodes
            ));
        }
        // .0 is the network, .1 the underlay gateway, the last address the broadcast.
        let node_room = self.node_network.size().saturating_sub(3);
        if node_room < u64::from(self.nodes) {
            return invalid(format!(
                "node network {} has room for {node_room} nodes (after the network, gateway and \
                 broadcast addresses), cluster has {} nodes",
                self.node_network, self.nodes
            ));
        }
        if !self.service_cidr.contains(self.dns_service_ip) {
            return invalid(format!(
                "DNS service IP {} is outside the service CIDR {}",
                self.dns_service_ip, self.service_cidr
            ));
        }
        if self.dns_service_ip == self.service_cidr.network()
            || self.dns_service_ip == self.service_cidr.broadcast()
        {
            return invalid(format!(
                "DNS service IP {} is the network or broadcast address of the service CIDR {}",
                self.dns_service_ip, self.service_cidr
            ));
        }
        if let Err(reason) = names::check_rfc1123_subdomain(&self.cluster_domain) {
            return invalid(format!("cluster domain is not a valid DNS name: {reason}"));
        }
        let (lo, hi) = self.node_port_range;
        if lo == 0 || lo > hi {
            return invalid(format!(
                "NodePort range {lo}-{hi} must lie within 1-65535 with the low port first"
            ));
        }
        if self.vxlan_vni == 0 || self.vxlan_vni > 0x00ff_ffff {
            return invalid(format!(
                "vxlanVNI {} must be between 1 and 16777215",
                self.vxlan_vni
            ));
        }
        if self.vxlan_port == 0 {
            return invalid("vxlanPort must not be 0".into());
        }
        if self.object_quota < 100 {
            return invalid(format!(
                "objectQuota {} must be at least 100 (the lab's own objects need room)",
                self.object_quota
            ));
        }
        if !(1280..=9216).contains(&self.underlay_mtu) {
            return invalid(format!(
                "underlayMTU {} must be between 1280 and 9216",
                self.underlay_mtu
            ));
        }
        for (node, labels) in &self.node_labels {
            if !(0..self.nodes).any(|i| self.node_name(i) == *node) {
                return invalid(format!(
                    "nodeLabels names node {node:?}, but the cluster's nodes are {}..{}",
                    self.node_name(0),
                    self.node_name(self.nodes - 1)
                ));
            }
            for (key, value) in labels {
                let checked = names::check_label_key(key).and(names::check_label_value(value));
                if let Err(reason) = checked {
                    return invalid(format!("nodeLabels of {node}: {reason}"));
                }
            }
        }
        Ok(())
    }

    /// The MTU pods get: the underlay's, less the overlay's headers in vxlan mode.
    pub fn pod_mtu(&self) -> u32 {
        match self.network_mode {
            NetworkMode::Vxlan => self.underlay_mtu - VXLAN_OVERHEAD,
            NetworkMode::Direct => self.underlay_mtu,
        }
    }

    /// The name of the `index`-th node (from 0): `<cluster>-node1`, `<cluster>-node2`, ...
    pub fn node_name(&self, index: u32) -> String {
        format!("{}-node{}", self.name, u64::from(index) + 1)
    }

    /// The index of a node from its name, the inverse of [`ClusterConfig::node_name`].
    pub fn node_index(&self, name: &str) -> Option<u32> {
        let number: u32 = name
            .strip_prefix(self.name.as_str())?
            .strip_prefix("-node")?
            .parse()
            .ok()?;
        let index = number.checked_sub(1)?;
        (index < self.nodes && self.node_name(index) == name).then_some(index)
    }

    /// The `index`-th node's slice of the pod CIDR.
    pub fn node_pod_cidr(&self, index: u32) -> Option<Ipv4Cidr> {
        self.pod_cidr.subnet(self.node_cidr_mask, u64::from(index))
    }

    /// The `index`-th node's underlay address (from .2 on; .1 is the gateway).
    pub fn node_ip(&self, index: u32) -> Option<Ipv4Addr> {
        self.node_network.nth(u64::from(index) + 2)
    }

    /// The underlay gateway: the first host address of the node network.
    pub fn node_gateway_ip(&self) -> Ipv4Addr {
        self.node_network
            .nth(1)
            .unwrap_or_else(|| self.node_network.network())
    }
}

#[cfg(test)]
mod tests;
