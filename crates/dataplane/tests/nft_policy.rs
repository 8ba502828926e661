//! The constructs the NetworkPolicy table adds to the typed nftables model (interface names
//! and their wildcards, the strict reverse-path check, ranges, counter, log, limit) against
//! the real kernel: loaded through rendered text + `nft -f` and through weft's own netlink
//! batch, the kernel holds the same listing and the same bytecode. Values nft would refuse
//! are refused before anything is sent. Every test works only inside namespaces it creates
//! (deleted in Drop).

mod common;

use common::{bytecode, ip, listing, nft_in, p, scoped};
use weft_dataplane::nft::{
    self, priority, Applier, Chain, ChainType, CmpOp, Family, Hook, L4Proto, Match, Policy, Rule,
    Selector, Stmt, Table, Value,
};
use weft_dataplane::Error;

/// Every new construct, each spelling of it (exact and wildcard names, `==` and `!=`, a
/// range of one port, a range with nft's protocol dependency, an address range).
fn policy_constructs() -> Table {
    let mut t = Table::new(Family::Ip, "weft_nftpolicy");
    t.add_chain(
        Chain::base(
            "prerouting",
            ChainType::Filter,
            Hook::Prerouting,
            priority::MANGLE,
            Policy::Accept,
        )
        .rule(
            Rule::new()
                .iifname_prefix("weft")
                .fib_saddr_iif_oif_missing()
                .counter()
                .log_group(2, "weft-spoof: ")
                .drop(),
        )
        .rule(Rule::new().jump("ingress")),
    );
    let m = Stmt::Match;
    t.add_chain(
        Chain::new("ingress")
            .rule(Rule::new().iifname("weft0").th_dport_range(80, 90).accept())
            .rule(Rule::new().oifname("eth0").th_dport_range(53, 53).accept())
            .rule(
                Rule::new()
                    .oifname_prefix("veth")
                    .iifname("abcdefghijklmno")
                    .counter()
                    .accept(),
            )
            .rule(
                Rule::new()
                    .stmt(m(Match::IfName {
                        out: true,
                        name: "weft".into(),
                        prefix: true,
                        op: CmpOp::Ne,
                    }))
                    .stmt(m(Match::IfName {
                        out: false,
                        name: "lo".into(),
                        prefix: false,
                        op: CmpOp::Ne,
                    }))
                    .stmt(m(Match::Range {
                        field: Selector::ThDport,
                        from: Value::Port(1000),
                        to: Value::Port(2000),
                        op: CmpOp::Ne,
                    }))
                    .accept(),
            )
            .rule(
                Rule::new()
                    .stmt(m(Match::Range {
                        field: Selector::TcpDport,
                        from: Value::Port(8000),
                        to: Value::Port(8080),
                        op: CmpOp::Eq,
                    }))
                    .stmt(m(Match::Range {
                        field: Selector::IpSaddr,
                        from: Value::Ipv4(ip("10.0.0.1")),
                        to: Value::Ipv4(ip("10.0.0.5")),
                        op: CmpOp::Eq,
                    }))
                    .counter()
                    .accept(),
            )
            // NetworkPolicy's ipBlock of everything: nft masks a /0 rather than leaving it
            // out, which `!=` needs.
            .rule(Rule::new().ip_saddr_ne(p("0.0.0.0/0")).drop())
            .rule(Rule::new().ip_daddr(p("0.0.0.0/0")).counter())
            .rule(
                Rule::new()
                    .l4proto(L4Proto::Udp)
                    .limit_per_second(10, 5)
                    .log_group(0, "")
                    .counter()
                    .drop(),
            )
            .rule(
                Rule::new()
                    .limit_per_second(1000, 20)
                    .log_group(65535, &"x".repeat(127))
                    .reject(),
            ),
    );
    t
}

