//! Which conntrack entries a change of Services makes stale, as kube-proxy's
//! `pkg/proxy/conntrack` clears them. Pure: old and new service-port views in, typed
//! [`ConntrackFilter`]s out; [`crate::clear_stale_flows`] deletes what they select, after the
//! new rules are loaded.
//!
//! Why: a UDP (or SCTP) flow is a conntrack entry that keeps DNATing a client's datagrams to the
//! endpoint first picked, for as long as the client keeps sending, whatever the rules say now. A
//! client that sends from one socket to a cluster IP would keep talking to a deleted pod. TCP
//! needs none of this: a dead endpoint resets or times the connection out, and the client
//! reconnects through the rules.
//!
//! Each Service address (cluster IP, external and load-balancer addresses, each with the service
//! port; and the node port on any address) is a frontend with a set of endpoints, counting every
//! endpoint the Service has (not only the ones a traffic policy picks here, as kube-proxy: a
//! policy change should not cut existing flows). For each frontend:
//! - an endpoint that is gone (or moved to another port): entries to the frontend whose replies
//!   come from it;
//! - a frontend that had no endpoints (or did not exist) and has some now: every entry to it,
//!   since anything tracked before was not sent to an endpoint.
//!
//! [`unserved_flows`] is the stateless form (kube-proxy's current one): from the views and the
//! table's entries, the flows to a frontend that are not answered by one of its endpoints. It
//! costs a dump of the table, and needs no memory of the previous state, so it covers an agent
//! that restarted after endpoints went away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use weft_dataplane::conntrack::{ConntrackEntry, ConntrackFilter, L4Proto, Tuple};

use crate::view::{Protocol, ServicePortView};
use crate::ProxyNode;

/// Where clients send: an address and port, or a node port on any of the node's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Frontend {
    Address(Ipv4Addr, u16),
    NodePort(u16),
}

type Frontends = BTreeMap<(L4Proto, Frontend), BTreeSet<(Ipv4Addr, u16)>>;

/// The filters selecting the flows made stale by going from `old` to `new`. Pass every view of
/// both states (a whole sync), or only the service ports a change concerns (an incremental
/// sync: the old and new views of each changed port, both sides of a port that was renamed).
/// Sorted and without duplicates.
pub fn stale_flows<'a>(
    old: impl IntoIterator<Item = &'a ServicePortView>,
    new: impl IntoIterator<Item = &'a ServicePortView>,
) -> Vec<ConntrackFilter> {
    let (old, new) = (frontends(old), frontends(new));
    let none = BTreeSet::new();
    let mut out = BTreeSet::new();
    for (key @ (proto, frontend), before) in &old {
        let after = new.get(key).unwrap_or(&none);
        let gone: BTreeSet<Ipv4Addr> = before.difference(after).map(|(ip, _)| *ip).collect();
        for ip in gone {
            out.insert(filter(*proto, *frontend).reply_src(IpAddr::V4(ip)));
        }
    }
    for (key @ (proto, frontend), after) in &new {
        let had_endpoints = old.get(key).is_some_and(|b| !b.is_empty());
        if !after.is_empty() && !had_endpoints {
            out.insert(filter(*proto, *frontend));
        }
    }
    out.into_iter().collect()
}

/// The filters for the change pairs the proxy's incremental sync takes (`(old, new)`, None for
/// none): [`stale_flows`] of their old and new sides.
pub fn stale_flows_for_changes(
    changes: &[(Option<ServicePortView>, Option<ServicePortView>)],
) -> Vec<ConntrackFilter> {
    stale_flows(
        changes.iter().filter_map(|(old, _)| old.as_ref()),
        changes.iter().filter_map(|(_, new)| new.as_ref()),
    )
}

