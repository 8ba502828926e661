//! The agnhost server on loopback: every endpoint through std sockets and the real curl, raw TCP echo,
//! UDP commands, hostile clients and many concurrent connections.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, UdpSocket};
use std::time::Duration;

use support::*;
use weft_workloads::{AgnhostConfig, AgnhostMode, Workload};

#[test]
fn every_endpoint_over_one_keep_alive_connection() {
    let server = netexec("pod-keepalive");
    let addr = server.tcp[0];
    let stream = connect(addr);
    let local = stream.local_addr().unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for (target, status, body) in [
        ("/hostname", 200, "pod-keepalive".to_string()),
        ("/", 200, "pod-keepalive".to_string()),
        ("/clientip", 200, local.to_string()),
        ("/echo?msg=hello", 200, "hello".to_string()),
        (
            "/echo?msg=hello%20there+you",
            200,
            "hello there you".to_string(),
        ),
        ("/healthz", 200, "ok".to_string()),
        ("/no/such/path", 404, "404 page not found\n".to_string()),
    ] {
        write!(writer, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let answer = read_answer(&mut reader);
        assert_eq!(answer.status, status, "{target}");
        assert_eq!(answer.text(), body, "{target}");
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn pipelined_requests_and_bodies_keep_their_framing() {
    let server = netexec("pod-pipeline");
    let mut stream = connect(server.tcp[0]);
    let requests = "POST /echo?msg=one HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world\
                    GET /echo?msg=two HTTP/1.1\r\n\r\n\
                    HEAD /hostname HTTP/1.1\r\n\r\n\
                    GET /echo?msg=three HTTP/1.1\r\nConnection: close\r\n\r\n";
    stream.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_answer(&mut reader).text(), "one");
    assert_eq!(read_answer(&mut reader).text(), "two");
    // A HEAD answer has the length of the body it leaves out; read_answer would wait for it, so read
    // the next answer's status line right after the head.
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.contains("Content-Length: 12\r\n"), "{rest}");
    let second = rest
        .find("\r\n\r\nHTTP/1.1 200 OK")
        .expect("HEAD has no body")
        + 4;
    assert!(
        rest[second..].ends_with("Connection: close\r\n\r\nthree"),
        "{rest}"
    );
}

#[test]
fn curl_sees_every_endpoint() {
    let server = netexec("pod-curl");
    let base = format!("http://{}", server.tcp[0]);
    assert_eq!(curl(&[&format!("{base}/hostname")]), "pod-curl");
    assert_eq!(curl(&[&format!("{base}/")]), "pod-curl");
    assert_eq!(curl(&[&format!("{base}/echo?msg=hi%21")]), "hi!");
    assert_eq!(curl(&[&format!("{base}/healthz")]), "ok");
    let clientip = curl(&[&format!("{base}/clientip")]);
    assert!(clientip.starts_with("127.0.0.1:"), "{clientip}");
    assert!(clientip[10..].parse::<u16>().is_ok(), "{clientip}");
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/missing"),
    ]);
    assert_eq!(code, "404");
    // HTTP/1.0, HEAD, a POST body, and several URLs over one curl connection.
    assert_eq!(
        curl(&["--http1.0", &format!("{base}/hostname")]),
        "pod-curl"
    );
    let head = curl(&["-I", &format!("{base}/hostname")]);
    assert!(head.contains("Content-Length: 8"), "{head}");
    let posted = curl(&["-d", "some=form", &format!("{base}/echo?msg=posted")]);
    assert_eq!(posted, "posted");
    let both = curl(&[&format!("{base}/echo?msg=a"), &format!("{base}/echo?msg=b")]);
    assert_eq!(both, "ab");
    // curl asks `Expect: 100-continue` before large bodies (the interim answer itself is checked
    // in expect_100_continue_is_answered_before_the_body).
    let big = format!("data={}", "x".repeat(100_000));
    let expect = ["-H", "Expect: 100-continue", "-d", &big];
    assert_eq!(
        curl(&[&expect[..], &[&format!("{base}/echo?msg=big")]].concat()),
        "big"
    );
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    // A client that asks `Expect: 100-continue` holds its body back until the interim answer
    // comes (curl waits a second for it, then sends anyway): the server must send `100 Continue`
    // having seen only the head. If it waited for the body instead, the read below would fail
    // at the connection's read timeout, with the body still unsent.
    let server = netexec("pod-continue");
    let stream = connect(server.tcp[0]);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = "x".repeat(100_000);
    write!(
        writer,
        "POST /echo?msg=big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = String::new();
    for _ in 0..2 {
        reader.read_line(&mut interim).unwrap();
    }
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    writer.write_all(body.as_bytes()).unwrap();
    let answer = read_answer(&mut reader);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "big");
}

#[test]
fn non_http_clients_get_a_raw_echo() {
    let server = netexec("pod-echo");
    let addr = server.tcp[0];
    assert_eq!(send_and_drain(addr, b"hello\n"), b"hello\n");
    let garbage: Vec<u8> = (0..=255u8).cycle().take(5_000_000).collect();
    assert_eq!(send_and_drain(addr, &garbage), garbage);
    // Starts like a method, then is not one.
    assert_eq!(send_and_drain(addr, b"GETTING there"), b"GETTING there");
    // An interactive client gets each write echoed before it closes.
    let mut stream = connect(addr);
    for line in ["one\n", "two\n"] {
        stream.write_all(line.as_bytes()).unwrap();
        let mut back = vec![0; line.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, line.as_bytes());
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn malformed_http_gets_an_error_status_and_the_server_lives_on() {
    let server = netexec("pod-bad");
    let addr = server.tcp[0];
    for (request, status) in [
        (&b"GET /foo\r\n\r\n"[..], "400"),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", "400"),
        (b"GET / HTTP/3.0\r\n\r\n", "505"),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            "413",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "501",
        ),
        (b"GET /\xff\xfe HTTP/1.1\r\n\xc3\x28: \xa0\r\n\r\n", "400"),
    ] {
        let answer = String::from_utf8_lossy(&send_and_drain(addr, request)).into_owned();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?}: {answer}"
        );
    }
    let mut huge = b"GET / HTTP/1.1\r\nX-Huge: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    let answer = String::from_utf8_lossy(&send_and_drain(addr, &huge)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert_eq!(get(addr, "/healthz").text(), "ok");
}

