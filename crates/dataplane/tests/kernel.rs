//! Root integration tests against the real kernel. Every test creates its own uniquely named
//! namespaces (pid + counter) and removes exactly those in Drop, also on panic.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use weft_dataplane::{Family, IpNet, MacAddr, NetNs, Netlink, Scope, ScopedNetNs};

/// A namespace owned by the test, deleted in Drop (also on panic).
fn scoped(tag: &str) -> ScopedNetNs {
    ScopedNetNs::create_unique(&format!("wdp-{tag}")).expect("create netns")
}

fn nl(ns: &NetNs) -> Netlink {
    ns.run(Netlink::open).unwrap().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn create_open_exists_delete() {
    let t = scoped("life");
    assert!(NetNs::exists(t.name()));
    let err = NetNs::create(t.name()).unwrap_err();
    assert!(err.is_exists(), "{err}");
    let again = NetNs::open_named(t.name()).unwrap();
    assert_eq!(again.path(), t.path());
    // A fresh namespace has only a down loopback; bring it up.
    let mut nl = nl(&t);
    let links = nl.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(!links[0].admin_up);
    nl.lo_up().unwrap();
    assert!(nl.link_get("lo").unwrap().unwrap().admin_up);
    assert!(NetNs::delete(t.name()).unwrap());
    assert!(!NetNs::delete(t.name()).unwrap());
    assert!(!NetNs::exists(t.name()));
    assert!(NetNs::open_named(t.name()).unwrap_err().is_not_found());
}

#[test]
fn open_by_proc_path_and_refuse_non_namespaces() {
    let me = NetNs::open(format!("/proc/{}/ns/net", std::process::id())).unwrap();
    assert!(me.path().starts_with("/proc"));
    let dir = std::env::temp_dir().join(format!("wdp-notns-{}", std::process::id()));
    std::fs::write(&dir, "").unwrap();
    let err = NetNs::open(&dir).unwrap_err();
    std::fs::remove_file(&dir).unwrap();
    assert!(err.is_not_found(), "{err}");
    assert!(NetNs::open("/run/netns/wdp-never-created")
        .unwrap_err()
        .is_not_found());
}

#[test]
fn run_restores_the_namespace_after_a_panic() {
    let t = scoped("panic");
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.run(|| panic!("boom")).unwrap();
    }));
    assert!(caught.is_err());
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
}

#[test]
fn run_switches_back() {
    let t = scoped("run");
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = t
        .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
        .unwrap();
    let after = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_ne!(before, inside);
    assert_eq!(before, after);
}

