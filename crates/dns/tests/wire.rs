//! Bad input on the wire (issue 10, point 8). Property tests on [`respond`], the pure step from
//! request bytes to response bytes: arbitrary bytes never panic and get a response carrying the
//! request's ID or nothing; structurally valid queries with random names, types, classes,
//! opcodes, flags, EDNS sizes and question counts get the rcode the RFCs give and fit the
//! client's UDP limit; valid queries cut short, with bytes flipped, with compression pointer
//! loops or label lengths running past the end get FORMERR. Then the real server on loopback:
//! a flood of garbage while a client keeps getting its answers, 2000 idle TCP connections and a
//! slow-loris client while new clients are still served.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;
use weft_dns::server::{respond, serve_tcp, serve_udp, Served, EDNS_PAYLOAD, TCP_IDLE, TCP_MAX};
use weft_dns::{Zone, ZoneConfig};

/// A zone with a small ClusterIP Service (A and AAAA), a headless Service of 100 endpoints
/// (too big for UDP) and an ExternalName.
fn zone() -> Zone {
    let web: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                 "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let big: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let docs: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "docs", "namespace": "default"},
        "spec": {"type": "ExternalName", "externalName": "kubernetes.io"},
    }))
    .unwrap();
    let endpoints: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"addresses": [format!("10.244.0.{}", i + 1)], "conditions": {"ready": true}}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "big-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}],
        "endpoints": endpoints,
    }))
    .unwrap();
    Zone::compile(ZoneConfig::default(), &[&web, &big, &docs], &[&slice], 1)
}

fn the_zone() -> &'static Zone {
    static ZONE: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();
    ZONE.get_or_init(zone)
}

/// A query as the tests build it, byte for byte (hickory's encoder would refuse some of them).
#[derive(Clone, Debug)]
struct Query {
    id: u16,
    opcode: u8,
    /// The header's third and fourth bytes without the opcode (QR, AA, TC, RD, RA, Z, AD, CD).
    flags: u16,
    questions: Vec<Question>,
    /// The OPT record's UDP payload size (None: no EDNS).
    edns: Option<u16>,
}

#[derive(Clone, Debug)]
struct Question {
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
}

impl Question {
    fn new(name: &str, qtype: u16) -> Question {
        Question {
            labels: name
                .split('.')
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect(),
            qtype,
            qclass: 1,
        }
    }
}