#[test]
fn policy_constructs_list_the_same_through_nft_and_netlink() {
    let t = policy_constructs();
    let (a, b) = (scoped(), scoped());
    a.run(|| nft::apply(&t.render()))
        .unwrap()
        .expect("nft -f of the rendered table");
    b.run(|| nft::load(&t)).unwrap().expect("netlink batch");
    let (la, lb) = (listing(&a, &t), listing(&b, &t));
    for text in [
        "iifname \"weft*\" fib saddr . iif oif missing counter packets 0 bytes 0 log prefix \"weft-spoof: \" group 2 drop",
        "iifname \"weft0\" th dport 80-90 accept",
        "oifname \"eth0\" th dport 53 accept",
        "oifname != \"weft*\" iifname != \"lo\" th dport != 1000-2000 accept",
        "tcp dport 8000-8080 ip saddr 10.0.0.1-10.0.0.5 counter",
        "limit rate 10/second log group 0 counter packets 0 bytes 0 drop",
        "limit rate 1000/second burst 20 packets log prefix",
    ] {
        assert!(la.contains(text), "{text:?} not in\n{la}");
    }
    assert_eq!(la, lb);
    let (ba, bb) = (bytecode(&a, &t), bytecode(&b, &t));
    for text in [
        "[ meta load iifname => reg 1 ]",
        "[ cmp eq reg 1 0x74666577 ]",
        "[ fib saddr . iif oif present => reg 1 ]",
        "[ cmp gte reg 1 0x00005000 ]",
        "[ range neq reg 1 0x0000e803 0x0000d007 ]",
        "[ counter pkts 0 bytes 0 ]",
        "[ log prefix weft-spoof:  group 2 snaplen 0 qthreshold 0 ]",
        "[ limit rate 10/second burst 5 type packets flags 0x0 ]",
        "[ bitwise reg 1 = ( reg 1 & 0x00000000 ) ^ 0x00000000 ]",
    ] {
        assert!(
            ba.iter().any(|l| l.contains(text)),
            "{text:?} not in\n{ba:#?}"
        );
    }
    assert_eq!(ba, bb);
}

#[test]
fn values_nft_would_refuse_are_refused_before_anything_is_sent() {
    let ns = scoped();
    let mut t = policy_constructs();
    t.add_chain(
        Chain::new("bad")
            .rule(Rule::new().accept())
            .rule(Rule::new().log_group(1, "it's \"quoted\"").drop()),
    );
    let err = ns.run(|| nft::load(&t)).unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::NftRule { chain, index: 1, .. } if chain == "bad"),
        "{err}"
    );
    let err = ns.run(|| Applier::new().apply(&t)).unwrap().unwrap_err();
    assert!(err.to_string().contains("log prefix"), "{err}");
    // Nothing reached the kernel.
    let tables = nft_in(&ns, &["list", "tables"]);
    assert!(!tables.contains("weft_nftpolicy"), "{tables}");
}

/// A table counting UDP to 127.0.0.1 on output: a rule with a counter that sees it, one
/// without, one with a counter that does not.
fn counting() -> Table {
    let mut t = Table::new(Family::Ip, "weft_nftcount");
    t.add_chain(
        Chain::base(
            "output",
            ChainType::Filter,
            Hook::Output,
            priority::FILTER,
            Policy::Accept,
        )
        .rule(Rule::new().oifname("lo").l4proto(L4Proto::Udp).counter())
        .rule(Rule::new().oifname("lo"))
        .rule(Rule::new().l4proto(L4Proto::Tcp).counter().jump("tcp")),
    );
    t.add_chain(Chain::new("tcp").rule(Rule::new().counter().accept()));
    t.add_chain(Chain::new("empty"));
    t
}

#[test]
fn counters_are_read_back_per_chain_and_rule() {
    use std::net::UdpSocket;
    use weft_dataplane::nft::Counter;
    let ns = scoped();
    let t = counting();
    let mut ap = Applier::new().check_rules(true);
    ns.run(|| {
        let mut nl = weft_dataplane::Netlink::open().unwrap();
        let lo = nl.link_get("lo").unwrap().expect("lo").index;
        nl.link_set(lo).up().execute().unwrap();
        ap.apply(&t).unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            tx.send_to(&[0u8; 100], rx.local_addr().unwrap()).unwrap();
        }
    })
    .unwrap();
    let got = ns
        .run(|| nft::counters(Family::Ip, &t.name))
        .unwrap()
        .unwrap();
    let counted = Counter {
        packets: 3,
        bytes: 3 * (20 + 8 + 100),
    };
    let zero = Counter::default();
    assert_eq!(
        got["output"],
        vec![Some(counted), None, Some(zero)],
        "{got:?}"
    );
    assert_eq!(got["tcp"], vec![Some(zero)]);
    // A chain without rules has nothing to dump.
    assert!(!got.contains_key("empty"), "{got:?}");
    // The applier's rule check is not fooled by counted traffic.
    let r = ns.run(|| ap.apply(&t)).unwrap().unwrap();
    assert!(matches!(r, nft::Applied::Unchanged), "{r:?}");
    let err = ns
        .run(|| nft::counters(Family::Ip, "weft_no_such_table"))
        .unwrap()
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("weft_no_such_table"), "{err}");
}

