//! The load-balancer speaker's plan: which nodes each LoadBalancer address (and each
//! externalIP) should take traffic on, as one ECMP route with a nexthop per node, what MetalLB in
//! BGP mode (or a cloud's load balancer) does for a real cluster:
//! - `externalTrafficPolicy: Local`: every ready node with a ready endpoint of the Service, so
//!   the node's proxy delivers locally and the client's address survives. These are exactly the
//!   nodes whose `healthCheckNodePort` answers 200; the speaker reads the same EndpointSlices the
//!   proxies count rather than probing, so a change routes at once and nothing polls the nodes.
//!   With no such node, the first ready node (a cloud balancer fails open when every check
//!   fails; the node drops, as its proxy has nothing local).
//! - `Cluster`: every ready node, since each node's proxy balances cluster-wide: traffic enters
//!   through all nodes instead of funnelling through one, as a cloud balancer uses every healthy
//!   node.
//!
//! [`desired_routes`] is pure; [`Speaker`] runs it as a reconciler of the view and hands the
//! routes to an [`Announce`]r, the part that tells the network: in the lab, routes in the fabric
//! namespace (the router between the outside and the nodes, `weft_lab::speaker`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_view::{Interest, Reconciler, Shared, Wake};

/// Address -> the node IPs that take its traffic (sorted, never empty).
pub type Routes = BTreeMap<Ipv4Addr, Vec<Ipv4Addr>>;

/// Tells the network where the addresses go, making what it announced exactly `routes`.
pub trait Announce: Send + 'static {
    type Error: std::fmt::Display;

    /// Returns what it changed, for the log.
    fn announce(&mut self, routes: &Routes) -> Result<Vec<String>, Self::Error>;
}

/// Address -> the node IPs it is routed to (sorted, never empty). Pure: decided from the objects
/// alone.
pub fn desired_routes(services: &[Service], slices: &[EndpointSlice], nodes: &[Node]) -> Routes {
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
        let mut targets: Vec<Ipv4Addr> = if local {
            let with_endpoints = local_endpoint_nodes(svc, slices);
            ready
                .iter()
                .filter(|(name, _)| with_endpoints.contains(name.as_str()))
                .map(|(_, ip)| *ip)
                .collect()
        } else {
            ready.iter().map(|(_, ip)| *ip).collect()
        };
        if targets.is_empty() {
            targets.extend(ready.first().map(|(_, ip)| *ip));
        }
        if targets.is_empty() {
            continue;
        }
        targets.sort();
        for a in addresses {
            out.insert(a, targets.clone());
        }
    }
    out
}

/// The nodes holding a ready endpoint of `svc`.
fn local_endpoint_nodes<'a>(svc: &Service, slices: &'a [EndpointSlice]) -> BTreeSet<&'a str> {
    let (ns, name) = (
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    );
    slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| weft_model::endpoints::service_name(s) == name)
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| weft_model::endpoints::is_ready(e))
        .filter(|e| {
            !e.conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false)
        })
        .filter_map(|e| e.node_name.as_deref())
        .collect()
}

/// The speaker as a reconciler of the cluster view.
pub struct Speaker<A> {
    announcer: A,
}

impl<A: Announce> Speaker<A> {
    pub fn new(announcer: A) -> Speaker<A> {
        Speaker { announcer }
    }
}

impl<A: Announce> Reconciler for Speaker<A> {
    type Error = A::Error;

    fn name(&self) -> &'static str {
        "speaker"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            services: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every pass decides from all LoadBalancer Services: few, and cheap.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Announces the addresses the view asks for and withdraws the ones it no longer does.
    fn sync(&mut self, shared: &Shared) -> Result<(), A::Error> {
        let want = {
            let view = shared.read();
            let mut services = Vec::new();
            let mut slices = Vec::new();
            for (key, svc) in view.services() {
                if weft_model::service::external_ipv4s(svc).is_empty() {
                    continue;
                }
                services.push(svc.clone());
                slices.extend(view.slices_of(key).cloned());
            }
            let nodes: Vec<Node> = view.nodes().cloned().collect();
            desired_routes(&services, &slices, &nodes)
        };
        for change in self.announcer.announce(&want)? {
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

    fn show(routes: &BTreeMap<Ipv4Addr, Vec<Ipv4Addr>>) -> Vec<String> {
        routes
            .iter()
            .map(|(a, n)| {
                let via: Vec<String> = n.iter().map(Ipv4Addr::to_string).collect();
                format!("{a} via {}", via.join(" "))
            })
            .collect()
    }

    const NODES: &str = "metadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.2}], conditions: [{type: Ready, status: 'True'}]}
---
metadata: {name: n2}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.3}], conditions: [{type: Ready, status: 'True'}]}
---
metadata: {name: n3}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.4}], conditions: [{type: Ready, status: 'True'}]}
---
metadata: {name: down}\nstatus: {addresses: [{type: InternalIP, address: 172.20.0.9}], conditions: [{type: Ready, status: 'False'}]}";

    #[test]
    fn cluster_goes_to_every_ready_node_local_to_the_ones_with_an_endpoint() {
        let services: Vec<Service> = docs(
            "metadata: {name: c, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Cluster}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.1}]}}
---
metadata: {name: l, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, externalIPs: [198.51.100.200]}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.2}]}}
---
metadata: {name: spread, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.3}]}}
---
metadata: {name: nowhere, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local}\nstatus: {loadBalancer: {ingress: [{ip: 198.51.100.4}]}}
---
metadata: {name: pending, namespace: default}\nspec: {type: LoadBalancer}",
        );
        // `spread` has ready endpoints on n1 and n3, a not-ready one on n2, a terminating one
        // on n2, and one on the node that is not ready.
        let slices: Vec<EndpointSlice> = docs(
            "metadata: {name: l-1, namespace: default, labels: {kubernetes.io/service-name: l}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.1.5], nodeName: n2, conditions: {ready: true}}]
---
metadata: {name: spread-1, namespace: default, labels: {kubernetes.io/service-name: spread}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.0.5], nodeName: n1, conditions: {ready: true}}, {addresses: [10.244.1.6], nodeName: n2, conditions: {ready: false}}, {addresses: [10.244.9.5], nodeName: down}]
---
metadata: {name: spread-2, namespace: default, labels: {kubernetes.io/service-name: spread}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.2.5], nodeName: n3}, {addresses: [10.244.1.7], nodeName: n2, conditions: {ready: false, serving: true, terminating: true}}]
---
metadata: {name: other-ns, namespace: other, labels: {kubernetes.io/service-name: nowhere}}\naddressType: IPv4\nendpoints: [{addresses: [10.244.1.8], nodeName: n2}]",
        );
        let nodes: Vec<Node> = docs(NODES);
        let routes = desired_routes(&services, &slices, &nodes);
        assert_eq!(
            show(&routes),
            [
                "198.51.100.1 via 172.20.0.2 172.20.0.3 172.20.0.4",
                "198.51.100.2 via 172.20.0.3",
                "198.51.100.3 via 172.20.0.2 172.20.0.4",
                // No node serves it locally: the first ready node, which drops (fails open).
                "198.51.100.4 via 172.20.0.2",
                "198.51.100.200 via 172.20.0.3"
            ]
        );
        assert!(
            desired_routes(&services, &slices, &[]).is_empty(),
            "no ready node, no route"
        );
    }
}
