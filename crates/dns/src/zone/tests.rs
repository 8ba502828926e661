use proptest::prelude::*;

use super::*;

fn docs<T: serde::de::DeserializeOwned>(yaml: &str) -> Vec<T> {
    yaml.split("\n---\n")
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect()
}

const SERVICES: &str = "metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10], ports: [{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}, {port: 9000}]}
---
metadata: {name: db, namespace: prod}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
metadata: {name: all, namespace: prod}
spec: {clusterIP: None, publishNotReadyAddresses: true, ports: [{port: 80}]}
---
metadata: {name: empty, namespace: prod}
spec: {clusterIP: None}
---
metadata: {name: docs, namespace: default}
spec: {type: ExternalName, externalName: kubernetes.io}";

const SLICES: &str = "metadata: {name: db-1, namespace: prod, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints: [{addresses: [10.244.1.5], hostname: db-0, conditions: {ready: true}}, {addresses: [10.244.2.7], conditions: {ready: true}}, {addresses: [10.244.2.9], conditions: {ready: false}}]
---
metadata: {name: all-1, namespace: prod, labels: {kubernetes.io/service-name: all}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.3.3], conditions: {ready: false}}]";

fn zone() -> Zone {
    let services: Vec<Service> = docs(SERVICES);
    let slices: Vec<EndpointSlice> = docs(SLICES);
    Zone::compile(
        ZoneConfig {
            domain: "cluster.local".into(),
            ttl: 30,
            reverse: vec![
                "10.96.0.0/12".parse().unwrap(),
                "10.244.0.0/16".parse().unwrap(),
            ],
        },
        &services.iter().collect::<Vec<_>>(),
        &slices.iter().collect::<Vec<_>>(),
        7,
    )
}

fn show(a: &Answer) -> String {
    let mut out = format!("{:?}", a.rcode);
    for r in &a.answers {
        out.push_str(&format!("\n  {r}"));
    }
    for r in &a.authority {
        out.push_str(&format!("\n  authority {r}"));
    }
    out
}

#[test]
fn the_records_of_every_kind_of_service() {
    let z = zone();
    let all: Vec<String> = z.records().map(|(n, d)| format!("{n} {d}")).collect();
    insta::assert_yaml_snapshot!(all);
}

#[test]
fn answers_and_negative_answers() {
    let z = zone();
    let cases = [
        ("web.default.svc.cluster.local", Qtype::A),
        ("WEB.Default.SVC.cluster.local.", Qtype::A),
        ("web.default.svc.cluster.local", Qtype::Aaaa),
        ("_http._tcp.web.default.svc.cluster.local", Qtype::Srv),
        ("_dns._udp.web.default.svc.cluster.local", Qtype::Srv),
        ("10.0.96.10.in-addr.arpa", Qtype::Ptr),
        ("db.prod.svc.cluster.local", Qtype::A),
        ("db-0.db.prod.svc.cluster.local", Qtype::A),
        ("_pg._tcp.db.prod.svc.cluster.local", Qtype::Srv),
        ("5.1.244.10.in-addr.arpa", Qtype::Ptr),
        ("all.prod.svc.cluster.local", Qtype::A),
        ("empty.prod.svc.cluster.local", Qtype::A),
        ("docs.default.svc.cluster.local", Qtype::A),
        ("dns-version.cluster.local", Qtype::Txt),
        ("10-244-1-5.prod.pod.cluster.local", Qtype::A),
        ("svc.cluster.local", Qtype::A),
        ("nothere.default.svc.cluster.local", Qtype::A),
        ("9.9.244.10.in-addr.arpa", Qtype::Ptr),
        ("cluster.local", Qtype::Soa),
        ("example.com", Qtype::A),
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|(name, q)| format!("{name} {q:?}: {}", show(&z.lookup(name, *q))))
        .collect();
    insta::assert_yaml_snapshot!(out);
}

proptest! {
    /// Every compiled record is found by asking for its name and type, and a name the zone
    /// never compiled gets no answer (NXDOMAIN with the SOA).
    #[test]
    fn every_record_is_found_and_nothing_else(noise in "[a-z0-9-]{1,12}", pick in 0usize..64) {
        let z = zone();
        let all: Vec<(String, Data)> = z.records().map(|(n, d)| (n.to_string(), d.clone())).collect();
        let (name, data) = &all[pick % all.len()];
        let qtype = match data {
            Data::A(_) => Qtype::A,
            Data::Aaaa(_) => Qtype::Aaaa,
            Data::Srv { .. } => Qtype::Srv,
            Data::Ptr(_) => Qtype::Ptr,
            Data::Cname(_) => Qtype::Cname,
            Data::Txt(_) => Qtype::Txt,
            Data::Soa { .. } => Qtype::Soa,
        };
        let a = z.lookup(name, qtype);
        prop_assert_eq!(a.rcode, Rcode::NoError);
        prop_assert!(a.answers.iter().any(|r| &r.data == data), "{} {}", name, data);
        let unknown = format!("{noise}.nothere.default.svc.cluster.local");
        let b = z.lookup(&unknown, Qtype::A);
        prop_assert_eq!(b.rcode, Rcode::NxDomain);
        prop_assert!(b.answers.is_empty());
        prop_assert_eq!(b.authority.len(), 1);
    }
}
