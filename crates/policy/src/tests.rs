//! The compiler against the reference semantics on random clusters (packets simulated through
//! the compiled tables), and snapshots of the table for a small cluster.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use weft_dataplane::nft::sim::{self, Outcome, Packet};
use weft_dataplane::nft::{ct_state, L4Proto, Table};
use weft_view::{ClusterView, Event};

use crate::compile::{compile, NodeContext};
use crate::reference::{Cluster, End};
use crate::resolve::resolve;
use crate::spec::Policy;

pub(crate) const NODES: [&str; 2] = ["n1", "n2"];
const OUTSIDE: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(10, 9, 0, 1)];

pub(crate) fn node(name: &str, i: u8) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("172.18.0.{}", 10 + i)}]}
    }))
    .unwrap()
}

pub(crate) fn namespace(name: &str, labels: Json) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

pub(crate) fn pod(
    ns: &str,
    name: &str,
    node: &str,
    ip: Ipv4Addr,
    labels: Json,
    ports: Json,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x", "ports": ports}]},
        "status": {"podIP": ip.to_string(), "phase": "Running"}
    }))
    .unwrap()
}

pub(crate) fn view_of(
    nodes: &[Node],
    namespaces: &[Namespace],
    pods: &[Pod],
    policies: &[NetworkPolicy],
) -> ClusterView {
    let mut v = ClusterView::new();
    v.apply(Event::Relisted(nodes.to_vec()));
    v.apply(Event::Relisted(namespaces.to_vec()));
    v.apply(Event::Relisted(pods.to_vec()));
    v.apply(Event::Relisted(policies.to_vec()));
    v
}

fn tables(view: &ClusterView) -> Vec<(String, Table)> {
    let ctx = NodeContext {
        node_ips: view
            .nodes()
            .filter_map(weft_model::node::internal_ip)
            .collect::<BTreeSet<_>>(),
        vxlan_port: 4789,
    };
    NODES
        .iter()
        .map(|n| {
            (
                n.to_string(),
                compile(&resolve(view, n, &Default::default()), &ctx),
            )
        })
        .collect()
}

fn table_of<'a>(tables: &'a [(String, Table)], pod: &Pod) -> &'a Table {
    let node = weft_model::pod::node_name(pod).unwrap();
    &tables.iter().find(|(n, _)| n == node).unwrap().1
}

fn packet(src: Ipv4Addr, dst: Ipv4Addr, proto: L4Proto, port: u16) -> Packet {
    Packet {
        saddr: src,
        daddr: dst,
        l4proto: Some(proto),
        dport: Some(port),
        iifname: None,
        oifname: None,
        mark: 0,
        ct_mark: 0,
        ct_state: ct_state::NEW,
        rpf_missing: false,
        saddr_local: false,
    }
}

/// (egress allowed at the source's node, ingress allowed at the destination's node), as the
/// compiled tables decide. On one node the packet goes through `prerouting` and then
/// `postrouting` of the same table, keeping the mark the first set.
fn simulated(
    tables: &[(String, Table)],
    src: End,
    dst: End,
    proto: L4Proto,
    port: u16,
) -> (bool, bool) {
    let addr = |e: End| match e {
        End::Pod(p) => weft_model::pod::pod_ip(p).unwrap(),
        End::Addr(a) => a,
    };
    let mut pk = packet(addr(src), addr(dst), proto, port);
    let mut mark = 0;
    let egress = match src {
        End::Pod(p) => {
            pk.iifname = Some("weft0123456789a".into());
            let trace = sim::run(table_of(tables, p), "prerouting", &mut pk).unwrap();
            mark = pk.mark;
            trace.outcome == Outcome::Accept
        }
        End::Addr(_) => true,
    };
    let same_node = match (src, dst) {
        (End::Pod(a), End::Pod(b)) => {
            weft_model::pod::node_name(a) == weft_model::pod::node_name(b)
        }
        _ => false,
    };
    let ingress = match dst {
        End::Pod(p) => {
            let mut pk = packet(addr(src), addr(dst), proto, port);
            pk.oifname = Some("weftfedcba98765".into());
            pk.mark = if same_node { mark } else { 0 };
            let trace = sim::run(table_of(tables, p), "postrouting", &mut pk).unwrap();
            trace.outcome == Outcome::Accept
        }
        End::Addr(_) => true,
    };
    (egress, ingress)
}

// ---- random clusters ----

const KEYS: [&str; 2] = ["app", "tier"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];
const PORTS: [u16; 4] = [53, 80, 81, 8080];

pub(crate) fn labels_strategy() -> impl Strategy<Value = Json> {
    prop::collection::btree_map(
        prop::sample::select(&KEYS[..]),
        prop::sample::select(&VALUES[..]),
        0..=2,
    )
    .prop_map(|m| json!(m))
}

