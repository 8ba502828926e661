//! NFLOG against the real kernel: a table of our own logs packets to a group with `log prefix
//! "x" group N` (through the typed model and the applier), an [`Nflog`] bound to that group
//! reads them back as records with the prefix, the hook, the interfaces and the packet's
//! addresses and ports. A group has one listener per namespace; closing the socket frees it.
//! Needs root; every test works inside a namespace it creates (deleted in Drop).

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::scoped;
use weft_dataplane::nflog::{Logged, Nflog, NflogError, Transport};
use weft_dataplane::nft::{priority, Applier, Chain, ChainType, Family, Hook, L4Proto, Policy};
use weft_dataplane::nft::{Rule, Table};
use weft_dataplane::{Netlink, ScopedNetNs};

const GROUP: u16 = 7;

/// Logs UDP to port 7070 with prefix "x" and TCP to 7071 with prefix "tcp drop", then drops
/// the TCP (so a connect sends nothing but logged SYNs).
fn logging_table() -> Table {
    let mut t = Table::new(Family::Ip, "weft_nflogtest");
    t.add_chain(
        Chain::base(
            "output",
            ChainType::Filter,
            Hook::Output,
            priority::FILTER,
            Policy::Accept,
        )
        .rule(
            Rule::new()
                .l4proto(L4Proto::Udp)
                .th_dport(7070)
                .log_group(GROUP, "x"),
        )
        .rule(
            Rule::new()
                .l4proto(L4Proto::Tcp)
                .th_dport(7071)
                .log_group(GROUP, "tcp drop"),
        )
        .rule(Rule::new().l4proto(L4Proto::Tcp).th_dport(7071).drop()),
    );
    t
}

/// The namespace with lo up and the table loaded.
fn prepared() -> ScopedNetNs {
    let ns = scoped();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link_get("lo").unwrap().expect("lo").index;
        nl.link_set(lo).up().execute().unwrap();
        Applier::new().apply(&logging_table()).unwrap();
    })
    .unwrap();
    ns
}

/// Records until one passes `want` (or 5 s pass).
fn wait_for(log: &mut Nflog, want: impl Fn(&Logged) -> bool) -> Logged {
    let deadline = Instant::now() + Duration::from_secs(5);
    log.set_timeout(Some(Duration::from_millis(200))).unwrap();
    while Instant::now() < deadline {
        for record in log.recv().unwrap() {
            let record = record.expect("a well-formed record");
            if want(&record) {
                return record;
            }
        }
    }
    panic!("no matching NFLOG record within 5 s");
}

#[test]
fn a_logged_packet_is_read_back_with_prefix_interfaces_and_ports() {
    let ns = prepared();
    ns.run(|| {
        let lo = Netlink::open()
            .unwrap()
            .link_get("lo")
            .unwrap()
            .unwrap()
            .index;
        let mut log = Nflog::bind(GROUP, 128).unwrap();
        let rx = UdpSocket::bind("127.0.0.1:7070").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sport = tx.local_addr().unwrap().port();
        tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
        let r = wait_for(&mut log, |r| r.prefix == "x");
        assert_eq!(r.group, GROUP);
        assert_eq!(r.family, libc::AF_INET as u8);
        assert_eq!(r.hook, 3, "output");
        assert_eq!((r.indev, r.outdev), (None, Some(lo)));
        let p = r.packet.unwrap();
        let local = IpAddr::from(Ipv4Addr::LOCALHOST);
        assert_eq!((p.src, p.dst, p.protocol), (local, local, 17));
        assert_eq!(
            p.transport,
            Transport::Ports {
                src: sport,
                dst: 7070
            }
        );
        assert_eq!(
            p.to_string(),
            format!("127.0.0.1:{sport} -> 127.0.0.1:7070 udp")
        );

        // A connection the table drops: its SYN, logged before the drop.
        let _ = TcpStream::connect_timeout(
            &"127.0.0.1:7071".parse().unwrap(),
            Duration::from_millis(300),
        );
        let r = wait_for(&mut log, |r| r.prefix == "tcp drop");
        let p = r.packet.unwrap();
        assert_eq!(p.protocol, 6);
        assert!(
            matches!(p.transport, Transport::Ports { dst: 7071, .. }),
            "{p}"
        );
    })
    .unwrap();
}

#[test]
fn a_group_has_one_listener_until_its_socket_closes() {
    let ns = prepared();
    ns.run(|| {
        let first = Nflog::bind(GROUP, 128).unwrap();
        let err = Nflog::bind(GROUP, 128).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, NflogError::Bind { group: GROUP, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("group {GROUP}")), "{err}");
        // Another group is free.
        Nflog::bind(GROUP + 1, 128).unwrap();
        drop(first);
        let mut again = Nflog::bind(GROUP, 64).unwrap();
        // Nothing logged: the timeout returns an empty list.
        again.set_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(again.recv().unwrap().is_empty());
    })
    .unwrap();
}
