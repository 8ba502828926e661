//! weft's DNS server answering the real `dig` (Debian's dnsutils) over UDP and TCP on loopback:
//! records of each kind, negative answers with the SOA, truncation over UDP and the full answer
//! over TCP for a headless Service of 100 endpoints, refusals (other classes, zone transfers,
//! names outside the cluster), and garbage that gets FORMERR or nothing while the server goes
//! on answering.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dns::server::{serve_tcp, serve_udp, Served};
use weft_dns::{Zone, ZoneConfig};

fn zone() -> Zone {
    let web: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let big: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let endpoints: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"addresses": [format!("10.244.{}.{}", i / 200, i % 200 + 1)], "conditions": {"ready": true}}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "big-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}],
        "endpoints": endpoints,
    }))
    .unwrap();
    Zone::compile(ZoneConfig::default(), &[&web, &big], &[&slice], 1)
}

/// A server on loopback (UDP and TCP on one port), running on its own runtime thread.
fn server() -> SocketAddr {
    served_server().0
}

fn served_server() -> (SocketAddr, std::sync::Arc<Served>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let served = Served::new();
    let shared = served.clone();
    std::thread::spawn(move || {
        let served = shared;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            served.swap(zone());
            // The same port for both: take a UDP port, then TCP on it (retry if taken).
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
    (rx.recv().unwrap(), served)
}

fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (dnsutils, scripts/deps.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dig_gets_the_records_and_the_right_negative_answers() {
    let s = server();
    assert_eq!(
        dig(s, &["web.default.svc.cluster.local", "+short"]).trim(),
        "10.96.0.20"
    );
    assert_eq!(
        dig(
            s,
            &[
                "-t",
                "SRV",
                "_http._tcp.web.default.svc.cluster.local",
                "+short"
            ]
        )
        .trim(),
        "0 100 80 web.default.svc.cluster.local."
    );
    assert_eq!(
        dig(s, &["-x", "10.96.0.20", "+short"]).trim(),
        "web.default.svc.cluster.local."
    );
    // Case does not matter; the answer keeps the question's case.
    let upper = dig(s, &["WEB.DEFAULT.svc.cluster.local", "+noall", "+answer"]);
    let words: Vec<&str> = upper.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "WEB.DEFAULT.svc.cluster.local.",
            "30",
            "IN",
            "A",
            "10.96.0.20"
        ]
    );
    // Exists with another type: NOERROR, no answer, the SOA.
    let nodata = dig(s, &["-t", "AAAA", "web.default.svc.cluster.local"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0, AUTHORITY: 1"),
        "{nodata}"
    );
    let nx = dig(s, &["nothere.default.svc.cluster.local"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("AUTHORITY: 1") && nx.contains("SOA"),
        "{nx}"
    );
    assert!(nx.contains("flags: qr aa rd"), "authoritative: {nx}");
    assert_eq!(
        dig(s, &["-t", "TXT", "dns-version.cluster.local", "+short"]).trim(),
        "\"1.1.0\""
    );
    assert_eq!(
        dig(s, &["10-244-0-9.default.pod.cluster.local", "+short"]).trim(),
        "10.244.0.9"
    );
    // Not ours, another class, a zone transfer: refused.
    assert!(dig(s, &["example.com"]).contains("status: REFUSED"));
    assert!(dig(s, &["-c", "CH", "-t", "TXT", "version.bind"]).contains("status: REFUSED"));
    assert!(dig(s, &["-t", "AXFR", "cluster.local"]).contains("Transfer failed"));
    // An EDNS version weft does not speak: BADVERS, and its own OPT says version 0.
    let badvers = dig(
        s,
        &["+edns=1", "+noednsneg", "web.default.svc.cluster.local"],
    );
    assert!(badvers.contains("status: BADVERS"), "{badvers}");
    assert!(badvers.contains("EDNS: version: 0"), "{badvers}");
}

#[test]
fn a_big_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let s = server();
    let udp = dig(s, &["big.default.svc.cluster.local", "+noedns", "+ignore"]);
    assert!(udp.contains(" tc"), "the TC bit: {udp}");
    assert!(udp.contains("ANSWER: 0"), "{udp}");
    // With EDNS the client's buffer (here 1232) is the limit: still too small for 100 records.
    let edns = dig(
        s,
        &["big.default.svc.cluster.local", "+bufsize=1232", "+ignore"],
    );
    assert!(edns.contains(" tc"), "{edns}");
    let tcp = dig(s, &["big.default.svc.cluster.local", "+tcp", "+short"]);
    assert_eq!(tcp.lines().count(), 100, "{tcp}");
    // dig itself retries over TCP on TC: the user sees all 100.
    assert_eq!(
        dig(s, &["big.default.svc.cluster.local", "+short"])
            .lines()
            .count(),
        100
    );
}

#[test]
fn garbage_gets_formerr_or_nothing_and_serving_goes_on() {
    let s = server();
    let sock = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 512];
    // A header and a question cut short: FORMERR with the request's id.
    let cut = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 3, b'w', b'e',
    ];
    sock.send_to(&cut, s).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("a FORMERR");
    assert!(n >= 12);
    assert_eq!(&buf[..2], &[0x12, 0x34]);
    assert_eq!(buf[3] & 0x0f, 1, "rcode FORMERR");
    // Too short for a header: no answer.
    sock.send_to(&[1, 2, 3], s).unwrap();
    assert!(sock.recv_from(&mut buf).is_err());
    // Hundreds of labels, random bytes: the server still answers the next question.
    let mut long = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    for _ in 0..300 {
        long.extend_from_slice(&[1, b'a']);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&long, s).unwrap();
    let _ = sock.recv_from(&mut buf);
    let noise: Vec<u8> = (0..700u32).map(|i| (i * 7919 % 251) as u8).collect();
    sock.send_to(&noise, s).unwrap();
    let _ = sock.recv_from(&mut buf);
    assert_eq!(
        dig(s, &["web.default.svc.cluster.local", "+short"]).trim(),
        "10.96.0.20"
    );
}

#[test]
fn every_answer_is_counted_by_type_and_rcode() {
    let (s, served) = served_server();
    dig(s, &["web.default.svc.cluster.local", "+short"]);
    dig(s, &["web.default.svc.cluster.local", "+short", "+tcp"]);
    dig(s, &["nothere.default.svc.cluster.local"]);
    dig(s, &["example.com"]);
    let text = served.metrics.render();
    for line in [
        "weft_dns_requests_total{type=\"A\",rcode=\"NOERROR\"} 2",
        "weft_dns_requests_total{type=\"A\",rcode=\"NXDOMAIN\"} 1",
        "weft_dns_requests_total{type=\"A\",rcode=\"REFUSED\"} 1",
        "weft_dns_request_duration_seconds_count 4",
        "weft_dns_request_duration_seconds_bucket{le=\"+Inf\"} 4",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    assert!(text.contains("weft_dns_zone_records "), "{text}");
}