/// Rules that each end in a counter once their matches passed, so the kernel's counters say
/// which rules a packet matched fully: what the simulator's trace lists.
fn traced() -> Table {
    use weft_dataplane::nft::{ct_state, DataType, Field, MarkOp, Set};
    let mut t = Table::new(Family::Ip, "weft_nftsim");
    t.add_set(
        Set::new("ports", vec![Field::Type(DataType::InetService)])
            .element(vec![Value::Port(6000)]),
    );
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
                .oifname_prefix("l")
                .th_dport_range(5000, 5010)
                .counter()
                .jump("range"),
        )
        .rule(
            Rule::new()
                .ip_daddr(p("127.0.0.0/8"))
                .oifname("lo")
                .counter()
                .mark_set(MarkOp::Or(0x10)),
        )
        .rule(
            Rule::new()
                .mark_bits(0x10, CmpOp::Eq, 0x10)
                .in_set(&[Selector::ThDport], "ports")
                .counter()
                .drop(),
        )
        .rule(Rule::new().iifname_prefix("weft").counter().drop())
        .rule(
            Rule::new()
                .ct_state(ct_state::NEW)
                .limit_per_second(1000, 1000)
                .counter()
                .accept(),
        ),
    );
    t.add_chain(
        Chain::new("range")
            .rule(Rule::new().th_dport(5005).counter().ret())
            .rule(Rule::new().counter().log_group(5, "weft-sim ")),
    );
    t
}

#[test]
fn the_simulator_traces_what_the_kernel_counts() {
    use std::net::UdpSocket;
    use weft_dataplane::nft::sim::{self, Outcome, Packet};
    let ns = scoped();
    let t = traced();
    ns.run(|| {
        let mut nl = weft_dataplane::Netlink::open().unwrap();
        let lo = nl.link_get("lo").unwrap().expect("lo").index;
        nl.link_set(lo).up().execute().unwrap();
        nft::load(&t).unwrap();
    })
    .unwrap();
    let read = || {
        ns.run(|| nft::counters(Family::Ip, &t.name))
            .unwrap()
            .unwrap()
    };
    for port in [5001, 5005, 6000, 7000] {
        let mut packet = Packet::new(ip("127.0.0.1"), ip("127.0.0.1")).udp(port);
        packet.oifname = Some("lo".into());
        let trace = sim::run(&t, "output", &mut packet).unwrap();
        let before = read();
        // A new socket each time: a new connection, `ct state new`.
        let sent = ns
            .run(|| {
                let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                tx.send_to(b"x", ("127.0.0.1", port)).map(|_| ())
            })
            .unwrap();
        let after = read();
        let mut counted = Vec::new();
        for (chain, rules) in &after {
            for (i, c) in rules.iter().enumerate() {
                let was = before[chain][i].map_or(0, |c| c.packets);
                if c.map_or(0, |c| c.packets) > was {
                    counted.push((chain.clone(), i));
                }
            }
        }
        let mut simulated: Vec<_> = trace
            .steps
            .iter()
            .map(|s| (s.chain.clone(), s.rule))
            .collect();
        simulated.sort();
        counted.sort();
        assert_eq!(simulated, counted, "port {port}: {trace:?}");
        // Dropped on output: the send fails (EPERM).
        assert_eq!(
            trace.outcome == Outcome::Accept,
            sent.is_ok(),
            "port {port}: {sent:?}"
        );
    }
}

