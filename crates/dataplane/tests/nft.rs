//! The typed nftables model against the real kernel: the same model loaded through rendered
//! text + `nft -f` (namespace A) and through weft's own netlink batch (namespace B) must list
//! identically with `nft list table`, for every expression and object kind; a refused batch
//! changes nothing and names its message; the applier's incremental updates add up to a whole
//! load. Every test works only inside namespaces it creates (deleted in Drop).

mod common;

use common::{bytecode, ip, listing, nft_in, p, scoped};
use weft_dataplane::nft::{
    self, ct_state, priority, Applied, Applier, Chain, ChainType, CmpOp, DataType, Elem, ElemData,
    Family, Field, Hook, L4Proto, MarkOp, Policy, Rule, Selector, Set, Table, Tx, Value, Verdict,
    WholeLoad,
};
use weft_dataplane::ScopedNetNs;

/// A table with every object and statement kind the Service proxy uses.
fn every_kind() -> Table {
    use Selector::*;
    let mut t = Table::new(Family::Ip, "weft_nfttest").comment("every kind");
    t.add_set(
        Set::new("nodeport_ips", vec![Field::Type(DataType::Ipv4Addr)])
            .element(vec![Value::Ipv4(ip("172.20.0.2"))]),
    );
    let svc = vec![
        Field::Type(DataType::Ipv4Addr),
        Field::Type(DataType::InetProto),
        Field::Type(DataType::InetService),
    ];
    t.add_set(
        Set::verdict_map("service_ips", svc)
            .map_element(
                vec![
                    Value::Ipv4(ip("10.96.0.1")),
                    Value::Proto(L4Proto::Tcp),
                    Value::Port(80),
                ],
                ElemData::Verdict(Verdict::Goto("svc-a".into())),
            )
            .map_element(
                vec![
                    Value::Ipv4(ip("10.96.0.10")),
                    Value::Proto(L4Proto::Udp),
                    Value::Port(53),
                ],
                ElemData::Verdict(Verdict::Jump("svc-b".into())),
            ),
    );
    t.add_set(
        Set::verdict_map(
            "service_nodeports",
            vec![
                Field::Type(DataType::InetProto),
                Field::Type(DataType::InetService),
            ],
        )
        .map_element(
            vec![Value::Proto(L4Proto::Tcp), Value::Port(30080)],
            ElemData::Verdict(Verdict::Goto("reject_chain".into())),
        ),
    );
    t.add_set(
        Set::new(
            "hairpin",
            vec![
                Field::Type(DataType::Ipv4Addr),
                Field::Type(DataType::Ipv4Addr),
            ],
        )
        .element(vec![
            Value::Ipv4(ip("10.244.0.5")),
            Value::Ipv4(ip("10.244.0.5")),
        ]),
    );
    t.add_set(
        Set::data_map(
            "backends",
            vec![Field::Typeof(CtMark)],
            vec![Field::Typeof(IpDaddr), Field::Typeof(TcpDport)],
        )
        .map_element(
            vec![Value::Int(18169856)],
            ElemData::Values(vec![Value::Ipv4(ip("10.244.0.8")), Value::Port(80)]),
        )
        .map_element(
            vec![Value::Int(18169857)],
            ElemData::Values(vec![Value::Ipv4(ip("10.244.1.8")), Value::Port(8080)]),
        ),
    );
    // The proxy's dispatch: a mark per frontend, then a backend by mark . random index.
    t.add_set(
        Set::data_map(
            "frontends",
            vec![
                Field::Type(DataType::Ipv4Addr),
                Field::Type(DataType::InetProto),
                Field::Type(DataType::InetService),
            ],
            vec![Field::Type(DataType::Mark)],
        )
        .map_element(
            vec![
                Value::Ipv4(ip("10.96.0.1")),
                Value::Proto(L4Proto::Tcp),
                Value::Port(80),
            ],
            ElemData::Values(vec![Value::Int(0x4080_0001)]),
        ),
    );
    t.add_set(
        Set::data_map(
            "picks",
            vec![
                Field::Typeof(CtMark),
                Field::Typeof(Numgen {
                    modulus: 4096,
                    offset: 0,
                }),
            ],
            vec![Field::Typeof(IpDaddr), Field::Typeof(TcpDport)],
        )
        .map_element(
            vec![Value::Int(0x4080_0001), Value::Int(1)],
            ElemData::Values(vec![Value::Ipv4(ip("10.244.0.8")), Value::Port(80)]),
        ),
    );
    t.add_set(
        Set::verdict_map("counts", vec![Field::Type(DataType::Mark)])
            .map_element(vec![Value::Int(0)], ElemData::Verdict(Verdict::Drop))
            .map_element(
                vec![Value::Int(2 << 18)],
                ElemData::Verdict(Verdict::Goto("pick_2".into())),
            ),
    );
    t.add_chain(
        Chain::new("pick_2")
            .rule(Rule::new().l4proto(L4Proto::Tcp).dnat_map(
                &[
                    CtMark,
                    Numgen {
                        modulus: 2,
                        offset: 0,
                    },
                ],
                "picks",
            ))
            .rule(Rule::new().l4proto(L4Proto::Sctp).dnat_map(
                &[
                    CtMark,
                    Numgen {
                        modulus: 2,
                        offset: 0,
                    },
                ],
                "picks",
            )),
    );
    t.add_chain(
        Chain::new("frontend")
            .rule(
                Rule::new()
                    .bits(CtMark, 0xc000_0000, CmpOp::Eq, 0x4000_0000)
                    .goto("pick_2"),
            )
            .rule(Rule::new().vmap_bits(CtMark, 0x3ffc_0000, "counts")),
    );
    t.add_set(Set::new("aff", vec![Field::Type(DataType::Ipv4Addr)]).dynamic_with_timeout(5));
    let mut timed = Set::new("timed", vec![Field::Type(DataType::Ipv4Addr)]);
    timed.timeout = Some(3600);
    timed.elements.insert(
        vec![Value::Ipv4(ip("192.0.2.1"))],
        Elem::default().timeout(7200),
    );
    timed
        .elements
        .insert(vec![Value::Ipv4(ip("192.0.2.2"))], Elem::default());
    t.add_set(timed);
    t.add_set(
        Set::new("marks", vec![Field::Type(DataType::Mark)]).element(vec![Value::Int(0x4000)]),
    );
    t.add_set(
        Set::new("ports", vec![Field::Type(DataType::InetService)]).element(vec![Value::Port(443)]),
    );
    t.add_set(
        Set::new("protos", vec![Field::Type(DataType::InetProto)])
            .element(vec![Value::Proto(L4Proto::Sctp)]),
    );

    let base = |name: &str, kind, hook, prio| Chain::base(name, kind, hook, prio, Policy::Accept);
    t.add_chain(
        base(
            "nat_prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            priority::DSTNAT,
        )
        .rule(Rule::new().jump("services")),
    );
    t.add_chain(
        base("nat_output", ChainType::Nat, Hook::Output, priority::DSTNAT)
            .rule(Rule::new().jump("services")),
    );
    t.add_chain(
        base(
            "nat_postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            priority::SRCNAT,
        )
        .rule(Rule::new().jump("masquerading")),
    );
    t.add_chain(
        base(
            "filter_input",
            ChainType::Filter,
            Hook::Input,
            priority::FILTER,
        )
        .rule(Rule::new().ct_state(ct_state::NEW).jump("endpoints_check"))
        .rule(
            Rule::new()
                .ct_state(ct_state::NEW)
                .in_set(&[IpDaddr], "nodeport_ips")
                .vmap(&[MetaL4proto, ThDport], "service_nodeports"),
        )
        .rule(
            Rule::new()
                .ct_state(ct_state::ESTABLISHED | ct_state::RELATED)
                .accept(),
        ),
    );
    t.add_chain(
        Chain::new("masquerading")
            .rule(
                Rule::new()
                    .in_set(&[IpSaddr, IpDaddr], "hairpin")
                    .masquerade(true),
            )
            .rule(Rule::new().mark_bits(0x4000, CmpOp::Eq, 0).ret())
            .rule(Rule::new().mark_set(MarkOp::Xor(0x4000)))
            .rule(Rule::new().masquerade(true))
            .rule(Rule::new().masquerade(false)),
    );
    t.add_chain(Chain::new("mark_for_masquerade").rule(Rule::new().mark_set(MarkOp::Or(0x4000))));
    t.add_chain(
        Chain::new("services")
            .rule(Rule::new().vmap(&[IpDaddr, MetaL4proto, ThDport], "service_ips"))
            .rule(
                Rule::new()
                    .in_set(&[IpDaddr], "nodeport_ips")
                    .vmap(&[MetaL4proto, ThDport], "service_nodeports"),
            )
            .rule(
                Rule::new()
                    .ct_mark_set_map(&[IpDaddr, MetaL4proto, ThDport], "frontends")
                    .goto("frontend"),
            ),
    );
    t.add_chain(
        Chain::new("endpoints_check").rule(Rule::new().not_in_set(&[IpSaddr], "aff").ret()),
    );
    t.add_chain(Chain::new("reject_chain").rule(Rule::new().reject()));
    t.add_chain(
        Chain::new("backend_dnat")
            .rule(
                Rule::new()
                    .l4proto(L4Proto::Tcp)
                    .dnat_map(&[CtMark], "backends"),
            )
            .rule(
                Rule::new()
                    .l4proto(L4Proto::Udp)
                    .dnat_map(&[CtMark], "backends"),
            ),
    );
    t.add_chain(
        Chain::new("ep-a")
            .rule(Rule::new().update("aff", &[IpSaddr]))
            .rule(
                Rule::new()
                    .l4proto(L4Proto::Tcp)
                    .dnat_to(ip("10.244.0.9"), Some(80)),
            )
            .rule(Rule::new().dnat_to(ip("10.244.0.10"), None)),
    );
    t.add_chain(
        Chain::new("svc-a")
            .rule(
                Rule::new()
                    .ip_saddr_ne(p("10.244.0.0/16"))
                    .jump("mark_for_masquerade"),
            )
            .rule(Rule::new().ip_saddr(p("10.244.0.0/16")).goto("ep-a"))
            .rule(
                Rule::new()
                    .ip_saddr(p("10.240.0.0/12"))
                    .ip_daddr(p("10.96.0.1"))
                    .accept(),
            )
            .rule(Rule::new().ip_daddr_ne(p("10.96.0.0/20")).drop())
            .rule(Rule::new().fib_saddr_local().jump("mark_for_masquerade"))
            .rule(Rule::new().in_set(&[IpSaddr], "aff").goto("ep-a"))
            .rule(
                Rule::new()
                    .in_set(&[MetaMark], "marks")
                    .in_set(&[ThDport], "ports")
                    .in_set(&[MetaL4proto], "protos")
                    .accept(),
            )
            .rule(Rule::new().l4proto(L4Proto::Tcp).th_dport(8080).accept())
            .rule(
                Rule::new()
                    .ct_mark_set_numgen(2, 18169856)
                    .goto("backend_dnat"),
            )
            .rule(Rule::new().numgen_vmap(vec![
                Verdict::Goto("ep-a".into()),
                Verdict::Goto("reject_chain".into()),
            ])),
    );
    t.add_chain(
        Chain::new("svc-b")
            .rule(
                Rule::new()
                    .l4proto(L4Proto::Udp)
                    .dnat_to(ip("10.244.1.9"), Some(5353)),
            )
            .rule(Rule::new().drop()),
    );
    t
}

