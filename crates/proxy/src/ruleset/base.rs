//! The fixed part of the services table: the hooks, the lookup maps and sets, and the helper
//! chains every service port's chain uses. It depends only on this node's address, so a
//! change to it (a new node address) means a whole load.

use std::net::Ipv4Addr;

use weft_dataplane::nft::{
    ct_state, priority, Chain, ChainType, CmpOp, DataType, Family, Field, Hook, L4Proto, MarkOp,
    Policy, Rule, Selector, Set, Table, Value,
};

use super::TABLE;
use crate::MASQUERADE_MARK;

/// `address . protocol . port` -> verdict: cluster IPs and external addresses.
pub const SERVICE_IPS: &str = "service_ips";
/// `protocol . port` -> verdict: node ports, on the node's address.
pub const SERVICE_NODEPORTS: &str = "service_nodeports";
/// Like [`SERVICE_IPS`], for service ports without endpoints (refused in the filter hooks).
pub const NO_ENDPOINT_SERVICES: &str = "no_endpoint_services";
/// Like [`SERVICE_NODEPORTS`], for node ports without endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no_endpoint_nodeports";
/// The verdict maps, each keyed by address or not.
pub(super) const MAPS: [(&str, bool); 4] = [
    (SERVICE_IPS, true),
    (SERVICE_NODEPORTS, false),
    (NO_ENDPOINT_SERVICES, true),
    (NO_ENDPOINT_NODEPORTS, false),
];
pub(super) const HAIRPIN: &str = "hairpin";
pub(super) const CLUSTER_IPS: &str = "cluster_ips";
pub(super) const BACKENDS: &str = "backends";
pub(super) const MARK_FOR_MASQUERADE: &str = "mark_for_masquerade";
pub(super) const BACKEND_DNAT: &str = "backend_dnat";
pub(super) const REJECT_CHAIN: &str = "reject_chain";

fn addr() -> Field {
    Field::Type(DataType::Ipv4Addr)
}

/// The destination a verdict map is keyed by: `[ip daddr .] meta l4proto . th dport`.
fn map_key(with_addr: bool) -> Vec<Field> {
    let mut key = Vec::new();
    if with_addr {
        key.push(addr());
    }
    key.push(Field::Type(DataType::InetProto));
    key.push(Field::Type(DataType::InetService));
    key
}

/// The fixed part of the table for a node with address `node_ip`.
pub(super) fn base(node_ip: Ipv4Addr) -> Table {
    use Selector::*;
    let mut t = Table::new(Family::Ip, TABLE);
    t.add_set(Set::new("nodeport_ips", vec![addr()]).element(vec![Value::Ipv4(node_ip)]));
    for (name, with_addr) in MAPS {
        t.add_set(Set::verdict_map(name, map_key(with_addr)));
    }
    t.add_set(Set::new(HAIRPIN, vec![addr(), addr()]));
    t.add_set(Set::new(CLUSTER_IPS, vec![addr()]));
    // Declared by the expressions that use it, so nft lists its data as `ip daddr . tcp dport`
    // (the DNAT map statement needs an address . port pair whatever the protocol).
    t.add_set(Set::data_map(
        BACKENDS,
        vec![Field::Typeof(CtMark)],
        vec![Field::Typeof(IpDaddr), Field::Typeof(TcpDport)],
    ));

    let hook = |name: &str, kind, hook, prio| Chain::base(name, kind, hook, prio, Policy::Accept);
    let nat = ChainType::Nat;
    let filter = ChainType::Filter;
    t.add_chain(
        hook("nat_prerouting", nat, Hook::Prerouting, priority::DSTNAT)
            .rule(Rule::new().jump("services")),
    );
    t.add_chain(
        hook("nat_output", nat, Hook::Output, priority::DSTNAT).rule(Rule::new().jump("services")),
    );
    t.add_chain(
        hook("nat_postrouting", nat, Hook::Postrouting, priority::SRCNAT)
            .rule(Rule::new().jump("masquerading")),
    );
    t.add_chain(
        Chain::new("masquerading")
            .rule(
                Rule::new()
                    .in_set(&[IpSaddr, IpDaddr], HAIRPIN)
                    .masquerade(true),
            )
            .rule(Rule::new().mark_bits(MASQUERADE_MARK, CmpOp::Eq, 0).ret())
            .rule(Rule::new().mark_set(MarkOp::Xor(MASQUERADE_MARK)))
            .rule(Rule::new().masquerade(true)),
    );
    t.add_chain(
        Chain::new(MARK_FOR_MASQUERADE).rule(Rule::new().mark_set(MarkOp::Or(MASQUERADE_MARK))),
    );
    t.add_chain(
        Chain::new("services")
            .rule(Rule::new().vmap(&[IpDaddr, MetaL4proto, ThDport], SERVICE_IPS))
            .rule(
                Rule::new()
                    .in_set(&[IpDaddr], "nodeport_ips")
                    .vmap(&[MetaL4proto, ThDport], SERVICE_NODEPORTS),
            ),
    );
    let new = || Rule::new().ct_state(ct_state::NEW);
    let endpoints_check = || new().jump("endpoints_check");
    let nodeports_check = || {
        new()
            .in_set(&[IpDaddr], "nodeport_ips")
            .vmap(&[MetaL4proto, ThDport], NO_ENDPOINT_NODEPORTS)
    };
    // After DNAT: a new connection still addressed to a cluster IP matched none of its ports
    // (or none of its endpoints: endpoints_check has refused those already).
    let cluster_ips_check = || new().jump("cluster_ips_check");
    t.add_chain(
        hook("filter_input", filter, Hook::Input, priority::FILTER)
            .rule(endpoints_check())
            .rule(nodeports_check()),
    );
    t.add_chain(
        hook("filter_forward", filter, Hook::Forward, priority::FILTER)
            .rule(endpoints_check())
            .rule(cluster_ips_check()),
    );
    t.add_chain(
        hook("filter_output", filter, Hook::Output, priority::FILTER)
            .rule(endpoints_check())
            .rule(nodeports_check())
            .rule(cluster_ips_check()),
    );
    t.add_chain(
        Chain::new("endpoints_check")
            .rule(Rule::new().vmap(&[IpDaddr, MetaL4proto, ThDport], NO_ENDPOINT_SERVICES)),
    );
    t.add_chain(
        Chain::new("cluster_ips_check").rule(Rule::new().in_set(&[IpDaddr], CLUSTER_IPS).reject()),
    );
    t.add_chain(Chain::new(REJECT_CHAIN).rule(Rule::new().reject()));
    let mut dnat = Chain::new(BACKEND_DNAT);
    for proto in [L4Proto::Tcp, L4Proto::Udp, L4Proto::Sctp] {
        dnat = dnat.rule(Rule::new().l4proto(proto).dnat_map(CtMark, BACKENDS));
    }
    t.add_chain(dnat);
    t
}
