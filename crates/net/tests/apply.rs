//! The applier against the real kernel (root): each test builds its own "node" namespaces,
//! applies plans inside them, and deletes exactly those namespaces in Drop.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use weft_dataplane::{Family, IpNet, Netlink};
use weft_model::config::ClusterConfig;
use weft_net::{
    apply, compile, Mode, NetworkConfig, NodeInfo, NodePlan, ROUTE_PROTOCOL, VXLAN_DEVICE,
};
use weft_testutil::TestNetns;

/// A "node" namespace owned by the test, deleted in Drop (also on panic).
fn node_ns(tag: &str) -> TestNetns {
    TestNetns::new(&format!("wnet-{tag}"))
}

/// Applies `plan` inside `node`; what the applier changed.
fn apply_in(node: &TestNetns, plan: &NodePlan) -> Vec<String> {
    node.run(|| apply(plan)).unwrap().changes
}

fn cfg(mode: Mode) -> NetworkConfig {
    NetworkConfig {
        mode,
        ..NetworkConfig::from_cluster(&ClusterConfig::default())
    }
}

fn nodes(n: u8) -> Vec<NodeInfo> {
    (0..n)
        .map(|i| {
            NodeInfo::new(
                &format!("n{i}"),
                format!("192.0.2.{}", i + 1).parse().unwrap(),
                format!("10.244.{i}.0/24").parse().unwrap(),
            )
        })
        .collect()
}

/// Two node namespaces joined by a veth "underlay" (192.0.2.1 and .2), each with one "pod"
/// address on a dummy-like veth end inside its own pod CIDR.
fn two_nodes() -> (TestNetns, TestNetns) {
    let a = node_ns("a");
    let b = node_ns("b");
    a.veth_to(&b, ("eth0", "192.0.2.1/24"), ("eth0", "192.0.2.2/24"));
    (a, b)
}

fn owned_routes(t: &TestNetns) -> Vec<IpNet> {
    t.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.routes(Family::V4)
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == ROUTE_PROTOCOL)
            .map(|r| r.dst)
            .collect()
    })
}

#[test]
fn vxlan_plan_applies_once_then_is_a_noop_and_carries_traffic() {
    let (a, b) = two_nodes();
    let c = cfg(Mode::Vxlan { vni: 9, port: 4789 });
    let all = nodes(2);
    let (pa, pb) = (
        compile(&c, "n0", &all).unwrap(),
        compile(&c, "n1", &all).unwrap(),
    );
    let first = apply_in(&a, &pa);
    assert!(
        first.iter().any(|c| c.starts_with("added link weft.vxlan")),
        "{first:?}"
    );
    assert!(!apply_in(&b, &pb).is_empty());
    assert_eq!(
        apply_in(&a, &pa),
        Vec::<String>::new(),
        "re-applying changes nothing"
    );
    assert_eq!(apply_in(&b, &pb), Vec::<String>::new());

    let link = a.sh(&format!("ip -d link show {VXLAN_DEVICE}"));
    assert!(
        link.contains("vxlan id 9")
            && link.contains("local 192.0.2.1")
            && link.contains("dstport 4789"),
        "{link}"
    );
    assert!(link.contains("mtu 1450"), "{link}");
    assert!(a.sh("nft list table ip weft_egress").contains("masquerade"));

    // Overlay traffic between the nodes' own overlay addresses (10.244.0.0 <-> 10.244.1.0).
    let listener = b.run(|| TcpListener::bind("10.244.1.0:7001")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer.ip()
    });
    let to: SocketAddr = "10.244.1.0:7001".parse().unwrap();
    let mut conn = a
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap();
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(
        server.join().unwrap(),
        "10.244.0.0".parse::<IpAddr>().unwrap(),
        "no NAT on the overlay"
    );
}

#[test]
fn drift_is_repaired_and_departed_nodes_are_forgotten() {
    let (a, _b) = two_nodes();
    let c = cfg(Mode::Vxlan { vni: 1, port: 4789 });
    let three = nodes(3);
    let plan = compile(&c, "n0", &three).unwrap();
    apply_in(&a, &plan);
    assert_eq!(owned_routes(&a).len(), 2);

    // Someone removes a route and an fdb entry and flushes the table: all come back, nothing else changes.
    a.sh("ip route del 10.244.2.0/24; bridge fdb del 0e:57:c0:00:02:02 dev weft.vxlan self; nft delete table ip weft_egress");
    let fixed = apply_in(&a, &plan);
    assert_eq!(fixed.len(), 3, "{fixed:?}");
    // A route somebody else owns is left alone.
    a.sh("ip route add 10.250.0.0/24 via 192.0.2.2");

    // Node n2 leaves: its route, neighbour and fdb entry go, and the egress table no longer
    // counts its pod CIDR as routed.
    let plan = compile(&c, "n0", &three[..2]).unwrap();
    let changes = apply_in(&a, &plan);
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(
        owned_routes(&a),
        vec!["10.244.1.0/24".parse::<IpNet>().unwrap()]
    );
    assert!(!a
        .sh("bridge fdb show dev weft.vxlan")
        .contains("0e:57:c0:00:02:03"));
    assert!(a.sh("ip route").contains("10.250.0.0/24"));
}

#[test]
fn switching_modes_rebuilds_only_what_differs() {
    let (a, _b) = two_nodes();
    let all = nodes(2);
    apply_in(
        &a,
        &compile(&cfg(Mode::Vxlan { vni: 1, port: 4789 }), "n0", &all).unwrap(),
    );
    // A different VNI means a new device.
    let changes = apply_in(
        &a,
        &compile(&cfg(Mode::Vxlan { vni: 2, port: 4789 }), "n0", &all).unwrap(),
    );
    assert!(
        changes.iter().any(|c| c.contains("parameters changed")),
        "{changes:?}"
    );
    assert!(a.sh("ip -d link show weft.vxlan").contains("vxlan id 2"));

    let direct = compile(&cfg(Mode::Direct), "n0", &all).unwrap();
    let changes = apply_in(&a, &direct);
    assert!(
        changes
            .iter()
            .any(|c| c.contains("deleted link weft.vxlan")),
        "{changes:?}"
    );
    assert!(a.sh("ip link").lines().all(|l| !l.contains("weft.vxlan")));
    let route = a.sh("ip route show proto 0x57");
    assert_eq!(route.trim(), "10.244.1.0/24 via 192.0.2.2 dev eth0");
    assert!(apply_in(&a, &direct).is_empty());
}

#[test]
fn a_namespace_without_the_node_ip_is_refused() {
    let t = node_ns("nouplink");
    let plan = compile(&cfg(Mode::Direct), "n0", &nodes(2)).unwrap();
    let err = t.run(|| apply(&plan)).unwrap_err().to_string();
    assert!(err.contains("192.0.2.1"), "{err}");
    assert!(t.sh("ip route").trim().is_empty());
}