#[test]
fn every_kind_lists_the_same_through_nft_and_netlink() {
    let t = every_kind();
    let (a, b) = (scoped(), scoped());
    a.run(|| nft::apply(&t.render()))
        .unwrap()
        .expect("nft -f of the rendered table");
    b.run(|| nft::load(&t)).unwrap().expect("netlink batch");
    let (la, lb) = (listing(&a, &t), listing(&b, &t));
    assert!(la.contains("numgen random mod 2 vmap"), "{la}");
    assert!(la.contains("typeof ct mark : ip daddr . tcp dport"), "{la}");
    assert_eq!(la, lb);
    assert_eq!(bytecode(&a, &t), bytecode(&b, &t));
    // The comment is carried too.
    assert!(nft_in(&b, &["list", "table", "ip", &t.name]).contains("comment \"every kind\""));
}

/// The listing's sets, maps and chains sorted: an incrementally updated table lists a
/// recreated set after the others (kernel order is creation order), with the same meaning.
fn sorted_listing(ns: &ScopedNetNs, t: &Table) -> Vec<String> {
    let text = listing(ns, t);
    let text = text
        .trim_end()
        .strip_suffix('}')
        .unwrap_or(&text)
        .trim_end();
    // The applier's digest set is its own (not in the model, which `nft -f` loads).
    let mut blocks: Vec<String> = text
        .split("\n\n")
        .map(|b| b.replace("table ip weft_nfttest {\n", ""))
        .filter(|b| !b.starts_with(&format!("\tset {}", nft::DIGEST_SET)))
        .collect();
    blocks.sort();
    blocks
}