/// A table with a plain set, a concatenated set and a verdict map, and chains with rules.
fn contents() -> Table {
    use weft_dataplane::nft::{DataType, ElemData, Field, Set, Verdict};
    let mut t = Table::new(Family::Ip, "weft_contents");
    t.add_set(
        Set::new("peers", vec![Field::Type(DataType::Ipv4Addr)])
            .element(vec![Value::Ipv4(ip("10.244.1.2"))])
            .element(vec![Value::Ipv4(ip("10.244.1.3"))]),
    );
    t.add_set(
        Set::new(
            "ports",
            vec![
                Field::Type(DataType::Ipv4Addr),
                Field::Type(DataType::InetProto),
                Field::Type(DataType::InetService),
            ],
        )
        .element(vec![
            Value::Ipv4(ip("10.244.1.2")),
            Value::Proto(L4Proto::Tcp),
            Value::Port(8080),
        ]),
    );
    t.add_set(
        Set::verdict_map("pods", vec![Field::Type(DataType::Ipv4Addr)])
            .map_element(
                vec![Value::Ipv4(ip("10.244.1.2"))],
                ElemData::Verdict(Verdict::Jump("profile".into())),
            )
            .map_element(
                vec![Value::Ipv4(ip("10.244.1.3"))],
                ElemData::Verdict(Verdict::Jump("profile".into())),
            ),
    );
    t.add_chain(
        Chain::base(
            "postrouting",
            ChainType::Filter,
            Hook::Postrouting,
            priority::FILTER,
            Policy::Accept,
        )
        .rule(Rule::new().vmap(&[Selector::IpDaddr], "pods")),
    );
    t.add_chain(
        Chain::new("profile")
            .rule(Rule::new().in_set(&[Selector::IpSaddr], "peers").accept())
            .rule(
                Rule::new()
                    .in_set(
                        &[Selector::IpDaddr, Selector::MetaL4proto, Selector::ThDport],
                        "ports",
                    )
                    .accept(),
            )
            .rule(Rule::new().counter().drop()),
    );
    t
}

#[test]
fn content_checks_repair_rules_and_elements_changed_by_hand() {
    let ns = scoped();
    let t = contents();
    let mut ap = Applier::new().check_contents(true);
    let apply = |ap: &mut Applier| ns.run(|| ap.apply(&t)).unwrap().unwrap();
    assert!(matches!(apply(&mut ap), nft::Applied::Whole));
    // Nothing changed: the check finds the kernel's table the same, elements and all.
    let r = apply(&mut ap);
    assert!(matches!(r, nft::Applied::Unchanged), "{r:?}");
    let whole = nft_in(&ns, &["list", "table", "ip", "weft_contents"]);
    let edits: [&[&str]; 5] = [
        &[
            "delete",
            "element",
            "ip",
            "weft_contents",
            "pods",
            "{ 10.244.1.3 }",
        ],
        &[
            "add",
            "element",
            "ip",
            "weft_contents",
            "peers",
            "{ 10.244.9.9 }",
        ],
        &[
            "delete",
            "element",
            "ip",
            "weft_contents",
            "ports",
            "{ 10.244.1.2 . tcp . 8080 }",
        ],
        &["flush", "chain", "ip", "weft_contents", "profile"],
        &["add", "rule", "ip", "weft_contents", "profile", "accept"],
    ];
    for edit in edits {
        nft_in(&ns, edit);
        let r = apply(&mut ap);
        match &r {
            nft::Applied::WholeAfterRefusal(why) => {
                assert!(why.to_string().contains("by hand"), "{edit:?}: {why}")
            }
            other => panic!("{edit:?} not noticed: {other:?}"),
        }
        assert_eq!(
            nft_in(&ns, &["list", "table", "ip", "weft_contents"]),
            whole,
            "{edit:?} repaired"
        );
        assert!(matches!(apply(&mut ap), nft::Applied::Unchanged));
    }
    // A restarted applier adopts the table an earlier one loaded only if it is unedited.
    nft_in(
        &ns,
        &[
            "delete",
            "element",
            "ip",
            "weft_contents",
            "peers",
            "{ 10.244.1.2 }",
        ],
    );
    let mut fresh = Applier::new().check_contents(true);
    let r = apply(&mut fresh);
    assert!(matches!(r, nft::Applied::WholeAfterRefusal(_)), "{r:?}");
    assert_eq!(
        nft_in(&ns, &["list", "table", "ip", "weft_contents"]),
        whole
    );
    let mut again = Applier::new().check_contents(true);
    assert!(matches!(apply(&mut again), nft::Applied::Unchanged));
}
