//! The fixed part of the services table: the hooks, the lookup maps and sets, and the chains
//! every service port shares. It depends only on this node's address and the cluster CIDR, so
//! a change to it means a whole load. No rule here names a Service: a service port is only
//! elements (see `service`), so changing one never adds a rule or a jump, and the kernel does
//! not re-validate the table's jump graph for it (it does for any batch adding a rule or a
//! jump/goto element, walking every chain reachable from the base chains).

use std::net::Ipv4Addr;

use weft_dataplane::nft::{
    ct_state, priority, Chain, ChainType, CmpOp, DataType, ElemData, Family, Field, Hook,
    Ipv4Prefix, L4Proto, MarkOp, Policy, Rule, Selector, Set, Table, Value, Verdict,
};

use weft_dataplane::nflog;

use super::TABLE;
use crate::MASQUERADE_MARK;

/// `address . protocol . port` -> dispatch mark: cluster IPs and external addresses.
pub const SERVICE_IPS: &str = "service_ips";
/// `protocol . port` -> dispatch mark: node ports, on the node's address.
pub const SERVICE_NODEPORTS: &str = "service_nodeports";
/// External addresses of `externalTrafficPolicy: Local` service ports -> their cluster-wide
/// dispatch mark (for pods and the node itself, which get cluster-wide behaviour).
pub const LOCAL_POLICY_IPS: &str = "local_policy_ips";
/// Like [`LOCAL_POLICY_IPS`], for node ports.
pub const LOCAL_POLICY_NODEPORTS: &str = "local_policy_nodeports";
/// Like [`SERVICE_IPS`], for service ports without endpoints (refused in the filter hooks).
pub const NO_ENDPOINT_SERVICES: &str = "no_endpoint_services";
/// Like [`SERVICE_NODEPORTS`], for node ports without endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no_endpoint_nodeports";
/// NFLOG prefixes of the refusals: a Service port without endpoints, a cluster IP's port that
/// no Service has.
pub const REJECT_NO_ENDPOINTS: &str = "weft reject no endpoints";
pub const REJECT_NO_PORT: &str = "weft reject no such port";
/// The mark maps, each keyed by address or not.
const MARK_MAPS: [(&str, bool); 4] = [
    (SERVICE_IPS, true),
    (SERVICE_NODEPORTS, false),
    (LOCAL_POLICY_IPS, true),
    (LOCAL_POLICY_NODEPORTS, false),
];
/// The refusal sets, each keyed by address or not.
const REFUSAL_SETS: [(&str, bool); 2] =
    [(NO_ENDPOINT_SERVICES, true), (NO_ENDPOINT_NODEPORTS, false)];
pub(super) const HAIRPIN: &str = "hairpin";
pub(super) const CLUSTER_IPS: &str = "cluster_ips";

/// Endpoint count bits of a dispatch mark -> the chain that picks one of that many.
pub(super) const ENDPOINT_COUNTS: &str = "endpoint_counts";
/// Dispatch mark -> the session-affinity chain of that dispatch.
pub(super) const AFFINITY: &str = "affinity";
pub(super) const MARK_FOR_MASQUERADE: &str = "mark_for_masquerade";
const FRONTEND: &str = "frontend";
const CLUSTER: &str = "cluster";
const EXTERNAL: &str = "external";
const EXTERNAL_LOCAL: &str = "external_local";
const LOCAL_POLICY_CLUSTER: &str = "local_policy_cluster";
const DISPATCH: &str = "dispatch";

/// A dispatch mark, stored in the connection's `ct mark` while its first packet is NATed:
/// how the frontend treats sources (two bits), how many endpoints it balances over (twelve),
/// and which dispatch it is (eighteen: its block of `backends`).
pub(super) const KIND_SHIFT: u32 = 30;
pub(super) const KIND_MASK: u32 = 0b11 << KIND_SHIFT;
pub(super) const COUNT_SHIFT: u32 = 18;
pub(super) const COUNT_MASK: u32 = 0xfff << COUNT_SHIFT;
pub(super) const SLOT_MASK: u32 = (1 << COUNT_SHIFT) - 1;

/// How a frontend treats a new connection before dispatching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A cluster IP: masquerade sources outside the cluster CIDR.
    Cluster = 0,
    /// An external address or node port, `externalTrafficPolicy: Cluster`: masquerade all.
    External = 1,
    /// The same with `Local`: outside clients keep their address and reach local endpoints;
    /// pods and the node itself get the cluster-wide dispatch.
    ExternalLocal = 2,
}

