//! Names outside the cluster through weft's DNS, against a real upstream: Knot (Debian's
//! `knotd`) on loopback serving `example.org` and a reverse zone, asked with the real `dig`.
//! Forwarded answers (not authoritative, recursion available), NXDOMAIN with the upstream's SOA,
//! reverse names outside the cluster's ranges forwarded while the cluster's own stay weft's, an
//! answer too big for UDP fetched from upstream over TCP, the cache (hits counted, TTLs counting
//! down, answers still given when the upstream is gone), SERVFAIL when no upstream answers, and
//! refusals: no recursion asked, zone transfers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use weft_dns::forward::Forwarder;
use weft_dns::server::{serve_tcp, serve_udp, Served};
use weft_dns::{Zone, ZoneConfig};
use weft_testutil::parsed_by_prometheus;

const EXAMPLE_ZONE: &str = "$ORIGIN example.org.
$TTL 300
@       SOA ns hostmaster 1 3600 600 86400 60
@       NS  ns
ns      A   127.0.0.1
www     A   203.0.113.10
alias   CNAME www
";

const REVERSE_ZONE: &str = "$ORIGIN 113.0.203.in-addr.arpa.
$TTL 300
@   SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 60
@   NS  ns.example.org.
10  PTR outside.example.org.
";

/// A port free on loopback for both UDP and TCP just now.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// knotd on loopback, killed and its files removed when dropped.
struct Knot {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Knot {
    fn start() -> Knot {
        let dir = std::env::temp_dir().join(format!("weft-dns-forward-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        // Ten TXT strings of 200 bytes: more than any UDP answer may carry (1232 bytes).
        let big: String = (0..10)
            .map(|i| {
                format!(
                    "big TXT \"{}\"\n",
                    char::from(b'a' + i).to_string().repeat(200)
                )
            })
            .collect();
        std::fs::write(dir.join("example.org.zone"), format!("{EXAMPLE_ZONE}{big}")).unwrap();
        std::fs::write(dir.join("reverse.zone"), REVERSE_ZONE).unwrap();
        let d = dir.display();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: \"{d}\"\n\
             log:\n  - target: stderr\n    any: warning\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    journal-content: none\n    zonefile-sync: -1\n\
             zone:\n  - domain: example.org\n    file: example.org.zone\n  - domain: 113.0.203.in-addr.arpa\n    file: reverse.zone\n"
        );
        std::fs::write(dir.join("knot.conf"), conf).unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .spawn()
            .expect("knotd (Debian's knot package, installed by scripts/deps.sh)");
        let knot = Knot {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig(knot.addr, &["www.example.org"]).status != "NOERROR" {
            assert!(Instant::now() < deadline, "knotd did not start answering");
            std::thread::sleep(Duration::from_millis(50));
        }
        knot
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cluster_zone() -> Zone {
    let web: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    // ExternalNames: one to the outside world, one to a name the upstream does not have, one to
    // a Service of the cluster.
    let external = |name: &str, target: &str| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": target},
        }))
        .unwrap()
    };
    let ext = external("ext", "www.example.org");
    let gone = external("gone", "gone.example.org");
    let inside = external("inside", "web.default.svc.cluster.local");
    Zone::compile(ZoneConfig::default(), &[&web, &ext, &gone, &inside], &[], 1)
}

/// weft's server on loopback forwarding to `upstream`, on its own runtime thread.
fn weft(upstream: SocketAddr) -> (SocketAddr, Arc<Served>) {
    let forwarder = Forwarder::new(vec![upstream], 100).with_timeout(Duration::from_millis(300));
    let served = Served::forwarding(forwarder);
    served.swap(cluster_zone());
    let port = free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let theirs = served.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
            let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
            tx.send(()).unwrap();
            tokio::spawn(serve_tcp(tcp, theirs.clone()));
            serve_udp(udp, theirs).await;
        });
    });
    rx.recv().unwrap();
    (addr, served)
}

struct Dig {
    status: String,
    flags: String,
    answers: Vec<String>,
    authority: Vec<String>,
    text: String,
}

