//! weft's own routes against the real kernel (root): `sync_owned_routes` makes the routes of
//! protocol 0x57 exactly what is wanted, single-path or multipath (the lab's load-balancer
//! speaker routes one address to several nodes), and never touches a route of another owner.
//! Works only inside a namespace it creates (deleted in Drop, also on panic).

use std::net::IpAddr;

use weft_dataplane::{IpNet, Netlink};
use weft_net::{sync_owned_routes, OwnedRoute};
use weft_testutil::TestNetns;

fn route(dst: &str, via: &[&str]) -> OwnedRoute {
    OwnedRoute {
        dst: dst.parse::<IpNet>().unwrap(),
        via: via.iter().map(|v| v.parse::<IpAddr>().unwrap()).collect(),
        oif: None,
        onlink: false,
    }
}

#[test]
fn owned_routes_become_exactly_what_is_wanted_single_or_multipath() {
    let ns = TestNetns::new("wnet-owned");
    ns.sh(
        "ip link add eth0 type veth peer name eth0p && ip addr add 192.0.2.1/24 dev eth0 \
         && ip link set eth0 up && ip link set eth0p up \
         && ip route add 203.0.113.0/24 via 192.0.2.9 proto static",
    );
    let sync = |want: &[OwnedRoute]| {
        ns.run(|| sync_owned_routes(&mut Netlink::open().unwrap(), want))
            .unwrap()
    };
    let lb = route("198.51.100.1/32", &["192.0.2.2", "192.0.2.3"]);
    let changes = sync(std::slice::from_ref(&lb));
    assert_eq!(changes.len(), 1, "{changes:?}");
    let shown = ns.sh("ip route show 198.51.100.1");
    assert!(
        shown.contains("nexthop via 192.0.2.2") && shown.contains("nexthop via 192.0.2.3"),
        "{shown}"
    );
    assert!(
        sync(std::slice::from_ref(&lb)).is_empty(),
        "nothing to change"
    );
    // Down to one node: a single-path route in its place.
    sync(&[route("198.51.100.1/32", &["192.0.2.3"])]);
    let shown = ns.sh("ip route show 198.51.100.1");
    assert!(
        shown.contains("via 192.0.2.3") && !shown.contains("nexthop"),
        "{shown}"
    );
    // Nothing wanted: ours gone, the other owner's route untouched.
    let removed = sync(&[]);
    assert_eq!(removed, ["deleted route 198.51.100.1/32"]);
    assert_eq!(ns.sh("ip route show 198.51.100.1"), "");
    assert!(ns
        .sh("ip route show 203.0.113.0/24")
        .contains("via 192.0.2.9"));
}
