//! Service views -> the nftables table, as typed values (`weft_dataplane::nft`): the whole
//! table ([`Ruleset::table`], loaded in one transaction: it never exists half-built) and, for
//! one service port's change, the transaction with only its elements (and its chains, with
//! session affinity) ([`Ruleset::change`]).
//!
//! Packet path: the `services` chain (nat prerouting and output) looks the destination up in
//! data maps keyed by `address . protocol . port` (cluster IPs and external addresses) and
//! `protocol . port` (node ports, for this node's address) and puts the frontend's dispatch
//! mark in the connection's mark; shared chains then masquerade by the frontend's kind, and
//! `pick_<n>` DNATs to `backends[mark . numgen random mod n]`. A lookup costs the same with 10
//! or 10,000 Services, and no rule names a Service: a Service's change is only elements, so
//! the kernel never re-validates the jump graph for it (it does, walking every chain reachable
//! from the base chains, for any batch that adds a rule or a jump element). Addresses with no
//! endpoints are in the `no_endpoint_*` sets instead, which the filter hooks use to reject new
//! connections (connection refused, not a timeout). Every cluster IP is in the `cluster_ips`
//! set: a new connection still addressed to one in the filter forward and output hooks (after
//! DNAT) matched none of its ports, and is rejected too, as kube-proxy's `cluster-ips-check`
//! does (a client on a Service's old port is refused at once).
//!
//! - `base`: the fixed part (hooks, maps, shared chains), a function of the node;
//! - `service`: one service port's elements, dispatches and affinity chains;
//! - `placement`: the dispatch marks, and so the blocks of the shared backends map;
//! - `change`: one service port's old contribution out, the new one in, as a transaction.

mod base;
mod change;
mod placement;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_dataplane::nft::{
    Chain, DataType, Elem, ElemData, Family, Field, Ipv4Prefix, Key, Rule, Set, Table, Value,
    Verdict,
};

pub use base::{
    LOCAL_POLICY_IPS, LOCAL_POLICY_NODEPORTS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    SERVICE_IPS, SERVICE_NODEPORTS,
};
pub use placement::MAX_ENDPOINTS_PER_DISPATCH;

use crate::view::ServicePortView;
use crate::ProxyNode;
use base::{
    backends, backends_map, count_key, pick_chain, pick_rules, AFFINITY, CLUSTER_IPS,
    ENDPOINT_COUNTS, HAIRPIN,
};
use placement::count;

/// The table (family ip) that holds all of it.
pub const TABLE: &str = "weft_services";

/// A compiled proxy ruleset: the fixed part and every service port's contribution, kept apart
/// (with reference counts on what service ports share) so one port's change is computed
/// without looking at the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// The fixed part (hooks, shared chains, this node's address): a change reloads everything.
    base: Table,
    /// Every dispatch's endpoints, in one map: (dispatch mark, index) -> address and port.
    backends: BTreeMap<(u32, u32), (Ipv4Addr, u16)>,
    /// Session-affinity chains (a dispatch's, and one per endpoint): name -> rules.
    chains: BTreeMap<String, Vec<Rule>>,
    /// Affinity sets: name -> timeout in seconds.
    sets: BTreeMap<String, u32>,
    /// The mark maps: map name -> frontend key -> dispatch mark.
    marks: BTreeMap<&'static str, BTreeMap<Key, u32>>,
    /// The refusal sets: set name -> frontend keys without endpoints.
    refused: BTreeMap<&'static str, BTreeSet<Key>>,
    /// Dispatches with session affinity: mark -> their chain.
    affinity: BTreeMap<u32, String>,
    /// Endpoint counts of the other dispatches, with how many have each (the `pick_<n>` chain
    /// and `backends_<n>` map exist while any does).
    counts: BTreeMap<u32, usize>,
    /// The endpoints on this node (`ip . ip` in the set: traffic from a pod to itself through
    /// a Service), with how many service ports share each, so one leaving keeps it for the
    /// others.
    hairpin: BTreeMap<Ipv4Addr, usize>,
    /// Every Service's cluster IP, with how many service ports have it (so the address stays
    /// while any of its ports does).
    cluster_ips: BTreeMap<Ipv4Addr, usize>,
    /// The mark of each dispatch, by name (`svc-<port id>`, `ext-<port id>`).
    dispatches: BTreeMap<String, u32>,
}