#[test]
fn a_refused_batch_changes_nothing_and_names_its_message() {
    let t = every_kind();
    let b = scoped();
    b.run(|| nft::load(&t)).unwrap().unwrap();
    let before = listing(&b, &t);
    let mut bad = t.clone();
    bad.add_chain(Chain::new("svc-c").rule(Rule::new().jump("no-such-chain")));
    let err = b.run(|| nft::load(&bad)).unwrap().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("adding rule to chain ip weft_nfttest svc-c"),
        "{text}"
    );
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{text}");
    // The batch deleted and re-created the table before the bad rule: none of it happened.
    assert_eq!(listing(&b, &t), before);
}

/// The table after one Service's change: its chain rewritten, one chain gone, one new, map
/// elements changed, the affinity set recreated with another timeout.
fn changed(t: &Table) -> Table {
    let mut t = t.clone();
    let svc_b = t.chains.get_mut("svc-b").unwrap();
    svc_b.rules = vec![Rule::new()
        .l4proto(L4Proto::Udp)
        .dnat_to(ip("10.244.2.9"), Some(5353))];
    t.add_chain(Chain::new("svc-c").rule(Rule::new().goto("svc-b")));
    t.chains.remove("ep-a");
    let svc_a = t.chains.get_mut("svc-a").unwrap();
    svc_a.rules.retain(|r| !r.chain_refs().any(|c| c == "ep-a"));
    let m = t.sets.get_mut("service_ips").unwrap();
    m.elements.insert(
        vec![
            Value::Ipv4(ip("10.96.0.7")),
            Value::Proto(L4Proto::Tcp),
            Value::Port(443),
        ],
        Elem::data(ElemData::Verdict(Verdict::Goto("svc-c".into()))),
    );
    m.elements.insert(
        vec![
            Value::Ipv4(ip("10.96.0.10")),
            Value::Proto(L4Proto::Udp),
            Value::Port(53),
        ],
        Elem::data(ElemData::Verdict(Verdict::Goto("svc-b".into()))),
    );
    let backends = t.sets.get_mut("backends").unwrap();
    backends.elements.remove(&vec![Value::Int(18169857)]);
    t.sets.get_mut("aff").unwrap().timeout = Some(10);
    t.chains
        .get_mut("endpoints_check")
        .unwrap()
        .rules
        .push(Rule::new().update("aff", &[Selector::IpSaddr]));
    t
}