impl Query {
    fn new(id: u16, name: &str, qtype: u16) -> Query {
        Query {
            id,
            opcode: 0,
            flags: 0x0100,
            questions: vec![Question::new(name, qtype)],
            edns: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.id.to_be_bytes());
        let head = (self.flags & !0x7800) | (u16::from(self.opcode & 0x0f) << 11);
        out.extend_from_slice(&head.to_be_bytes());
        out.extend_from_slice(&(self.questions.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&u16::from(self.edns.is_some()).to_be_bytes());
        for q in &self.questions {
            for l in &q.labels {
                out.push(l.len() as u8);
                out.extend_from_slice(l);
            }
            out.push(0);
            out.extend_from_slice(&q.qtype.to_be_bytes());
            out.extend_from_slice(&q.qclass.to_be_bytes());
        }
        if let Some(size) = self.edns {
            // OPT: the root name, type 41, the payload size as class, TTL 0, no options.
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        out
    }
}

/// The largest UDP response this query's client takes: 512 bytes without EDNS, else its size
/// (at least 512), at most the 1232 weft advertises.
fn udp_limit(request: &[u8]) -> usize {
    match Message::from_vec(request) {
        Ok(m) => usize::from(m.max_payload().min(EDNS_PAYLOAD)),
        Err(_) => 512,
    }
}

/// What every response must be: a response with the request's ID and opcode, within the UDP
/// limit when over UDP; no response at all to a response or to less than a header.
fn check_reply(request: &[u8], reply: Option<&[u8]>, udp: bool) -> Result<(), TestCaseError> {
    let Some(reply) = reply else {
        return Ok(());
    };
    prop_assert!(request.len() >= 12, "a response to {} bytes", request.len());
    prop_assert_eq!(request[2] & 0x80, 0, "a response to a response");
    let m = Message::from_vec(reply).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(m.message_type(), MessageType::Response);
    prop_assert_eq!(m.id(), u16::from_be_bytes([request[0], request[1]]));
    prop_assert_eq!(m.op_code(), OpCode::from_u8((request[2] >> 3) & 0x0f));
    if udp {
        prop_assert!(
            reply.len() <= udp_limit(request),
            "{} bytes over UDP, limit {}",
            reply.len(),
            udp_limit(request)
        );
    }
    Ok(())
}

/// Whether weft serves the name (the cluster domain, the configured reverse ranges, the reverse
/// names it has records for), label by label: a dot inside a label is no label boundary.
fn served(labels: &[Vec<u8>]) -> bool {
    let lower: Vec<Vec<u8>> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    if lower.len() >= 2 && lower[lower.len() - 2..] == [b"cluster".to_vec(), b"local".to_vec()] {
        return true;
    }
    // The test's reverse names are canonical: four decimal octets.
    if lower.len() == 6 && lower[4..] == [b"in-addr".to_vec(), b"arpa".to_vec()] {
        let octets: Option<Vec<u8>> = lower[..4]
            .iter()
            .map(|l| {
                text(l)
                    .parse()
                    .ok()
                    .filter(|o: &u8| o.to_string() == text(l))
            })
            .collect();
        if let Some(o) = octets {
            let ip = Ipv4Addr::new(o[3], o[2], o[1], o[0]);
            let ranges: [weft_model::cidr::Ipv4Cidr; 2] = [
                "10.96.0.0/12".parse().unwrap(),
                "10.244.0.0/16".parse().unwrap(),
            ];
            if ranges.iter().any(|c| c.contains(ip)) {
                return true;
            }
        }
    }
    let owners: BTreeSet<Vec<Vec<u8>>> = the_zone()
        .records()
        .map(|(n, _)| {
            n.split('.')
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect()
        })
        .collect();
    owners.contains(&lower)
}

/// A label: letters, digits, dashes and underscores, or any bytes at all (dots, backslashes,
/// zeros, 0xff).
fn label() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => "[a-zA-Z0-9_-]{1,10}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..64),
        1 => Just(b"pod".to_vec()),
    ]
}

/// Names in and around the zones weft serves, up to 255 bytes on the wire.
fn name() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let suffix = prop_oneof![
        Just(""),
        Just("cluster.local"),
        Just("svc.cluster.local"),
        Just("default.svc.cluster.local"),
        Just("web.default.svc.cluster.local"),
        Just("big.default.svc.cluster.local"),
        Just("docs.default.svc.cluster.local"),
        Just("_http._tcp.web.default.svc.cluster.local"),
        Just("default.pod.cluster.local"),
        Just("dns-version.cluster.local"),
        Just("local"),
        Just("cluster.local.evil"),
        Just("xcluster.local"),
        Just("in-addr.arpa"),
        Just("ip6.arpa"),
        Just("example.com"),
    ];
    let octet = || (0u16..256).prop_map(|o| o.to_string());
    let reverse = (
        prop_oneof![Just("10"), Just("192"), Just("172")],
        prop_oneof![Just("96"), Just("100"), Just("244"), Just("168")],
        octet(),
        octet(),
    )
        .prop_map(|(a, b, c, d)| format!("{d}.{c}.{b}.{a}.in-addr.arpa"));
    let from = |prefix: Vec<Vec<u8>>, suffix: String| -> Vec<Vec<u8>> {
        let mut labels = prefix;
        labels.extend(Question::new(&suffix, 0).labels);
        // At most 255 bytes on the wire: the first labels go.
        while labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1 > 255 {
            labels.remove(0);
        }
        labels
    };
    let known = prop_oneof![
        Just("web.default.svc.cluster.local"),
        Just("big.default.svc.cluster.local"),
        Just("docs.default.svc.cluster.local"),
        Just("_http._tcp.big.default.svc.cluster.local"),
        Just("dns-version.cluster.local"),
        Just("cluster.local"),
        Just("10-244-0-9.default.pod.cluster.local"),
    ];
    prop_oneof![
        2 => known.prop_map(move |n| from(Vec::new(), n.to_string())),
        3 => (prop::collection::vec(label(), 0..4), suffix.clone())
            .prop_map(move |(p, s)| from(p, s.to_string())),
        // Up to 127 labels of one character each.
        1 => (0usize..128, suffix)
            .prop_map(move |(n, s)| from(vec![b"a".to_vec(); n], s.to_string())),
        1 => reverse.prop_map(move |r| from(Vec::new(), r)),
        1 => Just(from(Vec::new(), "10.0.96.10.in-addr.arpa".into())),
        1 => Just(from(
            Vec::new(),
            "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa".into()
        )),
    ]
}

