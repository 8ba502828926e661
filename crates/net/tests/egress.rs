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