impl Default for Ruleset {
    /// Nothing at all, not even the fixed part (a service port's contribution alone).
    fn default() -> Ruleset {
        Ruleset {
            base: Table::new(Family::Ip, TABLE),
            backends: BTreeMap::new(),
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
            marks: BTreeMap::new(),
            refused: BTreeMap::new(),
            affinity: BTreeMap::new(),
            counts: BTreeMap::new(),
            hairpin: BTreeMap::new(),
            cluster_ips: BTreeMap::new(),
            dispatches: BTreeMap::new(),
        }
    }
}

fn cluster_prefix(node: &ProxyNode) -> Ipv4Prefix {
    // An Ipv4Cidr is valid by construction (prefix <= 32, host bits clear).
    Ipv4Prefix {
        addr: node.cluster_cidr.network(),
        len: node.cluster_cidr.prefix(),
    }
}

/// Compiles the ruleset for `node` from the service views.
pub fn compile(node: &ProxyNode, views: &[ServicePortView]) -> Ruleset {
    let mut rs = Ruleset {
        base: base::base(node.ip, cluster_prefix(node)),
        ..Ruleset::default()
    };
    let mut pending = Vec::new();
    for v in views {
        service::add_service_port(&mut rs, &mut pending, v);
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

fn backend_key((mark, index): (u32, u32)) -> Key {
    vec![Value::Int(mark), Value::Int(index)]
}

fn backend_elem((ip, port): (Ipv4Addr, u16)) -> Elem {
    Elem::data(ElemData::Values(vec![Value::Ipv4(ip), Value::Port(port)]))
}

fn mark_elem(mark: u32) -> Elem {
    Elem::data(ElemData::Values(vec![Value::Int(mark)]))
}

fn goto_elem(chain: &str) -> Elem {
    Elem::data(ElemData::Verdict(Verdict::Goto(chain.to_string())))
}

fn pick(n: u32) -> Chain {
    let mut c = Chain::new(pick_chain(n));
    c.rules = pick_rules(n);
    c
}

impl Ruleset {
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
        for n in self.counts.keys() {
            t.add_set(backends_map(*n));
            t.add_chain(pick(*n));
        }
        let mut fill = |set: &str, elements: &mut dyn Iterator<Item = (Key, Elem)>| {
            if let Some(s) = t.sets.get_mut(set) {
                s.elements.extend(elements);
            }
        };
        for (map, entries) in &self.marks {
            fill(
                map,
                &mut entries.iter().map(|(k, m)| (k.clone(), mark_elem(*m))),
            );
        }
        for (set, keys) in &self.refused {
            fill(set, &mut keys.iter().map(|k| (k.clone(), Elem::default())));
        }
        fill(
            ENDPOINT_COUNTS,
            &mut self
                .counts
                .keys()
                .map(|n| (count_key(*n), goto_elem(&pick_chain(*n)))),
        );
        fill(
            AFFINITY,
            &mut self
                .affinity
                .iter()
                .map(|(m, c)| (vec![Value::Int(*m)], goto_elem(c))),
        );
        fill(
            HAIRPIN,
            &mut self
                .hairpin
                .keys()
                .map(|ip| (hairpin_key(*ip), Elem::default())),
        );
        fill(
            CLUSTER_IPS,
            &mut self
                .cluster_ips
                .keys()
                .map(|ip| (vec![Value::Ipv4(*ip)], Elem::default())),
        );
        for ((mark, index), b) in &self.backends {
            if let Some(s) = t.sets.get_mut(&backends(count(*mark))) {
                s.elements
                    .insert(backend_key((*mark, *index)), backend_elem(*b));
            }
        }
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
        self.base == base::base(node.ip, cluster_prefix(node))
    }

    /// How many chains the ruleset adds to the fixed part: session-affinity chains and one
    /// `pick_<n>` per endpoint count in use (none per Service otherwise).
    pub fn chain_count(&self) -> usize {
        self.chains.len() + self.counts.len()
    }

    /// How many frontends (cluster IPs, external addresses and node ports with endpoints) the
    /// ruleset serves.
    pub fn frontend_count(&self) -> usize {
        [SERVICE_IPS, SERVICE_NODEPORTS]
            .iter()
            .filter_map(|m| self.marks.get(m))
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
