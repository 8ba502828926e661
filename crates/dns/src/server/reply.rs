//! The common question answered without hickory: one question of a type weft stores, class
//! IN, at most an EDNS OPT record, for a name of plain labels that the zone answers without
//! following a CNAME or forwarding. The reply is written byte by byte: the header, the
//! question copied from the request (so the answer's owners, pointers to it, carry the name in
//! the case asked), the owner's records as encoded when the zone was compiled
//! ([`crate::zone::wire`]), the SOA for a negative answer, and an OPT when the client sent
//! one. Anything else, and a reply too long for the client's UDP limit, returns None and takes
//! the general path in [`super::answer`], which decides the same questions the same way.

use super::{Outcome, EDNS_PAYLOAD};
use crate::zone::wire::{self, qtype_of};
use crate::zone::{Found, Qtype, Records, Zone};

/// The longest name text: 255 bytes of wire form less the root label.
const NAME_MAX: usize = 254;

const fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The reply to `request` and what it answers, when it is a plain question of the zone.
pub(super) fn plain(
    zone: Option<&Zone>,
    request: &[u8],
    udp: bool,
    forwarding: bool,
) -> Option<(Vec<u8>, Outcome)> {
    let zone = zone?;
    // A query (QR clear), opcode QUERY, one question, no answer or authority, at most the OPT.
    if request.len() < 12
        || request[2] & 0xF8 != 0
        || u16_at(request, 4) != 1
        || u16_at(request, 6) != 0
        || u16_at(request, 8) != 0
        || u16_at(request, 10) > 1
    {
        return None;
    }
    let mut lower = [0u8; NAME_MAX + 1];
    let mut len = 0;
    let mut at = 12;
    loop {
        let label = usize::from(*request.get(at)?);
        at += 1;
        if label == 0 {
            break;
        }
        // Compression pointers, extended labels and names past 255 bytes: the general path. So is
        // a label starting with a dash, which hickory-proto writes escaped (`\-`) in the name the
        // query log shows.
        if label > 63 || len + label + 1 > NAME_MAX || request.get(at) == Some(&b'-') {
            return None;
        }
        for &b in request.get(at..at + label)? {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            lower[len] = b.to_ascii_lowercase();
            len += 1;
        }
        lower[len] = b'.';
        len += 1;
        at += label;
    }
    if len == 0 || request.len() < at + 4 || u16_at(request, at + 2) != 1 {
        return None;
    }
    let qtype = qtype_of(u16_at(request, at))?;
    let question_end = at + 4;
    let payload = match u16_at(request, 10) {
        0 => None,
        _ => Some(opt_payload(&request[question_end..])?),
    };
    if payload.is_none() && request.len() != question_end {
        return None;
    }
    let name = std::str::from_utf8(&lower[..len]).ok()?;
    let (rcode, answers, authority): (u8, _, _) = match zone.find(name, qtype) {
        Found::Refused => return None,
        Found::NxDomain => (3, Answers::None, zone.soa_wire()?),
        Found::NoError { wanted, records } => {
            // A CNAME for another type: the chain is followed on the general path.
            if wanted == Some(Qtype::Cname) && !matches!(qtype, Qtype::Cname | Qtype::Any) {
                return None;
            }
            let answers = match (wanted, &records) {
                (Some(kind), Records::Stored(owner)) => match owner.set(kind)? {
                    (0, _) => Answers::None,
                    (count, bytes) => Answers::Stored(count, bytes),
                },
                (Some(kind), Records::Pod(data)) if data.kind() == kind => {
                    let mut bytes = Vec::new();
                    wire::answer(data, zone.ttl(), &mut bytes)?;
                    Answers::Pod(bytes)
                }
                _ => Answers::None,
            };
            let authority: &[u8] = match answers {
                Answers::None => zone.soa_wire()?,
                _ => &[],
            };
            (0, answers, authority)
        }
    };
    let (count, records): (u16, &[u8]) = match &answers {
        Answers::None => (0, &[]),
        Answers::Stored(count, bytes) => (*count, bytes),
        Answers::Pod(bytes) => (1, bytes),
    };
    let mut reply = Vec::with_capacity(question_end + records.len() + authority.len() + OPT_LEN);
    reply.extend_from_slice(&request[..2]);
    // QR, opcode QUERY, AA, RD as asked; RA when there is an upstream; the rcode.
    reply.push(0x80 | 0x04 | (request[2] & 0x01));
    reply.push(if forwarding { 0x80 } else { 0 } | rcode);
    for n in [
        1,
        count,
        u16::from(!authority.is_empty()),
        u16::from(payload.is_some()),
    ] {
        reply.extend_from_slice(&n.to_be_bytes());
    }
    reply.extend_from_slice(&request[12..question_end]);
    reply.extend_from_slice(records);
    reply.extend_from_slice(authority);
    if let Some(payload) = payload {
        // Root owner, type OPT, our buffer size, extended rcode 0, version 0, no flags or data.
        let size = EDNS_PAYLOAD.min(payload.max(512));
        reply.extend_from_slice(&[0, 0, 41]);
        reply.extend_from_slice(&size.to_be_bytes());
        reply.extend_from_slice(&[0; 6]);
    }
    let limit = payload.map_or(512, |p| p.clamp(512, EDNS_PAYLOAD));
    if udp && reply.len() > usize::from(limit) {
        // The general path truncates as hickory measures (it compresses more).
        return None;
    }
    let mut asked = String::with_capacity(len);
    let mut at = 12;
    while request[at] != 0 {
        let label = usize::from(request[at]);
        // Checked above: letters, digits, '-' and '_'.
        asked.extend(
            request[at + 1..at + 1 + label]
                .iter()
                .map(|&b| char::from(b)),
        );
        asked.push('.');
        at += label + 1;
    }
    let outcome = Outcome {
        name: asked,
        qtype: qtype_name(qtype).into(),
        rcode: if rcode == 3 { "NXDOMAIN" } else { "NOERROR" }.into(),
    };
    Some((reply, outcome))
}