#[test]
fn incremental_updates_add_up_to_a_whole_load() {
    let (v1, v2) = (every_kind(), changed(&every_kind()));
    let (a, b) = (scoped(), scoped());
    a.run(|| nft::apply(&v2.render())).unwrap().unwrap();
    let mut ap = Applier::new();
    b.run(|| {
        assert!(matches!(ap.apply(&v1).unwrap(), Applied::Whole));
        assert!(matches!(ap.apply(&v1).unwrap(), Applied::Unchanged));
        match ap.apply(&v2).unwrap() {
            Applied::Incremental(n) => assert!(n > 5, "{n} messages"),
            other => panic!("expected an incremental update, got {other:?}"),
        }
    })
    .unwrap();
    assert_eq!(sorted_listing(&a, &v2), sorted_listing(&b, &v2));
    // And back again.
    b.run(|| assert!(matches!(ap.apply(&v1).unwrap(), Applied::Incremental(_))))
        .unwrap();
    let c = scoped();
    c.run(|| nft::apply(&v1.render())).unwrap().unwrap();
    assert_eq!(sorted_listing(&c, &v1), sorted_listing(&b, &v1));
}

#[test]
fn a_table_changed_behind_our_back_is_reloaded_whole() {
    let (v1, v2) = (every_kind(), changed(&every_kind()));
    let (a, b) = (scoped(), scoped());
    a.run(|| nft::apply(&v2.render())).unwrap().unwrap();
    let mut ap = Applier::new().whole_loads(WholeLoad::Tool);
    b.run(|| ap.apply(&v1).unwrap()).unwrap();
    // Someone deletes the element our update would delete: the update is refused.
    nft_in(
        &b,
        &[
            "delete",
            "element",
            "ip",
            "weft_nfttest",
            "backends",
            "{ 18169857 }",
        ],
    );
    match b.run(|| ap.apply(&v2).unwrap()).unwrap() {
        Applied::WholeAfterRefusal(e) => {
            assert!(e.to_string().contains("deleting elements from set"), "{e}")
        }
        other => panic!("expected a whole reload, got {other:?}"),
    }
    assert_eq!(sorted_listing(&a, &v2), sorted_listing(&b, &v2));
    // Someone deletes the table: the next update notices before sending.
    nft_in(&b, &["delete", "table", "ip", "weft_nfttest"]);
    let r = b.run(|| ap.apply(&v1).unwrap()).unwrap();
    assert!(matches!(r, Applied::WholeAfterRefusal(_)), "{r:?}");
    // A new applier (a restarted agent) finds the table it would load and keeps it.
    let mut again = Applier::new();
    let r = b.run(|| again.apply(&v1).unwrap()).unwrap();
    assert!(matches!(r, Applied::Unchanged), "{r:?}");
    let r = b.run(|| again.apply(&v2).unwrap()).unwrap();
    assert!(matches!(r, Applied::Incremental(_)), "{r:?}");
    assert_eq!(sorted_listing(&a, &v2), sorted_listing(&b, &v2));
}