#[test]
fn silent_and_half_sent_clients_do_not_block_others() {
    let server = netexec("pod-slow");
    let addr = server.tcp[0];
    let idle: Vec<_> = (0..20).map(|_| connect(addr)).collect();
    let mut half = connect(addr);
    half.write_all(b"GET /hostname HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Another client is answered (within its connection's read timeout) while 20 connections
    // say nothing and one request is half sent...
    assert_eq!(get(addr, "/hostname").text(), "pod-slow");
    // ...and that half-sent request is still unanswered: the server did not finish it early.
    half.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = half.peek(&mut byte);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{pending:?}"
    );
    half.set_nonblocking(false).unwrap();
    // The half-sent request still completes once its client finishes it.
    half.write_all(b"\r\n").unwrap();
    let answer = read_answer(&mut BufReader::new(half));
    assert_eq!(answer.text(), "pod-slow");
    drop(idle);
}

#[test]
fn many_concurrent_connections() {
    const CLIENTS: usize = 300;
    let server = netexec("pod-busy");
    let addr = server.tcp[0];
    // Every client connects before any asks, so all connections are open at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let stream = connect(addr);
                barrier.wait();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for j in 0..5 {
                    write!(writer, "GET /echo?msg={i}-{j} HTTP/1.1\r\n\r\n").unwrap();
                    assert_eq!(read_answer(&mut reader).text(), format!("{i}-{j}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

#[test]
fn udp_commands_and_echo() {
    let server = netexec("pod-udp");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.connect(server.udp[0]).unwrap();
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0; 65536];
    let mut ask = |datagram: &[u8]| {
        socket.send(datagram).unwrap();
        let n = socket.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(ask(b"hostname"), b"pod-udp");
    assert_eq!(ask(b"hostName\n"), b"pod-udp");
    assert_eq!(ask(b"clientip"), local.to_string().as_bytes());
    assert_eq!(ask(b"echo hi there"), b"hi there");
    assert_eq!(ask(b"anything else\n"), b"anything else\n");
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(ask(&big), big);
    assert_eq!(ask(b"\x00\xff"), b"\x00\xff");
}

#[test]
fn serve_hostname_answers_every_path_and_datagram() {
    let server = start(
        Workload::Agnhost(AgnhostConfig {
            mode: AgnhostMode::ServeHostname,
            tcp_ports: vec![0],
            udp_ports: vec![0],
        }),
        "pod-serve-hostname",
    );
    assert_eq!(get(server.tcp[0], "/anything").text(), "pod-serve-hostname");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(b"whatever", server.udp[0]).unwrap();
    let mut buf = [0; 100];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pod-serve-hostname");
}

#[test]
fn dial_reaches_another_pod_over_http_and_udp() {
    let client = netexec("pod-client");
    let target = netexec("pod-target");
    let (http, udp) = (target.tcp[0], target.udp[0]);
    let dial = |query: String| get(client.tcp[0], &format!("/dial?{query}"));

    let answer = dial(format!(
        "request=hostname&protocol=http&host=127.0.0.1&port={}&tries=2",
        http.port()
    ));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.text(),
        r#"{"responses":["pod-target","pod-target"]}"#
    );

    let answer = dial(format!(
        "request=echo%3Fmsg%3Dhey&host=127.0.0.1&port={}",
        http.port()
    ));
    assert_eq!(answer.text(), r#"{"responses":["hey"]}"#);

    let answer = dial(format!(
        "request=hostname&protocol=udp&host=localhost&port={}",
        udp.port()
    ));
    assert_eq!(answer.text(), r#"{"responses":["pod-target"]}"#);

    // A closed port: the try fails and says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let answer = dial(format!(
        "request=hostname&host=127.0.0.1&port={closed_port}"
    ));
    assert_eq!(answer.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let error = json["errors"][0].as_str().unwrap();
    assert!(error.contains("refused"), "{error}");
    assert!(json.get("responses").is_none());
}

#[test]
fn binding_a_taken_port_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let workload = Workload::Agnhost(AgnhostConfig {
        mode: AgnhostMode::Netexec,
        tcp_ports: vec![port],
        udp_ports: vec![],
    });
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let err = weft_workloads::bind(&workload, ip).unwrap_err().to_string();
    assert!(err.contains(&format!("TCP 127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_head_trickled_byte_by_byte_is_still_answered() {
    let server = netexec("pod-trickle");
    let mut stream = connect(server.tcp[0]);
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /echo?msg=slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(read_answer(&mut BufReader::new(stream)).text(), "slow");
}

#[test]
fn listeners_have_a_deep_accept_queue() {
    let server = netexec("pod-backlog");
    let port = server.tcp[0].port();
    let output = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let line = String::from_utf8(output.stdout).unwrap();
    // For a listener, ss shows the backlog as Send-Q (the third column).
    let backlog: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(4096), "{line}");
}
