//! UDP serving: one thread per socket answering each datagram to its sender. UDP has no connection to
//! wedge, so the only care needed is never to stop on a bad datagram or a failed send.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::hostname::Hostname;
use crate::routes::{udp_reply, UdpService};
use crate::{Protocol, WorkloadError};

/// Consecutive receive failures (about a minute of them) after which the socket is declared dead.
const MAX_RECV_FAILURES: u32 = 1200;

/// Answers datagrams forever; returns only when the socket keeps failing.
pub fn serve(socket: UdpSocket, service: UdpService, hostname: Hostname) -> WorkloadError {
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // The largest UDP payload, so no datagram is silently truncated before it is echoed.
    let mut buf = vec![0u8; 65536];
    let mut failures = 0;
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => {
                failures = 0;
                received
            }
            Err(err) => {
                failures += 1;
                if failures >= MAX_RECV_FAILURES {
                    return WorkloadError::ServerStopped {
                        protocol: Protocol::Udp,
                        addr,
                        reason: format!("receive kept failing, last with: {err}"),
                    };
                }
                tracing::warn!(%addr, %err, "UDP receive failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let reply = udp_reply(service, &buf[..len], &hostname, peer);
        if let Err(err) = socket.send_to(&reply, peer) {
            tracing::debug!(%addr, %peer, %err, "UDP reply failed");
        }
    }
}
