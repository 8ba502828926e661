//! The `kind: Cluster` document as written and read: every field optional on the way in, every
//! field written out on the way out, errors naming the file and the field.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{
    Announcement, ClusterConfig, ClusterName, ConfigError, NetworkMode, CONFIG_API_VERSION,
    CONFIG_KIND,
};
use crate::cidr::Ipv4Cidr;

/// The config document as written: every field optional, unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDocument {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<ClusterName>,
    nodes: Option<u32>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<Ipv4Cidr>,
    #[serde(rename = "nodeCIDRMaskSize")]
    node_cidr_mask: Option<u8>,
    #[serde(rename = "serviceCIDR")]
    service_cidr: Option<Ipv4Cidr>,
    #[serde(rename = "dnsServiceIP")]
    dns_service_ip: Option<Ipv4Addr>,
    #[serde(rename = "clusterDomain")]
    cluster_domain: Option<String>,
    #[serde(rename = "nodeNetwork")]
    node_network: Option<Ipv4Cidr>,
    #[serde(rename = "nodePortRange")]
    node_port_range: Option<String>,
    #[serde(rename = "nodeLabels")]
    node_labels: Option<BTreeMap<String, BTreeMap<String, String>>>,
    #[serde(rename = "networkMode")]
    network_mode: Option<NetworkMode>,
    #[serde(rename = "vxlanVNI")]
    vxlan_vni: Option<u32>,
    #[serde(rename = "vxlanPort")]
    vxlan_port: Option<u16>,
    #[serde(rename = "underlayMTU")]
    underlay_mtu: Option<u32>,
    #[serde(rename = "loadBalancerPool")]
    load_balancer_pool: Option<Ipv4Cidr>,
    #[serde(rename = "loadBalancerAnnouncement")]
    load_balancer_announcement: Option<Announcement>,
    #[serde(rename = "externalIPRanges")]
    external_ip_ranges: Option<Vec<Ipv4Cidr>>,
    #[serde(rename = "dnsQueryLog")]
    dns_query_log: Option<bool>,
    #[serde(rename = "dnsTTL")]
    dns_ttl: Option<u32>,
    #[serde(rename = "upstreamDNS")]
    upstream_dns: Option<Vec<String>>,
    #[serde(rename = "dnsCacheSize")]
    dns_cache_size: Option<u32>,
    #[serde(rename = "objectQuota")]
    object_quota: Option<u32>,
    #[serde(rename = "ingressNginxClass")]
    ingress_nginx_class: Option<bool>,
    #[serde(rename = "flowLog")]
    flow_log: Option<bool>,
}

/// The config document as written out by [`ClusterConfig::to_yaml`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderedDocument<'a> {
    api_version: &'static str,
    kind: &'static str,
    name: &'a ClusterName,
    nodes: u32,
    #[serde(rename = "podCIDR")]
    pod_cidr: Ipv4Cidr,
    #[serde(rename = "nodeCIDRMaskSize")]
    node_cidr_mask: u8,
    #[serde(rename = "serviceCIDR")]
    service_cidr: Ipv4Cidr,
    #[serde(rename = "dnsServiceIP")]
    dns_service_ip: Ipv4Addr,
    cluster_domain: &'a str,
    node_network: Ipv4Cidr,
    node_port_range: String,
    node_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    network_mode: NetworkMode,
    #[serde(rename = "vxlanVNI")]
    vxlan_vni: u32,
    vxlan_port: u16,
    #[serde(rename = "underlayMTU")]
    underlay_mtu: u32,
    #[serde(rename = "loadBalancerPool")]
    load_balancer_pool: Ipv4Cidr,
    #[serde(rename = "loadBalancerAnnouncement")]
    load_balancer_announcement: Announcement,
    #[serde(rename = "externalIPRanges")]
    external_ip_ranges: &'a [Ipv4Cidr],
    #[serde(rename = "dnsQueryLog")]
    dns_query_log: bool,
    #[serde(rename = "dnsTTL")]
    dns_ttl: u32,
    #[serde(rename = "upstreamDNS")]
    upstream_dns: Vec<String>,
    #[serde(rename = "dnsCacheSize")]
    dns_cache_size: u32,
    #[serde(rename = "objectQuota")]
    object_quota: u32,
    #[serde(rename = "ingressNginxClass")]
    ingress_nginx_class: bool,
    #[serde(rename = "flowLog")]
    flow_log: bool,
}

/// An upstream DNS server: an address, port 53 unless one is given (`10.0.0.2`, `10.0.0.2:5353`,
/// `[fd00::2]:53`).
fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an address like \"10.0.0.2\" or \"10.0.0.2:5353\""))
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range like \"30000-32767\"");
    let (lo, hi) = text.trim().split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    Ok((lo, hi))
}