/// The entries a Service frontend of `views` DNATed to somewhere that is not one of its
/// endpoints now: what kube-proxy's reconciliation (`CleanStaleEntries`) deletes. It needs no
/// previous state, so it also finds flows to endpoints that went away while the agent was not
/// running. Frontends without endpoints are left alone (nothing better to send to). Node ports
/// count only on `node.ip`, the one address the rules serve them on, so flows that merely pass
/// through this node to another host's same port are not touched.
pub fn unserved_flows<'e, 'v>(
    node: &ProxyNode,
    views: impl IntoIterator<Item = &'v ServicePortView>,
    entries: &'e [ConntrackEntry],
) -> Vec<&'e ConntrackEntry> {
    let frontends = frontends(views);
    let unserved = |key: &(L4Proto, Frontend), reply: &Tuple| {
        frontends.get(key).is_some_and(|eps| {
            !eps.is_empty()
                && !eps.iter().any(|(ip, port)| {
                    reply.src == IpAddr::V4(*ip) && reply.src_port.is_none_or(|p| p == *port)
                })
        })
    };
    entries
        .iter()
        .filter(|e| {
            let proto = match e.protocol {
                p if p == L4Proto::Udp.number() => L4Proto::Udp,
                p if p == L4Proto::Sctp.number() => L4Proto::Sctp,
                _ => return false,
            };
            let (IpAddr::V4(dst), Some(port)) = (e.orig.dst, e.orig.dst_port) else {
                return false;
            };
            unserved(&(proto, Frontend::Address(dst, port)), &e.reply)
                || (dst == node.ip && unserved(&(proto, Frontend::NodePort(port)), &e.reply))
        })
        .collect()
}

fn filter(proto: L4Proto, frontend: Frontend) -> ConntrackFilter {
    let f = ConntrackFilter::new(proto);
    match frontend {
        Frontend::Address(ip, port) => f.orig_dst(IpAddr::V4(ip), port),
        Frontend::NodePort(port) => f.orig_dst_port(port),
    }
}

