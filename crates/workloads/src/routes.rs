//! What each built-in server answers: HTTP routes and UDP commands, from a parsed request to a reply.

use std::net::SocketAddr;

use crate::dial;
use crate::hostname::Hostname;
use crate::http::{RequestHead, Response, Status};
use crate::AgnhostMode;

/// The HTTP behaviour a TCP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpService {
    Agnhost(AgnhostMode),
    Nginx,
}

impl HttpService {
    /// agnhost ports double as raw TCP echo servers for clients that do not speak HTTP (`nc` tests);
    /// nginx answers such clients with 400 like the real one.
    pub fn echoes_raw_tcp(self) -> bool {
        matches!(self, HttpService::Agnhost(_))
    }
}

/// The UDP behaviour a UDP socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpService {
    /// netexec: `hostname`, `clientip` and `echo <msg>` commands; anything else echoed as-is.
    Netexec,
    /// serve-hostname: every datagram answers the hostname.
    ServeHostname,
}

/// The answer to one HTTP request.
pub fn respond(
    service: HttpService,
    head: &RequestHead,
    hostname: &Hostname,
    peer: SocketAddr,
) -> Response {
    match service {
        HttpService::Nginx => {
            Response::text(Status::Ok, format!("{hostname}\n")).with_header("Server", "weft-nginx")
        }
        HttpService::Agnhost(AgnhostMode::ServeHostname) => {
            Response::text(Status::Ok, hostname.as_str())
        }
        HttpService::Agnhost(AgnhostMode::Netexec) => netexec(head, hostname, peer),
    }
}

fn netexec(head: &RequestHead, hostname: &Hostname, peer: SocketAddr) -> Response {
    match head.path.as_str() {
        // netexec registers both spellings, and e2e tests use both.
        "/" | "/hostname" | "/hostName" => Response::text(Status::Ok, hostname.as_str()),
        "/clientip" => Response::text(Status::Ok, client_ip(peer)),
        "/echo" => Response::text(Status::Ok, head.query_param("msg").unwrap_or_default()),
        // The value of the request header `key` (empty if absent), as agnhost's /header.
        "/header" => {
            let key = head
                .query_param("key")
                .unwrap_or_default()
                .to_ascii_lowercase();
            Response::text(
                Status::Ok,
                head.header(&key).unwrap_or_default().to_string(),
            )
        }
        "/healthz" => Response::text(Status::Ok, "ok"),
        "/dial" => dial::dial(head),
        // The body Go's net/http answers for an unknown path, which clients of agnhost may match on.
        _ => Response::text(Status::NotFound, "404 page not found\n"),
    }
}

/// `ip:port` of a peer as Go prints it (`[v6]:port` for IPv6), IPv4-mapped addresses shown as IPv4.
pub fn client_ip(peer: SocketAddr) -> String {
    SocketAddr::new(peer.ip().to_canonical(), peer.port()).to_string()
}

/// The answer to one UDP datagram (agnhost netexec's UDP server, plus echo for anything else).
pub fn udp_reply(
    service: UdpService,
    datagram: &[u8],
    hostname: &Hostname,
    peer: SocketAddr,
) -> Vec<u8> {
    if service == UdpService::ServeHostname {
        return hostname.as_str().as_bytes().to_vec();
    }
    // netexec trims and lower-cases the datagram before matching its commands (`echo hostName | nc -u`).
    let text = String::from_utf8_lossy(datagram);
    let command = text.trim();
    if command.eq_ignore_ascii_case("hostname") {
        hostname.as_str().as_bytes().to_vec()
    } else if command.eq_ignore_ascii_case("clientip") {
        client_ip(peer).into_bytes()
    } else if let Some(message) = strip_prefix_ignore_case(command, "echo ") {
        message.as_bytes().to_vec()
    } else {
        datagram.to_vec()
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn get(service: HttpService, target: &str) -> Response {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, _) = parse_head(raw.as_bytes()).unwrap().unwrap();
        let peer: SocketAddr = "10.244.1.7:40123".parse().unwrap();
        respond(service, &head, &Hostname::new("pod-a"), peer)
    }

    const NETEXEC: HttpService = HttpService::Agnhost(AgnhostMode::Netexec);

    #[test]
    fn netexec_routes() {
        for (target, status, body) in [
            ("/", Status::Ok, "pod-a"),
            ("/hostname", Status::Ok, "pod-a"),
            ("/hostName", Status::Ok, "pod-a"),
            ("/clientip", Status::Ok, "10.244.1.7:40123"),
            ("/echo?msg=hello", Status::Ok, "hello"),
            ("/echo?msg=a%20b+c&x=1", Status::Ok, "a b c"),
            ("/echo", Status::Ok, ""),
            ("/healthz", Status::Ok, "ok"),
            ("/header?key=Host", Status::Ok, "x"),
            ("/header?key=x-missing", Status::Ok, ""),
            ("/nope", Status::NotFound, "404 page not found\n"),
        ] {
            let response = get(NETEXEC, target);
            assert_eq!(response.status, status, "{target}");
            assert_eq!(String::from_utf8(response.body).unwrap(), body, "{target}");
        }
    }

    #[test]
    fn serve_hostname_and_nginx_answer_every_path() {
        let response = get(
            HttpService::Agnhost(AgnhostMode::ServeHostname),
            "/anything",
        );
        assert_eq!(response.body, b"pod-a");
        let response = get(HttpService::Nginx, "/index.html?x");
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.body, b"pod-a\n");
        assert_eq!(
            response.extra_headers,
            vec![("Server", "weft-nginx".to_string())]
        );
    }

    #[test]
    fn client_ip_formats_like_go() {
        assert_eq!(
            client_ip("[::ffff:10.0.0.1]:5".parse().unwrap()),
            "10.0.0.1:5"
        );
        assert_eq!(client_ip("[fd00::1]:5".parse().unwrap()), "[fd00::1]:5");
    }

    #[test]
    fn udp_commands() {
        let host = Hostname::new("pod-a");
        let peer: SocketAddr = "10.0.0.9:999".parse().unwrap();
        let reply = |d: &[u8]| udp_reply(UdpService::Netexec, d, &host, peer);
        assert_eq!(reply(b"hostname"), b"pod-a");
        assert_eq!(reply(b"hostName\n"), b"pod-a");
        assert_eq!(reply(b"clientip"), b"10.0.0.9:999");
        assert_eq!(reply(b"echo Hi there\n"), b"Hi there");
        assert_eq!(reply(b"\xff\x00raw"), b"\xff\x00raw");
        assert_eq!(reply(b""), b"");
        assert_eq!(reply("ech\u{2713}x".as_bytes()), "ech\u{2713}x".as_bytes());
        assert_eq!(
            udp_reply(UdpService::ServeHostname, b"x", &host, peer),
            b"pod-a"
        );
    }
}