/// `labels` with the case of their letters flipped where `flips` says.
fn recased(labels: Vec<Vec<u8>>, flips: &[bool]) -> Vec<Vec<u8>> {
    let mut i = 0;
    labels
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|b| {
                    i += 1;
                    if flips[i % flips.len()] && b.is_ascii_alphabetic() {
                        b ^ 0x20
                    } else {
                        b
                    }
                })
                .collect()
        })
        .collect()
}

fn question() -> impl Strategy<Value = Question> {
    let qtype = prop_oneof![
        4 => prop_oneof![Just(1u16), Just(28), Just(33), Just(12), Just(5), Just(16), Just(6)],
        1 => Just(255u16),
        1 => prop_oneof![Just(252u16), Just(251)],
        1 => any::<u16>(),
    ];
    let qclass = prop_oneof![
        6 => Just(1u16),
        1 => prop_oneof![Just(3u16), Just(4), Just(254), Just(255)],
        1 => any::<u16>(),
    ];
    (
        name(),
        prop::collection::vec(any::<bool>(), 1..8),
        qtype,
        qclass,
    )
        .prop_map(|(labels, flips, qtype, qclass)| Question {
            labels: recased(labels, &flips),
            qtype,
            qclass,
        })
}

fn query() -> impl Strategy<Value = Query> {
    let opcode = prop_oneof![6 => Just(0u8), 1 => 1u8..16];
    let questions = prop_oneof![
        8 => prop::collection::vec(question(), 1..=1),
        1 => prop::collection::vec(question(), 0..4),
    ];
    let edns = prop_oneof![
        Just(None),
        Just(Some(1232u16)),
        Just(Some(4096)),
        any::<u16>().prop_map(Some),
    ];
    // QR is clear: a query. Every other flag at random.
    (any::<u16>(), opcode, any::<u16>(), questions, edns).prop_map(
        |(id, opcode, flags, questions, edns)| Query {
            id,
            opcode,
            flags: flags & 0x7fff,
            questions,
            edns,
        },
    )
}

