//! The lab's load-balancer speaker: what MetalLB (or a cloud's load balancer) does for a real
//! cluster. It runs inside the lab's fabric namespace, the router between the outside host and
//! the nodes, and routes each LoadBalancer address (and each externalIP) to a node: for
//! `externalTrafficPolicy: Cluster` any ready node (the node's proxy balances cluster-wide), for
//! `Local` a node that has a ready endpoint of the Service, so the client's address survives.
//! Routes carry protocol 0x57 so the speaker only ever replaces or removes its own.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::{IpNet, Netlink};
use weft_sources::Store;

use crate::LabError;

use weft_net::{sync_owned_routes, OwnedRoute};

/// Address -> the node IP it is routed to. Pure: decided from the objects alone.
pub fn desired_routes(
    services: &[Service],
    slices: &[EndpointSlice],
    nodes: &[Node],
) -> BTreeMap<Ipv4Addr, Ipv4Addr> {
    let mut ready: Vec<(String, Ipv4Addr)> = nodes
        .iter()
        .filter(|n| weft_model::node::is_ready(n))
        .filter_map(|n| Some((n.metadata.name.clone()?, weft_model::node::internal_ip(n)?)))
        .collect();
    ready.sort();
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let addresses = weft_model::service::external_ipv4s(svc);
        if addresses.is_empty() {
            continue;
        }
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        let target = if local {
            let with_endpoints = local_endpoint_nodes(svc, slices);
            ready
                .iter()
                .find(|(name, _)| with_endpoints.contains(name))
                .or(ready.first())
        } else {
            ready.first()
        };
        if let Some((_, ip)) = target {
            for a in addresses {
                out.insert(a, *ip);
            }
        }
    }
    out
}

/// The nodes holding a ready endpoint of `svc`.
fn local_endpoint_nodes(svc: &Service, slices: &[EndpointSlice]) -> Vec<String> {
    let (ns, name) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    );
    slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str)
                == name
        })
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.clone())
        .collect()
}

pub struct Speaker {
    store: Store,
}

impl Speaker {
    pub fn new(store: Store) -> Speaker {
        Speaker { store }
    }

    /// Runs until killed, in the fabric namespace it was started in.
    pub fn run(self) -> Result<(), LabError> {
        crate::follow(&self.store, Duration::from_secs(5), || {
            if let Err(e) = self.sync() {
                tracing::warn!("speaker sync failed: {e}");
            }
        })
    }

    /// Routes the addresses the store asks for and removes the ones it no longer does.
    pub fn sync(&self) -> Result<(), LabError> {
        let list = |kind: &str| self.store.list(kind);
        let services: Vec<Service> = list("Service")?
            .iter()
            .filter_map(|o| o.as_service().cloned())
            .collect();
        let slices: Vec<EndpointSlice> = list("EndpointSlice")?
            .iter()
            .filter_map(|o| o.as_endpoint_slice().cloned())
            .collect();
        let nodes: Vec<Node> = list("Node")?
            .iter()
            .filter_map(|o| o.as_node().cloned())
            .collect();
        let want = desired_routes(&services, &slices, &nodes);
        let routes = want
            .iter()
            .map(|(addr, node)| {
                Ok(OwnedRoute {
                    dst: IpNet::new(IpAddr::V4(*addr), 32)?,
                    gateway: IpAddr::V4(*node),
                    oif: None,
                    onlink: false,
                })
            })
            .collect::<Result<Vec<_>, weft_dataplane::Error>>()?;
        let changes = sync_owned_routes(&mut Netlink::open()?, &routes)
            .map_err(|e| LabError::Invalid(format!("routing load-balancer addresses: {e}")))?;
        for change in changes {
            tracing::info!("{change}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs<T: serde::de::DeserializeOwned>(yaml: &str) -> Vec<T> {
        yaml.split("\n---\n")
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect()
    }

    const NODES: &str = "metadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.2}], conditions: [{type: Ready, status: 'True'}]}
---
metadata: {name: n2}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.3}], conditions: [{type: Ready, status: 'True'}]}";

    #[test]
    fn cluster_goes_to_the_first_ready_node_local_to_one_with_an_endpoint() {
        let services: Vec<Service> = docs(
            "metadata: {name: c, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Cluster}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.1}]}}
---
metadata: {name: l, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, externalIPs: [198.51.100.200]}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.2}]}}
---
metadata: {name: pending, namespace: default}\nspec: {type: LoadBalancer}",
        );
        let slices: Vec<EndpointSlice> = docs(
            "metadata: {name: l-1, namespace: default, labels: {kubernetes.io/service-name: l}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.1.5], nodeName: n2, conditions: {ready: true}}]",
        );
        let nodes: Vec<Node> = docs(NODES);
        let routes = desired_routes(&services, &slices, &nodes);
        let show: Vec<String> = routes.iter().map(|(a, n)| format!("{a} via {n}")).collect();
        assert_eq!(
            show,
            [
                "198.51.100.1 via 172.20.0.2",
                "198.51.100.2 via 172.20.0.3",
                "198.51.100.200 via 172.20.0.3"
            ]
        );
        assert!(
            desired_routes(&services, &slices, &[]).is_empty(),
            "no ready node, no route"
        );
    }
}