#[test]
fn a_tx_recreates_a_redeclared_set_and_its_last_word_on_an_element_wins() {
    let v1 = every_kind();
    let (a, b) = (scoped(), scoped());
    let mut ap = Applier::new();
    b.run(|| ap.apply(&v1).unwrap()).unwrap();
    let mut tx = Tx::new();
    // The affinity set gets another timeout: ep-a and svc-a use it, and only ep-a is
    // rewritten by the Tx; svc-a must get its rules back around the new set.
    tx.add_set(Set::new("aff", vec![Field::Type(DataType::Ipv4Addr)]).dynamic_with_timeout(9));
    let mut ep = v1.chains["ep-a"].clone();
    ep.rules.pop();
    tx.put_chain(ep);
    // One Service's change deletes an element, another's puts it back: it stays.
    let kept = vec![Value::Ipv4(ip("10.244.0.5")), Value::Ipv4(ip("10.244.0.5"))];
    tx.delete_element("hairpin", kept.clone())
        .put_element("hairpin", kept, Elem::default());
    // And the other way round: put, then deleted.
    let gone = vec![Value::Ipv4(ip("10.244.9.9")), Value::Ipv4(ip("10.244.9.9"))];
    tx.put_element("hairpin", gone.clone(), Elem::default())
        .delete_element("hairpin", gone);
    let script = tx.script(&v1);
    assert!(
        script.contains("flush chain ip weft_nfttest svc-a")
            && script.contains("delete set ip weft_nfttest aff"),
        "{script}"
    );
    assert!(!script.contains("hairpin"), "{script}");
    let mut v2 = v1.clone();
    tx.clone().apply_to(&mut v2);
    let r = b.run(|| ap.commit(tx).unwrap()).unwrap();
    assert!(matches!(r, Applied::Incremental(_)), "{r:?}");
    assert_eq!(ap.loaded(), Some(&v2));
    a.run(|| nft::apply(&v2.render())).unwrap().unwrap();
    assert_eq!(sorted_listing(&a, &v2), sorted_listing(&b, &v2));
    assert!(listing(&b, &v2).contains("timeout 9s"));
}