/// The rcode the RFCs give `q` from a server with no upstream.
fn expected(q: &Query) -> Vec<ResponseCode> {
    if q.opcode != 0 {
        return vec![ResponseCode::NotImp];
    }
    if q.questions.len() != 1 {
        return vec![ResponseCode::FormErr];
    }
    let question = &q.questions[0];
    if question.qclass != 1 || matches!(question.qtype, 251 | 252) {
        return vec![ResponseCode::Refused];
    }
    if served(&question.labels) {
        vec![ResponseCode::NoError, ResponseCode::NXDomain]
    } else {
        vec![ResponseCode::Refused]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic the server; a response, when there is one, is a response with
    /// the request's ID, never to a response or to less than a header.
    #[test]
    fn arbitrary_bytes_get_a_response_with_their_id_or_none(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        for udp in [true, false] {
            let reply = respond(Some(the_zone()), &bytes, udp);
            check_reply(&bytes, reply.as_deref(), udp)?;
        }
    }

    /// The same, behind a header that announces one question, so the bytes reach the parser of
    /// names and records.
    #[test]
    fn arbitrary_bodies_get_a_response_with_their_id_or_none(
        head in any::<[u8; 4]>(),
        counts in prop::collection::vec(0u8..3, 4),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = head.to_vec();
        bytes[2] &= 0x7f;
        for c in &counts {
            bytes.extend_from_slice(&[0, *c]);
        }
        bytes.extend_from_slice(&body);
        for udp in [true, false] {
            let reply = respond(Some(the_zone()), &bytes, udp);
            check_reply(&bytes, reply.as_deref(), udp)?;
        }
    }

    /// Valid queries get the rcode of RFC 1035, 5936 and 6891, answers and negative answers of
    /// the name asked, and over UDP at most the client's limit, with TC when the answer is cut.
    #[test]
    fn queries_get_the_rcode_the_rfcs_give_and_fit_the_clients_limit(q in query()) {
        let request = q.bytes();
        let tcp = respond(Some(the_zone()), &request, false).expect("a response over TCP");
        let udp = respond(Some(the_zone()), &request, true).expect("a response over UDP");
        check_reply(&request, Some(&tcp), false)?;
        check_reply(&request, Some(&udp), true)?;
        let full = Message::from_vec(&tcp).unwrap();
        let want = expected(&q);
        prop_assert!(want.contains(&full.response_code()), "{:?} for {:?}", full.response_code(), q);
        prop_assert!(!full.truncated());
        prop_assert_eq!(full.recursion_desired(), q.flags & 0x0100 != 0);
        // EDNS in the response when, and only when, the request had it (and could be read).
        if q.opcode == 0 && q.questions.len() == 1 {
            prop_assert_eq!(full.extensions().is_some(), q.edns.is_some());
            prop_assert_eq!(full.queries().len(), 1);
            let asked = &full.queries()[0];
            let labels: Vec<&[u8]> = asked.name().iter().collect();
            let sent: Vec<&[u8]> = q.questions[0].labels.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(labels, sent, "the question as asked, case and all");
        }
        match full.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {
                prop_assert!(full.authoritative());
                let qname = full.queries()[0].name();
                if full.answers().is_empty() {
                    // A negative answer carries the SOA (RFC 2308).
                    prop_assert_eq!(full.name_servers().len(), 1);
                    prop_assert_eq!(full.name_servers()[0].record_type(), RecordType::SOA);
                } else {
                    prop_assert_eq!(full.response_code(), ResponseCode::NoError);
                    for r in full.answers() {
                        // The owner is the name asked, byte for byte.
                        let owner: Vec<&[u8]> = r.name().iter().collect();
                        let asked: Vec<&[u8]> = qname.iter().collect();
                        prop_assert_eq!(owner, asked);
                    }
                    // RFC 8482: ANY gets one RRset.
                    if q.questions[0].qtype == 255 {
                        let types: BTreeSet<RecordType> =
                            full.answers().iter().map(|r| r.record_type()).collect();
                        prop_assert_eq!(types.len(), 1, "{:?}", types);
                    }
                }
            }
            _ => {
                prop_assert!(full.answers().is_empty() && full.name_servers().is_empty());
            }
        }
        // Over UDP: the same response when it fits, else the question alone with TC.
        let limit = udp_limit(&request);
        if tcp.len() <= limit {
            prop_assert_eq!(&udp, &tcp);
        } else {
            let short = Message::from_vec(&udp).unwrap();
            prop_assert!(short.truncated(), "{} bytes, limit {}", tcp.len(), limit);
            prop_assert!(short.answers().is_empty());
            prop_assert_eq!(short.response_code(), full.response_code());
        }
    }

    /// A valid query cut at every length, or with bytes changed: never a panic; a response, when
    /// there is one, carries the ID (or there is none).
    #[test]
    fn mangled_queries_get_formerr_or_a_response_with_their_id(
        q in query(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let request = q.bytes();
        for end in 0..request.len() {
            let cut = &request[..end];
            let reply = respond(Some(the_zone()), cut, true);
            check_reply(cut, reply.as_deref(), true)?;
            // Cut inside the question: nothing to answer but the header's ID.
            let question = q.questions.first().map_or(0, |q| {
                q.labels.iter().map(|l| l.len() + 1).sum::<usize>() + 5
            });
            if end >= 12 && end < 12 + question {
                let m = Message::from_vec(&reply.expect("FORMERR")).unwrap();
                prop_assert_eq!(m.response_code(), ResponseCode::FormErr);
            }
        }
        let mut changed = request.clone();
        for (at, xor) in &flips {
            let i = at.index(changed.len());
            changed[i] ^= xor;
        }
        for udp in [true, false] {
            let reply = respond(Some(the_zone()), &changed, udp);
            check_reply(&changed, reply.as_deref(), udp)?;
        }
    }
}

/// The header of a query with one question and the given counts of other records.
fn header(id: u16) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    h
}

fn rcode(reply: Option<Vec<u8>>) -> ResponseCode {
    Message::from_vec(&reply.expect("a response"))
        .unwrap()
        .response_code()
}

