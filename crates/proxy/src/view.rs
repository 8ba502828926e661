//! Services and EndpointSlices as the proxy sees them: one entry per service port with its
//! addresses (cluster IP, node port, external addresses: `spec.externalIPs` only inside the
//! allowed ranges) and endpoints. Pure; the rules about which endpoints serve which traffic, and
//! which addresses are served at all, live here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::ProxyNode;

/// The label linking an EndpointSlice to its Service.
pub use weft_model::endpoints::SERVICE_NAME_LABEL;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables uses (`meta l4proto tcp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of one service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The node the endpoint's pod runs on, when the slice says.
    pub node: Option<String>,
}

/// One port of one Service, with everything the ruleset needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortView {
    pub namespace: String,
    pub name: String,
    /// The port's name, or its number when unnamed.
    pub port_name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub cluster_ip: Option<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// externalIPs and load-balancer ingress addresses: served like a node port.
    pub external_ips: Vec<Ipv4Addr>,
    /// externalTrafficPolicy: Local.
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    /// sessionAffinity: ClientIP, with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// The endpoints cluster-wide traffic may use.
    pub endpoints: Vec<Endpoint>,
    /// The endpoints on this node that local-policy traffic may use.
    pub local_endpoints: Vec<Endpoint>,
    /// The endpoints are serving but terminating ones, used only because none is ready: they
    /// still take traffic, but a load balancer's health check counts none of them, so it
    /// drains the node (kube-proxy's rule).
    pub terminating: bool,
    /// `spec.healthCheckNodePort` of a LoadBalancer Service with `externalTrafficPolicy:
    /// Local`: where this node tells load balancers how many local endpoints it has
    /// ([`crate::health`]). None for every other Service.
    pub health_check_node_port: Option<u16>,
}

impl ServicePortView {
    /// `namespace/name/protocol/port`: how rules and errors name this service port.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port_name
        )
    }

    /// The endpoints traffic from inside the cluster (to the cluster IP) goes to.
    pub fn internal_endpoints(&self) -> &[Endpoint] {
        if self.internal_local {
            &self.local_endpoints
        } else {
            &self.endpoints
        }
    }

    /// The endpoints traffic from outside (node port, external addresses) goes to.
    pub fn external_endpoints(&self) -> &[Endpoint] {
        if self.external_local {
            &self.local_endpoints
        } else {
            &self.endpoints
        }
    }
}

/// Builds the views of every proxied Service port. ExternalName Services and headless ones
/// (no cluster IP) are not proxied; neither are ports of unknown protocol.
pub fn views(
    node: &ProxyNode,
    services: &[Service],
    slices: &[EndpointSlice],
) -> Vec<ServicePortView> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(owner) = weft_model::endpoints::service_name(slice) else {
            continue;
        };
        let ns = slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        by_service
            .entry((ns, owner.to_string()))
            .or_default()
            .push(slice);
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let namespace = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        if cluster_ip.is_none() {
            // Headless: DNS hands out the endpoints; there is nothing to proxy.
            continue;
        }
        let external_ips = external_ips(node, svc);
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(10800)
        });
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        // As kube-proxy: only a LoadBalancer with Local policy is health-checked.
        let health_check_node_port = spec
            .health_check_node_port
            .filter(|_| external_local && spec.type_.as_deref() == Some("LoadBalancer"))
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0);
        let own_slices = by_service
            .get(&(namespace.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(port)) = (
                Protocol::parse(p.protocol.as_deref()),
                u16::try_from(p.port),
            ) else {
                continue;
            };
            let port_name = p.name.clone().filter(|n| !n.is_empty());
            let (endpoints, terminating) =
                endpoints_for(own_slices, port_name.as_deref(), protocol);
            let local_endpoints = endpoints
                .iter()
                .filter(|e| e.node.as_deref() == Some(node.name.as_str()))
                .cloned()
                .collect();
            out.push(ServicePortView {
                namespace: namespace.clone(),
                name: name.clone(),
                port_name: port_name.unwrap_or_else(|| port.to_string()),
                protocol,
                port,
                cluster_ip,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
                external_ips: external_ips.clone(),
                external_local,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                affinity_timeout,
                endpoints,
                local_endpoints,
                terminating,
                health_check_node_port,
            });
        }
    }
    out.sort_by_key(|v| v.id());
    out
}