pub(crate) fn selector_strategy() -> impl Strategy<Value = Json> {
    let expr = (
        prop::sample::select(&KEYS[..]),
        prop::sample::select(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
        prop::collection::vec(prop::sample::select(&VALUES[..]), 1..=2),
    )
        .prop_map(|(k, op, vals)| match op {
            "Exists" | "DoesNotExist" => json!({"key": k, "operator": op}),
            _ => json!({"key": k, "operator": op, "values": vals}),
        });
    (labels_strategy(), prop::collection::vec(expr, 0..=1)).prop_map(|(ml, me)| {
        let mut s = serde_json::Map::new();
        if ml.as_object().is_some_and(|m| !m.is_empty()) {
            s.insert("matchLabels".into(), ml);
        }
        if !me.is_empty() {
            s.insert("matchExpressions".into(), json!(me));
        }
        Json::Object(s)
    })
}

fn peer_strategy() -> impl Strategy<Value = Json> {
    prop_oneof![
        selector_strategy().prop_map(|s| json!({"podSelector": s})),
        selector_strategy().prop_map(|s| json!({"namespaceSelector": s})),
        (selector_strategy(), selector_strategy())
            .prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        prop::sample::select(
            &[
                "10.244.0.0/16",
                "10.244.1.0/24",
                "203.0.113.0/24",
                "0.0.0.0/0"
            ][..]
        )
        .prop_flat_map(|cidr| {
            prop::collection::vec(
                prop::sample::select(&["10.244.1.2/32", "10.244.2.0/24", "203.0.113.10/32"][..]),
                0..=1,
            )
            .prop_map(move |except| json!({"ipBlock": {"cidr": cidr, "except": except}}))
        }),
    ]
}

fn port_strategy() -> impl Strategy<Value = Json> {
    let proto = prop::sample::select(&["TCP", "UDP", "SCTP"][..]);
    prop_oneof![
        (proto.clone(), prop::sample::select(&PORTS[..]))
            .prop_map(|(p, n)| json!({"protocol": p, "port": n})),
        (proto.clone(), prop::sample::select(&PORT_NAMES[..]))
            .prop_map(|(p, n)| json!({"protocol": p, "port": n})),
        proto.clone().prop_map(|p| json!({"protocol": p})),
        (proto, 79u16..=81, 0u16..=2)
            .prop_map(|(p, a, d)| json!({"protocol": p, "port": a, "endPort": a + d})),
    ]
}

fn rule_strategy(peer_key: &'static str) -> impl Strategy<Value = Json> {
    (
        prop::option::of(prop::collection::vec(peer_strategy(), 0..=2)),
        prop::option::of(prop::collection::vec(port_strategy(), 0..=2)),
    )
        .prop_map(move |(peers, ports)| {
            let mut r = serde_json::Map::new();
            if let Some(p) = peers {
                r.insert(peer_key.into(), json!(p));
            }
            if let Some(p) = ports {
                r.insert("ports".into(), json!(p));
            }
            Json::Object(r)
        })
}

pub(crate) fn policy_strategy() -> impl Strategy<Value = Json> {
    (
        prop::sample::select(&["x", "y", "z"][..]),
        selector_strategy(),
        prop::option::of(prop::collection::vec(rule_strategy("from"), 0..=2)),
        prop::option::of(prop::collection::vec(rule_strategy("to"), 0..=2)),
        prop::option::of(prop::sample::subsequence(vec!["Ingress", "Egress"], 0..=2)),
    )
        .prop_map(|(ns, sel, ingress, egress, types)| {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(i) = ingress {
                spec.insert("ingress".into(), json!(i));
            }
            if let Some(e) = egress {
                spec.insert("egress".into(), json!(e));
            }
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            json!({"metadata": {"namespace": ns, "name": "p"}, "spec": spec})
        })
}

pub(crate) fn pod_strategy() -> impl Strategy<Value = (&'static str, Json, Json, usize)> {
    (
        prop::sample::select(&["x", "y", "z"][..]),
        labels_strategy(),
        prop::collection::vec(
            (
                prop::sample::select(&PORT_NAMES[..]),
                prop::sample::select(&PORTS[..]),
                prop::sample::select(&["TCP", "UDP"][..]),
            ),
            0..=2,
        )
        .prop_map(|ps| {
            json!(ps
                .iter()
                .map(|(n, p, pr)| json!({"name": n, "containerPort": p, "protocol": pr}))
                .collect::<Vec<_>>())
        }),
        0..NODES.len(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// For every pair of ends and every probe, the compiled tables decide as the reference.
    #[test]
    fn compiled_tables_agree_with_the_reference(
        ns_labels in prop::collection::vec(labels_strategy(), 3),
        pod_specs in prop::collection::vec(pod_strategy(), 1..=6),
        policy_specs in prop::collection::vec(policy_strategy(), 0..=4),
    ) {
        let nodes: Vec<Node> = NODES.iter().enumerate().map(|(i, n)| node(n, i as u8)).collect();
        let namespaces: Vec<Namespace> = ["x", "y", "z"].iter().zip(&ns_labels)
            .map(|(n, l)| namespace(n, l.clone())).collect();
        let pods: Vec<Pod> = pod_specs.iter().enumerate().map(|(i, (ns, labels, ports, n))| {
            let ip = Ipv4Addr::new(10, 244, *n as u8 + 1, i as u8 + 2);
            pod(ns, &format!("p{i}"), NODES[*n], ip, labels.clone(), ports.clone())
        }).collect();
        let policies: Vec<NetworkPolicy> = policy_specs.iter().enumerate().map(|(i, p)| {
            let mut p = p.clone();
            p["metadata"]["name"] = json!(format!("p{i}"));
            serde_json::from_value(p).unwrap()
        }).collect();
        let view = view_of(&nodes, &namespaces, &pods, &policies);
        let tables = tables(&view);
        let cluster = Cluster {
            namespaces: namespaces.iter().collect(),
            policies: policies.iter().map(Policy::from_k8s).collect(),
        };
        let mut ends: Vec<End> = pods.iter().map(End::Pod).collect();
        ends.extend(OUTSIDE.iter().map(|a| End::Addr(*a)));
        for src in &ends {
            for dst in &ends {
                if matches!((src, dst), (End::Addr(_), End::Addr(_))) {
                    continue;
                }
                for proto in [L4Proto::Tcp, L4Proto::Udp, L4Proto::Sctp] {
                    for port in PORTS {
                        let want = cluster.verdict(*src, *dst, proto, port);
                        let got = simulated(&tables, *src, *dst, proto, port);
                        prop_assert_eq!(got, want, "{:?} -> {:?} {:?}/{}", src_name(src), src_name(dst), proto, port);
                    }
                }
            }
        }
    }
}

fn src_name(e: &End) -> String {
    match e {
        End::Pod(p) => format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or("")
        ),
        End::Addr(a) => a.to_string(),
    }
}

// ---- snapshots ----

fn small_cluster() -> ClusterView {
    let nodes = vec![node("n1", 0), node("n2", 1)];
    let namespaces = vec![
        namespace("default", json!({})),
        namespace("mon", json!({"team": "ops"})),
    ];
    let pods = vec![
        pod(
            "default",
            "db",
            "n1",
            Ipv4Addr::new(10, 244, 1, 5),
            json!({"app": "db"}),
            json!([{"name": "pg", "containerPort": 5432}]),
        ),
        pod(
            "default",
            "web",
            "n1",
            Ipv4Addr::new(10, 244, 1, 6),
            json!({"app": "web"}),
            json!([]),
        ),
        pod(
            "default",
            "api",
            "n2",
            Ipv4Addr::new(10, 244, 2, 5),
            json!({"app": "api"}),
            json!([]),
        ),
        pod(
            "mon",
            "prom",
            "n2",
            Ipv4Addr::new(10, 244, 2, 6),
            json!({"app": "prom"}),
            json!([]),
        ),
    ];
    let policies: Vec<NetworkPolicy> = vec![
        serde_json::from_value(
            json!({"metadata": {"namespace": "default", "name": "deny-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        )
        .unwrap(),
        serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "api"}}},
                      {"namespaceSelector": {"matchLabels": {"team": "ops"}}}],
             "ports": [{"port": "pg"}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}],
             "ports": [{"port": 9000, "endPort": 9100}, {"protocol": "UDP"}]}
        ]}}))
        .unwrap(),
    ];
    view_of(&nodes, &namespaces, &pods, &policies)
}

#[test]
fn small_cluster_table() {
    let view = small_cluster();
    let tables = tables(&view);
    insta::assert_snapshot!("n1", tables[0].1.render());
    insta::assert_snapshot!("n2", tables[1].1.render());
}

#[test]
fn a_policy_has_chains_only_on_nodes_where_it_selects_pods() {
    let view = small_cluster();
    let tables = tables(&view);
    let n2 = &tables[1].1;
    assert!(
        !n2.chains.contains_key("ingress/default/db"),
        "{:?}",
        n2.chains.keys()
    );
    assert!(n2.chains.contains_key("ingress/default/deny-all"));
    // api is isolated; prom (namespace mon) is not.
    assert_eq!(n2.sets["ingress_pods"].elements.len(), 1);
    let n1 = &tables[0].1;
    assert!(n1.chains.contains_key("ingress/default/db"));
    assert_eq!(n1.sets["ingress_pods"].elements.len(), 2);
}