#[test]
fn a_tx_adds_every_new_chain_before_a_rule_jumps_to_one() {
    let v1 = every_kind();
    let b = scoped();
    let mut ap = Applier::new();
    b.run(|| ap.apply(&v1).unwrap()).unwrap();
    // A new chain jumping to another new chain that sorts after it (as a policy profile
    // `ingress-1a2b` jumps to its policy's `ingress/ns/name`): the kernel refuses a jump to a
    // chain it does not have yet.
    let mut tx = Tx::new();
    tx.put_chain(Chain::new("ingress-1a2b").rule(Rule::new().jump("ingress/x/deny")))
        .put_chain(Chain::new("ingress/x/deny").rule(Rule::new().accept()));
    let mut v2 = v1.clone();
    tx.clone().apply_to(&mut v2);
    let r = b.run(|| ap.commit(tx).unwrap()).unwrap();
    assert!(matches!(r, Applied::Incremental(_)), "{r:?}");
    assert_eq!(ap.loaded(), Some(&v2));
}

#[test]
fn a_restarted_applier_keeps_a_table_changed_since_its_whole_load() {
    let v1 = every_kind();
    let b = scoped();
    let mut ap = Applier::new();
    b.run(|| assert!(matches!(ap.apply(&v1).unwrap(), Applied::Whole)))
        .unwrap();
    let mut tx = Tx::new();
    tx.put_chain(Chain::new("extra").rule(Rule::new().accept()));
    let mut v2 = v1.clone();
    tx.clone().apply_to(&mut v2);
    b.run(|| assert!(matches!(ap.commit(tx).unwrap(), Applied::Incremental(_))))
        .unwrap();
    // The comment still has the whole load's digest; the next apply with nothing to change
    // writes the digest of what is loaded now into the digest set.
    b.run(|| assert!(matches!(ap.apply(&v2).unwrap(), Applied::Unchanged)))
        .unwrap();
    // A restarted process finds the table it left, and keeps it.
    let mut again = Applier::new();
    b.run(|| assert!(matches!(again.apply(&v2).unwrap(), Applied::Unchanged)))
        .unwrap();
    // Another table is not taken for it.
    let mut other = Applier::new();
    b.run(|| assert!(matches!(other.apply(&v1).unwrap(), Applied::Whole)))
        .unwrap();
}

#[test]
fn check_rules_repairs_a_rule_edited_in_place() {
    let t = every_kind();
    let b = scoped();
    let mut ap = Applier::new().check_rules(true);
    b.run(|| assert!(matches!(ap.apply(&t).unwrap(), Applied::Whole)))
        .unwrap();
    b.run(|| assert!(matches!(ap.apply(&t).unwrap(), Applied::Unchanged)))
        .unwrap();
    let before = listing(&b, &t);
    // `nft replace rule` keeps the rule's handle, the table and its comment.
    let edit = || {
        let rules = nft_in(
            &b,
            &["-a", "list", "chain", "ip", "weft_nfttest", "reject_chain"],
        );
        let handle = rules
            .lines()
            .find(|l| l.trim_start().starts_with("reject # handle"))
            .and_then(|l| l.rsplit(' ').next())
            .expect("the rule's handle")
            .to_string();
        nft_in(
            &b,
            &[
                "replace",
                "rule",
                "ip",
                "weft_nfttest",
                "reject_chain",
                "handle",
                &handle,
                "accept",
            ],
        );
    };
    edit();
    assert_ne!(listing(&b, &t), before);
    match b.run(|| ap.apply(&t).unwrap()).unwrap() {
        Applied::WholeAfterRefusal(e) => assert!(e.to_string().contains("edited"), "{e}"),
        other => panic!("expected a repair, got {other:?}"),
    }
    assert_eq!(listing(&b, &t), before);
    // Without the rule check, the same edit goes unnoticed (the cheap check sees the same
    // table and comment).
    let mut cheap = Applier::new();
    b.run(|| cheap.apply(&t).unwrap()).unwrap();
    edit();
    let r = b.run(|| cheap.apply(&t).unwrap()).unwrap();
    assert!(matches!(r, Applied::Unchanged), "{r:?}");
}