/// `dig @addr args...` with the sections parsed.
fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig (Debian's dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string();
    let flags = text
        .split("flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string();
    let section = |name: &str| -> Vec<String> {
        text.split(&format!(";; {name} SECTION:\n"))
            .nth(1)
            .map(|s| {
                s.lines()
                    .take_while(|l| !l.is_empty())
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect()
            })
            .unwrap_or_default()
    };
    Dig {
        status,
        flags,
        answers: section("ANSWER"),
        authority: section("AUTHORITY"),
        text,
    }
}

fn ttl(record: &str) -> u32 {
    record.split(' ').nth(1).unwrap().parse().unwrap()
}

fn metric(served: &Served, line_start: &str) -> u64 {
    let text = served.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn names_outside_the_cluster_are_forwarded_cached_and_refused_as_they_should_be() {
    let mut knot = Knot::start();
    let (addr, served) = weft(knot.addr);

    // Forwarded: the upstream's answer, not authoritative, recursion available.
    let www = dig(addr, &["www.example.org"]);
    assert_eq!(www.status, "NOERROR", "{}", www.text);
    assert_eq!(www.answers.len(), 1, "{}", www.text);
    assert!(
        www.answers[0].ends_with("IN A 203.0.113.10"),
        "{}",
        www.text
    );
    assert!(
        www.flags.contains("ra") && !www.flags.contains("aa"),
        "{}",
        www.text
    );
    // A CNAME and its target, in the question's case.
    let alias = dig(addr, &["ALIAS.example.ORG"]);
    assert_eq!(alias.answers.len(), 2, "{}", alias.text);
    assert!(
        alias.answers[0]
            .to_lowercase()
            .contains("cname www.example.org."),
        "{}",
        alias.text
    );

    // An ExternalName: the CNAME and, followed upstream, its target's records, in one answer
    // (resolver libraries do not follow a CNAME themselves); the rcode is the target's.
    let ext = dig(addr, &["ext.default.svc.cluster.local"]);
    assert_eq!(ext.status, "NOERROR", "{}", ext.text);
    assert_eq!(ext.answers.len(), 2, "{}", ext.text);
    assert!(
        ext.answers[0].ends_with("CNAME www.example.org."),
        "{}",
        ext.text
    );
    assert!(
        ext.answers[1].ends_with("IN A 203.0.113.10"),
        "{}",
        ext.text
    );
    assert!(
        ext.flags.contains("aa"),
        "the first name is the cluster's: {}",
        ext.text
    );
    let gone = dig(addr, &["gone.default.svc.cluster.local"]);
    assert_eq!(gone.status, "NXDOMAIN", "{}", gone.text);
    assert_eq!(gone.answers.len(), 1, "the CNAME: {}", gone.text);
    assert!(
        gone.authority.iter().any(|r| r.contains(" SOA ")),
        "{}",
        gone.text
    );
    let inside = dig(addr, &["inside.default.svc.cluster.local"]);
    assert_eq!(inside.answers.len(), 2, "{}", inside.text);
    assert!(
        inside.answers[1].ends_with("IN A 10.96.0.20"),
        "{}",
        inside.text
    );
    // Asked for the CNAME itself, or without recursion: the CNAME alone.
    assert_eq!(
        dig(addr, &["ext.default.svc.cluster.local", "CNAME"])
            .answers
            .len(),
        1
    );
    let alone = dig(addr, &["+norecurse", "ext.default.svc.cluster.local"]);
    assert_eq!(alone.status, "NOERROR", "{}", alone.text);
    assert_eq!(alone.answers.len(), 1, "{}", alone.text);

    // NXDOMAIN with the upstream's SOA, then from the cache.
    let nope = dig(addr, &["nope.example.org"]);
    assert_eq!(nope.status, "NXDOMAIN", "{}", nope.text);
    assert!(
        nope.authority.iter().any(|r| r.contains(" SOA ")),
        "{}",
        nope.text
    );
    let denial_hits = metric(&served, "weft_dns_cache_hits_total{type=\"denial\"}");
    assert_eq!(dig(addr, &["nope.example.org"]).status, "NXDOMAIN");
    assert_eq!(
        metric(&served, "weft_dns_cache_hits_total{type=\"denial\"}"),
        denial_hits + 1
    );

    // Reverse names: the cluster's ranges are weft's own, the rest is forwarded.
    let outside = dig(addr, &["-x", "203.0.113.10"]);
    assert_eq!(outside.answers.len(), 1, "{}", outside.text);
    assert!(
        outside.answers[0].ends_with("PTR outside.example.org."),
        "{}",
        outside.text
    );
    assert!(!outside.flags.contains("aa"));
    let cluster = dig(addr, &["-x", "10.96.0.20"]);
    assert!(
        cluster.answers[0].ends_with("PTR web.default.svc.cluster.local."),
        "{}",
        cluster.text
    );
    assert!(cluster.flags.contains("aa"), "{}", cluster.text);
    assert!(
        cluster.flags.contains("ra"),
        "recursion is available: {}",
        cluster.text
    );
    let unknown = dig(addr, &["-x", "10.96.0.99"]);
    assert_eq!(
        unknown.status, "NXDOMAIN",
        "the cluster's range is not forwarded: {}",
        unknown.text
    );

    // Too big for UDP: upstream truncates, weft asks it over TCP; the client gets TC over UDP
    // and the whole answer over TCP.
    let truncated = dig(addr, &["+ignore", "big.example.org", "TXT"]);
    assert!(truncated.flags.contains("tc"), "{}", truncated.text);
    let whole = dig(addr, &["+tcp", "big.example.org", "TXT"]);
    assert_eq!(whole.answers.len(), 10, "{}", whole.text);

    // Recursion only for those who ask for it; never a zone transfer.
    assert_eq!(
        dig(addr, &["+norecurse", "www.example.org"]).status,
        "REFUSED"
    );
    let axfr = dig(addr, &["example.org", "AXFR"]);
    assert!(
        axfr.text.contains("Transfer failed") || axfr.status == "REFUSED",
        "{}",
        axfr.text
    );

    // The cache: hits counted, TTLs counting down.
    let hits = metric(&served, "weft_dns_cache_hits_total{type=\"success\"}");
    let first = ttl(&dig(addr, &["www.example.org"]).answers[0]);
    std::thread::sleep(Duration::from_millis(2100));
    let later = dig(addr, &["www.example.org"]);
    assert!(
        ttl(&later.answers[0]) <= first - 2,
        "{first} then {}",
        later.text
    );
    assert_eq!(
        metric(&served, "weft_dns_cache_hits_total{type=\"success\"}"),
        hits + 2
    );
    assert!(
        metric(
            &served,
            &format!("weft_dns_forward_requests_total{{to=\"{}\"}}", knot.addr)
        ) >= 5
    );

    // The upstream gone: cached answers still come, others get SERVFAIL, cluster names are
    // still answered.
    knot.stop();
    let cached = dig(addr, &["www.example.org"]);
    assert_eq!(cached.status, "NOERROR", "{}", cached.text);
    assert!(cached.answers[0].ends_with("IN A 203.0.113.10"));
    let started = Instant::now();
    let failed = dig(addr, &["mail.example.org"]);
    assert_eq!(failed.status, "SERVFAIL", "{}", failed.text);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        metric(
            &served,
            &format!(
                "weft_dns_forward_failures_total{{to=\"{}\",reason=\"error\"}}",
                knot.addr
            )
        ) + metric(
            &served,
            &format!(
                "weft_dns_forward_failures_total{{to=\"{}\",reason=\"timeout\"}}",
                knot.addr
            )
        ) >= 2,
        "{}",
        served.metrics.render()
    );
    assert_eq!(
        dig(addr, &["web.default.svc.cluster.local"]).status,
        "NOERROR"
    );

    // Prometheus's own parser of the text format reads every family with its type.
    let parsed = parsed_by_prometheus(&served.metrics.render());
    for line in [
        "counter weft_dns_requests_total",
        "histogram weft_dns_request_duration_seconds_bucket",
        "gauge weft_dns_zone_records",
        "counter weft_dns_cache_hits_total [('type', 'success')]",
        "counter weft_dns_cache_hits_total [('type', 'denial')]",
        "counter weft_dns_cache_misses_total",
        "gauge weft_dns_cache_entries",
        "counter weft_dns_forward_requests_total",
        "counter weft_dns_forward_failures_total",
        "counter weft_dns_forward_overloaded_total",
    ] {
        assert!(parsed.contains(line), "{line} not in:\n{parsed}");
    }
}

#[test]
fn without_an_upstream_names_outside_the_cluster_are_refused() {
    let served = Served::new();
    served.swap(cluster_zone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .unwrap();
            tx.send(udp.local_addr().unwrap()).unwrap();
            serve_udp(udp, served).await;
        });
    });
    let addr = rx.recv().unwrap();
    assert_eq!(dig(addr, &["www.example.org"]).status, "REFUSED");
    assert_eq!(dig(addr, &["-x", "203.0.113.10"]).status, "REFUSED");
    assert_eq!(
        dig(addr, &["web.default.svc.cluster.local"]).status,
        "NOERROR"
    );
}
