//! One service port's contribution to the table: its elements in the lookup maps and sets, its
//! dispatches (placed later, see `placement`), and, with session affinity only, its chains and
//! timed sets.

use std::net::Ipv4Addr;

use weft_dataplane::nft::{Key, L4Proto, Rule, Selector, Value, Verdict};

use super::base::{
    Kind, LOCAL_POLICY_IPS, LOCAL_POLICY_NODEPORTS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES,
    SERVICE_IPS, SERVICE_NODEPORTS,
};
use super::placement::{PendingDispatch, MAX_ENDPOINTS_PER_DISPATCH};
use super::Ruleset;
use crate::view::{Endpoint, Protocol, ServicePortView};

pub(super) fn l4(p: Protocol) -> L4Proto {
    match p {
        Protocol::Tcp => L4Proto::Tcp,
        Protocol::Udp => L4Proto::Udp,
        Protocol::Sctp => L4Proto::Sctp,
    }
}

/// `address . protocol . port`, the key of [`SERVICE_IPS`] and [`NO_ENDPOINT_SERVICES`].
fn ip_key(ip: Ipv4Addr, proto: L4Proto, port: u16) -> Key {
    vec![Value::Ipv4(ip), Value::Proto(proto), Value::Port(port)]
}

/// `protocol . port`, the key of the node port maps.
fn port_key(proto: L4Proto, port: u16) -> Key {
    vec![Value::Proto(proto), Value::Port(port)]
}

/// Adds service port `v` to `rs`; its dispatches wait in `pending` for their marks.
pub(super) fn add_service_port(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    v: &ServicePortView,
) {
    let id = v.id();
    let proto = l4(v.protocol);
    let has_external = v.node_port.is_some() || !v.external_ips.is_empty();
    if let Some(ip) = v.cluster_ip {
        *rs.cluster_ips.entry(ip).or_default() += 1;
    }

    if v.endpoints.is_empty() {
        // Nothing serves it anywhere: refuse new connections instead of blackholing them.
        let refused = rs.refused.entry(NO_ENDPOINT_SERVICES).or_default();
        for ip in v.cluster_ip.iter().chain(&v.external_ips) {
            refused.insert(ip_key(*ip, proto, v.port));
        }
        if let Some(np) = v.node_port {
            rs.refused
                .entry(NO_ENDPOINT_NODEPORTS)
                .or_default()
                .insert(port_key(proto, np));
        }
        return;
    }

    for ep in v.local_endpoints.iter() {
        *rs.hairpin.entry(ep.ip).or_default() += 1;
    }

    // The cluster-wide dispatch: the cluster IP's, and with a local policy also what pods and
    // the node itself get at the external addresses.
    let mut frontends = Vec::new();
    if let Some(ip) = v.cluster_ip {
        frontends.push((SERVICE_IPS, ip_key(ip, proto, v.port)));
    }
    if has_external && v.external_local {
        for ip in &v.external_ips {
            frontends.push((LOCAL_POLICY_IPS, ip_key(*ip, proto, v.port)));
        }
        if let Some(np) = v.node_port {
            frontends.push((LOCAL_POLICY_NODEPORTS, port_key(proto, np)));
        }
    }
    let internal = v.internal_endpoints();
    dispatch(
        rs,
        pending,
        format!("svc-{id}"),
        Kind::Cluster,
        v,
        internal,
        frontends,
    );

    if has_external {
        let mut frontends = Vec::new();
        for ip in &v.external_ips {
            frontends.push((SERVICE_IPS, ip_key(*ip, proto, v.port)));
        }
        if let Some(np) = v.node_port {
            frontends.push((SERVICE_NODEPORTS, port_key(proto, np)));
        }
        let kind = if v.external_local {
            Kind::ExternalLocal
        } else {
            Kind::External
        };
        let external = v.external_endpoints();
        dispatch(
            rs,
            pending,
            format!("ext-{id}"),
            kind,
            v,
            external,
            frontends,
        );
    }
}

/// Queues the dispatch `name` over `eps` for `frontends`. With session affinity it also gets
/// its own chain (named `name`): one chain and one timed set of client addresses per endpoint;
/// a client found in an endpoint's set goes back to it, and each new connection refreshes
/// the timer.
fn dispatch(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    name: String,
    kind: Kind,
    v: &ServicePortView,
    eps: &[Endpoint],
    frontends: Vec<(&'static str, Key)>,
) {
    let eps = &eps[..eps.len().min(MAX_ENDPOINTS_PER_DISPATCH)];
    let affinity = match v.affinity_timeout {
        Some(timeout) if !eps.is_empty() => {
            affinity_chains(rs, &name, timeout, v, eps);
            true
        }
        _ => false,
    };
    pending.push(PendingDispatch {
        name,
        kind,
        endpoints: eps.iter().map(|e| (e.ip, e.port)).collect(),
        affinity,
        frontends,
    });
}

fn affinity_chains(
    rs: &mut Ruleset,
    name: &str,
    timeout: u32,
    v: &ServicePortView,
    eps: &[Endpoint],
) {
    let proto = l4(v.protocol);
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
                Rule::new().l4proto(proto).dnat_to(ep.ip, Some(ep.port)),
            ],
        );
        rules.push(Rule::new().in_set(&[Selector::IpSaddr], set).goto(&chain));
        targets.push(Verdict::Goto(chain));
    }
    rules.push(Rule::new().numgen_vmap(targets));
    rs.chains.insert(name.to_string(), rules);
}