/// The chain that picks one of `n` endpoints of the dispatch in the connection's mark.
pub(super) fn pick_chain(n: u32) -> String {
    format!("pick_{n}")
}

/// The map of the endpoints of every dispatch of `n` endpoints: `dispatch mark . index` ->
/// address and port. A map per count, not one for all: the kernel checks each element added
/// to a map against every rule that looks the map up (and each rule added against every
/// element), so a map is used by its own pick chain's three rules only.
pub(super) fn backends(n: u32) -> String {
    format!("backends_{n}")
}

/// Declared by the expressions that use it, so nft lists its data as `ip daddr . tcp dport`
/// (the DNAT map statement needs an address . port pair whatever the protocol).
pub(super) fn backends_map(n: u32) -> Set {
    use Selector::*;
    Set::data_map(
        backends(n),
        vec![
            Field::Typeof(CtMark),
            Field::Typeof(Numgen {
                modulus: n,
                offset: 0,
            }),
        ],
        vec![Field::Typeof(IpDaddr), Field::Typeof(TcpDport)],
    )
}

/// Its rules: `dnat to ct mark . numgen random mod n map @backends_<n>`, per protocol (a port
/// mapping needs one).
///
/// Random per connection, UDP too: the two packets of a UDP flow that race in conntrack (glibc's
/// A and AAAA on one socket, from two CPUs) may each pick another backend, and since Linux 5.6
/// (6a757c07e51f) the loser is inserted for its replies only instead of dropped, so both are
/// answered; before 5.6 the loser was dropped and the lookup waited 5 s. The e2e test
/// `dns_storm` forces that race against the two DNS pods and counts no drop.
pub(super) fn pick_rules(n: u32) -> Vec<Rule> {
    use Selector::*;
    [L4Proto::Tcp, L4Proto::Udp, L4Proto::Sctp]
        .into_iter()
        .map(|proto| {
            Rule::new().l4proto(proto).dnat_map(
                &[
                    CtMark,
                    Numgen {
                        modulus: n,
                        offset: 0,
                    },
                ],
                backends(n),
            )
        })
        .collect()
}

/// The `endpoint_counts` key of `n` endpoints.
pub(super) fn count_key(n: u32) -> Vec<Value> {
    vec![Value::Int(n << COUNT_SHIFT)]
}

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

