//! One Service's incremental change on a table of 10k Services (a chain and a map element
//! each): weft's own netlink batch (`Applier::commit`) against the same change as nft text
//! through `nft -f`, plus whole loads both ways. Prints p50/p99; asserts nothing. Root; works
//! in a namespace it creates and deletes. (libnftables, measured by an earlier version of this
//! bench at 33 ms p50, is no longer used by weft.)
//!
//! `cargo run --release -p weft-dataplane --example nft_bench [services] [changes]`

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_dataplane::nft::{
    self, Applier, Chain, ChainType, DataType, Elem, ElemData, Family, Field, Hook, L4Proto,
    MarkOp, Policy, Rule, Selector, Set, Table, Tx, Value, Verdict, WholeLoad,
};
use weft_dataplane::ScopedNetNs;

const TABLE: &str = "weft_bench";

fn svc_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 96 + (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn ep_ip(i: usize, gen: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, (i >> 8) as u8, (i as u8).wrapping_add(gen as u8))
}

fn rules(i: usize, gen: usize) -> Vec<Rule> {
    vec![
        Rule::new()
            .ip_saddr_ne("10.244.0.0/16".parse().unwrap())
            .jump("mark_for_masquerade"),
        Rule::new()
            .l4proto(L4Proto::Tcp)
            .dnat_to(ep_ip(i, gen), Some(80)),
    ]
}

fn key(i: usize, port: u16) -> Vec<Value> {
    vec![
        Value::Ipv4(svc_ip(i)),
        Value::Proto(L4Proto::Tcp),
        Value::Port(port),
    ]
}

fn table(n: usize) -> Table {
    let mut t = Table::new(Family::Ip, TABLE);
    let mut m = Set::verdict_map(
        "service_ips",
        vec![
            Field::Type(DataType::Ipv4Addr),
            Field::Type(DataType::InetProto),
            Field::Type(DataType::InetService),
        ],
    );
    for i in 0..n {
        m = m.map_element(
            key(i, 80),
            ElemData::Verdict(Verdict::Goto(format!("svc-{i}"))),
        );
        let mut c = Chain::new(format!("svc-{i}"));
        c.rules = rules(i, 0);
        t.add_chain(c);
    }
    t.add_set(m);
    t.add_chain(
        Chain::base(
            "nat_prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
            Policy::Accept,
        )
        .rule(Rule::new().vmap(
            &[Selector::IpDaddr, Selector::MetaL4proto, Selector::ThDport],
            "service_ips",
        )),
    );
    t.add_chain(Chain::new("mark_for_masquerade").rule(Rule::new().mark_set(MarkOp::Or(0x4000))));
    t
}

/// Change number `round` to Service `i`: new endpoint, and its map element moves between
/// ports 80 and 8080 (one element deleted, one added).
fn change(i: usize, round: usize) -> (Tx, String) {
    let (old, new) = if round.is_multiple_of(2) {
        (80, 8080)
    } else {
        (8080, 80)
    };
    let gen = round % 2 + 1;
    let mut c = Chain::new(format!("svc-{i}"));
    c.rules = rules(i, gen);
    let mut tx = Tx::new();
    let mode = std::env::var("NFT_BENCH_ONLY").unwrap_or_default();
    if mode != "elements" {
        tx.put_chain(c.clone());
    }
    if mode != "chain" {
        tx.delete_element("service_ips", key(i, old)).put_element(
            "service_ips",
            key(i, new),
            Elem::data(ElemData::Verdict(Verdict::Goto(format!("svc-{i}")))),
        );
    }
    let mut text = format!("flush chain ip {TABLE} svc-{i}\n");
    for r in &c.rules {
        text.push_str(&format!("add rule ip {TABLE} svc-{i} {r}\n"));
    }
    let ip = svc_ip(i);
    text.push_str(&format!(
        "delete element ip {TABLE} service_ips {{ {ip} . tcp . {old} }}\n\
         add element ip {TABLE} service_ips {{ {ip} . tcp . {new} : goto svc-{i} }}\n"
    ));
    (tx, text)
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    let pct = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
    println!(
        "{name:<44} n={:<4} p50 {:>8.3} ms  p99 {:>8.3} ms",
        d.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let changes = args.get(1).copied().unwrap_or(200);
    let ns = ScopedNetNs::create_unique("weft-nfttest-bench").expect("create netns");
    ns.run(|| {
        let t = table(n);
        println!("{n} service chains, {n} map elements; {changes} changes each");
        for how in [WholeLoad::Netlink, WholeLoad::Tool] {
            let mut times = Vec::new();
            for _ in 0..3 {
                let mut ap = Applier::new().whole_loads(how);
                let start = Instant::now();
                ap.load_whole(&t).expect("whole load");
                times.push(start.elapsed());
            }
            report(&format!("whole load ({how:?})"), times);
        }

        let mut ap = Applier::new();
        ap.load_whole(&t).expect("whole load");
        let mut times = Vec::new();
        for round in 0..changes {
            let (tx, _) = change((round * 7919) % n, round / n * 2 + round % 2);
            let start = Instant::now();
            let r = ap.commit(tx).expect("commit");
            times.push(start.elapsed());
            assert!(matches!(r, nft::Applied::Incremental(_)), "{r:?}");
        }
        report("incremental: netlink batch (Applier::commit)", times);

        // The same changes as text through the tool, on a table the tool loaded.
        let mut ap = Applier::new().whole_loads(WholeLoad::Tool);
        ap.load_whole(&t).expect("whole load");
        let mut times = Vec::new();
        for round in 0..changes.min(50) {
            let (_, text) = change(1, round % 2);
            let start = Instant::now();
            nft::apply(&text).expect("nft -f");
            times.push(start.elapsed());
        }
        report("incremental: nft -f", times);
    })
    .expect("enter netns");
}
