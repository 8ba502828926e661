//! The simulator, one construct at a time: each test builds the smallest table that uses it
//! and checks the verdict, the rules on the way and what changed in the packet.

use std::net::Ipv4Addr;

use super::*;
use crate::nft::{
    ct_state, priority, Chain, ChainType, DataType, Dnat, ElemData, Family, Field, Hook,
    Ipv4Prefix, Policy, Set,
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn pkt() -> Packet {
    Packet::new(ip("10.244.1.5"), ip("10.244.2.7")).tcp(80)
}

/// A table whose base chain `in` (policy `policy`) holds `rules`.
fn table(policy: Policy, rules: Vec<Rule>) -> Table {
    let mut t = Table::new(Family::Ip, "sim");
    let mut c = Chain::base(
        "in",
        ChainType::Filter,
        Hook::Forward,
        priority::FILTER,
        policy,
    );
    c.rules = rules;
    t.add_chain(c);
    t
}

fn step(chain: &str, rule: usize) -> Step {
    Step {
        chain: chain.into(),
        rule,
    }
}

/// Whether `rule` matches `packet`: it ends in `accept` in a chain whose policy is drop.
fn accepts(rule: Rule, packet: &mut Packet) -> bool {
    let t = table(Policy::Drop, vec![rule.accept()]);
    run(&t, "in", packet).unwrap().outcome == Outcome::Accept
}

#[test]
fn prefixes_match_addresses_and_slash_zero() {
    let p = &mut pkt();
    assert!(accepts(Rule::new().ip_saddr(net("10.244.0.0/16")), p));
    assert!(!accepts(Rule::new().ip_saddr(net("10.245.0.0/16")), p));
    assert!(accepts(Rule::new().ip_daddr(net("10.244.2.7")), p));
    assert!(accepts(
        Rule::new().ip_daddr_ne(net("10.244.2.0/25")),
        &mut Packet::new(ip("1.1.1.1"), ip("10.244.2.200"))
    ));
    assert!(!accepts(Rule::new().ip_daddr_ne(net("10.244.2.0/24")), p));
    assert!(accepts(Rule::new().ip_saddr(net("0.0.0.0/0")), p));
    assert!(!accepts(Rule::new().ip_saddr_ne(net("0.0.0.0/0")), p));
}

#[test]
fn protocols_and_ports_with_their_dependencies() {
    use crate::nft::L4Proto::*;
    let p = &mut pkt();
    assert!(accepts(Rule::new().l4proto(Tcp).th_dport(80), p));
    assert!(!accepts(Rule::new().l4proto(Udp), p));
    let tcp_dport = |op, port| {
        Rule::new().stmt(Stmt::Match(Match::Value {
            field: Selector::TcpDport,
            op,
            value: Value::Port(port),
        }))
    };
    assert!(accepts(tcp_dport(CmpOp::Eq, 80), p));
    // `tcp dport != 53` on UDP: nft's `meta l4proto tcp` dependency fails first.
    let udp = &mut pkt().udp(80);
    assert!(!accepts(tcp_dport(CmpOp::Ne, 53), udp));
    // A packet without ports matches no port rule, `!=` neither; another protocol is
    // `!= tcp`.
    let icmp = &mut Packet::new(ip("10.0.0.1"), ip("10.0.0.2"));
    assert!(!accepts(Rule::new().th_dport(80), icmp));
    assert!(!accepts(
        Rule::new().stmt(Stmt::Match(Match::Value {
            field: Selector::ThDport,
            op: CmpOp::Ne,
            value: Value::Port(80),
        })),
        icmp
    ));
    assert!(accepts(
        Rule::new().stmt(Stmt::Match(Match::Value {
            field: Selector::MetaL4proto,
            op: CmpOp::Ne,
            value: Value::Proto(Tcp),
        })),
        icmp
    ));
}

#[test]
fn port_ranges() {
    let p = &mut pkt().tcp(85);
    assert!(accepts(Rule::new().th_dport_range(80, 90), p));
    assert!(accepts(Rule::new().th_dport_range(85, 85), p));
    assert!(!accepts(Rule::new().th_dport_range(86, 90), p));
    let ne = Rule::new().stmt(Stmt::Match(Match::Range {
        field: Selector::ThDport,
        from: Value::Port(80),
        to: Value::Port(90),
        op: CmpOp::Ne,
    }));
    assert!(!accepts(ne.clone(), p));
    assert!(accepts(ne, &mut pkt().tcp(91)));
    let wrong = Rule::new().stmt(Stmt::Match(Match::Range {
        field: Selector::ThDport,
        from: Value::Ipv4(ip("1.1.1.1")),
        to: Value::Ipv4(ip("1.1.1.2")),
        op: CmpOp::Eq,
    }));
    let t = table(Policy::Drop, vec![wrong]);
    let e = run(&t, "in", p).unwrap_err();
    assert!(matches!(e, SimError::Invalid { rule: 0, .. }), "{e}");
}

#[test]
fn interface_names_exact_prefix_and_missing() {
    let p = &mut pkt().iif("weft1a2b").oif("eth0");
    assert!(accepts(Rule::new().iifname_prefix("weft"), p));
    assert!(!accepts(Rule::new().iifname("weft"), p));
    assert!(accepts(Rule::new().iifname("weft1a2b").oifname("eth0"), p));
    assert!(!accepts(Rule::new().oifname_prefix("weft"), p));
    let not_weft = Rule::new().stmt(Stmt::Match(Match::IfName {
        out: true,
        name: "weft".into(),
        prefix: true,
        op: CmpOp::Ne,
    }));
    assert!(accepts(not_weft.clone(), p));
    // No output interface reads as an empty name: not "weft*", so `!=` matches.
    let none = &mut pkt();
    assert!(accepts(not_weft, none));
    assert!(!accepts(Rule::new().oifname_prefix("weft"), none));
}

#[test]
fn marks_ct_state_and_fib() {
    let p = &mut pkt();
    p.mark = 0x4001;
    assert!(accepts(Rule::new().mark_bits(0x4000, CmpOp::Eq, 0x4000), p));
    assert!(!accepts(Rule::new().mark_bits(0x4000, CmpOp::Eq, 0), p));
    assert!(accepts(
        Rule::new().ct_state(ct_state::NEW | ct_state::INVALID),
        p
    ));
    p.ct_state = ct_state::ESTABLISHED;
    assert!(!accepts(Rule::new().ct_state(ct_state::NEW), p));
    assert!(!accepts(Rule::new().fib_saddr_local(), p));
    assert!(!accepts(Rule::new().fib_saddr_iif_oif_missing(), p));
    p.saddr_local = true;
    p.rpf_missing = true;
    assert!(accepts(Rule::new().fib_saddr_local(), p));
    assert!(accepts(Rule::new().fib_saddr_iif_oif_missing(), p));
}

/// The policy table's shape: allowed (source, protocol, port) triples in a set.
fn with_allowed(mut t: Table) -> Table {
    let key = vec![
        Field::Type(DataType::Ipv4Addr),
        Field::Type(DataType::InetProto),
        Field::Type(DataType::InetService),
    ];
    t.add_set(Set::new("allowed", key).element(vec![
        Value::Ipv4(ip("10.244.1.5")),
        Value::Proto(crate::nft::L4Proto::Tcp),
        Value::Port(80),
    ]));
    t
}

#[test]
fn set_lookups_concatenated_and_negated() {
    use Selector::*;
    let key = [IpSaddr, MetaL4proto, ThDport];
    let t = with_allowed(table(
        Policy::Drop,
        vec![Rule::new().in_set(&key, "allowed").accept()],
    ));
    assert_eq!(run(&t, "in", &mut pkt()).unwrap().outcome, Outcome::Accept);
    assert_eq!(
        run(&t, "in", &mut pkt().tcp(81)).unwrap().outcome,
        Outcome::Drop
    );
    let t = with_allowed(table(
        Policy::Accept,
        vec![Rule::new().not_in_set(&key, "allowed").drop()],
    ));
    assert_eq!(run(&t, "in", &mut pkt()).unwrap().outcome, Outcome::Accept);
    assert_eq!(
        run(&t, "in", &mut pkt().udp(80)).unwrap().outcome,
        Outcome::Drop
    );
    // ICMP has no port: the key cannot be loaded, the rule does not match either way.
    let icmp = &mut Packet::new(ip("10.244.1.5"), ip("10.244.2.7"));
    assert_eq!(run(&t, "in", icmp).unwrap().outcome, Outcome::Accept);
    let missing = table(Policy::Drop, vec![Rule::new().in_set(&[IpSaddr], "nope")]);
    let e = run(&missing, "in", &mut pkt()).unwrap_err();
    assert_eq!(
        e,
        SimError::NoSuchSet {
            chain: "in".into(),
            rule: 0,
            set: "nope".into()
        }
    );
}

#[test]
fn verdict_maps_named_masked_and_inline() {
    use Selector::*;
    let mut t = table(
        Policy::Drop,
        vec![
            Rule::new().vmap(&[IpDaddr, MetaL4proto, ThDport], "svc"),
            Rule::new().vmap_bits(MetaMark, 0xff00, "by_mark"),
            Rule::new().stmt(Stmt::AnonVmap {
                key: ThDport,
                arms: vec![(Value::Port(443), Verdict::Accept)],
            }),
        ],
    );
    let key = vec![
        Field::Type(DataType::Ipv4Addr),
        Field::Type(DataType::InetProto),
        Field::Type(DataType::InetService),
    ];
    t.add_set(Set::verdict_map("svc", key).map_element(
        vec![
            Value::Ipv4(ip("10.96.0.1")),
            Value::Proto(crate::nft::L4Proto::Tcp),
            Value::Port(80),
        ],
        ElemData::Verdict(Verdict::Accept),
    ));
    t.add_set(
        Set::verdict_map("by_mark", vec![Field::Type(DataType::Mark)])
            .map_element(vec![Value::Int(0x100)], ElemData::Verdict(Verdict::Accept)),
    );
    let hit = run(
        &t,
        "in",
        &mut Packet::new(ip("1.1.1.1"), ip("10.96.0.1")).tcp(80),
    )
    .unwrap();
    assert_eq!(
        (hit.outcome, hit.steps),
        (Outcome::Accept, vec![step("in", 0)])
    );
    let mut marked = pkt();
    marked.mark = 0x1ff;
    let masked = run(&t, "in", &mut marked).unwrap();
    assert_eq!(masked.steps, vec![step("in", 1)]);
    let inline = run(&t, "in", &mut pkt().tcp(443)).unwrap();
    assert_eq!(inline.steps, vec![step("in", 2)]);
    let miss = run(&t, "in", &mut pkt()).unwrap();
    assert_eq!((miss.outcome, miss.by_policy), (Outcome::Drop, true));
    assert!(miss.steps.is_empty());
}

#[test]
fn mark_and_ct_mark_statements_change_the_packet() {
    let mut t = table(
        Policy::Accept,
        vec![
            Rule::new().mark_set(MarkOp::Or(0x4000)),
            Rule::new().mark_set(MarkOp::Xor(0x1)),
            Rule::new().mark_set(MarkOp::And(0xffff)),
            Rule::new().ct_mark_set_map(&[Selector::IpDaddr], "marks"),
        ],
    );
    t.add_set(
        Set::data_map(
            "marks",
            vec![Field::Type(DataType::Ipv4Addr)],
            vec![Field::Type(DataType::Mark)],
        )
        .map_element(
            vec![Value::Ipv4(ip("10.244.2.7"))],
            ElemData::Values(vec![Value::Int(7)]),
        ),
    );
    let p = &mut pkt();
    p.mark = 0x1_0000;
    let tr = run(&t, "in", p).unwrap();
    assert_eq!((p.mark, p.ct_mark), (0x4001, 7));
    assert_eq!(tr.steps.len(), 4);
    assert!(tr.by_policy);
}

#[test]
fn counter_log_and_limit_do_not_change_the_verdict() {
    let r = Rule::new()
        .limit_per_second(1, 1)
        .counter()
        .log_group(1, "x");
    assert!(accepts(r, &mut pkt()));
}

#[test]
fn jump_returns_goto_does_not() {
    let mut t = table(
        Policy::Drop,
        vec![
            Rule::new().jump("a"),
            Rule::new().th_dport(80).goto("b"),
            Rule::new().accept(),
        ],
    );
    // a: falls off its end (back to in's rule 1), or returns early for port 22.
    t.add_chain(
        Chain::new("a")
            .rule(Rule::new().th_dport(22).ret())
            .rule(Rule::new().counter()),
    );
    // b: jumps to c, which returns; then falls off: goto does not come back, so the base
    // chain's policy decides.
    t.add_chain(Chain::new("b").rule(Rule::new().jump("c")));
    t.add_chain(Chain::new("c").rule(Rule::new().ret()));
    let tr = run(&t, "in", &mut pkt()).unwrap();
    assert_eq!(
        tr.steps,
        vec![
            step("in", 0),
            step("a", 1),
            step("in", 1),
            step("b", 0),
            step("c", 0)
        ]
    );
    assert_eq!((tr.outcome, tr.by_policy), (Outcome::Drop, true));
    let tr = run(&t, "in", &mut pkt().tcp(22)).unwrap();
    assert_eq!(tr.steps, vec![step("in", 0), step("a", 0), step("in", 2)]);
    assert_eq!((tr.outcome, tr.by_policy), (Outcome::Accept, false));
}

#[test]
fn return_in_the_base_chain_gives_its_policy() {
    let t = table(Policy::Accept, vec![Rule::new().ret(), Rule::new().drop()]);
    let tr = run(&t, "in", &mut pkt()).unwrap();
    assert_eq!((tr.outcome, tr.by_policy), (Outcome::Accept, true));
    assert_eq!(tr.steps, vec![step("in", 0)]);
}

#[test]
fn drop_and_reject_end_everything() {
    let mut t = table(
        Policy::Accept,
        vec![Rule::new().jump("a"), Rule::new().accept()],
    );
    t.add_chain(
        Chain::new("a")
            .rule(Rule::new().th_dport(80).reject())
            .rule(Rule::new().drop()),
    );
    let tr = run(&t, "in", &mut pkt()).unwrap();
    assert_eq!(tr.outcome, Outcome::Reject);
    assert_eq!(tr.steps, vec![step("in", 0), step("a", 0)]);
    assert_eq!(
        run(&t, "in", &mut pkt().tcp(81)).unwrap().outcome,
        Outcome::Drop
    );
}

#[test]
fn update_adds_to_a_dynamic_set_for_later_lookups() {
    use Selector::*;
    let mut t = table(
        Policy::Drop,
        vec![
            Rule::new().update("seen", &[IpSaddr]),
            Rule::new().in_set(&[IpSaddr], "seen").accept(),
        ],
    );
    t.add_set(Set::new("seen", vec![Field::Type(DataType::Ipv4Addr)]).dynamic_with_timeout(5));
    assert_eq!(run(&t, "in", &mut pkt()).unwrap().outcome, Outcome::Accept);
}

#[test]
fn what_cannot_be_simulated_is_an_error() {
    let dnat = table(
        Policy::Accept,
        vec![Rule::new().dnat_to(ip("10.0.0.1"), Some(80))],
    );
    let e = run(&dnat, "in", &mut pkt()).unwrap_err();
    assert_eq!(
        e,
        SimError::Unsupported {
            chain: "in".into(),
            rule: 0,
            stmt: Stmt::Dnat(Dnat::To {
                addr: ip("10.0.0.1"),
                port: Some(80)
            })
            .to_string()
        }
    );
    assert!(e.to_string().contains("dnat ip to 10.0.0.1:80"), "{e}");
    let masq = table(Policy::Accept, vec![Rule::new().masquerade(false)]);
    assert!(run(&masq, "in", &mut pkt())
        .unwrap_err()
        .to_string()
        .contains("masquerade"));
    let random = table(
        Policy::Accept,
        vec![Rule::new().numgen_vmap(vec![Verdict::Accept])],
    );
    let e = run(&random, "in", &mut pkt()).unwrap_err();
    assert!(e.to_string().contains("numgen"), "{e}");
    let to_nowhere = table(Policy::Accept, vec![Rule::new().jump("nowhere")]);
    let e = run(&to_nowhere, "in", &mut pkt()).unwrap_err();
    assert_eq!(e, SimError::NoSuchChain("nowhere".into()));
    assert_eq!(
        run(&to_nowhere, "out", &mut pkt()).unwrap_err(),
        SimError::NoSuchChain("out".into())
    );
    let mut regular = to_nowhere.clone();
    regular.add_chain(Chain::new("r"));
    assert_eq!(
        run(&regular, "r", &mut pkt()).unwrap_err(),
        SimError::NotABaseChain("r".into())
    );
    let bits_on_address = table(
        Policy::Accept,
        vec![Rule::new().bits(Selector::IpSaddr, 0xff, CmpOp::Eq, 1)],
    );
    let e = run(&bits_on_address, "in", &mut pkt()).unwrap_err();
    assert!(matches!(e, SimError::Invalid { .. }), "{e}");
}

#[test]
fn loops_and_deep_jumps_are_errors_not_hangs() {
    let mut gotos = table(Policy::Accept, vec![Rule::new().goto("a")]);
    gotos.add_chain(Chain::new("a").rule(Rule::new().goto("b")));
    gotos.add_chain(Chain::new("b").rule(Rule::new().goto("a")));
    assert!(matches!(
        run(&gotos, "in", &mut pkt()).unwrap_err(),
        SimError::Loop(_)
    ));
    let mut jumps = table(Policy::Accept, vec![Rule::new().jump("a")]);
    jumps.add_chain(Chain::new("a").rule(Rule::new().jump("a")));
    assert_eq!(
        run(&jumps, "in", &mut pkt()).unwrap_err(),
        SimError::TooDeep("a".into())
    );
}