#[test]
fn veth_across_namespaces_with_addresses_routes_neighbours_and_tcp() {
    let a = scoped("a");
    let b = scoped("b");
    let mut na = nl(&a);
    let mut nb = nl(&b);
    let mac: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    na.link_add_veth("va", "vb")
        .peer_netns(&b)
        .mtu(1450)
        .mac(mac)
        .execute()
        .unwrap();
    let va = na.link_get("va").unwrap().expect("va in a");
    assert_eq!(va.mtu, 1450);
    assert_eq!(va.mac, Some(mac));
    assert_eq!(va.kind.as_deref(), Some("veth"));
    assert!(na.link_get("vb").unwrap().is_none(), "peer must be in b");
    let vb = nb.link_get("vb").unwrap().expect("vb in b");
    assert_eq!(vb.mtu, 1450);

    // Creating it again names the operation and says EEXIST.
    let e = na.link_add_veth("va", "vb2").execute().unwrap_err();
    assert!(e.is_exists());
    assert!(
        e.to_string()
            .starts_with("creating veth va/vb2: File exists"),
        "{e}"
    );

    na.lo_up().unwrap();
    nb.lo_up().unwrap();
    na.addr_add(va.index, net("10.99.0.1/32"))
        .execute()
        .unwrap();
    nb.addr_add(vb.index, net("10.99.0.2/24"))
        .execute()
        .unwrap();
    na.link_set(va.index).up().execute().unwrap();
    nb.link_set("vb").up().execute().unwrap();
    let addrs = nb.addrs(Some(vb.index)).unwrap();
    assert!(
        addrs.iter().any(|x| x.local == net("10.99.0.2/24")),
        "{addrs:?}"
    );

    // a reaches b's /24 via an on-link route; b reaches a's /32 through a link route.
    na.route_add(net("10.99.0.0/24"))
        .oif(va.index)
        .scope(Scope::Link)
        .src(ip("10.99.0.1"))
        .execute()
        .unwrap();
    let routes = na.routes(Family::V4).unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == net("10.99.0.0/24"))
        .expect("route listed");
    assert_eq!(r.oif, Some(va.index));
    assert_eq!(r.scope, Scope::Link);
    assert_eq!(r.src, Some(ip("10.99.0.1")));
    // Default route via a gateway that is on-link only by flag.
    na.route_add(IpNet::default_v4())
        .gateway(ip("10.99.0.2"))
        .oif(va.index)
        .onlink()
        .replace()
        .execute()
        .unwrap();
    let routes = na.routes(Family::V4).unwrap();
    let d = routes
        .iter()
        .find(|r| r.dst.prefix() == 0)
        .expect("default");
    assert_eq!(d.gateway, Some(ip("10.99.0.2")));

    // Permanent neighbour: b's MAC for 10.99.0.2 on va.
    let vb_mac = vb.mac.unwrap();
    na.neigh_add_permanent(va.index, ip("10.99.0.2"), vb_mac)
        .unwrap();
    let neighs = na.neighs(va.index).unwrap();
    assert!(neighs
        .iter()
        .any(|n| n.ip == ip("10.99.0.2") && n.mac == Some(vb_mac) && n.permanent));

    // A real TCP connection across the veth: listener in b, client in a.
    let listener = b.run(|| TcpListener::bind("10.99.0.2:0")).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong!").unwrap();
        (peer.ip(), buf)
    });
    let mut client = a
        .run(|| {
            TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2)), port),
                Duration::from_secs(5),
            )
        })
        .unwrap()
        .unwrap();
    client.write_all(b"ping!").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong!");
    let (peer, got) = server.join().unwrap();
    assert_eq!(peer, ip("10.99.0.1"));
    assert_eq!(&got, b"ping!");

    // Deletes: address, route, link; then not-found is distinguishable.
    nb.addr_del(vb.index, net("10.99.0.2/24")).unwrap();
    assert!(nb
        .addrs(Some(vb.index))
        .unwrap()
        .iter()
        .all(|x| x.local.addr() != ip("10.99.0.2")));
    assert!(nb
        .addr_del(vb.index, net("10.99.0.2/24"))
        .unwrap_err()
        .is_not_found());
    na.route_del(net("10.99.0.0/24"), Some(va.index), None)
        .unwrap();
    assert!(na
        .route_del(net("10.99.0.0/24"), None, None)
        .unwrap_err()
        .is_not_found());
    na.link_del("va").unwrap();
    assert!(
        nb.link_get("vb").unwrap().is_none(),
        "deleting one end deletes both"
    );
    assert!(na.link_del("va").unwrap_err().is_not_found());
}

