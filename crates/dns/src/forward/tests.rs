use std::str::FromStr;

use hickory_proto::rr::rdata::{A, SOA};

use super::*;

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

fn question(text: &str, qtype: RecordType) -> Query {
    Query::query(name(text), qtype)
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::from(Ipv4Addr::from(ip))))
}

fn soa(ttl: u32, minimum: u32) -> Record {
    Record::from_rdata(
        name("example.org."),
        ttl,
        RData::SOA(SOA::new(
            name("ns.example.org."),
            name("hostmaster.example.org."),
            1,
            3600,
            600,
            86400,
            minimum,
        )),
    )
}

fn upstream_answer(
    q: &Query,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
) -> Message {
    let mut m = Message::new();
    m.set_message_type(MessageType::Response)
        .set_response_code(rcode)
        .add_query(q.clone())
        .add_answers(answers)
        .add_name_servers(authority);
    m
}

#[test]
fn resolv_conf_gives_its_nameservers_on_port_53() {
    let text = "# generated\nsearch lab.example\nnameserver 203.0.113.10\nnameserver  fd00::53\noptions ndots:1\nnameserver not-an-address\n";
    let servers: Vec<String> = resolv_conf_servers(text)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(servers, ["203.0.113.10:53", "[fd00::53]:53"]);
    assert!(resolv_conf_servers("").is_empty());
}

#[test]
fn positive_answers_are_kept_for_their_smallest_ttl_at_most_an_hour() {
    let q = question("www.example.org.", RecordType::A);
    let two = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![
            a("www.example.org.", 300, [203, 0, 113, 10]),
            a("www.example.org.", 60, [203, 0, 113, 11]),
        ],
        vec![],
    );
    assert_eq!(cache_ttl(&two), Some(60));
    let long = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![a("www.example.org.", 86400, [1, 2, 3, 4])],
        vec![],
    );
    assert_eq!(cache_ttl(&long), Some(MAX_POSITIVE_TTL));
    let zero = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![a("www.example.org.", 0, [1, 2, 3, 4])],
        vec![],
    );
    assert_eq!(cache_ttl(&zero), None, "a TTL of 0 means: do not cache");
}

#[test]
fn negative_answers_are_kept_for_the_soa_negative_ttl_and_only_with_an_soa() {
    let q = question("nope.example.org.", RecordType::A);
    // RFC 2308: the smaller of the SOA record's TTL and its MINIMUM field.
    let nx = upstream_answer(&q, ResponseCode::NXDomain, vec![], vec![soa(300, 60)]);
    assert_eq!(cache_ttl(&nx), Some(60));
    let nodata = upstream_answer(&q, ResponseCode::NoError, vec![], vec![soa(30, 600)]);
    assert_eq!(cache_ttl(&nodata), Some(30));
    let long = upstream_answer(&q, ResponseCode::NXDomain, vec![], vec![soa(86400, 86400)]);
    assert_eq!(cache_ttl(&long), Some(MAX_NEGATIVE_TTL));
    let bare = upstream_answer(&q, ResponseCode::NXDomain, vec![], vec![]);
    assert_eq!(cache_ttl(&bare), None);
    for rcode in [ResponseCode::ServFail, ResponseCode::Refused] {
        let failed = upstream_answer(&q, rcode, vec![], vec![soa(300, 300)]);
        assert_eq!(cache_ttl(&failed), None, "{rcode:?} is never cached");
    }
}

#[test]
fn cached_ttls_count_down_and_the_entry_expires() {
    let cache = Cache::new(10);
    let q = question("WWW.Example.org.", RecordType::A);
    let answer = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![a("www.example.org.", 30, [203, 0, 113, 10])],
        vec![soa(300, 300)],
    );
    let t0 = Instant::now();
    assert!(cache.put(Key::of(&q), &answer, t0));
    // Asked in another case, the same entry.
    let key = Key::of(&question("www.EXAMPLE.org.", RecordType::A));
    let later = cache.get(&key, t0 + Duration::from_secs(12)).unwrap();
    assert_eq!(later.answers[0].ttl(), 18);
    assert_eq!(later.authority[0].ttl(), 18, "no record outlives the entry");
    assert!(!later.negative());
    assert!(cache.get(&key, t0 + Duration::from_secs(30)).is_none());
    assert!(cache.is_empty(), "an expired entry is dropped when met");
    // Another type of the same name is another question.
    assert!(cache.put(Key::of(&q), &answer, t0));
    assert!(cache
        .get(
            &Key::of(&question("www.example.org.", RecordType::AAAA)),
            t0
        )
        .is_none());
}

