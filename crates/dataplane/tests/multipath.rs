//! Root test of multipath (ECMP) routes against the real kernel: a route with one nexthop per
//! path is installed, listed back with its nexthops, replaced, and spreads real TCP
//! connections over both paths with the L4 hash policy. Every namespace is the test's own
//! (unique names) and is removed in Drop, also on panic.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weft_dataplane::{Family, IpNet, NetNs, Netlink, NextHop, ScopedNetNs};

fn scoped(tag: &str) -> ScopedNetNs {
    ScopedNetNs::create_unique(&format!("wmp-{tag}")).expect("create netns")
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

/// A veth from `a` (named `a_if`, address `a_addr`) to `b` (named `b_if`, address `b_addr`),
/// both up.
fn wire(a: &NetNs, a_if: &str, a_addr: &str, b: &NetNs, b_if: &str, b_addr: &str) {
    let mut na = nl(a);
    let mut nb = nl(b);
    na.link_add_veth(a_if, b_if)
        .peer_netns(b)
        .execute()
        .unwrap();
    let ai = na.link_get(a_if).unwrap().unwrap().index;
    let bi = nb.link_get(b_if).unwrap().unwrap().index;
    na.addr_add(ai, net(a_addr)).execute().unwrap();
    nb.addr_add(bi, net(b_addr)).execute().unwrap();
    na.link_set(ai).up().execute().unwrap();
    nb.link_set(bi).up().execute().unwrap();
}

const VIP: &str = "198.51.100.7";

#[test]
fn a_multipath_route_lists_its_nexthops_and_spreads_connections() {
    // client -- router -- {n1, n2}; both nodes hold the VIP and answer with their name.
    let client = scoped("c");
    let router = scoped("r");
    let n1 = scoped("n1");
    let n2 = scoped("n2");
    for ns in [&*client, &*router, &*n1, &*n2] {
        nl(ns).lo_up().unwrap();
    }
    wire(&client, "c0", "10.0.0.2/24", &router, "r0", "10.0.0.1/24");
    wire(&router, "r1", "10.1.0.1/24", &n1, "n1", "10.1.0.2/24");
    wire(&router, "r2", "10.2.0.1/24", &n2, "n2", "10.2.0.2/24");
    router
        .run(|| {
            weft_dataplane::sysctl::write("net/ipv4/ip_forward", "1")?;
            weft_dataplane::sysctl::write("net/ipv4/fib_multipath_hash_policy", "1")
        })
        .unwrap()
        .unwrap();
    nl(&client)
        .route_add(IpNet::default_v4())
        .gateway(ip("10.0.0.1"))
        .execute()
        .unwrap();
    let mut servers = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    for (ns, gw, name) in [(&n1, "10.1.0.1", "n1"), (&n2, "10.2.0.1", "n2")] {
        let mut h = nl(ns);
        let lo = h.link_get("lo").unwrap().unwrap().index;
        h.addr_add(lo, net(&format!("{VIP}/32"))).execute().unwrap();
        h.route_add(IpNet::default_v4())
            .gateway(ip(gw))
            .execute()
            .unwrap();
        let listener = ns
            .run(|| TcpListener::bind(format!("{VIP}:80")))
            .unwrap()
            .unwrap();
        // Polled, so the thread ends (and the socket closes) when the test is done.
        listener.set_nonblocking(true).unwrap();
        let stop = stop.clone();
        servers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }));
    }

    let mut r = nl(&router);
    let proto = 0x57;
    r.route_add(net(&format!("{VIP}/32")))
        .nexthop(NextHop::via(ip("10.1.0.2")))
        .nexthop(NextHop::via(ip("10.2.0.2")))
        .protocol(proto)
        .replace()
        .execute()
        .unwrap();
    let listed = r.routes(Family::V4).unwrap();
    let route = listed
        .iter()
        .find(|x| x.dst == net(&format!("{VIP}/32")))
        .expect("the multipath route is listed");
    assert_eq!(route.protocol, proto);
    assert_eq!(route.gateway, None, "{route:?}");
    assert_eq!(route.gateways(), [ip("10.1.0.2"), ip("10.2.0.2")]);
    assert!(route
        .multipath
        .iter()
        .all(|h| h.weight == 1 && h.oif.is_some()));

    // Many connections from distinct source ports reach both nodes. (The veths' carriers come
    // up asynchronously: the first connection may need a retry.)
    let connect = || {
        let start = std::time::Instant::now();
        loop {
            let r = client
                .run(|| {
                    TcpStream::connect_timeout(
                        &SocketAddr::new(ip(VIP), 80),
                        Duration::from_secs(5),
                    )
                })
                .unwrap();
            match r {
                Ok(s) => return s,
                Err(e) if start.elapsed() > Duration::from_secs(5) => {
                    panic!("connecting to {VIP}:80: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    let seen: BTreeSet<String> = (0..40)
        .map(|_| {
            let mut s = connect();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut name = String::new();
            s.read_to_string(&mut name).unwrap();
            name
        })
        .collect();
    assert_eq!(seen, BTreeSet::from(["n1".to_string(), "n2".to_string()]));

    // Replaced by a single path: listed as a plain gateway route, and all traffic goes there.
    r.route_add(net(&format!("{VIP}/32")))
        .gateway(ip("10.2.0.2"))
        .protocol(proto)
        .replace()
        .execute()
        .unwrap();
    let listed = r.routes(Family::V4).unwrap();
    let route = listed
        .iter()
        .find(|x| x.dst == net(&format!("{VIP}/32")))
        .unwrap();
    assert!(route.multipath.is_empty());
    assert_eq!(route.gateways(), [ip("10.2.0.2")]);

    // A route-level gateway beside nexthops is refused before the kernel sees it.
    let err = r
        .route_add(net("198.51.100.8/32"))
        .gateway(ip("10.1.0.2"))
        .nexthop(NextHop::via(ip("10.2.0.2")))
        .execute()
        .unwrap_err();
    assert!(err.to_string().contains("per nexthop"), "{err}");
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}