#[test]
fn bridge_master_rename_mtu_move() {
    let a = scoped("br");
    let b = scoped("mv");
    let mut na = nl(&a);
    let mut nb = nl(&b);
    na.link_add_bridge("br0").mtu(1400).execute().unwrap();
    na.link_add_veth("x1", "x2").execute().unwrap();
    let br = na.link_get("br0").unwrap().unwrap();
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    na.link_set("x1")
        .master(br.index)
        .mtu(1400)
        .execute()
        .unwrap();
    let x1 = na.link_get("x1").unwrap().unwrap();
    assert_eq!(x1.master, Some(br.index));
    assert_eq!(x1.mtu, 1400);
    na.link_set("x1").nomaster().execute().unwrap();
    assert_eq!(na.link_get("x1").unwrap().unwrap().master, None);
    na.link_set("x1").name("x1renamed").execute().unwrap();
    assert!(na.link_get("x1").unwrap().is_none());
    assert!(na.link_get("x1renamed").unwrap().is_some());
    na.link_set("x2").netns(&b).execute().unwrap();
    assert!(na.link_get("x2").unwrap().is_none());
    assert!(nb.link_get("x2").unwrap().is_some());
    let names: Vec<String> = na.links().unwrap().into_iter().map(|l| l.name).collect();
    assert!(names.contains(&"br0".to_string()) && names.contains(&"x1renamed".to_string()));
    na.link_del(br.index).unwrap();
    na.link_set("br0").up().execute().unwrap_err();
}

#[test]
fn sysctl_in_test_namespace() {
    let t = scoped("sys");
    let v = t
        .run(|| {
            weft_dataplane::sysctl::write("net/ipv4/ip_forward", "1")?;
            weft_dataplane::sysctl::read("net/ipv4/ip_forward")
        })
        .unwrap()
        .unwrap();
    assert_eq!(v, "1");
}