#[test]
fn compression_loops_and_labels_past_the_end_get_formerr() {
    let z = Some(the_zone());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The name is a pointer to itself.
        ("self pointer", [&[0xc0, 12][..], &[0, 1, 0, 1]].concat()),
        // Two pointers pointing at each other.
        (
            "pointer loop",
            [&[1, b'a', 0xc0, 16, 0xc0, 12][..], &[0, 1, 0, 1]].concat(),
        ),
        // A pointer past the end of the message.
        (
            "pointer past the end",
            [&[0xc0, 0xff][..], &[0, 1, 0, 1]].concat(),
        ),
        // A pointer forward, to the type bytes.
        ("pointer forward", vec![0xc0, 14, 0, 1, 0, 1]),
        // The reserved label types (0x40, 0x80).
        ("label type 0x40", vec![0x41, b'a', 0, 0, 1, 0, 1]),
        ("label type 0x80", vec![0x81, b'a', 0, 0, 1, 0, 1]),
        // A label length running past the end.
        ("label past the end", vec![63, b'a', b'b', b'c']),
        ("label past the end, then type", vec![5, b'a', 0, 1, 0, 1]),
        // No terminating root label.
        ("no root", vec![3, b'w', b'e', b'b']),
        // The name, but no type and class.
        ("no type", vec![3, b'w', b'e', b'b', 0]),
    ];
    for (what, body) in cases {
        let request = [header(0x4242), body].concat();
        for udp in [true, false] {
            let reply = respond(z, &request, udp);
            let m = Message::from_vec(reply.as_deref().expect(what)).unwrap();
            assert_eq!(m.id(), 0x4242, "{what}");
            assert_eq!(m.response_code(), ResponseCode::FormErr, "{what}");
        }
    }
    // Counts promising records that are not there.
    let mut request = Query::new(7, "web.default.svc.cluster.local", 1).bytes();
    request[7] = 3;
    assert_eq!(rcode(respond(z, &request, true)), ResponseCode::FormErr);
    // A response is never answered, however malformed (no FORMERR ping-pong between servers).
    let mut response = [header(9), vec![0xc0, 12, 0, 1, 0, 1]].concat();
    response[2] |= 0x80;
    assert_eq!(respond(z, &response, true), None);
    let mut valid = Query::new(9, "web.default.svc.cluster.local", 1).bytes();
    valid[2] |= 0x80;
    assert_eq!(respond(z, &valid, true), None);
}

#[test]
fn hundreds_of_labels_get_an_answer_not_a_panic() {
    let z = Some(the_zone());
    let ones = |n: usize, suffix: &str| {
        let mut q = Query::new(1, suffix, 1);
        let mut labels = vec![b"a".to_vec(); n];
        labels.extend(q.questions[0].labels.clone());
        q.questions[0].labels = labels;
        q.bytes()
    };
    // 127 one-character labels: 255 bytes, the longest name there is; not the cluster's.
    assert_eq!(
        rcode(respond(z, &ones(127, ""), true)),
        ResponseCode::Refused
    );
    // 120 under the cluster domain: 255 bytes, a name the zone does not have.
    assert_eq!(
        rcode(respond(z, &ones(120, "cluster.local"), true)),
        ResponseCode::NXDomain
    );
    // One more label: 257 bytes, no name at all.
    assert_eq!(
        rcode(respond(z, &ones(128, ""), true)),
        ResponseCode::FormErr
    );
    assert_eq!(
        rcode(respond(z, &ones(300, ""), true)),
        ResponseCode::FormErr
    );
}

#[test]
fn udp_answers_fit_the_clients_limit_and_never_more_than_1232() {
    let z = Some(the_zone());
    for edns in [
        None,
        Some(0),
        Some(512),
        Some(1000),
        Some(1232),
        Some(4096),
        Some(65535),
    ] {
        let mut q = Query::new(8, "big.default.svc.cluster.local", 1);
        q.edns = edns;
        let request = q.bytes();
        let whole = respond(z, &request, false).unwrap();
        assert!(whole.len() > 1232, "100 addresses: {} bytes", whole.len());
        let udp = respond(z, &request, true).unwrap();
        let limit = edns.map_or(512, |e| usize::from(e.clamp(512, 1232)));
        assert!(udp.len() <= limit, "EDNS {edns:?}: {} bytes", udp.len());
        let m = Message::from_vec(&udp).unwrap();
        assert!(m.truncated() && m.answers().is_empty(), "EDNS {edns:?}");
        assert_eq!(m.extensions().is_some(), edns.is_some());
    }
}

