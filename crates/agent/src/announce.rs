//! Load-balancer addresses announced by ARP, for a cluster with no router to tell (MetalLB's L2
//! mode): every agent runs the speaker's plan (`weft_controller::speaker`, the nodes that should
//! take each address) and, for each address, the same one of those nodes is elected on every
//! agent (the address modulo the number of candidates, over the sorted node IPs), with no
//! coordination. The elected node holds the address on its uplink (a /32 beside its node IP), so
//! its kernel answers ARP for it on the node network and the proxy's rules take the traffic;
//! every other node holds none. The pool's /32 addresses on a node are weft's: one that is no
//! longer this node's is removed.
//!
//! Not done: a gratuitous ARP when an address moves, so a router's or a client's neighbour
//! entry for the old node lingers until it goes stale.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use weft_controller::speaker::{Announce, Routes};
use weft_dataplane::{IfIndex, IpNet, Netlink};
use weft_model::cidr::Ipv4Cidr;

/// The node among `nodes` (sorted, not empty) that takes `address`.
pub fn elected(address: Ipv4Addr, nodes: &[Ipv4Addr]) -> Ipv4Addr {
    nodes[u32::from(address) as usize % nodes.len()]
}

/// The addresses this node should hold: those whose elected node is one of `local`.
pub fn mine(routes: &Routes, local: &BTreeSet<Ipv4Addr>) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    routes
        .iter()
        .filter(|(_, nodes)| !nodes.is_empty())
        .map(|(address, nodes)| (*address, elected(*address, nodes)))
        .filter(|(_, node)| local.contains(node))
        .collect()
}

pub struct ArpAnnouncer {
    pool: Ipv4Cidr,
}

impl ArpAnnouncer {
    pub fn new(pool: Ipv4Cidr) -> ArpAnnouncer {
        ArpAnnouncer { pool }
    }
}

impl Announce for ArpAnnouncer {
    type Error = weft_dataplane::Error;

    fn announce(&mut self, routes: &Routes) -> Result<Vec<String>, weft_dataplane::Error> {
        let mut nl = Netlink::open()?;
        let addrs = nl.addrs(None)?;
        let v4 = |a: &weft_dataplane::Address| match a.local.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        };
        // Held now: the pool's /32s, wherever they are.
        let held: Vec<(IfIndex, Ipv4Addr)> = addrs
            .iter()
            .filter(|a| a.local.prefix() == 32)
            .filter_map(|a| Some((a.link, v4(a)?)))
            .filter(|(_, ip)| self.pool.contains(*ip))
            .collect();
        let local: BTreeSet<Ipv4Addr> = addrs.iter().filter_map(v4).collect();
        let mut changes = Vec::new();
        let want = mine(routes, &local);
        for (address, node_ip) in &want {
            if held.iter().any(|(_, ip)| ip == address) {
                continue;
            }
            // Beside the node IP, on the link that holds it.
            let Some(uplink) = addrs
                .iter()
                .find(|a| v4(a) == Some(*node_ip))
                .map(|a| a.link)
            else {
                continue;
            };
            nl.addr_add(uplink, IpNet::new(IpAddr::V4(*address), 32)?)
                .execute()?;
            changes.push(format!("holding {address} (announced by ARP)"));
        }
        for (link, ip) in held {
            if want.iter().any(|(address, _)| *address == ip) {
                continue;
            }
            match nl.addr_del(link, IpNet::new(IpAddr::V4(ip), 32)?) {
                Ok(()) => changes.push(format!("released {ip}")),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_one_node_and_they_spread() {
        let nodes: Vec<Ipv4Addr> = ["172.20.0.2", "172.20.0.3", "172.20.0.4"]
            .map(|n| n.parse().unwrap())
            .to_vec();
        let routes: Routes = (1..=6)
            .map(|i| (Ipv4Addr::new(198, 51, 100, i), nodes.clone()))
            .collect();
        let mut taken = 0;
        let mut per_node = Vec::new();
        for node in &nodes {
            let here = mine(&routes, &BTreeSet::from([*node]));
            taken += here.len();
            per_node.push(here.len());
        }
        assert_eq!(taken, 6, "every address on exactly one node");
        assert_eq!(per_node, [2, 2, 2]);
        // A Local Service's address goes only to a node with an endpoint.
        let local: Routes = [(Ipv4Addr::new(198, 51, 100, 9), vec![nodes[1]])].into();
        assert!(mine(&local, &BTreeSet::from([nodes[0]])).is_empty());
        assert_eq!(mine(&local, &BTreeSet::from([nodes[1]])).len(), 1);
    }
}