/// Every UDP and SCTP frontend of `views` with its endpoints (`ip`, `port`).
fn frontends<'a>(views: impl IntoIterator<Item = &'a ServicePortView>) -> Frontends {
    let mut out = Frontends::new();
    for v in views {
        let proto = match v.protocol {
            Protocol::Udp => L4Proto::Udp,
            Protocol::Sctp => L4Proto::Sctp,
            Protocol::Tcp => continue,
        };
        let endpoints: BTreeSet<(Ipv4Addr, u16)> =
            v.endpoints.iter().map(|e| (e.ip, e.port)).collect();
        let addresses = v.cluster_ip.iter().chain(&v.external_ips);
        let mut add = |frontend| {
            out.entry((proto, frontend))
                .or_default()
                .extend(endpoints.iter().copied());
        };
        for ip in addresses {
            add(Frontend::Address(*ip, v.port));
        }
        if let Some(np) = v.node_port {
            add(Frontend::NodePort(np));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Endpoint;

    fn view(name: &str, protocol: Protocol, eps: &[&str]) -> ServicePortView {
        ServicePortView {
            namespace: "default".into(),
            name: name.into(),
            port_name: "dns".into(),
            protocol,
            port: 53,
            cluster_ip: Some("10.96.0.10".parse().unwrap()),
            node_port: None,
            external_ips: vec![],
            external_local: false,
            internal_local: false,
            affinity_timeout: None,
            endpoints: eps
                .iter()
                .map(|ip| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: 5353,
                    node: None,
                })
                .collect(),
            local_endpoints: vec![],
            terminating: false,
            health_check_node_port: None,
        }
    }

    fn entry(proto: u8, dst: &str, dport: u16, reply_src: &str, sport: u16) -> ConntrackEntry {
        let client: IpAddr = "10.244.2.7".parse().unwrap();
        ConntrackEntry::new(
            proto,
            Tuple {
                src: client,
                dst: dst.parse().unwrap(),
                src_port: Some(40000),
                dst_port: Some(dport),
            },
            Tuple {
                src: reply_src.parse().unwrap(),
                dst: client,
                src_port: Some(sport),
                dst_port: Some(40000),
            },
        )
    }

    fn text(filters: &[ConntrackFilter]) -> Vec<String> {
        filters.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_removed_udp_endpoint_clears_its_flows_to_every_frontend() {
        let mut old = view("dns", Protocol::Udp, &["10.244.0.5", "10.244.1.5"]);
        old.node_port = Some(30053);
        old.external_ips = vec!["198.51.100.1".parse().unwrap()];
        let mut new = old.clone();
        new.endpoints.remove(0);
        assert_eq!(
            text(&stale_flows([&old], [&new])),
            [
                "-p udp --orig-port-dst 30053 --reply-src 10.244.0.5",
                "-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5",
                "-p udp --orig-dst 198.51.100.1 --orig-port-dst 53 --reply-src 10.244.0.5",
            ]
        );
        // Nothing changed, nothing to clear; TCP is never cleared.
        assert!(stale_flows([&old], [&old]).is_empty());
        let (mut t_old, mut t_new) = (old.clone(), new.clone());
        t_old.protocol = Protocol::Tcp;
        t_new.protocol = Protocol::Tcp;
        assert!(stale_flows([&t_old], [&t_new]).is_empty());
    }

    #[test]
    fn a_first_endpoint_clears_everything_sent_to_the_service() {
        let empty = view("dns", Protocol::Sctp, &[]);
        let served = view("dns", Protocol::Sctp, &["10.244.0.5"]);
        let want = ["-p sctp --orig-dst 10.96.0.10 --orig-port-dst 53"];
        assert_eq!(text(&stale_flows([&empty], [&served])), want);
        // A new Service counts as having had none.
        assert_eq!(text(&stale_flows([], [&served])), want);
        // Losing the last one: its flows go, nothing else.
        assert_eq!(
            text(&stale_flows([&served], [&empty])),
            ["-p sctp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5"]
        );
        // Still none: nothing.
        assert!(stale_flows([&empty], [&empty]).is_empty());
    }

    #[test]
    fn deleted_services_moved_endpoints_and_policies() {
        let old = view("dns", Protocol::Udp, &["10.244.0.5", "10.244.1.5"]);
        // Deleted: the flows to each of its endpoints.
        assert_eq!(stale_flows([&old], []).len(), 2);
        // Same endpoint IP, another target port: its flows go to a port nothing serves.
        let mut moved = old.clone();
        moved.endpoints[0].port = 5354;
        assert_eq!(
            text(&stale_flows([&old], [&moved])),
            ["-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5"]
        );
        // A traffic policy change alone cuts no flow (kube-proxy's rule too).
        let mut local = old.clone();
        local.internal_local = true;
        assert!(stale_flows([&old], [&local]).is_empty());
        // A port renamed: the old and new views differ in id but serve one frontend.
        let mut renamed = old.clone();
        renamed.port_name = "domain".into();
        let changes = vec![(Some(old.clone()), None), (None, Some(renamed))];
        assert!(stale_flows_for_changes(&changes).is_empty());
        // The cluster IP changes: the old address's flows go, the new one is cleared whole.
        let mut readdressed = old.clone();
        readdressed.cluster_ip = Some("10.96.0.11".parse().unwrap());
        assert_eq!(
            text(&stale_flows_for_changes(&[(Some(old), Some(readdressed))])),
            [
                "-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5",
                "-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.5",
                "-p udp --orig-dst 10.96.0.11 --orig-port-dst 53",
            ]
        );
    }

    #[test]
    fn unserved_flows_are_those_not_answered_by_a_current_endpoint() {
        let node = ProxyNode {
            name: "n1".into(),
            ip: "192.0.2.1".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            external_ip_ranges: Vec::new(),
        };
        let mut dns = view("dns", Protocol::Udp, &["10.244.0.5"]);
        dns.node_port = Some(30053);
        let empty = ServicePortView {
            name: "empty".into(),
            cluster_ip: Some("10.96.0.11".parse().unwrap()),
            ..view("empty", Protocol::Udp, &[])
        };
        let entries = vec![
            entry(17, "10.96.0.10", 53, "10.244.0.5", 5353), // 0: served
            entry(17, "10.96.0.10", 53, "10.244.0.6", 5353), // 1: a removed endpoint
            entry(17, "10.96.0.10", 53, "10.244.0.5", 5354), // 2: the endpoint's old port
            entry(17, "10.96.0.10", 53, "10.96.0.10", 53),   // 3: never DNATed
            entry(6, "10.96.0.10", 53, "10.244.0.6", 5353),  // TCP: never
            entry(17, "10.96.0.10", 54, "10.244.0.6", 5353), // no such port
            entry(17, "10.96.0.11", 53, "10.244.0.6", 5353), // no endpoints: left
            entry(17, "192.0.2.1", 30053, "10.244.0.6", 5353), // 7: node port
            entry(17, "192.0.2.1", 30053, "10.244.0.5", 5353), // served node port
            entry(17, "203.0.113.9", 30053, "203.0.113.9", 30053), // passing through
        ];
        let stale = unserved_flows(&node, [&dns, &empty], &entries);
        let at: Vec<usize> = stale
            .iter()
            .map(|s| entries.iter().position(|e| std::ptr::eq(e, *s)).unwrap())
            .collect();
        assert_eq!(at, [1, 2, 3, 7]);
    }
}