/// The Service's external addresses this node serves: its `spec.externalIPs` inside the
/// allowed ranges, and its load-balancer ingress IPs (written to the status by a load-balancer
/// controller from its pool, not by whoever writes the spec), sorted, without duplicates.
fn external_ips(node: &ProxyNode, svc: &Service) -> Vec<Ipv4Addr> {
    let refused = refused_external_ips(node, svc);
    let load_balancer: Vec<Ipv4Addr> = weft_model::service::load_balancer_ingress(svc)
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    weft_model::service::external_ipv4s(svc)
        .into_iter()
        .filter(|ip| !refused.contains(ip) || load_balancer.contains(ip))
        .collect()
}

/// The Service's `spec.externalIPs` outside the node's allowed ranges, which the proxy does not
/// serve: an API server without weft's admission may have let them in.
pub fn refused_external_ips(node: &ProxyNode, svc: &Service) -> Vec<Ipv4Addr> {
    let mut refused: Vec<Ipv4Addr> = svc
        .spec
        .iter()
        .flat_map(|s| s.external_ips.iter().flatten())
        .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
        .filter(|ip| !node.external_ip_ranges.iter().any(|r| r.contains(*ip)))
        .collect();
    refused.sort();
    refused.dedup();
    refused
}

/// The endpoints of the slice port named like the service port: ready ones, or, when none is
/// ready, the serving ones that are terminating (so a rolling update never refuses
/// connections it could still serve), as kube-proxy does. True with the terminating ones.
fn endpoints_for(
    slices: &[&EndpointSlice],
    port_name: Option<&str>,
    protocol: Protocol,
) -> (Vec<Endpoint>, bool) {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().filter(|n| !n.is_empty()) == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for e in &slice.endpoints {
            let is_ready = weft_model::endpoints::is_ready(e);
            let serving = weft_model::endpoints::is_serving(e);
            // Unset means "not terminating" (discovery.k8s.io/v1).
            let is_terminating = e
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            for ip in e
                .addresses
                .iter()
                .filter_map(|a| a.parse::<Ipv4Addr>().ok())
            {
                let ep = Endpoint {
                    ip,
                    port,
                    node: e.node_name.clone(),
                };
                if is_ready && !is_terminating {
                    ready.push(ep);
                } else if serving && is_terminating {
                    terminating.push(ep);
                }
            }
        }
    }
    let only_terminating = ready.is_empty() && !terminating.is_empty();
    let mut chosen = if ready.is_empty() { terminating } else { ready };
    chosen.sort();
    chosen.dedup();
    (chosen, only_terminating)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ips_outside_the_allowed_ranges_are_not_served() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9",
                "externalIPs": ["192.0.2.50", "203.0.113.10", "198.51.100.7"],
                "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
        }))
        .unwrap();
        let node = |ranges: &[&str]| ProxyNode {
            name: "n1".into(),
            ip: "172.20.0.2".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            external_ip_ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
        };
        let served = |n: &ProxyNode| -> Vec<String> {
            views(n, std::slice::from_ref(&svc), &[])[0]
                .external_ips
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // No ranges: only the load-balancer address (from the status, the controller's pool),
        // even though the spec names it too.
        let none = node(&[]);
        assert_eq!(served(&none), ["198.51.100.7"]);
        let refused: Vec<String> = refused_external_ips(&none, &svc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(refused, ["192.0.2.50", "198.51.100.7", "203.0.113.10"]);
        // An allowed range: its addresses too, and still not the outside host's.
        let some = node(&["192.0.2.0/24"]);
        assert_eq!(served(&some), ["192.0.2.50", "198.51.100.7"]);
        let refused: Vec<String> = refused_external_ips(&some, &svc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(refused, ["198.51.100.7", "203.0.113.10"]);
    }
}