#[test]
fn the_cache_never_holds_more_than_its_capacity() {
    let cache = Cache::new(3);
    let t0 = Instant::now();
    for i in 0..10u8 {
        let q = question(&format!("host{i}.example.org."), RecordType::A);
        let answer = upstream_answer(
            &q,
            ResponseCode::NoError,
            vec![a(&format!("host{i}.example.org."), 60, [10, 0, 0, i])],
            vec![],
        );
        assert!(cache.put(Key::of(&q), &answer, t0));
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.len(), 3);
    // The last one put is always there.
    assert!(cache
        .get(&Key::of(&question("host9.example.org.", RecordType::A)), t0)
        .is_some());
    let none = Cache::new(0);
    let q = question("host.example.org.", RecordType::A);
    let answer = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![a("host.example.org.", 60, [10, 0, 0, 1])],
        vec![],
    );
    assert!(
        !none.put(Key::of(&q), &answer, t0),
        "a cache of size 0 keeps nothing"
    );
}

#[test]
fn an_answer_must_carry_the_id_and_the_question_sent() {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let q = question("www.example.org.", RecordType::A);
    let mut m = upstream_answer(
        &q,
        ResponseCode::NoError,
        vec![a("www.example.org.", 60, [1, 2, 3, 4])],
        vec![],
    );
    m.set_id(7);
    let bytes = m.to_vec().unwrap();
    assert!(check(server, 7, &q, &bytes).is_ok());
    assert!(check(
        server,
        7,
        &question("WWW.example.ORG.", RecordType::A),
        &bytes
    )
    .is_ok());
    let wrong_id = check(server, 8, &q, &bytes).unwrap_err().to_string();
    assert!(wrong_id.contains("ID 7"), "{wrong_id}");
    let other = check(
        server,
        7,
        &question("mail.example.org.", RecordType::A),
        &bytes,
    )
    .unwrap_err();
    assert!(other.to_string().contains("another question"), "{other}");
    assert!(check(server, 7, &q, &bytes[..5]).is_err());
}

/// An upstream that never answers: every try times out, the client gets SERVFAIL, and each
/// failure is counted against the upstream.
#[tokio::test]
async fn a_silent_upstream_gives_servfail_and_counts_failures() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let forwarder = Forwarder::new(vec![server], 10).with_timeout(Duration::from_millis(100));
    let metrics = Metrics::default();
    let mut query = Message::new();
    query
        .set_id(42)
        .set_recursion_desired(true)
        .add_query(question("www.example.org.", RecordType::A));
    assert!(forwarder.cached(&query, &metrics).is_none());
    let reply = forwarder.resolve(&query, &metrics).await;
    assert_eq!(reply.id(), 42);
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert!(reply.recursion_available());
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "weft_dns_forward_failures_total{{to=\"{server}\",reason=\"timeout\"}} 2"
        )),
        "{text}"
    );
    assert!(text.contains("weft_dns_cache_misses_total 1"), "{text}");
    assert!(forwarder.cache().is_empty(), "SERVFAIL is not cached");
}

/// Beyond the bound of questions waiting upstream, SERVFAIL at once, counted.
#[tokio::test]
async fn questions_beyond_the_in_flight_bound_get_servfail_at_once() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let forwarder = std::sync::Arc::new(
        Forwarder::new(vec![server], 10)
            .with_timeout(Duration::from_millis(500))
            .with_max_in_flight(1),
    );
    let metrics = std::sync::Arc::new(Metrics::default());
    let mut query = Message::new();
    query
        .set_id(1)
        .set_recursion_desired(true)
        .add_query(question("www.example.org.", RecordType::A));
    let waiting = {
        let (forwarder, metrics, query) = (forwarder.clone(), metrics.clone(), query.clone());
        tokio::spawn(async move { forwarder.resolve(&query, &metrics).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let turned_away = forwarder.resolve(&query, &metrics).await;
    assert_eq!(turned_away.response_code(), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(metrics
        .render()
        .contains("weft_dns_forward_overloaded_total 1"));
    assert_eq!(
        waiting.await.unwrap().response_code(),
        ResponseCode::ServFail
    );
}
