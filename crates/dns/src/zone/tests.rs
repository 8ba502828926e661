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
        ZoneConfig::default(),
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
        // RFC 8482: one RRset (the first type), never the whole name.
        ("web.default.svc.cluster.local", Qtype::Any),
        ("db.prod.svc.cluster.local", Qtype::Any),
        ("_pg._tcp.db.prod.svc.cluster.local", Qtype::Any),
        ("docs.default.svc.cluster.local", Qtype::Any),
        ("cluster.local", Qtype::Any),
        ("svc.cluster.local", Qtype::Any),
        ("nothere.default.svc.cluster.local", Qtype::Any),
        ("example.com", Qtype::Any),
        // A dot inside a label (as hickory writes it): under `local.`, not the cluster's.
        ("x\\.cluster.local", Qtype::A),
        // A pod name's namespace is a DNS label.
        ("10-244-1-5.a\\032b.pod.cluster.local", Qtype::A),
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
        let a = z.lookup(name, data.kind());
        prop_assert_eq!(a.rcode, Rcode::NoError);
        prop_assert!(a.answers.iter().any(|r| &r.data == data), "{} {}", name, data);
        let unknown = format!("{noise}.nothere.default.svc.cluster.local");
        let b = z.lookup(&unknown, Qtype::A);
        prop_assert_eq!(b.rcode, Rcode::NxDomain);
        prop_assert!(b.answers.is_empty());
        prop_assert_eq!(b.authority.len(), 1);
    }
}

/// A Service of a random cluster, as the property test below builds it.
#[derive(Clone, Debug)]
enum Shape {
    ClusterIp(Vec<IpAddr>),
    /// Endpoints (hostname, address, ready) and `publishNotReadyAddresses`.
    Headless(Vec<(Option<String>, IpAddr, bool)>, bool),
    External(String),
}

#[derive(Clone, Debug)]
struct RandomService {
    name: String,
    ns: String,
    shape: Shape,
    /// (name, port, protocol)
    ports: Vec<(Option<String>, u16, &'static str)>,
}

/// Addresses in the service range, the pod range, outside both, and IPv6 (no range configured).
fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (96u8..112, any::<u8>(), 1u8..255).prop_map(|(b, c, d)| IpAddr::from([10, b, c, d])),
        (any::<u8>(), 1u8..255).prop_map(|(c, d)| IpAddr::from([10, 244, c, d])),
        (any::<u8>(), 1u8..255).prop_map(|(c, d)| IpAddr::from([192, 168, c, d])),
        any::<u16>().prop_map(|n| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n))),
    ]
}

fn random_service() -> impl Strategy<Value = RandomService> {
    let shape = prop_oneof![
        prop::collection::vec(any_ip(), 1..3).prop_map(Shape::ClusterIp),
        (
            prop::collection::vec(
                (
                    prop::option::of("[a-z][a-z0-9]{0,4}"),
                    any_ip(),
                    any::<bool>()
                ),
                0..5
            ),
            any::<bool>()
        )
            .prop_map(|(e, publish)| Shape::Headless(e, publish)),
        "[a-z]{1,8}\\.(com|org)".prop_map(Shape::External),
    ];
    let port = (
        prop::option::of("[a-z]{1,4}"),
        1u16..,
        prop_oneof![Just("TCP"), Just("UDP")],
    );
    (
        "[a-z][a-z0-9]{0,4}",
        "[a-z]{1,3}",
        shape,
        prop::collection::vec(port, 0..3),
    )
        .prop_map(|(name, ns, shape, ports)| RandomService {
            name,
            ns,
            shape,
            ports,
        })
}

