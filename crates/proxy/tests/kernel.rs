//! The proxy against the real kernel (root): rulesets load into a scratch namespace, updates are
//! incremental, a table changed behind the proxy's back is reloaded whole, DNAT sends real
//! connections to the endpoints, a cluster IP's other ports refuse, and a UDP client that keeps
//! one socket moves to a live endpoint once the stale conntrack entry is cleared. Every
//! namespace is the test's own, removed in Drop.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::{Netlink, ScopedNetNs};
use weft_proxy::{
    clear_stale_flows, clear_unserved_flows, compile, stale_flows_for_changes, view::views, Proxy,
    ProxyNode, ServicePortView, SyncKind,
};

fn node() -> ProxyNode {
    ProxyNode {
        name: "n1".into(),
        ip: "192.0.2.1".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        external_ip_ranges: Vec::new(),
    }
}

fn service(name: &str, ip: &str) -> Service {
    serde_norway::from_str(&format!("metadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}")).unwrap()
}

fn slice(name: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [{ip}], nodeName: n1}}"))
        .collect();
    serde_norway::from_str(&format!(
        "metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 7070, protocol: TCP}}]\nendpoints: [{}]",
        eps.join(", ")
    ))
    .unwrap()
}

fn udp_service(name: &str, ip: &str) -> Service {
    serde_norway::from_str(&format!("metadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: {ip}, ports: [{{name: dns, port: 53, protocol: UDP}}]}}")).unwrap()
}

fn udp_slice(name: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [{ip}], nodeName: n1}}"))
        .collect();
    serde_norway::from_str(&format!(
        "metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: dns, port: 7070, protocol: UDP}}]\nendpoints: [{}]",
        eps.join(", ")
    ))
    .unwrap()
}

/// One namespace that plays node and pods at once: `addrs` are local addresses (the pods) on a
/// veth, and the service CIDR is routed out of it, so locally generated traffic to a cluster IP
/// goes through the nat output hook like a node's own.
fn node_and_pods(prefix: &str, addrs: &[&str]) -> ScopedNetNs {
    let ns = ScopedNetNs::create_unique(prefix).unwrap();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.lo_up().unwrap();
        nl.link_add_veth("d0", "d1").execute().unwrap();
        let d0 = nl.link_get("d0").unwrap().unwrap().index;
        for a in addrs {
            nl.addr_add(d0, format!("{a}/24").parse().unwrap())
                .execute()
                .unwrap();
        }
        nl.link_set(d0).up().execute().unwrap();
        nl.link_set("d1").up().execute().unwrap();
        nl.route_add("10.96.0.0/12".parse().unwrap())
            .oif(d0)
            .execute()
            .unwrap();
    })
    .unwrap();
    ns
}

