//! ctnetlink against the real kernel (root): entries of flows inside a scratch namespace are
//! listed and exactly the ones a filter selects are deleted. The namespace is the test's own,
//! removed in Drop; nothing outside it is read or touched.

use std::net::{IpAddr, UdpSocket};
use std::process::Command;

use weft_dataplane::conntrack::{Conntrack, ConntrackFilter, L4Proto};
use weft_dataplane::{Netlink, ScopedNetNs};

/// Runs `sh -c script` inside the namespace; returns stdout + stderr.
fn sh(ns: &ScopedNetNs, script: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sh", "-c", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn lists_and_deletes_only_the_selected_entries() {
    let ns = ScopedNetNs::create_unique("wct").unwrap();
    ns.run(|| Netlink::open().unwrap().lo_up().unwrap())
        .unwrap();
    // The kernel tracks connections in a namespace only once a rule there asks for it.
    let out = sh(
        &ns,
        "nft -f - <<'EOF'\ntable ip wct {\n chain out { type filter hook output priority 0; ct state new accept; }\n}\nEOF",
    );
    assert!(out.is_empty(), "{out}");

    // Three UDP flows from one client socket: to 127.0.0.1:7001, :7002 and 127.0.0.2:7001.
    let client = ns.run(|| UdpSocket::bind("127.0.0.1:0")).unwrap().unwrap();
    for to in ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.2:7001"] {
        client.send_to(b"x", to).unwrap();
    }
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let mut ct = ns.run(Conntrack::open).unwrap().unwrap();
    let dports = |ct: &mut Conntrack| {
        let mut v: Vec<String> = ct
            .entries()
            .unwrap()
            .into_iter()
            .filter(|e| e.protocol == 17)
            .map(|e| format!("{}:{}", e.orig.dst, e.orig.dst_port.unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        dports(&mut ct),
        ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.2:7001"]
    );

    // Wrong reply source, wrong protocol: nothing goes.
    let udp = ConntrackFilter::new(L4Proto::Udp);
    let elsewhere: IpAddr = "10.244.0.5".parse().unwrap();
    assert_eq!(
        ct.delete_matching(&[udp.clone().orig_dst(lo, 7001).reply_src(elsewhere)])
            .unwrap(),
        0
    );
    assert_eq!(
        ct.delete_matching(&[ConntrackFilter::new(L4Proto::Sctp).orig_dst(lo, 7001)])
            .unwrap(),
        0
    );
    // Address, port and reply source: exactly one.
    assert_eq!(
        ct.delete_matching(&[udp.clone().orig_dst(lo, 7001).reply_src(lo)])
            .unwrap(),
        1
    );
    assert_eq!(dports(&mut ct), ["127.0.0.1:7002", "127.0.0.2:7001"]);
    // A port on any address (how node ports are cleared).
    assert_eq!(ct.delete_matching(&[udp.orig_dst_port(7001)]).unwrap(), 1);
    assert_eq!(dports(&mut ct), ["127.0.0.1:7002"]);

    // The conntrack tool, when installed, sees the same table.
    if Command::new("conntrack").arg("--version").output().is_ok() {
        let listed = sh(&ns, "conntrack -L -p udp 2>/dev/null");
        assert!(listed.contains("dport=7002"), "{listed}");
        assert!(!listed.contains("dport=7001"), "{listed}");
    }
}

/// The kernel's stream of new and ended connections, as the flow log reads it: a UDP flow's
/// entry is announced when its first datagram passes, and announced ended, with the packets
/// and bytes each way, when it is deleted.
#[test]
fn new_and_ended_connections_arrive_as_events_with_their_counters() {
    use weft_dataplane::conntrack::{ConntrackEvents, EventKind};
    let ns = ScopedNetNs::create_unique("wce").unwrap();
    ns.run(|| Netlink::open().unwrap().lo_up().unwrap())
        .unwrap();
    let out = sh(
        &ns,
        "sysctl -qw net.netfilter.nf_conntrack_acct=1 && nft -f - <<'EOF'\ntable ip wce {\n chain out { type filter hook output priority 0; ct state new accept; }\n}\nEOF",
    );
    assert!(out.is_empty(), "{out}");
    let mut events = ns.run(ConntrackEvents::subscribe).unwrap().unwrap();
    let server = ns
        .run(|| UdpSocket::bind("127.0.0.1:7101"))
        .unwrap()
        .unwrap();
    let client = ns.run(|| UdpSocket::bind("127.0.0.1:0")).unwrap().unwrap();
    client.send_to(b"hello", "127.0.0.1:7101").unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).unwrap();
    server.send_to(b"hi", from).unwrap();
    client.send_to(b"again", "127.0.0.1:7101").unwrap();

    let ours = |e: &weft_dataplane::conntrack::ConntrackEvent| {
        e.entry.protocol == 17 && e.entry.orig.dst_port == Some(7101)
    };
    let new = loop {
        if let Some(e) = events.recv().unwrap().into_iter().find(|e| ours(e)) {
            break e;
        }
    };
    assert_eq!(new.kind, EventKind::New);
    assert_eq!(new.entry.orig.src_port, Some(from.port()));

    let mut ct = ns.run(Conntrack::open).unwrap().unwrap();
    let entries: Vec<_> = ct
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.protocol == 17)
        .collect();
    assert_eq!(ct.delete_entries(&entries).unwrap(), 1);
    let ended = loop {
        if let Some(e) = events
            .recv()
            .unwrap()
            .into_iter()
            .find(|e| ours(e) && e.kind == EventKind::Destroy)
        {
            break e;
        }
    };
    let (orig, reply) = (ended.orig.unwrap(), ended.reply.unwrap());
    assert_eq!((orig.packets, reply.packets), (2, 1), "{ended:?}");
    // IPv4 + UDP headers (28 bytes) and the payloads.
    assert_eq!(
        (orig.bytes, reply.bytes),
        (28 * 2 + 5 + 5, 28 + 2),
        "{ended:?}"
    );

    // A burst: 300 new flows (300 sockets kept open, so 300 distinct source ports), queued as
    // 300 datagrams, read a batch per system call, every one of them, none cut short.
    let senders: Vec<UdpSocket> = (0..300)
        .map(|_| ns.run(|| UdpSocket::bind("127.0.0.1:0")).unwrap().unwrap())
        .collect();
    for c in &senders {
        c.send_to(b"x", "127.0.0.1:7101").unwrap();
    }
    let mut seen = 0;
    let mut calls = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen < 300 && std::time::Instant::now() < deadline {
        let Some(batch) = events.try_recv().unwrap() else {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        calls += 1;
        seen += batch
            .iter()
            .filter(|e| ours(e) && e.kind == EventKind::New)
            .count();
    }
    assert_eq!(seen, 300);
    assert!(calls < 300, "{calls} reads for 300 events: not batched");
    assert_eq!(events.cut_short, 0);
}