/// The Service and EndpointSlice objects of `s`.
fn objects(s: &RandomService) -> (Service, Option<EndpointSlice>) {
    let ports: Vec<serde_json::Value> = s
        .ports
        .iter()
        .map(|(n, p, proto)| serde_json::json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    let metadata = serde_json::json!({"name": s.name, "namespace": s.ns});
    let spec = match &s.shape {
        Shape::ClusterIp(ips) => serde_json::json!({
            "clusterIP": ips[0].to_string(),
            "clusterIPs": ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "ports": ports,
        }),
        Shape::Headless(_, publish) => serde_json::json!({
            "clusterIP": "None", "publishNotReadyAddresses": publish, "ports": ports,
        }),
        Shape::External(target) => {
            serde_json::json!({"type": "ExternalName", "externalName": target})
        }
    };
    let svc =
        serde_json::from_value(serde_json::json!({"metadata": metadata, "spec": spec})).unwrap();
    let Shape::Headless(endpoints, _) = &s.shape else {
        return (svc, None);
    };
    let endpoints: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(host, ip, ready)| {
            serde_json::json!({
                "addresses": [ip.to_string()], "hostname": host, "conditions": {"ready": ready},
            })
        })
        .collect();
    let slice = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("{}-1", s.name), "namespace": s.ns,
            "labels": {"kubernetes.io/service-name": s.name},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap();
    (svc, Some(slice))
}

