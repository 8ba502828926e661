//! Shared helpers: start a built-in server on 127.0.0.1 ephemeral ports, speak HTTP to it by hand, run
//! curl against it.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use weft_workloads::{bind, AgnhostConfig, AgnhostMode, Hostname, NginxConfig, Workload};

pub struct Started {
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub hostname: String,
}

/// Binds `workload` on loopback and serves it on a background thread for the rest of the test process.
pub fn start(workload: Workload, hostname: &str) -> Started {
    let bound = bind(&workload, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let tcp = bound.tcp_addrs().unwrap();
    let udp = bound.udp_addrs().unwrap();
    let bound = bound.with_hostname(Hostname::new(hostname));
    std::thread::spawn(move || {
        let err = bound.serve().unwrap_err();
        panic!("server stopped: {err}");
    });
    Started {
        tcp,
        udp,
        hostname: hostname.to_string(),
    }
}

pub fn netexec(hostname: &str) -> Started {
    start(
        Workload::Agnhost(AgnhostConfig {
            mode: AgnhostMode::Netexec,
            tcp_ports: vec![0],
            udp_ports: vec![0],
        }),
        hostname,
    )
}

pub fn nginx(hostname: &str) -> Started {
    start(Workload::Nginx(NginxConfig { ports: vec![0] }), hostname)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Reads one response (framed by its Content-Length, which must be present and exact).
pub fn read_answer(reader: &mut BufReader<TcpStream>) -> Answer {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(
        status_line.starts_with("HTTP/1."),
        "status line {status_line:?}"
    );
    let status = status_line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = answer.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Answer { body, ..answer }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> Answer {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_answer(&mut BufReader::new(stream))
}

/// Runs the real curl; returns its stdout.
pub fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes `bytes`, half-closes, and reads everything the server sends until it closes.
pub fn send_and_drain(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let bytes = bytes.to_vec();
    // Write on another thread so a large echo cannot deadlock on full socket buffers.
    let writing = std::thread::spawn(move || {
        writer.write_all(&bytes).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    // The server may answer and close before reading everything (400s): a failed write is fine then.
    let _ = writing.join();
    answer
}