#[test]
fn any_gets_one_rrset() {
    let z = Some(the_zone());
    let answer = |name: &str| {
        let reply = respond(z, &Query::new(3, name, 255).bytes(), false).unwrap();
        Message::from_vec(&reply).unwrap()
    };
    // A and AAAA, SRV, PTR at web: ANY gets the A RRset alone.
    let web = answer("web.default.svc.cluster.local");
    assert_eq!(web.response_code(), ResponseCode::NoError);
    let data: Vec<&RData> = web.answers().iter().map(|r| r.data()).collect();
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(matches!(data[0], RData::A(a) if a.0 == Ipv4Addr::new(10, 96, 0, 20)));
    let docs = answer("docs.default.svc.cluster.local");
    assert_eq!(docs.answers().len(), 1);
    assert_eq!(docs.answers()[0].record_type(), RecordType::CNAME);
    // The whole RRset, however big: over UDP it is cut, with TC, like any other.
    assert_eq!(answer("big.default.svc.cluster.local").answers().len(), 100);
    let nx = answer("nothere.default.svc.cluster.local");
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert_eq!(answer("example.com").response_code(), ResponseCode::Refused);
}

/// A server on loopback (UDP and TCP on one port) on its own single-threaded runtime.
fn server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let served = Served::new();
            served.swap(zone());
            let (udp, tcp) = loop {
                let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .await
                    .unwrap();
                let port = udp.local_addr().unwrap().port();
                if let Ok(tcp) = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
                    break (udp, tcp);
                }
            };
            tx.send(udp.local_addr().unwrap()).unwrap();
            tokio::spawn(serve_tcp(tcp, served.clone()));
            serve_udp(udp, served).await;
        });
    });
    rx.recv().unwrap()
}

/// Asks `web.default.svc.cluster.local` A over UDP, up to `tries` times; its address if the
/// answer came (an answer with another ID is a late one, skipped).
fn ask_udp(sock: &UdpSocket, server: SocketAddr, id: u16, tries: usize) -> Option<Ipv4Addr> {
    let request = Query::new(id, "web.default.svc.cluster.local", 1).bytes();
    let mut buf = [0u8; 1500];
    for _ in 0..tries {
        sock.send_to(&request, server).unwrap();
        let deadline = Instant::now() + Duration::from_millis(300);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.id() != id {
                continue;
            }
            return m.answers().iter().find_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            });
        }
    }
    None
}

