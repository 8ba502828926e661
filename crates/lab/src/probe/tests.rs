use std::net::{Ipv4Addr, TcpListener};

use serde_json::json;

use super::*;

/// An HTTP server on 127.0.0.1 answering every request with `status`; its address.
fn http_server(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    addr
}

/// A server that accepts connections and never answers.
fn silent_server() -> (SocketAddr, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener.local_addr().unwrap(), listener)
}

fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
    // dropped here: nothing listens any more
}

fn http(addr: SocketAddr, path: &str) -> Action {
    Action::Http {
        addr,
        path: path.into(),
        headers: vec![("Host".into(), addr.to_string())],
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn http_success_is_200_to_399() {
    for (status, ok) in [
        (200, true),
        (302, true),
        (399, true),
        (404, false),
        (500, false),
    ] {
        let result = run(&http(http_server(status), "/healthz"), SECOND);
        assert_eq!(result.is_ok(), ok, "status {status}: {result:?}");
    }
    assert_eq!(
        run(&http(http_server(500), "/"), SECOND),
        Err("HTTP probe failed with statuscode: 500".into())
    );
}

#[test]
fn tcp_open_and_closed() {
    let (open, _keep) = silent_server();
    assert_eq!(run(&Action::Tcp { addr: open }, SECOND), Ok(()));
    let closed = closed_port();
    let err = run(&Action::Tcp { addr: closed }, SECOND).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    assert!(run(&http(closed, "/"), SECOND).is_err());
}

#[test]
fn a_silent_server_times_out() {
    // The server accepts, reads the whole request and never answers: the probe connected and
    // asked, so its failure can only be its own timeout running out while it awaited the
    // answer, which is what the reason must say (kubelet's wording).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, request) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = heard.send(String::from_utf8_lossy(&head).into_owned());
        // Hold the connection open, unanswered, until the probe gives up and closes it.
        let _ = stream.read(&mut buf);
    });
    let err = run(&http(addr, "/"), Duration::from_millis(300)).unwrap_err();
    assert_eq!(
        err,
        format!("Get http://{addr}/: timeout awaiting response")
    );
    let request = request.recv().unwrap();
    assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
}

#[test]
fn actions_resolve_named_ports_and_default_to_the_pod_ip() {
    let container: Container = serde_json::from_value(json!({
        "name": "c", "ports": [{"name": "web", "containerPort": 8080}]
    }))
    .unwrap();
    let probe = |p: serde_json::Value| -> Probe { serde_json::from_value(p).unwrap() };
    let pod_ip = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 7));
    let no_exec = |_: &[String]| Err("no exec here".to_string());
    match action(
        &probe(json!({"httpGet": {"path": "/healthz", "port": "web"}})),
        &container,
        pod_ip,
        no_exec,
    ) {
        Action::Http {
            addr,
            path,
            headers,
        } => {
            assert_eq!(addr.to_string(), "10.244.0.7:8080");
            assert_eq!(path, "/healthz");
            assert_eq!(
                headers,
                [("Host".to_string(), "10.244.0.7:8080".to_string())]
            );
        }
        other => panic!("{other:?}"),
    }
    match action(
        &probe(json!({"tcpSocket": {"port": 9000, "host": "127.0.0.1"}})),
        &container,
        pod_ip,
        no_exec,
    ) {
        Action::Tcp { addr } => assert_eq!(addr.to_string(), "127.0.0.1:9000"),
        other => panic!("{other:?}"),
    }
    let invalid = |p| match action(&probe(p), &container, pod_ip, no_exec) {
        Action::Invalid(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        invalid(json!({"tcpSocket": {"port": "nope"}})),
        "port \"nope\" is not a port of container c"
    );
    assert_eq!(
        invalid(json!({"httpGet": {"port": 80, "scheme": "HTTPS"}})),
        "scheme HTTPS is not supported (HTTP only)"
    );
    assert_eq!(
        invalid(json!({"exec": {"command": ["true"]}})),
        "no exec here"
    );
}

#[test]
fn timing_defaults() {
    let t = Timing::of(&Probe::default());
    assert_eq!(
        t,
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: SECOND,
            success_threshold: 1,
            failure_threshold: 3,
        }
    );
}

/// Ticks until the prober has collected `runs` results (each run is started by a tick once due).
fn settle(p: &mut Prober, runs: usize) -> Vec<bool> {
    let mut seen = Vec::new();
    let mut now = p
        .last_run
        .map_or_else(Instant::now, |last| last + p.timing.period);
    for _ in 0..runs {
        p.tick(now);
        while p.in_flight.is_some() {
            std::thread::sleep(Duration::from_millis(5));
            if let Some(Ok(result)) = p.in_flight.as_ref().map(|rx| rx.try_recv()) {
                p.in_flight = None;
                p.record(result);
            }
        }
        seen.push(p.ready());
        now += p.timing.period;
    }
    seen
}

#[test]
fn thresholds_decide_readiness() {
    let ok = http_server(200);
    let timing = Timing {
        initial_delay: Duration::ZERO,
        period: SECOND,
        timeout: SECOND,
        success_threshold: 2,
        failure_threshold: 2,
    };
    let mut p = Prober::new(http(ok, "/"), timing.clone(), Instant::now());
    assert!(!p.ready(), "not ready before the first run");
    assert_eq!(settle(&mut p, 3), [false, true, true]);

    // A failing target: ready stays until failureThreshold failures in a row.
    p.action = Action::Tcp {
        addr: closed_port(),
    };
    assert_eq!(settle(&mut p, 3), [true, false, false]);
    assert!(p
        .last_failure
        .as_deref()
        .unwrap_or_default()
        .contains("refused"));
}

#[test]
fn nothing_runs_before_the_initial_delay() {
    let timing = Timing {
        initial_delay: Duration::from_secs(60),
        ..Timing::of(&Probe::default())
    };
    let start = Instant::now();
    let mut p = Prober::new(Action::Invalid("x".into()), timing, start);
    assert!(!p.tick(start + SECOND));
    assert!(p.in_flight.is_none());
    p.tick(start + Duration::from_secs(61));
    assert!(p.in_flight.is_some());
}
