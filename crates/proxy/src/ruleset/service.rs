//! One service port's contribution to the table: its chains (`svc-`, `ext-`, and `ep-` with
//! session affinity), its elements in the lookup maps, its affinity sets, and its cluster IP
//! and local endpoints in the shared sets.

use std::net::Ipv4Addr;

use weft_dataplane::nft::{Ipv4Prefix, L4Proto, Rule, Selector, Value, Verdict};
use weft_model::cidr::Ipv4Cidr;

use super::base::{
    MARK_FOR_MASQUERADE, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, REJECT_CHAIN, SERVICE_IPS,
    SERVICE_NODEPORTS,
};
use super::placement::PendingDispatch;
use super::Ruleset;
use crate::view::{Endpoint, Protocol, ServicePortView};
use crate::ProxyNode;

pub(super) fn l4(p: Protocol) -> L4Proto {
    match p {
        Protocol::Tcp => L4Proto::Tcp,
        Protocol::Udp => L4Proto::Udp,
        Protocol::Sctp => L4Proto::Sctp,
    }
}

fn prefix(c: Ipv4Cidr) -> Ipv4Prefix {
    // An Ipv4Cidr is valid by construction (prefix <= 32, host bits clear).
    Ipv4Prefix {
        addr: c.network(),
        len: c.prefix(),
    }
}

/// `address . protocol . port`, the key of [`SERVICE_IPS`] and [`NO_ENDPOINT_SERVICES`].
fn ip_key(ip: Ipv4Addr, proto: L4Proto, port: u16) -> Vec<Value> {
    vec![Value::Ipv4(ip), Value::Proto(proto), Value::Port(port)]
}

/// `protocol . port`, the key of the node port maps.
fn port_key(proto: L4Proto, port: u16) -> Vec<Value> {
    vec![Value::Proto(proto), Value::Port(port)]
}

fn dnat_to(proto: L4Proto, ep: &Endpoint) -> Rule {
    Rule::new().l4proto(proto).dnat_to(ep.ip, Some(ep.port))
}

/// Adds service port `v` to `rs`; its multi-endpoint dispatches wait in `pending` for their
/// blocks of the backends map.
pub(super) fn add_service_port(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    node: &ProxyNode,
    v: &ServicePortView,
) {
    let id = v.id();
    let proto = l4(v.protocol);
    let svc_chain = format!("svc-{id}");
    let ext_chain = format!("ext-{id}");
    let has_external = v.node_port.is_some() || !v.external_ips.is_empty();
    if let Some(ip) = v.cluster_ip {
        *rs.cluster_ips.entry(ip).or_default() += 1;
    }

    if v.endpoints.is_empty() {
        // Nothing serves it anywhere: refuse new connections instead of blackholing them.
        let reject = Verdict::Goto(REJECT_CHAIN.into());
        for ip in v.cluster_ip.iter().chain(&v.external_ips) {
            rs.map(NO_ENDPOINT_SERVICES)
                .insert(ip_key(*ip, proto, v.port), reject.clone());
        }
        if let Some(np) = v.node_port {
            rs.map(NO_ENDPOINT_NODEPORTS)
                .insert(port_key(proto, np), reject);
        }
        return;
    }

    for ep in v.local_endpoints.iter() {
        *rs.hairpin.entry(ep.ip).or_default() += 1;
    }

    // Traffic to the cluster IP: from pods, or masqueraded when it comes from anywhere else (the
    // node itself), so replies come back through this node.
    let cluster = prefix(node.cluster_cidr);
    let mut rules = vec![Rule::new().ip_saddr_ne(cluster).jump(MARK_FOR_MASQUERADE)];
    let at = rules.len();
    rules.extend(dispatch(
        rs,
        pending,
        &svc_chain,
        at,
        v,
        v.internal_endpoints(),
    ));
    rs.chains.insert(svc_chain.clone(), rules);
    if let Some(ip) = v.cluster_ip {
        rs.map(SERVICE_IPS)
            .insert(ip_key(ip, proto, v.port), Verdict::Goto(svc_chain.clone()));
    }

    if has_external {
        let mut rules = Vec::new();
        if v.external_local {
            // Pods and the node itself get cluster-wide behaviour; outside clients keep their
            // address and reach only this node's endpoints (none here: dropped, as kube-proxy does).
            rules.push(Rule::new().ip_saddr(cluster).goto(&svc_chain));
            rules.push(Rule::new().fib_saddr_local().jump(MARK_FOR_MASQUERADE));
            rules.push(Rule::new().fib_saddr_local().goto(&svc_chain));
        } else {
            rules.push(Rule::new().jump(MARK_FOR_MASQUERADE));
        }
        let at = rules.len();
        rules.extend(dispatch(
            rs,
            pending,
            &ext_chain,
            at,
            v,
            v.external_endpoints(),
        ));
        rs.chains.insert(ext_chain.clone(), rules);
        for ip in &v.external_ips {
            rs.map(SERVICE_IPS)
                .insert(ip_key(*ip, proto, v.port), Verdict::Goto(ext_chain.clone()));
        }
        if let Some(np) = v.node_port {
            rs.map(SERVICE_NODEPORTS)
                .insert(port_key(proto, np), Verdict::Goto(ext_chain));
        }
    }
}

/// The rules that pick one of `eps` and DNAT to it (or drop, when a local policy leaves none).
/// They start at index `at` of `chain`; a multi-endpoint DNAT is left as a placeholder there
/// until `place_dispatches` gives it its block of the backends map.
fn dispatch(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    chain: &str,
    at: usize,
    v: &ServicePortView,
    eps: &[Endpoint],
) -> Vec<Rule> {
    let proto = l4(v.protocol);
    if eps.is_empty() {
        return vec![Rule::new().drop()];
    }
    let Some(timeout) = v.affinity_timeout else {
        if let [ep] = eps {
            return vec![dnat_to(proto, ep)];
        }
        pending.push(PendingDispatch {
            chain: chain.to_string(),
            rule: at,
            endpoints: eps.to_vec(),
        });
        return vec![Rule::new()];
    };
    // Session affinity: one chain and one timed set of client addresses per endpoint; a client
    // found in an endpoint's set goes back to it, and each packet refreshes the timer.
    let mut rules = Vec::new();
    let mut targets = Vec::new();
    for ep in eps {
        let key = format!("{}__{}/{}", v.id(), ep.ip, ep.port);
        let (chain, set) = (format!("ep-{key}"), format!("aff-{key}"));
        rs.sets.insert(set.clone(), timeout);
        rs.chains.insert(
            chain.clone(),
            vec![
                Rule::new().update(&set, &[Selector::IpSaddr]),
                dnat_to(proto, ep),
            ],
        );
        rules.push(Rule::new().in_set(&[Selector::IpSaddr], set).goto(&chain));
        targets.push(Verdict::Goto(chain));
    }
    rules.push(Rule::new().numgen_vmap(targets));
    rules
}