/// Two namespaces on a veth "underlay", each with a VXLAN device whose forwarding entry,
/// neighbour and onlink route point at the other: TCP flows between the overlay addresses.
#[test]
fn vxlan_overlay_with_fdb_neighbour_and_owned_routes() {
    let a = scoped("vxa");
    let b = scoped("vxb");
    let mut na = nl(&a);
    let mut nb = nl(&b);
    na.link_add_veth("u0", "u0")
        .peer_netns(&b)
        .execute()
        .unwrap();
    let (mac_a, mac_b): (MacAddr, MacAddr) = (
        "0e:57:00:00:00:01".parse().unwrap(),
        "0e:57:00:00:00:02".parse().unwrap(),
    );
    let sides = [
        (
            &mut na,
            "192.0.2.1",
            "10.99.1.0",
            "192.0.2.2",
            "10.99.2.0",
            mac_a,
            mac_b,
        ),
        (
            &mut nb,
            "192.0.2.2",
            "10.99.2.0",
            "192.0.2.1",
            "10.99.1.0",
            mac_b,
            mac_a,
        ),
    ];
    for (nl, under, over, peer_under, peer_over, mine, theirs) in sides {
        nl.lo_up().unwrap();
        let u0 = nl.link_get("u0").unwrap().unwrap().index;
        nl.addr_add(u0, net(&format!("{under}/24")))
            .execute()
            .unwrap();
        nl.link_set(u0).up().execute().unwrap();
        nl.link_add_vxlan("vx0", 4242)
            .local(under.parse().unwrap())
            .port(4790)
            .underlay(u0)
            .mtu(1450)
            .mac(mine)
            .execute()
            .unwrap();
        let vx = nl.link_get("vx0").unwrap().unwrap();
        assert_eq!(vx.kind.as_deref(), Some("vxlan"));
        assert_eq!(vx.mac, Some(mine));
        assert_eq!(vx.mtu, 1450);
        let info = vx.vxlan.clone().expect("vxlan info");
        assert_eq!(info.vni, 4242);
        assert_eq!(info.port, 4790);
        assert_eq!(info.local, Some(under.parse().unwrap()));
        assert_eq!(info.underlay, Some(u0));
        assert!(!info.learning);
        nl.addr_add(vx.index, net(&format!("{over}/32")))
            .execute()
            .unwrap();
        nl.link_set(vx.index).up().execute().unwrap();
        nl.fdb_replace(vx.index, theirs, ip(peer_under)).unwrap();
        nl.neigh_add_permanent(vx.index, ip(peer_over), theirs)
            .unwrap();
        nl.route_add(net(&format!("{}/24", peer_over)))
            .gateway(ip(peer_over))
            .oif(vx.index)
            .onlink()
            .protocol(0x57)
            .execute()
            .unwrap();
        // Replacing an entry is idempotent; the listing shows exactly the one entry.
        nl.fdb_replace(vx.index, theirs, ip(peer_under)).unwrap();
        let fdbs = nl.fdbs(vx.index).unwrap();
        let ours: Vec<_> = fdbs.iter().filter(|e| e.mac == theirs).collect();
        assert_eq!(ours.len(), 1, "{fdbs:?}");
        assert_eq!(ours[0].dst, Some(ip(peer_under)));
        assert!(ours[0].permanent);
        // FDB entries are not neighbours.
        let neighs = nl.neighs(vx.index).unwrap();
        assert_eq!(neighs.len(), 1, "{neighs:?}");
        let owned: Vec<_> = nl
            .routes(Family::V4)
            .unwrap()
            .into_iter()
            .filter(|r| r.protocol == 0x57)
            .collect();
        assert_eq!(owned.len(), 1, "{owned:?}");
        assert!(owned[0].onlink);
        assert_eq!(owned[0].gateway, Some(ip(peer_over)));
    }

    let listener = b
        .run(|| TcpListener::bind("10.99.2.0:7000"))
        .unwrap()
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    let mut c = a
        .run(|| {
            std::net::TcpStream::connect_timeout(
                &"10.99.2.0:7000".parse::<SocketAddr>().unwrap(),
                Duration::from_secs(5),
            )
        })
        .unwrap()
        .unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(
        server.join().unwrap().ip(),
        ip("10.99.1.0"),
        "overlay source kept"
    );

    // Deletes: the entries go, and deleting them again reports "not found".
    let vx = na.link_get("vx0").unwrap().unwrap().index;
    na.fdb_del(vx, mac_b, Some(ip("192.0.2.2"))).unwrap();
    assert!(na.fdbs(vx).unwrap().iter().all(|e| e.mac != mac_b));
    assert!(na.fdb_del(vx, mac_b, None).unwrap_err().is_not_found());
    na.neigh_del(vx, ip("10.99.2.0")).unwrap();
    // Only ours goes: the kernel may hold entries of its own on the device by now (IPv6
    // neighbour discovery once it is up), which are not what this checks.
    let left = na.neighs(vx).unwrap();
    assert!(left.iter().all(|n| n.ip != ip("10.99.2.0")), "{left:?}");
    assert!(left.iter().all(|n| !n.permanent), "{left:?}");
    assert!(na
        .neigh_del(vx, ip("10.99.2.0"))
        .unwrap_err()
        .is_not_found());
}

#[test]
fn nft_tables_load_atomically_and_bad_rulesets_change_nothing() {
    let t = scoped("nft");
    t.run(|| {
        use weft_dataplane::nft;
        assert_eq!(nft::table("ip", "wdp_test").unwrap(), None);
        nft::apply(
            "table ip wdp_test {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr 10.1.0.0/24 ip daddr != 10.0.0.0/8 masquerade\n  }\n}\n",
        )
        .unwrap();
        let text = nft::table("ip", "wdp_test").unwrap().expect("table exists");
        assert!(text.contains("masquerade"), "{text}");
        // A broken script is refused whole: the error names the problem, the table is unchanged.
        let err = nft::apply("delete table ip wdp_test\ntable ip wdp_test { chain c { nonsense } }\n")
            .unwrap_err();
        assert!(err.to_string().contains("nft:"), "{err}");
        assert_eq!(nft::table("ip", "wdp_test").unwrap().as_deref(), Some(text.as_str()));
        nft::delete_table("ip", "wdp_test").unwrap();
        nft::delete_table("ip", "wdp_test").unwrap();
        assert_eq!(nft::table("ip", "wdp_test").unwrap(), None);
    })
    .unwrap();
}