/// `name` with its letters' case flipped where `flips` says.
fn recased(name: &str, flips: &[bool]) -> String {
    name.chars()
        .zip(flips.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// On random clusters (ClusterIP, dual-stack, headless with ready and unready endpoints,
    /// ExternalName; addresses in, outside and without a configured reverse range): every
    /// compiled record is found, in any case, with exactly the records of its type; ANY gets one
    /// whole RRset; a type the name lacks gets NOERROR and the SOA; a name the zone does not
    /// have gets NXDOMAIN and the SOA; a name outside the zones weft serves is refused.
    #[test]
    fn random_clusters_every_record_is_found_and_nothing_else(
        services in prop::collection::vec(random_service(), 0..8),
        flips in prop::collection::vec(any::<bool>(), 1..16),
        probes in prop::collection::vec("[a-z0-9_-]{1,6}(\\.[a-z0-9_-]{1,6}){0,2}", 1..12),
        outside in prop::collection::vec(
            ("[a-z0-9-]{1,6}", prop_oneof![
                Just("example.com."), Just("local."), Just("cluster.local.evil."),
                Just("xcluster.local."), Just("in-addr.arpa."), Just("ip6.arpa."),
                Just("x\\.cluster.local."), Just("svc\\.cluster.local."),
            ]),
            1..6,
        ),
        reverse in prop::collection::vec(any_ip(), 1..8),
    ) {
        let mut seen = BTreeSet::new();
        let services: Vec<RandomService> = services
            .into_iter()
            .filter(|s| seen.insert((s.name.clone(), s.ns.clone())))
            .collect();
        let objects: Vec<(Service, Option<EndpointSlice>)> = services.iter().map(objects).collect();
        let svcs: Vec<&Service> = objects.iter().map(|(s, _)| s).collect();
        let slices: Vec<&EndpointSlice> = objects.iter().filter_map(|(_, e)| e.as_ref()).collect();
        let z = Zone::compile(
            ZoneConfig::default(),
            &svcs,
            &slices,
            1,
        );
        let mut owners: BTreeMap<String, Vec<Data>> = BTreeMap::new();
        for (name, data) in z.records() {
            owners.entry(name.to_string()).or_default().push(data.clone());
        }
        let soa_only = |a: &Answer| {
            a.answers.is_empty()
                && a.authority.len() == 1
                && matches!(a.authority[0].data, Data::Soa { .. })
        };
        let kinds = [Qtype::A, Qtype::Aaaa, Qtype::Srv, Qtype::Ptr, Qtype::Cname, Qtype::Txt, Qtype::Soa];
        for (name, list) in &owners {
            let asked = recased(name, &flips);
            let cname = list.iter().find(|d| matches!(d, Data::Cname(_)));
            for kind in kinds {
                let a = z.lookup(&asked, kind);
                prop_assert_eq!(a.rcode, Rcode::NoError, "{} {:?}", asked, kind);
                let want: Vec<&Data> = match cname {
                    Some(c) => vec![c],
                    None => list.iter().filter(|d| d.kind() == kind).collect(),
                };
                if want.is_empty() {
                    prop_assert!(soa_only(&a), "{} {:?}: {:?}", asked, kind, a);
                    continue;
                }
                prop_assert!(a.authority.is_empty());
                prop_assert!(a.answers.iter().all(|r| r.name == asked && r.ttl == 30));
                let got: BTreeSet<&Data> = a.answers.iter().map(|r| &r.data).collect();
                prop_assert_eq!(got, want.into_iter().collect::<BTreeSet<_>>(), "{} {:?}", asked, kind);
                prop_assert_eq!(a.answers.len(), list.iter().filter(|d| d.kind() == a.answers[0].data.kind()).count());
            }
            // ANY: one whole RRset, of the first type the name has.
            let any = z.lookup(&asked, Qtype::Any);
            prop_assert_eq!(any.rcode, Rcode::NoError);
            let first = list.iter().min().unwrap().kind();
            let first = if cname.is_some() { Qtype::Cname } else { first };
            prop_assert!(any.answers.iter().all(|r| r.data.kind() == first), "{:?}", any);
            prop_assert_eq!(any.answers.len(), list.iter().filter(|d| d.kind() == first).count());
        }
        // Names the zone does not have: NXDOMAIN, unless they exist as an ancestor of a record.
        let apex = "cluster.local.";
        for p in &probes {
            let name = format!("{p}.{apex}");
            let pods = name == format!("pod.{apex}") || name.ends_with(&format!(".pod.{apex}"));
            let exists = owners.keys().any(|o| o == &name || o.ends_with(&format!(".{name}")));
            if pods || exists {
                continue;
            }
            let a = z.lookup(&recased(&name, &flips), Qtype::A);
            prop_assert_eq!(a.rcode, Rcode::NxDomain, "{}", name);
            prop_assert!(soa_only(&a));
        }
        for (label, suffix) in &outside {
            let name = format!("{label}.{suffix}");
            let a = z.lookup(&name, Qtype::A);
            prop_assert_eq!(a.rcode, Rcode::Refused, "{}", name);
            prop_assert!(a.answers.is_empty() && a.authority.is_empty());
        }
        // Reverse names: compiled ones are answered (IPv6 and outside the ranges too), the rest
        // of the configured ranges is NXDOMAIN, anything else refused.
        let ranges: [Ipv4Cidr; 2] = ["10.96.0.0/12".parse().unwrap(), "10.244.0.0/16".parse().unwrap()];
        for ip in &reverse {
            let name = reverse_name(*ip);
            let a = z.lookup(&name, Qtype::Ptr);
            if owners.contains_key(&name) {
                prop_assert_eq!(a.rcode, Rcode::NoError);
                prop_assert!(!a.answers.is_empty());
                continue;
            }
            let ranged = match ip {
                IpAddr::V4(v4) => ranges.iter().any(|c| c.contains(*v4)),
                IpAddr::V6(_) => false,
            };
            prop_assert_eq!(a.rcode, if ranged { Rcode::NxDomain } else { Rcode::Refused }, "{}", name);
        }
        // What the zone says of each Service is what the Service says.
        for s in &services {
            let fqdn = format!("{}.{}.svc.{apex}", s.name, s.ns);
            let mut got: Vec<Data> = [Qtype::A, Qtype::Aaaa]
                .into_iter()
                .flat_map(|q| z.lookup(&fqdn, q).answers)
                .map(|r| r.data)
                .collect();
            got.sort();
            got.dedup();
            let mut want: Vec<Data> = match &s.shape {
                Shape::ClusterIp(ips) => ips.iter().map(|ip| address(*ip)).collect(),
                Shape::Headless(endpoints, publish) => endpoints
                    .iter()
                    .filter(|(_, _, ready)| *ready || *publish)
                    .map(|(_, ip, _)| address(*ip))
                    .collect(),
                Shape::External(target) => vec![Data::Cname(format!("{target}."))],
            };
            want.sort();
            want.dedup();
            prop_assert_eq!(got, want, "{}", fqdn);
        }
    }
}