/// The answer records of a reply.
enum Answers<'z> {
    None,
    Stored(u16, &'z [u8]),
    Pod(Vec<u8>),
}

/// The bytes of an OPT record with no options.
const OPT_LEN: usize = 11;

/// The client's UDP buffer size from `rest`, which must be exactly one OPT record of EDNS
/// version 0 whose options are well formed and none that hickory parses itself (client
/// subnet): else None, and the general path answers (FORMERR, BADVERS...).
fn opt_payload(rest: &[u8]) -> Option<u16> {
    if rest.len() < OPT_LEN || rest[0] != 0 || u16_at(rest, 1) != 41 || rest[5..7] != [0, 0] {
        return None;
    }
    let payload = u16_at(rest, 3);
    let mut options = &rest[OPT_LEN..];
    if options.len() != usize::from(u16_at(rest, 9)) {
        return None;
    }
    while !options.is_empty() {
        if options.len() < 4 || u16_at(options, 0) == 8 {
            return None;
        }
        let len = usize::from(u16_at(options, 2));
        options = options.get(4 + len..)?;
    }
    Some(payload)
}

/// The question type as hickory prints it.
fn qtype_name(qtype: Qtype) -> &'static str {
    match qtype {
        Qtype::A => "A",
        Qtype::Aaaa => "AAAA",
        Qtype::Srv => "SRV",
        Qtype::Ptr => "PTR",
        Qtype::Cname => "CNAME",
        Qtype::Txt => "TXT",
        Qtype::Soa => "SOA",
        Qtype::Any => "ANY",
        Qtype::Other(_) => "-",
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    use super::super::{general, Decision};
    use super::*;
    use crate::zone::ZoneConfig;

    fn zone() -> Zone {
        let services: Vec<Service> = [
            json!({"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                            "ports": [{"name": "http", "port": 80}]}}),
            json!({"metadata": {"name": "db", "namespace": "prod"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "big", "namespace": "prod"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
            json!({"metadata": {"name": "docs", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}),
            json!({"metadata": {"name": "out", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "kubernetes.io"}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let slice = |svc: &str, n: usize| -> EndpointSlice {
            let endpoints: Vec<serde_json::Value> = (0..n)
                .map(|i| json!({"addresses": [format!("10.244.{}.{}", n, i + 1)], "conditions": {"ready": true}}))
                .collect();
            serde_json::from_value(json!({
                "metadata": {"name": format!("{svc}-1"), "namespace": "prod",
                             "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80}, {"name": "pg", "port": 5432}],
                "endpoints": endpoints,
            }))
            .unwrap()
        };
        let slices = [slice("db", 3), slice("big", 60)];
        Zone::compile(
            ZoneConfig::default(),
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
            3,
        )
    }

    fn request(name: &str, qtype: RecordType, edns: Option<(u16, u8)>, cookie: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some((size, version)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size).set_version(version);
            if cookie {
                e.options_mut()
                    .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                        10,
                        vec![1, 2, 3, 4, 5, 6, 7, 8],
                    ));
            }
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// Every record of a message as text, names in the case written.
    fn shown(m: &Message) -> String {
        let mut out = format!("{:?}\n", m.header());
        for q in m.queries() {
            out.push_str(&format!("Q {q}\n"));
        }
        for r in m.answers().iter().chain(m.name_servers()) {
            out.push_str(&format!("{r}\n"));
        }
        out.push_str(&format!("{:?}\n", m.extensions()));
        out
    }

    /// Whether the general path gives the same reply (header, records, OPT) and outcome.
    fn same_as_general(
        z: &Zone,
        request: &[u8],
        udp: bool,
        forwarding: bool,
        bytes: &[u8],
        outcome: &Outcome,
        case: &str,
    ) {
        let Some(Decision::Reply(expected, expected_outcome)) =
            general(Some(z), request, udp, forwarding)
        else {
            panic!("{case}: no general reply");
        };
        let ours = Message::from_vec(bytes).unwrap();
        let theirs = Message::from_vec(&expected).unwrap();
        assert_eq!(ours, theirs, "{case}");
        assert_eq!(shown(&ours), shown(&theirs), "{case}");
        assert_eq!(outcome, &expected_outcome, "{case}");
    }

    fn the_zone() -> &'static Zone {
        static ZONE: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();
        ZONE.get_or_init(zone)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any request, a question of the zone's or one changed byte by byte: when the plain
        /// path answers, the general one says the same.
        #[test]
        fn whatever_the_plain_path_answers_the_general_one_says_too(
            which in 0usize..8,
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 64),
            qtype in proptest::sample::select(vec![1u16, 5, 6, 12, 16, 28, 33, 255, 15]),
            edns in proptest::sample::select(vec![None, Some((1232u16, 0u8)), Some((300, 0)), Some((9000, 0))]),
            cookie: bool,
            changes in proptest::collection::vec((0usize..120, proptest::prelude::any::<u8>()), 0..3),
            udp: bool,
            forwarding: bool,
        ) {
            let names = [
                "web.default.svc.cluster.local.",
                "_http._tcp.web.default.svc.cluster.local.",
                "big.prod.svc.cluster.local.",
                "1.60.244.10.in-addr.arpa.",
                "docs.default.svc.cluster.local.",
                "x.y.svc.cluster.local.",
                "10-1-2-3.a.pod.cluster.local.",
                "example.com.",
            ];
            let name: String = names[which]
                .chars()
                .zip(flips.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            let mut request = request(&name, RecordType::from(qtype), edns, cookie);
            for (at, byte) in changes {
                if let Some(b) = request.get_mut(at) {
                    *b = byte;
                }
            }
            if let Some((bytes, outcome)) = plain(Some(the_zone()), &request, udp, forwarding) {
                same_as_general(the_zone(), &request, udp, forwarding, &bytes, &outcome, &name);
            }
        }
    }

    #[test]
    fn plain_replies_mean_what_the_general_path_says() {
        let z = zone();
        let names = [
            ("web.default.svc.cluster.local.", RecordType::A),
            ("WEB.Default.svc.CLUSTER.local.", RecordType::A),
            ("web.default.svc.cluster.local.", RecordType::AAAA),
            ("web.default.svc.cluster.local.", RecordType::TXT),
            ("web.default.svc.cluster.local.", RecordType::ANY),
            ("web.default.svc.cluster.local.", RecordType::MX),
            ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ("_pg._tcp.db.prod.svc.cluster.local.", RecordType::SRV),
            ("_http._tcp.big.prod.svc.cluster.local.", RecordType::SRV),
            ("db.prod.svc.cluster.local.", RecordType::A),
            ("big.prod.svc.cluster.local.", RecordType::A),
            ("20.0.96.10.in-addr.arpa.", RecordType::PTR),
            ("2.3.244.10.in-addr.arpa.", RecordType::PTR),
            ("9.9.96.10.in-addr.arpa.", RecordType::PTR),
            ("96.10.in-addr.arpa.", RecordType::PTR),
            ("docs.default.svc.cluster.local.", RecordType::A),
            ("docs.default.svc.cluster.local.", RecordType::CNAME),
            ("docs.default.svc.cluster.local.", RecordType::ANY),
            ("out.default.svc.cluster.local.", RecordType::A),
            ("nope.default.svc.cluster.local.", RecordType::A),
            (
                "web.default.svc.cluster.local.default.svc.cluster.local.",
                RecordType::A,
            ),
            ("svc.cluster.local.", RecordType::A),
            ("cluster.local.", RecordType::SOA),
            ("cluster.local.", RecordType::NS),
            ("dns-version.cluster.local.", RecordType::TXT),
            ("10-244-1-5.prod.pod.cluster.local.", RecordType::A),
            ("10-244-1-5.prod.pod.cluster.local.", RecordType::AAAA),
            ("fd00--1.prod.pod.cluster.local.", RecordType::AAAA),
            ("prod.pod.cluster.local.", RecordType::A),
            ("example.com.", RecordType::A),
            (".", RecordType::NS),
        ];
        let mut plain_count = 0;
        for (name, qtype) in names {
            for edns in [
                None,
                Some((1232, 0)),
                Some((4096, 0)),
                Some((100, 0)),
                Some((1232, 1)),
            ] {
                for cookie in [false, true] {
                    let request = request(name, qtype, edns, cookie);
                    for (udp, forwarding) in [(true, false), (false, false), (true, true)] {
                        let Some((bytes, outcome)) = plain(Some(&z), &request, udp, forwarding)
                        else {
                            continue;
                        };
                        plain_count += 1;
                        let case = format!("{name} {qtype} {edns:?} cookie {cookie} udp {udp}");
                        same_as_general(&z, &request, udp, forwarding, &bytes, &outcome, &case);
                    }
                }
            }
        }
        // The common questions take the plain path.
        assert!(plain_count > 200, "{plain_count}");
        for (name, qtype) in [
            ("web.default.svc.cluster.local.", RecordType::A),
            ("WEB.default.svc.cluster.local.", RecordType::AAAA),
            ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ("20.0.96.10.in-addr.arpa.", RecordType::PTR),
            ("x.web.default.svc.cluster.local.", RecordType::A),
            ("db.prod.svc.cluster.local.", RecordType::A),
        ] {
            let request = request(name, qtype, Some((1232, 0)), true);
            assert!(plain(Some(&z), &request, true, false).is_some(), "{name}");
        }
    }

    #[test]
    fn what_the_plain_path_leaves_to_the_general_one() {
        let z = zone();
        let too_big = request("big.prod.svc.cluster.local.", RecordType::A, None, false);
        assert!(plain(Some(&z), &too_big, true, false).is_none());
        assert!(plain(Some(&z), &too_big, false, false).is_some());
        let chained = request(
            "docs.default.svc.cluster.local.",
            RecordType::A,
            None,
            false,
        );
        assert!(plain(Some(&z), &chained, true, false).is_none());
        let outside = request("example.com.", RecordType::A, None, false);
        assert!(plain(Some(&z), &outside, true, true).is_none());
        let badvers = request(
            "web.default.svc.cluster.local.",
            RecordType::A,
            Some((1232, 1)),
            false,
        );
        assert!(plain(Some(&z), &badvers, true, false).is_none());
        let mut trailing = request("web.default.svc.cluster.local.", RecordType::A, None, false);
        trailing.push(0);
        assert!(plain(Some(&z), &trailing, true, false).is_none());
        assert!(plain(None, &outside, true, false).is_none());
        // A label starting with a dash: hickory-proto escapes it in the outcome's name.
        let mut dashed = request(
            "x0-1-2-3.a.pod.cluster.local.",
            RecordType::AAAA,
            None,
            false,
        );
        // The first label's first byte, after the 12-byte header and its length byte.
        dashed[13] = b'-';
        assert!(plain(Some(&z), &dashed, true, false).is_none());
    }
}
