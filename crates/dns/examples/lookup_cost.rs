//! What keeping one answer among the lookups costs the DNS fast path (`Lookups::note` on a
//! full ring, one A record): `cargo run --release -p weft-dns --example lookup_cost`.

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::time::Instant;
use weft_dns::lookups::Lookups;

fn main() {
    let name = Name::from_ascii("h17.example.org.").unwrap();
    let mut m = Message::new();
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.add_answer(Record::from_rdata(
        name,
        30,
        RData::A(A::new(203, 0, 113, 18)),
    ));
    let reply = m.to_vec().unwrap();
    let lookups = Lookups::default();
    let client = "127.0.0.1".parse().unwrap();
    for _ in 0..100_000 {
        lookups.note(client, "h17.example.org.", &reply);
    }
    let n = 2_000_000;
    let t = Instant::now();
    for _ in 0..n {
        lookups.note(client, "h17.example.org.", &reply);
    }
    println!(
        "{:.1} ns per note",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
