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
