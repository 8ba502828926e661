//! How long [`weft_dns::server::respond`] takes per question, in user space, on a zone the shape
//! of bench/dns.sh's: 9,900 ClusterIP Services with one named port and 100 headless Services of
//! 10 ready endpoints each. Prints ns per query for each kind of question and for the mix
//! dns.sh asks (40% A of a ClusterIP Service, 10% AAAA (NODATA), 10% SRV, 10% PTR, 20%
//! NXDOMAIN, 10% A of a headless Service).
//!
//! ```text
//! cargo run --release -p weft-dns --example answer_speed
//! ```

use std::time::Instant;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use weft_dns::server::respond;
use weft_dns::{Zone, ZoneConfig};

const CLUSTER_IP: usize = 9_900;
const HEADLESS: usize = 100;
const ENDPOINTS: usize = 10;

fn zone() -> Zone {
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    for i in 0..CLUSTER_IP {
        let ip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        services.push(
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 50)},
                "spec": {"clusterIP": ip, "clusterIPs": [ip],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }))
            .expect("a Service"),
        );
    }
    for h in 0..HEADLESS {
        let name = format!("hl-{h}");
        services.push(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "heads"},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
            }))
            .expect("a Service"),
        );
        let endpoints: Vec<serde_json::Value> = (0..ENDPOINTS)
            .map(|e| json!({"addresses": [format!("10.244.{h}.{}", e + 1)], "conditions": {"ready": true}}))
            .collect();
        slices.push(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{name}-1"), "namespace": "heads",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .expect("an EndpointSlice"),
        );
    }
    Zone::compile(
        ZoneConfig::default(),
        &services.iter().collect::<Vec<_>>(),
        &slices.iter().collect::<Vec<_>>(),
        1,
    )
}

fn request(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).expect("a name"), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().expect("a request")
}

/// `count` requests of one kind, spread over the zone's Services.
fn kind(kind: &str, count: usize, edns: bool) -> Vec<Vec<u8>> {
    (0..count)
        .map(|n| {
            let i = (n * 7919) % CLUSTER_IP;
            let svc = format!("svc-{i}.ns-{}.svc.cluster.local.", i % 50);
            let (name, t) = match kind {
                "A" => (svc, RecordType::A),
                "AAAA" => (svc, RecordType::AAAA),
                "SRV" => (format!("_http._tcp.{svc}"), RecordType::SRV),
                "PTR" => (
                    format!("{}.{}.96.10.in-addr.arpa.", i % 250 + 1, i / 250),
                    RecordType::PTR,
                ),
                "NXDOMAIN" => (
                    format!(
                        "svc-{i}.ns-{0}.svc.cluster.local.ns-{0}.svc.cluster.local.",
                        i % 50
                    ),
                    RecordType::A,
                ),
                _ => (
                    format!("hl-{}.heads.svc.cluster.local.", n % HEADLESS),
                    RecordType::A,
                ),
            };
            request(n as u16, &name, t, edns)
        })
        .collect()
}

/// ns per answer over `requests`, the best of a few rounds.
fn time(zone: &Zone, requests: &[Vec<u8>]) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..10 {
            for r in requests {
                bytes += respond(Some(zone), r, true).map_or(0, |b| b.len());
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / (10 * requests.len()) as f64;
        std::hint::black_box(bytes);
        best = best.min(ns);
    }
    best
}

fn main() {
    let started = Instant::now();
    let zone = zone();
    println!(
        "zone: {} records, compiled in {:?}",
        zone.records().count(),
        started.elapsed()
    );
    let mut mix = Vec::new();
    for (name, share) in [
        ("A", 40),
        ("AAAA", 10),
        ("SRV", 10),
        ("PTR", 10),
        ("NXDOMAIN", 20),
        ("headless A", 10),
    ] {
        let requests = kind(name, 10_000, false);
        println!("{name:<12} {:>7.0} ns/query", time(&zone, &requests));
        mix.extend(requests.into_iter().take(share * 200));
    }
    // Shuffled the same way every run, so that runs compare.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..mix.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        mix.swap(i, (state % (i as u64 + 1)) as usize);
    }
    println!("{:<12} {:>7.0} ns/query", "mix", time(&zone, &mix));
    let edns = kind("A", 10_000, true);
    println!("{:<12} {:>7.0} ns/query", "A with EDNS", time(&zone, &edns));
}