/// Asks over a TCP connection; the answer's address.
fn ask_tcp(conn: &mut TcpStream, id: u16) -> Option<Ipv4Addr> {
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let request = Query::new(id, "web.default.svc.cluster.local", 1).bytes();
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    conn.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut reply).ok()?;
    let m = Message::from_vec(&reply).ok()?;
    assert_eq!(m.id(), id);
    m.answers().iter().find_map(|r| match r.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

/// Garbage of every kind seen above, one packet per `i`.
fn garbage(i: u32) -> Vec<u8> {
    let noise = |n: u32| -> Vec<u8> {
        (0..n)
            .map(|j| ((u64::from(i) * 31 + u64::from(j)) * 7919 % 251) as u8)
            .collect()
    };
    match i % 6 {
        0 => noise(i % 700),
        1 => Query::new(i as u16, "web.default.svc.cluster.local", 1).bytes()[..(i % 40) as usize]
            .to_vec(),
        2 => [header(i as u16), vec![0xc0, 12, 0, 1, 0, 1]].concat(),
        3 => {
            let mut r = Query::new(i as u16, "web.default.svc.cluster.local", 1).bytes();
            r[2] |= 0x80; // a response
            r
        }
        4 => {
            let mut q = Query::new(i as u16, "", 255);
            q.questions[0].labels = vec![b"a".to_vec(); 127];
            q.bytes()
        }
        _ => [header(i as u16), noise(60_000)].concat(),
    }
}

#[test]
fn a_flood_of_garbage_does_not_stop_the_answers() {
    let s = server();
    let flooding = Arc::new(AtomicUsize::new(2));
    // Two senders of 10 000 packets each, in bursts of 20 a millisecond: some 40 000 a second,
    // a flood, not a measure of how many the server takes before the kernel drops.
    let flooders: Vec<_> = (0..2u32)
        .map(|t| {
            let flooding = flooding.clone();
            std::thread::spawn(move || {
                let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
                for i in 0..10_000u32 {
                    let _ = sock.send_to(&garbage(i * 2 + t), s);
                    if i % 20 == 19 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                flooding.fetch_sub(1, Ordering::Relaxed);
            })
        })
        .collect();
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let (mut asked, mut answered) = (0u32, 0u32);
    while flooding.load(Ordering::Relaxed) > 0 || asked < 100 {
        // A resolver's patience: a few tries.
        if let Some(ip) = ask_udp(&client, s, asked as u16, 5) {
            assert_eq!(ip, Ipv4Addr::new(10, 96, 0, 20));
            answered += 1;
        }
        asked += 1;
    }
    for f in flooders {
        f.join().unwrap();
    }
    assert_eq!(answered, asked, "answered during a flood of 20 000 packets");
    assert!(asked >= 100);
    // And over TCP, garbage gets FORMERR on the same connection, which goes on answering.
    let mut conn = TcpStream::connect(s).unwrap();
    let junk = [header(5), vec![0xc0, 12, 0, 1, 0, 1]].concat();
    let mut framed = (junk.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&junk);
    conn.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    conn.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut reply).unwrap();
    assert_eq!(rcode(Some(reply)), ResponseCode::FormErr);
    assert_eq!(ask_tcp(&mut conn, 6), Some(Ipv4Addr::new(10, 96, 0, 20)));
}

/// Whether the server closed `conn` (end of file) within `wait`.
fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    conn.set_read_timeout(Some(wait)).unwrap();
    match conn.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        // A timeout is not a close; a reset is.
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_tcp_connections_do_not_shut_out_new_clients() {
    let s = server();
    let mut idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(s).expect("connect"))
        .collect();
    // UDP and a new TCP client are answered at once.
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    assert_eq!(
        ask_udp(&client, s, 1, 3),
        Some(Ipv4Addr::new(10, 96, 0, 20))
    );
    let started = Instant::now();
    let mut fresh = TcpStream::connect(s).unwrap();
    assert_eq!(ask_tcp(&mut fresh, 2), Some(Ipv4Addr::new(10, 96, 0, 20)));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The server keeps at most TCP_MAX open, closing the oldest long before the idle timeout;
    // the newest still answer.
    std::thread::sleep(Duration::from_millis(500));
    assert!(started.elapsed() < TCP_IDLE / 4);
    let closed = idle
        .iter_mut()
        .map(|c| closed_within(c, Duration::from_millis(1)))
        .filter(|closed| *closed)
        .count();
    assert!(
        closed >= idle.len() + 1 - TCP_MAX,
        "{closed} of {} idle connections closed",
        idle.len()
    );
    let newest = idle.last_mut().unwrap();
    assert_eq!(ask_tcp(newest, 3), Some(Ipv4Addr::new(10, 96, 0, 20)));
}

#[test]
fn a_slow_loris_is_cut_off() {
    let s = server();
    let mut slow = TcpStream::connect(s).unwrap();
    // A length of 40 and then 3 bytes of the message, and nothing more.
    slow.write_all(&[0, 40, 0x12, 0x34, 0x01]).unwrap();
    let started = Instant::now();
    // Meanwhile others are answered.
    let mut other = TcpStream::connect(s).unwrap();
    assert_eq!(ask_tcp(&mut other, 1), Some(Ipv4Addr::new(10, 96, 0, 20)));
    // The server gives a message as long as an idle connection to arrive whole.
    assert!(
        closed_within(&mut slow, TCP_IDLE + Duration::from_secs(5)),
        "still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < TCP_IDLE + Duration::from_secs(2));
}

#[test]
fn the_reverse_name_of_an_ipv6_cluster_ip_is_answered() {
    let name = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
    let reply = respond(Some(the_zone()), &Query::new(4, name, 12).bytes(), true).unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(
        matches!(m.answers()[0].data(), RData::PTR(p) if p.0.to_ascii() == "web.default.svc.cluster.local."),
        "{m:?}"
    );
}