fn nft(ns: &ScopedNetNs, args: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "sh",
            "-c",
            &format!("nft {args}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn loads_updates_and_recovers_from_tampering() {
    let ns = ScopedNetNs::create_unique("wpx").unwrap();
    let mut proxy = Proxy::new();
    let n = node();
    let mut sync = |services: &[Service], slices: &[EndpointSlice]| {
        let rs = compile(&n, &views(&n, services, slices));
        ns.run(|| proxy.sync(rs)).unwrap().unwrap()
    };
    let svcs = vec![service("a", "10.96.0.1"), service("b", "10.96.0.2")];
    let mut slices = vec![
        slice("a", &["10.244.0.5", "10.244.0.6"]),
        slice("b", &["10.244.0.7"]),
    ];
    assert_eq!(sync(&svcs, &slices), SyncKind::Full);
    assert_eq!(sync(&svcs, &slices), SyncKind::Unchanged);
    slices[0] = slice("a", &["10.244.0.5", "10.244.0.6", "10.244.0.9"]);
    assert_eq!(sync(&svcs, &slices), SyncKind::Incremental);
    let table = nft(&ns, "list table ip weft_services");
    assert!(table.contains("10.244.0.9 . 7070"), "{table}");
    assert!(table.contains("numgen random mod 3"), "{table}");
    // b loses its endpoint: its address moves to the refusal set.
    slices.pop();
    assert_eq!(sync(&svcs, &slices), SyncKind::Incremental);
    let refusals = nft(&ns, "list set ip weft_services no_endpoint_services");
    assert!(refusals.contains("10.96.0.2 . tcp . 80"), "{refusals}");
    assert!(
        !nft(&ns, "list map ip weft_services service_ips").contains("10.96.0.2 . tcp . 80"),
        "no longer served"
    );
    // Someone deletes a chain the proxy thinks is there: the next update is refused, the whole
    // table is reloaded instead, and the result is right.
    nft(&ns, "delete table ip weft_services");
    slices.push(slice("b", &["10.244.0.8"]));
    assert!(matches!(
        sync(&svcs, &slices),
        SyncKind::FullAfterRefusedUpdate(_)
    ));
    assert!(nft(&ns, "list map ip weft_services service_ips").contains("10.96.0.2 . tcp . 80 : 0x"));
    // The periodic whole sync, with nothing changed, still notices a deleted table.
    assert_eq!(sync(&svcs, &slices), SyncKind::Unchanged);
    nft(&ns, "delete table ip weft_services");
    assert!(matches!(
        sync(&svcs, &slices),
        SyncKind::FullAfterRefusedUpdate(_)
    ));
    assert!(nft(&ns, "list map ip weft_services service_ips").contains("10.96.0.2 . tcp . 80 : 0x"));
}

#[test]
fn cluster_ip_connections_reach_the_endpoints() {
    let ns = node_and_pods("wpxt", &["10.244.0.5", "10.244.0.6"]);
    let listeners: Vec<TcpListener> = ["10.244.0.5:7070", "10.244.0.6:7070"]
        .iter()
        .map(|a| ns.run(|| TcpListener::bind(a)).unwrap().unwrap())
        .collect();
    for l in listeners {
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let me = s.local_addr().unwrap().ip().to_string();
                let _ = s.write_all(me.as_bytes());
            }
        });
    }
    let n = node();
    let rs = compile(
        &n,
        &views(
            &n,
            &[service("a", "10.96.0.1"), service("none", "10.96.0.3")],
            &[slice("a", &["10.244.0.5", "10.244.0.6"])],
        ),
    );
    let mut proxy = Proxy::new();
    ns.run(|| proxy.sync(rs)).unwrap().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let addr: SocketAddr = "10.96.0.1:80".parse().unwrap();
        let mut c = ns
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        seen.insert(answer);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["10.244.0.5", "10.244.0.6"],
        "both endpoints reached"
    );
    let addr: SocketAddr = "10.96.0.3:80".parse().unwrap();
    let err = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "no endpoints: refused"
    );
}