/// The fixed part of the table for a node with address `node_ip` in a cluster whose pods
/// have addresses in `cluster`.
pub(super) fn base(node_ip: Ipv4Addr, cluster: Ipv4Prefix) -> Table {
    use Selector::*;
    let mut t = Table::new(Family::Ip, TABLE);
    t.add_set(Set::new("nodeport_ips", vec![addr()]).element(vec![Value::Ipv4(node_ip)]));
    let mark = || vec![Field::Type(DataType::Mark)];
    for (name, with_addr) in MARK_MAPS {
        t.add_set(Set::data_map(name, map_key(with_addr), mark()));
    }
    for (name, with_addr) in REFUSAL_SETS {
        t.add_set(Set::new(name, map_key(with_addr)));
    }
    t.add_set(Set::new(HAIRPIN, vec![addr(), addr()]));
    t.add_set(Set::new(CLUSTER_IPS, vec![addr()]));
    // No endpoints for this kind of traffic (a local policy with none here): dropped, as
    // kube-proxy does. The other counts come with the first dispatch of that size.
    t.add_set(
        Set::verdict_map(ENDPOINT_COUNTS, mark())
            .map_element(count_key(0), ElemData::Verdict(Verdict::Drop)),
    );
    t.add_set(Set::verdict_map(AFFINITY, mark()));

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
    // The frontend's dispatch mark goes into the connection's mark (NAT chains see only the
    // first packet of a connection), and everything after reads it from there.
    let frontend_mark = |rule: Rule, key: &[Selector], map: &str| rule.ct_mark_set_map(key, map);
    t.add_chain(
        Chain::new("services")
            .rule(
                frontend_mark(Rule::new(), &[IpDaddr, MetaL4proto, ThDport], SERVICE_IPS)
                    .goto(FRONTEND),
            )
            .rule(
                frontend_mark(
                    Rule::new().in_set(&[IpDaddr], "nodeport_ips"),
                    &[MetaL4proto, ThDport],
                    SERVICE_NODEPORTS,
                )
                .goto(FRONTEND),
            ),
    );
    let kind = |k: Kind| (k as u32) << KIND_SHIFT;
    t.add_chain(
        Chain::new(FRONTEND)
            .rule(
                Rule::new()
                    .bits(CtMark, KIND_MASK, CmpOp::Eq, kind(Kind::External))
                    .goto(EXTERNAL),
            )
            .rule(
                Rule::new()
                    .bits(CtMark, KIND_MASK, CmpOp::Eq, kind(Kind::ExternalLocal))
                    .goto(EXTERNAL_LOCAL),
            )
            .rule(Rule::new().goto(CLUSTER)),
    );
    // Traffic to a cluster IP: from pods, or masqueraded when it comes from anywhere else (the
    // node itself), so replies come back through this node.
    t.add_chain(
        Chain::new(CLUSTER)
            .rule(Rule::new().ip_saddr_ne(cluster).jump(MARK_FOR_MASQUERADE))
            .rule(Rule::new().goto(DISPATCH)),
    );
    t.add_chain(
        Chain::new(EXTERNAL)
            .rule(Rule::new().jump(MARK_FOR_MASQUERADE))
            .rule(Rule::new().goto(DISPATCH)),
    );
    // Pods and the node itself get cluster-wide behaviour; outside clients keep their address
    // and reach only this node's endpoints (none here: dropped, as kube-proxy does).
    t.add_chain(
        Chain::new(EXTERNAL_LOCAL)
            .rule(Rule::new().ip_saddr(cluster).goto(LOCAL_POLICY_CLUSTER))
            .rule(Rule::new().fib_saddr_local().jump(MARK_FOR_MASQUERADE))
            .rule(Rule::new().fib_saddr_local().goto(LOCAL_POLICY_CLUSTER))
            .rule(Rule::new().goto(DISPATCH)),
    );
    t.add_chain(
        Chain::new(LOCAL_POLICY_CLUSTER)
            .rule(
                frontend_mark(
                    Rule::new(),
                    &[IpDaddr, MetaL4proto, ThDport],
                    LOCAL_POLICY_IPS,
                )
                .goto(CLUSTER),
            )
            .rule(
                frontend_mark(
                    Rule::new().in_set(&[IpDaddr], "nodeport_ips"),
                    &[MetaL4proto, ThDport],
                    LOCAL_POLICY_NODEPORTS,
                )
                .goto(CLUSTER),
            ),
    );
    t.add_chain(
        Chain::new(DISPATCH)
            .rule(Rule::new().vmap(&[CtMark], AFFINITY))
            .rule(Rule::new().vmap_bits(CtMark, COUNT_MASK, ENDPOINT_COUNTS)),
    );
    let new = || Rule::new().ct_state(ct_state::NEW);
    let endpoints_check = || new().jump("endpoints_check");
    let nodeports_check = || new().jump("nodeports_check");
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
    // Each refusal is logged (rate-limited) to weft's NFLOG group, for the flow log.
    let logged = |rule: Rule, prefix: &str| {
        rule.limit_per_second(nflog::LOG_RATE, nflog::LOG_BURST)
            .log_group(nflog::WEFT_GROUP, prefix)
    };
    t.add_chain(
        Chain::new("endpoints_check")
            .rule(logged(
                Rule::new().in_set(&[IpDaddr, MetaL4proto, ThDport], NO_ENDPOINT_SERVICES),
                REJECT_NO_ENDPOINTS,
            ))
            .rule(
                Rule::new()
                    .in_set(&[IpDaddr, MetaL4proto, ThDport], NO_ENDPOINT_SERVICES)
                    .reject(),
            ),
    );
    let no_endpoint_nodeport = || {
        Rule::new()
            .in_set(&[IpDaddr], "nodeport_ips")
            .in_set(&[MetaL4proto, ThDport], NO_ENDPOINT_NODEPORTS)
    };
    t.add_chain(
        Chain::new("nodeports_check")
            .rule(logged(no_endpoint_nodeport(), REJECT_NO_ENDPOINTS))
            .rule(no_endpoint_nodeport().reject()),
    );
    t.add_chain(
        Chain::new("cluster_ips_check")
            .rule(logged(
                Rule::new().in_set(&[IpDaddr], CLUSTER_IPS),
                REJECT_NO_PORT,
            ))
            .rule(Rule::new().in_set(&[IpDaddr], CLUSTER_IPS).reject()),
    );
    t
}
