//! agnhost netexec's `/dial`: this pod asks another endpoint for something and reports what it got,
//! the way Kubernetes' e2e tests probe pod-to-pod and pod-to-service connectivity.
//! `GET /dial?request=hostname&protocol=http&host=10.244.1.5&port=8080&tries=1` answers
//! `{"responses":["pod-b"]}` (and `"errors"` for failed tries).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use crate::http::{RequestHead, Response, Status};

/// How long one try may take, like netexec's dial timeouts.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the work one request can cause.
const MAX_TRIES: u32 = 100;
/// Bounds how much of a peer's answer is kept.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialProtocol {
    Http,
    Udp,
}

pub fn dial(head: &RequestHead) -> Response {
    let param = |name: &str| head.query_param(name).unwrap_or_default();
    let (request, host, port) = (param("request"), param("host"), param("port"));
    if request.is_empty() {
        return bad_request("request parameter not specified");
    }
    let protocol = match param("protocol").to_ascii_lowercase().as_str() {
        "" | "http" => DialProtocol::Http,
        "udp" => DialProtocol::Udp,
        other => return bad_request(&format!("unsupported protocol {other:?}")),
    };
    let tries = match param("tries").as_str() {
        "" => 1,
        text => match text.parse::<u32>() {
            Ok(tries) if tries <= MAX_TRIES => tries,
            _ => {
                return bad_request(&format!(
                    "tries {text:?} is not a number from 0 to {MAX_TRIES}"
                ))
            }
        },
    };
    let Ok(port) = port.parse::<u16>() else {
        return bad_request(&format!("port {port:?} is not a port number"));
    };
    // Host names resolve through the pod's own resolv.conf, as they would for the real agnhost.
    let addr = match (host.as_str(), port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => addr,
            None => return bad_request(&format!("host {host:?} has no address")),
        },
        Err(err) => return bad_request(&format!("host {host:?} is invalid: {err}")),
    };

    let mut responses = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..tries {
        let outcome = match protocol {
            DialProtocol::Http => dial_http(&request, &host, addr),
            DialProtocol::Udp => dial_udp(&request, addr),
        };
        match outcome {
            Ok(answer) => responses.push(answer),
            Err(err) => errors.push(format!("{protocol:?} dial to {addr} failed: {err}")),
        }
    }
    let mut output = serde_json::Map::new();
    if !responses.is_empty() {
        output.insert("responses".into(), responses.into());
    }
    if !errors.is_empty() {
        output.insert("errors".into(), errors.into());
    }
    Response::json(serde_json::Value::Object(output).to_string())
}

fn bad_request(reason: &str) -> Response {
    Response::text(Status::BadRequest, format!("dial: {reason}\n"))
}

/// `GET http://addr/<request>`, answering the body whatever the status, like netexec.
fn dial_http(request: &str, host: &str, addr: SocketAddr) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, DIAL_TIMEOUT).map_err(|err| err.to_string())?;
    set_timeouts(&stream).map_err(|err| err.to_string())?;
    let path = request.trim_start_matches('/');
    let wire = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(wire.as_bytes())
        .map_err(|err| err.to_string())?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .map_err(|err| err.to_string())?;
    response_body(&answer)
}

fn set_timeouts(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(DIAL_TIMEOUT))?;
    stream.set_write_timeout(Some(DIAL_TIMEOUT))
}

/// The body of an HTTP/1.x response read to EOF, cut to its Content-Length when it has one.
fn response_body(answer: &[u8]) -> Result<String, String> {
    if !answer.starts_with(b"HTTP/1.") {
        return Err("the answer is not an HTTP/1.x response".into());
    }
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err("the answer's head never ends".into());
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut body = &answer[end + 4..];
    let content_length = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = content_length {
        body = body.get(..length).unwrap_or(body);
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|err| err.to_string())?;
    socket
        .set_read_timeout(Some(DIAL_TIMEOUT))
        .map_err(|err| err.to_string())?;
    socket.connect(addr).map_err(|err| err.to_string())?;
    socket
        .send(request.as_bytes())
        .map_err(|err| err.to_string())?;
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).map_err(|err| err.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_body_respects_content_length() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\npod-bEXTRA";
        assert_eq!(response_body(answer).unwrap(), "pod-b");
        let answer = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert_eq!(response_body(answer).unwrap(), "nope");
        assert!(response_body(b"SSH-2.0-x\r\n").is_err());
        assert!(response_body(b"HTTP/1.1 200 OK\r\nX: y").is_err());
    }

    #[test]
    fn refuses_bad_parameters() {
        for target in [
            "/dial?host=127.0.0.1&port=1",
            "/dial?request=hostname&host=127.0.0.1&port=99999",
            "/dial?request=hostname&host=127.0.0.1&port=80&protocol=sctp",
            "/dial?request=hostname&host=127.0.0.1&port=80&tries=1000",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            let (head, _) = crate::http::parse_head(raw.as_bytes()).unwrap().unwrap();
            assert_eq!(dial(&head).status, Status::BadRequest, "{target}");
        }
    }
}