#[test]
fn per_service_changes_load_and_match_a_whole_compile() {
    let ns = ScopedNetNs::create_unique("wpxc").unwrap();
    let n = node();
    let mut proxy = Proxy::new();
    let mut svcs: Vec<Service> = (1..=5)
        .map(|i| service(&format!("s{i}"), &format!("10.96.0.{i}")))
        .collect();
    let mut slices: Vec<EndpointSlice> = (1..=5)
        .map(|i| {
            slice(
                &format!("s{i}"),
                &[&format!("10.244.0.{i}"), &format!("10.244.1.{i}")],
            )
        })
        .collect();
    let first = views(&n, &svcs, &slices);
    assert_eq!(
        ns.run(|| proxy.sync(compile(&n, &first))).unwrap().unwrap(),
        SyncKind::Full
    );

    // s2 gains an endpoint, s3 is deleted, s6 is new.
    slices[1] = slice("s2", &["10.244.0.2", "10.244.1.2", "10.244.2.2"]);
    svcs.retain(|s| s.metadata.name.as_deref() != Some("s3"));
    slices.retain(|s| s.metadata.name.as_deref() != Some("s3-1"));
    svcs.push(service("s6", "10.96.0.6"));
    slices.push(slice("s6", &["10.244.0.6"]));
    let next = views(&n, &svcs, &slices);
    let by_id =
        |vs: &[weft_proxy::ServicePortView], id: &str| vs.iter().find(|v| v.id() == id).cloned();
    let changes: Vec<_> = [
        "default/s2/tcp/80",
        "default/s3/tcp/80",
        "default/s6/tcp/80",
    ]
    .iter()
    .map(|id| (by_id(&first, id), by_id(&next, id)))
    .collect();
    let kind = ns
        .run(|| proxy.sync_changes(&n, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(kind, Some(SyncKind::Incremental));
    // What the proxy holds is what a whole compile gives, so a whole sync finds nothing to do.
    assert_eq!(
        ns.run(|| proxy.sync(compile(&n, &next))).unwrap().unwrap(),
        SyncKind::Unchanged
    );
    let table = nft(&ns, "list table ip weft_services");
    assert!(
        table.contains("10.244.2.2 . 7070") && table.contains("10.96.0.6 . tcp . 80"),
        "{table}"
    );
    assert!(
        !table.contains("10.96.0.3 ") && !table.contains("svc-default/s3/"),
        "{table}"
    );
}

#[test]
fn other_ports_of_a_cluster_ip_are_refused_at_once() {
    // The node, and a pod behind a veth whose traffic the node forwards (as for real pods). The
    // pod serves the Service itself, so its own connections to the Service hairpin through the
    // forward hook after DNAT.
    let node_ns = node_and_pods("wpxr", &["10.244.0.5"]);
    let pod = ScopedNetNs::create_unique("wpxp").unwrap();
    node_ns
        .run(|| {
            weft_dataplane::sysctl::write("net/ipv4/ip_forward", "1").unwrap();
            // The kernel sends at most one ICMP error per second to a host by default, and this
            // test asks for several in a row; the refusals themselves are what it checks.
            weft_dataplane::sysctl::write("net/ipv4/icmp_ratelimit", "0").unwrap();
            let mut nl = Netlink::open().unwrap();
            nl.link_add_veth("p0", "eth0")
                .peer_netns(&pod)
                .execute()
                .unwrap();
            let p0 = nl.link_get("p0").unwrap().unwrap().index;
            nl.addr_add(p0, "10.244.1.1/24".parse().unwrap())
                .execute()
                .unwrap();
            nl.link_set(p0).up().execute().unwrap();
        })
        .unwrap();
    pod.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.lo_up().unwrap();
        let eth0 = nl.link_get("eth0").unwrap().unwrap().index;
        nl.addr_add(eth0, "10.244.1.20/24".parse().unwrap())
            .execute()
            .unwrap();
        nl.link_set(eth0).up().execute().unwrap();
        nl.route_add("0.0.0.0/0".parse().unwrap())
            .gateway("10.244.1.1".parse().unwrap())
            .execute()
            .unwrap();
    })
    .unwrap();
    let l = pod
        .run(|| TcpListener::bind("10.244.1.20:7070"))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"ok");
        }
    });
    let n = node();
    let svcs = vec![service("a", "10.96.0.1")];
    let slices = vec![slice("a", &["10.244.1.20"])];
    let first = views(&n, &svcs, &slices);
    let mut proxy = Proxy::new();
    node_ns
        .run(|| proxy.sync(compile(&n, &first)))
        .unwrap()
        .unwrap();

    let connect = |ns: &ScopedNetNs, port: u16| {
        let addr = SocketAddr::from(([10, 96, 0, 1], port));
        ns.run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
            .unwrap()
    };
    for ns in [&pod, &node_ns] {
        // The Service's port works: DNAT happened before the check, so it never matches.
        let mut answer = String::new();
        connect(ns, 80)
            .unwrap()
            .read_to_string(&mut answer)
            .unwrap();
        assert_eq!(answer, "ok", "from {}", ns.name());
        // Another port: refused at once. Without the check nothing answers for 10.96.0.1
        // (the node's route sends it out to a link where no one has it): a timeout.
        let err = connect(ns, 81).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "from {}",
            ns.name()
        );
    }
    // UDP from the pod: the ICMP port unreachable shows on its connected socket's next receive.
    let udp = pod
        .run(|| UdpSocket::bind("10.244.1.20:0"))
        .unwrap()
        .unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    udp.connect("10.96.0.1:81").unwrap();
    udp.send(b"q").unwrap();
    let err = udp.recv(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // From the node itself the packet is refused in its own output hook: the send fails.
    let udp = node_ns
        .run(|| UdpSocket::bind("10.244.0.5:0"))
        .unwrap()
        .unwrap();
    udp.connect("10.96.0.1:81").unwrap();
    assert_eq!(
        udp.send(b"q").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );

    // The Service goes (an incremental update): its address leaves the set; it comes back.
    let gone = [(first.first().cloned(), None)];
    assert_eq!(
        node_ns
            .run(|| proxy.sync_changes(&n, &gone))
            .unwrap()
            .unwrap(),
        Some(SyncKind::Incremental)
    );
    let set = nft(&node_ns, "list set ip weft_services cluster_ips");
    assert!(!set.contains("10.96.0.1"), "{set}");
    let back = [(None, first.first().cloned())];
    assert_eq!(
        node_ns
            .run(|| proxy.sync_changes(&n, &back))
            .unwrap()
            .unwrap(),
        Some(SyncKind::Incremental)
    );
    let set = nft(&node_ns, "list set ip weft_services cluster_ips");
    assert!(set.contains("10.96.0.1"), "{set}");
    assert_eq!(
        connect(&pod, 81).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

/// A node namespace with UDP endpoints A (10.244.0.5) and B (10.244.0.6) answering with their
/// own address, the `dns` Service (10.96.0.10:53) loaded with A alone, and a client that keeps
/// one socket (as a resolver does: every datagram is the same conntrack flow) and has been
/// answered by A.
struct UdpFixture {
    ns: ScopedNetNs,
    proxy: Proxy,
    client: UdpSocket,
    services: Vec<Service>,
    with_a: Vec<ServicePortView>,
}

impl UdpFixture {
    fn new(prefix: &str) -> UdpFixture {
        let ns = node_and_pods(prefix, &["10.244.0.5", "10.244.0.6", "10.244.0.9"]);
        for a in ["10.244.0.5:7070", "10.244.0.6:7070"] {
            let server = ns.run(|| UdpSocket::bind(a)).unwrap().unwrap();
            std::thread::spawn(move || {
                let me = server.local_addr().unwrap().ip().to_string();
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(me.as_bytes(), from);
                }
            });
        }
        let n = node();
        let services = vec![udp_service("dns", "10.96.0.10")];
        let with_a = views(&n, &services, &[udp_slice("dns", &["10.244.0.5"])]);
        let mut proxy = Proxy::new();
        ns.run(|| proxy.sync(compile(&n, &with_a)))
            .unwrap()
            .unwrap();
        let client = ns.run(|| UdpSocket::bind("10.244.0.9:0")).unwrap().unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        client.connect("10.96.0.10:53").unwrap();
        let f = UdpFixture {
            ns,
            proxy,
            client,
            services,
            with_a,
        };
        assert_eq!(f.ask(), "10.244.0.5");
        f
    }

    /// The views once A is deleted and B serves.
    fn with_b(&self) -> Vec<ServicePortView> {
        views(
            &node(),
            &self.services,
            &[udp_slice("dns", &["10.244.0.6"])],
        )
    }

    /// Asks from the client's one socket, up to 5 times (a datagram may be lost); the answer.
    fn ask(&self) -> String {
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            self.client.send(b"q").unwrap();
            if let Ok(n) = self.client.recv(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        panic!("no answer in 5 tries");
    }
}

#[test]
fn a_udp_client_moves_off_a_removed_endpoint_once_stale_flows_are_cleared() {
    let mut f = UdpFixture::new("wpxu");
    let n = node();
    // A is deleted: the rules now send new flows to B only...
    let changes: Vec<(Option<ServicePortView>, Option<ServicePortView>)> =
        vec![(f.with_a.first().cloned(), f.with_b().first().cloned())];
    let proxy = &mut f.proxy;
    assert_eq!(
        f.ns.run(|| proxy.sync_changes(&n, &changes))
            .unwrap()
            .unwrap(),
        Some(SyncKind::Incremental)
    );
    // ...but this client's flow is still pinned to A by its conntrack entry (A still answers
    // here, so the test can see it; a deleted pod would leave the client without answers).
    assert_eq!(f.ask(), "10.244.0.5");

    let filters = stale_flows_for_changes(&changes);
    let text: Vec<String> = filters.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        ["-p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5"]
    );
    let deleted = f.ns.run(|| clear_stale_flows(&filters)).unwrap().unwrap();
    assert_eq!(deleted, 1);
    // The next datagram from the same socket goes through the rules again: B answers.
    assert_eq!(f.ask(), "10.244.0.6");
    // Nothing stale is left to clear.
    assert_eq!(
        f.ns.run(|| clear_stale_flows(&filters)).unwrap().unwrap(),
        0
    );
}

#[test]
fn a_restarted_proxy_clears_flows_to_endpoints_that_went_while_it_was_down() {
    let f = UdpFixture::new("wpxk");
    let n = node();
    // The agent was down while A went: a new one loads the whole table, knowing no old views.
    let with_b = f.with_b();
    let mut restarted = Proxy::new();
    assert_eq!(
        f.ns.run(|| restarted.sync(compile(&n, &with_b)))
            .unwrap()
            .unwrap(),
        SyncKind::Full
    );
    assert_eq!(f.ask(), "10.244.0.5", "still pinned by conntrack");
    let cleared =
        f.ns.run(|| clear_unserved_flows(&n, &with_b))
            .unwrap()
            .unwrap();
    assert_eq!(cleared, 1);
    assert_eq!(f.ask(), "10.244.0.6");
    // The flow to B is served: a second pass leaves it.
    assert_eq!(
        f.ns.run(|| clear_unserved_flows(&n, &with_b))
            .unwrap()
            .unwrap(),
        0
    );
    assert_eq!(f.ask(), "10.244.0.6");
}