impl ClusterConfig {
    /// Reads a `kind: Cluster` document; `source` (usually the file name) prefixes every error.
    /// Missing fields take their defaults. The result is not validated yet: call [`validate`].
    ///
    /// [`validate`]: ClusterConfig::validate
    pub fn from_yaml(source: &str, text: &str) -> Result<ClusterConfig, ConfigError> {
        let mut config = ClusterConfig::default();
        if text.trim().is_empty() {
            return Ok(config);
        }
        let deserializer = serde_norway::Deserializer::from_str(text);
        let doc: ConfigDocument = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_norway already prefixes nested errors with the path (without a list
            // entry's index); say it only once.
            let bare = path.split('[').next().unwrap_or_default();
            let inner = inner
                .strip_prefix(&format!("{path}: "))
                .or_else(|| inner.strip_prefix(&format!("{bare}: ")))
                .map(str::to_string)
                .unwrap_or(inner);
            if path == "." || path.is_empty() {
                ConfigError::Syntax {
                    file: source.to_string(),
                    message: inner,
                }
            } else {
                ConfigError::Field {
                    file: source.to_string(),
                    field: path,
                    message: inner,
                }
            }
        })?;
        let field = |field: &str, message: String| ConfigError::Field {
            file: source.to_string(),
            field: field.to_string(),
            message,
        };
        match doc.api_version.as_deref() {
            Some(CONFIG_API_VERSION) => {}
            Some(other) => {
                return Err(field(
                    "apiVersion",
                    format!("{other:?} is not {CONFIG_API_VERSION:?}"),
                ))
            }
            None => {
                return Err(field(
                    "apiVersion",
                    format!("missing (expected {CONFIG_API_VERSION:?})"),
                ))
            }
        }
        match doc.kind.as_deref() {
            Some(CONFIG_KIND) => {}
            Some(other) => return Err(field("kind", format!("{other:?} is not {CONFIG_KIND:?}"))),
            None => return Err(field("kind", format!("missing (expected {CONFIG_KIND:?})"))),
        }
        if let Some(name) = doc.name {
            config.name = name;
        }
        if let Some(nodes) = doc.nodes {
            config.nodes = nodes;
        }
        if let Some(pod_cidr) = doc.pod_cidr {
            config.pod_cidr = pod_cidr;
        }
        if let Some(mask) = doc.node_cidr_mask {
            config.node_cidr_mask = mask;
        }
        if let Some(service_cidr) = doc.service_cidr {
            config.service_cidr = service_cidr;
        }
        if let Some(ip) = doc.dns_service_ip {
            config.dns_service_ip = ip;
        }
        if let Some(domain) = doc.cluster_domain {
            config.cluster_domain = domain;
        }
        if let Some(network) = doc.node_network {
            config.node_network = network;
        }
        if let Some(range) = doc.node_port_range {
            config.node_port_range =
                parse_port_range(&range).map_err(|m| field("nodePortRange", m))?;
        }
        if let Some(labels) = doc.node_labels {
            config.node_labels = labels;
        }
        if let Some(mode) = doc.network_mode {
            config.network_mode = mode;
        }
        if let Some(vni) = doc.vxlan_vni {
            config.vxlan_vni = vni;
        }
        if let Some(port) = doc.vxlan_port {
            config.vxlan_port = port;
        }
        if let Some(mtu) = doc.underlay_mtu {
            config.underlay_mtu = mtu;
        }
        if let Some(pool) = doc.load_balancer_pool {
            config.load_balancer_pool = pool;
        }
        if let Some(announcement) = doc.load_balancer_announcement {
            config.load_balancer_announcement = announcement;
        }
        if let Some(ranges) = doc.external_ip_ranges {
            config.external_ip_ranges = ranges;
        }
        if let Some(log) = doc.dns_query_log {
            config.dns_query_log = log;
        }
        if let Some(ttl) = doc.dns_ttl {
            config.dns_ttl = ttl;
        }
        if let Some(servers) = doc.upstream_dns {
            config.upstream_dns = servers
                .iter()
                .map(|s| parse_upstream(s))
                .collect::<Result<_, _>>()
                .map_err(|m| field("upstreamDNS", m))?;
        }
        if let Some(size) = doc.dns_cache_size {
            config.dns_cache_size = size;
        }
        if let Some(quota) = doc.object_quota {
            config.object_quota = quota;
        }
        if let Some(serve) = doc.ingress_nginx_class {
            config.ingress_nginx_class = serve;
        }
        if let Some(on) = doc.flow_log {
            config.flow_log = on;
        }
        Ok(config)
    }

    /// The config as a `kind: Cluster` document, every field written out; [`from_yaml`] reads it
    /// back to an equal config. The lab keeps this in its state directory.
    ///
    /// [`from_yaml`]: ClusterConfig::from_yaml
    pub fn to_yaml(&self) -> String {
        let doc = RenderedDocument {
            api_version: CONFIG_API_VERSION,
            kind: CONFIG_KIND,
            name: &self.name,
            nodes: self.nodes,
            pod_cidr: self.pod_cidr,
            node_cidr_mask: self.node_cidr_mask,
            service_cidr: self.service_cidr,
            dns_service_ip: self.dns_service_ip,
            cluster_domain: &self.cluster_domain,
            node_network: self.node_network,
            node_port_range: format!("{}-{}", self.node_port_range.0, self.node_port_range.1),
            node_labels: &self.node_labels,
            network_mode: self.network_mode,
            vxlan_vni: self.vxlan_vni,
            vxlan_port: self.vxlan_port,
            underlay_mtu: self.underlay_mtu,
            load_balancer_pool: self.load_balancer_pool,
            load_balancer_announcement: self.load_balancer_announcement,
            external_ip_ranges: &self.external_ip_ranges,
            dns_query_log: self.dns_query_log,
            dns_ttl: self.dns_ttl,
            upstream_dns: self
                .upstream_dns
                .iter()
                .map(SocketAddr::to_string)
                .collect(),
            dns_cache_size: self.dns_cache_size,
            object_quota: self.object_quota,
            ingress_nginx_class: self.ingress_nginx_class,
            flow_log: self.flow_log,
        };
        // Only strings, numbers and string-keyed maps: serde_norway has nothing here it can fail on.
        serde_norway::to_string(&doc).unwrap_or_default()
    }
}
