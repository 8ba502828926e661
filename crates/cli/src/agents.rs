//! Asking weft's node agents over HTTP on their health port (`/policy`, `/flows`). The agents
//! listen on the nodes' addresses. On a real cluster (`--kubeconfig`/`--context`) the CLI
//! connects to each node's InternalIP directly; a lab's nodes are namespaces behind the lab's
//! fabric, which the host cannot route to, so the CLI opens its connections from the fabric
//! namespace (as `weft lab outside` runs commands from the outside host's).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use weft_lab::layout::Layout;

use crate::client::{Cluster, Target};
use crate::resources;

/// How long one agent may take to connect and answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Each node's agent's health port, as its pod declares it (the readiness probe's port, which
/// `weft agent --health-port` moves with it): node -> port. Agents whose pods cannot be read
/// are asked on the default port.
pub async fn ports(cluster: &Cluster) -> BTreeMap<String, u16> {
    let Some(pods_resource) = resources::builtin_named("pods") else {
        return BTreeMap::new();
    };
    let listed = cluster
        .list(
            &pods_resource,
            Some("kube-system"),
            Some("app.kubernetes.io/name=weft-agent"),
        )
        .await;
    let Ok((items, _)) = listed else {
        return BTreeMap::new();
    };
    items
        .iter()
        .filter_map(|p| {
            let node = p["spec"]["nodeName"].as_str()?;
            let port = p["spec"]["containers"]
                .as_array()?
                .iter()
                .find_map(|c| c["readinessProbe"]["httpGet"]["port"].as_u64())?;
            Some((node.to_string(), u16::try_from(port).ok()?))
        })
        .collect()
}

/// Every node's agent address: node -> (InternalIP, health port).
pub async fn all(cluster: &Cluster) -> Result<BTreeMap<String, Result<SocketAddr>>> {
    let ports = ports(cluster).await;
    let nodes_resource = resources::builtin_named("nodes").context("nodes")?;
    let (items, _) = cluster.list(&nodes_resource, None, None).await?;
    let mut out = BTreeMap::new();
    for item in items {
        let node: Node = serde_json::from_value(item)?;
        let name = node.metadata.name.clone().unwrap_or_default();
        let port = ports.get(&name).copied().unwrap_or(weft_agent::HEALTH_PORT);
        let addr = weft_model::node::internal_ip(&node)
            .map(|ip| SocketAddr::from((ip, port)))
            .ok_or_else(|| anyhow!("node {name} has no InternalIP"));
        out.insert(name, addr);
    }
    Ok(out)
}

/// `GET path` of the agent at `addr` (blocking): its status code and body.
pub fn get(target: &Target, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => bail!("agent address {addr} is not IPv4"),
    };
    let stream = match target {
        Target::Lab(lab) => {
            let layout = Layout::new(lab.clone(), &Layout::state_root_from_env());
            let name = layout.fabric_netns();
            let fabric = weft_dataplane::NetNs::open_named(&name)
                .with_context(|| format!("entering lab {lab}'s fabric namespace {name}"))?;
            // A socket keeps the namespace it was made in.
            fabric.run(|| TcpStream::connect_timeout(&addr, TIMEOUT))?
        }
        Target::Kubeconfig { .. } => {
            directly_routed(ip)?;
            TcpStream::connect_timeout(&addr, TIMEOUT)
        }
    }
    .with_context(|| format!("connecting to the agent at {addr}"))?;
    weft_view::health::get(stream, addr, path, TIMEOUT)
        .with_context(|| format!("reading the answer of the agent at {addr}"))
}

/// Refuses a node address this machine reaches only through its default route. A cluster's
/// nodes are on a network this machine has a route for when it can ask their agents at all;
/// a kubeconfig of a lab (API on loopback, nodes in namespaces) would otherwise send the
/// request out of the machine's uplink to whoever holds that address there.
fn directly_routed(ip: Ipv4Addr) -> Result<()> {
    let routes = weft_dataplane::Netlink::open()?.routes(weft_dataplane::Family::V4)?;
    match longest_match(&routes, ip) {
        Some(len) if len > 0 => Ok(()),
        _ => bail!(
            "node address {ip} is reachable from here only through the default route, so its \
             agent is not asked (for a lab, use --lab NAME instead of its kubeconfig)"
        ),
    }
}

/// The prefix length of the most specific route to `ip` (0: the default route).
fn longest_match(routes: &[weft_dataplane::Route], ip: Ipv4Addr) -> Option<u8> {
    routes
        .iter()
        .filter(|r| r.dst.contains(ip.into()))
        .map(|r| r.dst.prefix())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_with_a_route_of_their_own_are_asked() {
        use weft_dataplane::{IpNet, Route, Scope};
        let route = |dst: &str| Route {
            dst: dst.parse::<IpNet>().unwrap(),
            gateway: None,
            oif: None,
            scope: Scope::Universe,
            onlink: false,
            src: None,
            protocol: 0,
            multipath: Vec::new(),
        };
        let routes = [route("0.0.0.0/0"), route("10.1.0.0/24")];
        assert_eq!(
            longest_match(&routes, "10.1.0.7".parse().unwrap()),
            Some(24)
        );
        assert_eq!(
            longest_match(&routes, "172.20.0.2".parse().unwrap()),
            Some(0)
        );
    }
}
