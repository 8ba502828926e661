//! The egress table against the real kernel (root): a [`NodeApplier`] kept between syncs, as
//! the agent keeps it, repairs `ip weft_egress` when it is deleted by hand, and when one of its
//! rules is edited in place under the same table and comment. Works only inside a namespace it
//! creates (deleted in Drop, also on panic).

use weft_net::{apply, compile, Mode, NetworkConfig, NodeApplier, NodeInfo};
use weft_testutil::TestNetns;

/// The handle of the masquerade rule (`nft -a`).
fn rule_handle(ns: &TestNetns) -> String {
    ns.sh("nft -a list chain ip weft_egress postrouting")
        .lines()
        .find(|l| l.contains("masquerade # handle"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("the masquerade rule's handle")
        .to_string()
}

#[test]
fn a_deleted_or_hand_edited_egress_table_is_repaired_at_the_next_sync() {
    let ns = TestNetns::new("wnet-egress");
    ns.sh(
        "ip link add eth0 type veth peer name eth0p && ip addr add 192.0.2.1/24 dev eth0 \
         && ip link set eth0 up",
    );
    let cfg = NetworkConfig {
        mode: Mode::Direct,
        underlay_mtu: 1500,
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
    };
    let me = NodeInfo::new(
        "n0",
        "192.0.2.1".parse().unwrap(),
        "10.244.0.0/24".parse().unwrap(),
    );
    let plan = compile(&cfg, "n0", &[me]).unwrap();
    let mut node = NodeApplier::new();
    let mut sync = || ns.run(|| node.apply(&plan)).unwrap().changes;

    let first = sync();
    assert_eq!(first, ["loaded nftables table ip weft_egress"]);
    assert!(sync().is_empty(), "a second sync changes nothing");
    let good = ns.sh("nft list table ip weft_egress");
    assert!(good.contains("masquerade"), "{good}");

    // Deleted by hand: back at the next sync.
    ns.sh("nft delete table ip weft_egress");
    let fixed = sync();
    assert!(
        fixed.len() == 1 && fixed[0].starts_with("reloaded nftables table ip weft_egress"),
        "{fixed:?}"
    );
    assert_eq!(ns.sh("nft list table ip weft_egress"), good);

    // A rule edited in place (same handle, same table, same comment): repaired too.
    let handle = rule_handle(&ns);
    ns.sh(&format!(
        "nft replace rule ip weft_egress postrouting handle {handle} ip saddr 10.244.0.0/24 accept"
    ));
    let edited = ns.sh("nft list table ip weft_egress");
    assert!(
        !edited.contains("masquerade") && edited.contains("comment \"weft node egress"),
        "{edited}"
    );
    let fixed = sync();
    assert!(
        fixed.len() == 1 && fixed[0].contains("edited in place"),
        "{fixed:?}"
    );
    assert_eq!(ns.sh("nft list table ip weft_egress"), good);
    assert!(sync().is_empty());

    // A restarted agent (a fresh applier) finds the table it would load and keeps it.
    let fresh = ns.run(|| apply(&plan)).unwrap();
    assert!(fresh.is_noop(), "{fresh:?}");
}

/// A pod sending to an address of the pod network that no node holds is refused at once with
/// ICMP net unreachable (instead of leaving by the default route with a pod's source), and the
/// refusal is logged to weft's NFLOG group as "no route"; addresses a node holds pass.
#[test]
fn addresses_no_node_holds_are_refused_and_logged_as_no_route() {
    use std::time::Duration;
    use weft_dataplane::nflog::{Nflog, WEFT_GROUP};

    let node = TestNetns::new("wnet-noroute").with_loopback_up();
    let pod = TestNetns::new("wnet-nrpod").with_loopback_up();
    let far = TestNetns::new("wnet-nrfar").with_loopback_up();
    node.veth_to(&pod, ("pod0", "10.244.0.1/24"), ("eth0", "10.244.0.5/24"));
    // The uplink, with a default route: where unrouted traffic went before.
    node.veth_to(&far, ("eth0", "192.0.2.1/24"), ("eth0", "192.0.2.2/24"));
    node.sh("ip route add default via 192.0.2.2 && sysctl -qw net.ipv4.ip_forward=1");
    pod.sh("ip route add default via 10.244.0.1");
    far.sh("ip route add 10.244.0.0/16 via 192.0.2.1");
    let cfg = NetworkConfig {
        mode: Mode::Direct,
        underlay_mtu: 1500,
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
    };
    let mut nodes = vec![
        NodeInfo::new(
            "n0",
            "192.0.2.1".parse().unwrap(),
            "10.244.0.0/24".parse().unwrap(),
        ),
        // n1's pods are behind the far end.
        NodeInfo::new(
            "n1",
            "192.0.2.2".parse().unwrap(),
            "10.244.1.0/24".parse().unwrap(),
        ),
    ];
    // And 200 more nodes (10.244.10.0/24 ... 10.244.209.0/24): far more CIDRs than one rule
    // could list (the kernel takes 128 expressions per rule).
    nodes.extend((0..200u32).map(|i| {
        NodeInfo::new(
            &format!("m{i}"),
            std::net::Ipv4Addr::from(0xc000_020a + i),
            format!("10.244.{}.0/24", 10 + i).parse().unwrap(),
        )
    }));
    far.sh("ip addr add 10.244.1.1/32 dev lo");
    let plan = compile(&cfg, "n0", &nodes).unwrap();
    node.run(|| apply(&plan)).unwrap();
    let mut log = node.run(|| Nflog::bind(WEFT_GROUP, 128)).unwrap();
    log.set_timeout(Some(Duration::from_secs(3))).unwrap();

    let connect = |to: &str| {
        let to: std::net::SocketAddr = to.parse().unwrap();
        pod.run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3)))
    };
    // 10.244.9.9: in the pod network, on no node. Refused at once, not timed out.
    let err = connect("10.244.9.9:80").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(101), "ENETUNREACH: {err}");
    let records = log.recv().unwrap();
    let r = records
        .into_iter()
        .filter_map(Result::ok)
        .find(|r| r.prefix == weft_net::REJECT_NO_ROUTE)
        .expect("the refusal, logged");
    let packet = r.packet.unwrap();
    assert_eq!(
        (packet.src.to_string(), packet.dst.to_string()),
        ("10.244.0.5".to_string(), "10.244.9.9".to_string())
    );
    // A node's pod passes.
    let _listener = far
        .run(|| std::net::TcpListener::bind("10.244.1.1:7001"))
        .unwrap();
    connect("10.244.1.1:7001").expect("a pod of n1, reached");
}
