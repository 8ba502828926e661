//! Service views -> the nftables table, as typed values (`weft_dataplane::nft`): the whole
//! table ([`Ruleset::table`], loaded in one transaction: it never exists half-built) and, for
//! one service port's change, the transaction with only its chains, map elements and sets
//! ([`Ruleset::change`]).
//!
//! Packet path: the `services` chain (nat prerouting and output) looks the destination up in
//! verdict maps keyed by `address . protocol . port` (cluster IPs and external addresses) and
//! `protocol . port` (node ports, for this node's address), and jumps to that service port's
//! chain, which DNATs to an endpoint picked by `numgen random`. A lookup costs the same with 10
//! or 10,000 Services. Addresses with no endpoints are in the `no_endpoint_*` maps instead, which
//! the filter hooks use to reject new connections (connection refused, not a timeout). Every
//! cluster IP is in the `cluster_ips` set: a new connection still addressed to one in the filter
//! forward and output hooks (after DNAT) matched none of its ports, and is rejected too, as
//! kube-proxy's `cluster-ips-check` does (a client on a Service's old port is refused at once).
//!
//! - `base`: the fixed part (hooks, maps, helper chains), a function of the node's address;
//! - `service`: one service port's chains and elements;
//! - `placement`: the blocks of the shared backends map that multi-endpoint dispatches own;
//! - `change`: one service port's old contribution out, the new one in, as a transaction.

mod base;
mod change;
mod placement;
mod service;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weft_dataplane::nft::{
    Chain, DataType, Elem, ElemData, Family, Field, Key, Rule, Set, Table, Value, Verdict,
};

pub use base::{NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS};
pub use placement::MAX_ENDPOINTS_PER_DISPATCH;

use crate::view::ServicePortView;
use crate::ProxyNode;
use base::{BACKENDS, CLUSTER_IPS, HAIRPIN, MAPS};

/// The table (family ip) that holds all of it.
pub const TABLE: &str = "weft_services";

/// A compiled proxy ruleset: the fixed part and every service port's contribution, kept apart
/// (with reference counts on what service ports share) so one port's change is computed
/// without looking at the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The fixed part (hooks, helper chains, this node's address): a change reloads everything.
    base: Table,
    /// The endpoints of every multi-endpoint dispatch, in one map: index -> address and port
    /// (see `placement`).
    backends: BTreeMap<u32, (Ipv4Addr, u16)>,
    /// Service, external and endpoint chains: name -> rules.
    chains: BTreeMap<String, Vec<Rule>>,
    /// Affinity sets: name -> timeout in seconds.
    sets: BTreeMap<String, u32>,
    /// Verdict maps: map name -> key -> verdict.
    maps: BTreeMap<&'static str, BTreeMap<Key, Verdict>>,
    /// The endpoints on this node (`ip . ip` in the set: traffic from a pod to itself through
    /// a Service), with how many service ports share each, so one leaving keeps it for the
    /// others.
    hairpin: BTreeMap<Ipv4Addr, usize>,
    /// Every Service's cluster IP, with how many service ports have it (so the address stays
    /// while any of its ports does).
    cluster_ips: BTreeMap<Ipv4Addr, usize>,
    /// The backends-map slot of each dispatching chain.
    slots: BTreeMap<String, u32>,
}

impl Default for Ruleset {
    /// Nothing at all, not even the fixed part (a service port's contribution alone).
    fn default() -> Ruleset {
        Ruleset {
            base: Table::new(Family::Ip, TABLE),
            backends: BTreeMap::new(),
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
            maps: MAPS.iter().map(|(m, _)| (*m, BTreeMap::new())).collect(),
            hairpin: BTreeMap::new(),
            cluster_ips: BTreeMap::new(),
            slots: BTreeMap::new(),
        }
    }
}

/// Compiles the ruleset for `node` from the service views.
pub fn compile(node: &ProxyNode, views: &[ServicePortView]) -> Ruleset {
    let mut rs = Ruleset {
        base: base::base(node.ip),
        ..Ruleset::default()
    };
    let mut pending = Vec::new();
    for v in views {
        service::add_service_port(&mut rs, &mut pending, node, v);
    }
    placement::place_dispatches(&mut rs, pending);
    rs
}

/// An affinity set: client addresses, each remembered for `timeout` seconds after its last
/// packet.
fn affinity_set(name: &str, timeout: u32) -> Set {
    Set::new(name, vec![Field::Type(DataType::Ipv4Addr)]).dynamic_with_timeout(timeout)
}

fn hairpin_key(ip: Ipv4Addr) -> Key {
    vec![Value::Ipv4(ip), Value::Ipv4(ip)]
}

fn backend_elem((ip, port): (Ipv4Addr, u16)) -> Elem {
    Elem::data(ElemData::Values(vec![Value::Ipv4(ip), Value::Port(port)]))
}

fn verdict_elem(v: &Verdict) -> Elem {
    Elem::data(ElemData::Verdict(v.clone()))
}

impl Ruleset {
    /// The verdict map `name` (one of the fixed ones).
    fn map(&mut self, name: &'static str) -> &mut BTreeMap<Key, Verdict> {
        self.maps.entry(name).or_default()
    }

    /// The whole table.
    pub fn table(&self) -> Table {
        let mut t = self.base.clone();
        for (name, timeout) in &self.sets {
            t.add_set(affinity_set(name, *timeout));
        }
        for (name, rules) in &self.chains {
            let mut c = Chain::new(name.as_str());
            c.rules = rules.clone();
            t.add_chain(c);
        }
        let mut fill = |set: &str, elements: Vec<(Key, Elem)>| {
            if let Some(s) = t.sets.get_mut(set) {
                s.elements.extend(elements);
            }
        };
        for (map, entries) in &self.maps {
            fill(
                map,
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), verdict_elem(v)))
                    .collect(),
            );
        }
        fill(
            HAIRPIN,
            self.hairpin
                .keys()
                .map(|ip| (hairpin_key(*ip), Elem::default()))
                .collect(),
        );
        fill(
            CLUSTER_IPS,
            self.cluster_ips
                .keys()
                .map(|ip| (vec![Value::Ipv4(*ip)], Elem::default()))
                .collect(),
        );
        fill(
            BACKENDS,
            self.backends
                .iter()
                .map(|(i, b)| (vec![Value::Int(*i)], backend_elem(*b)))
                .collect(),
        );
        t
    }

    /// The whole table as nft script replacing any previous one in one transaction (what
    /// `weft agent --plan` prints; the proxy itself loads [`Ruleset::table`] as a netlink
    /// batch).
    pub fn full_script(&self) -> String {
        self.table().replace_script()
    }

    /// Whether this ruleset was compiled for `node` (its fixed part matches).
    pub fn base_for(&self, node: &ProxyNode) -> bool {
        self.base == base::base(node.ip)
    }

    /// How many service-port, external and endpoint chains the ruleset holds.
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }
}

#[cfg(test)]
mod tests;
