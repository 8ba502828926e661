//! The UDP loop: one thread per socket, off the async scheduler, taking and sending packets in
//! batches (`recvmmsg`/`sendmmsg`), so a busy server makes two system calls per batch and no
//! context switch per question. Questions only upstream can answer are handed to the tokio
//! runtime, and their answers sent from there; everything else is answered on the thread.
//!
//! Why (bench/README.md, `dns.sh`): answered from a two-worker tokio runtime pinned to one core,
//! the UDP task moved between the workers once per query; a plain loop on one thread answered
//! 1.5x as many queries per CPU second, and batching the system calls 2.0x.
//!
//! [`sockets`] opens one `SO_REUSEPORT` socket per thread on the same address, so the kernel
//! spreads clients over the threads.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvmmsg, sendmmsg, setsockopt, socket, sockopt, AddressFamily, MsgFlags, MultiHeaders,
    SockFlag, SockType, SockaddrStorage,
};

use crate::server::{oversized, Now, Served};

/// Packets taken or sent per system call at most.
const BATCH: usize = 32;
/// The longest question kept whole; a longer datagram is answered FORMERR (a real question is
/// far shorter: the name is at most 255 bytes).
const MAX_REQUEST: usize = 4096;

/// `n` UDP sockets bound to `addr` with `SO_REUSEPORT`, one per serving thread.
pub fn sockets(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    (0..n.max(1))
        .map(|_| {
            let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
            setsockopt(&fd, sockopt::ReusePort, &true)?;
            bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
            // SAFETY: `fd` is an open socket that nothing else owns; it is handed over whole.
            Ok(unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) })
        })
        .collect::<Result<_, Errno>>()
        .map_err(std::io::Error::from)
}

fn peer(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Answers on `socket` until it fails for good; `runtime` runs the questions for upstream.
pub fn serve(socket: UdpSocket, served: Arc<Served>, runtime: tokio::runtime::Handle) {
    if let Err(e) = socket.set_nonblocking(false) {
        tracing::error!("dns udp: {e}");
        return;
    }
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_REQUEST]; BATCH];
    let mut received = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sending = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(usize, SocketAddr, bool)> = Vec::with_capacity(BATCH);
    let mut replies: Vec<(Vec<u8>, SocketAddr, crate::server::Outcome)> = Vec::with_capacity(BATCH);
    loop {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            // Blocks for the first packet, then takes whatever else is already there.
            match recvmmsg(
                fd,
                &mut received,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    for r in results {
                        if let Some(from) = r.address.as_ref().and_then(peer) {
                            got.push((r.bytes, from, r.flags.contains(MsgFlags::MSG_TRUNC)));
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("dns udp: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
        }
        let started = Instant::now();
        replies.clear();
        for (i, &(n, from, truncated)) in got.iter().enumerate() {
            let request = &bufs[i][..n];
            let now = if truncated {
                Now::Reply(oversized(request))
            } else {
                served.answer_now(request, true)
            };
            match now {
                Now::Reply(Some((bytes, outcome))) => replies.push((bytes, from, outcome)),
                Now::Reply(None) => {}
                // Upstream may take seconds: asked on the runtime, answered from there.
                Now::AskUpstream(ask) => {
                    let (socket, served) = (socket.clone(), served.clone());
                    runtime.spawn(async move {
                        if let Some((reply, outcome)) = served.ask_upstream(ask, true).await {
                            if let Err(e) = socket.send_to(&reply, from) {
                                tracing::debug!("dns udp reply to {from}: {e}");
                            }
                            served.record(&outcome, &reply, started.elapsed(), from, "udp");
                        }
                    });
                }
            }
        }
        send(fd, &socket, &mut sending, &replies);
        let took = started.elapsed();
        for (reply, from, outcome) in &replies {
            served.record(outcome, reply, took, *from, "udp");
        }
    }
}

/// Sends `replies` in one `sendmmsg`; what it did not take, one by one.
fn send(
    fd: std::os::fd::RawFd,
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &[(Vec<u8>, SocketAddr, crate::server::Outcome)],
) {
    if replies.is_empty() {
        return;
    }
    let slices: Vec<[IoSlice; 1]> = replies.iter().map(|(b, _, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, to, _)| Some(SockaddrStorage::from(*to)))
        .collect();
    let sent = match sendmmsg(fd, headers, slices.iter(), &addrs, [], MsgFlags::empty()) {
        Ok(results) => results.count(),
        Err(e) => {
            tracing::debug!("dns udp sendmmsg: {e}");
            0
        }
    };
    for (bytes, to, _) in &replies[sent.min(replies.len())..] {
        if let Err(e) = socket.send_to(bytes, to) {
            tracing::debug!("dns udp reply to {to}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_sockets_share_one_address() {
        let first = sockets("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = first[0].local_addr().unwrap();
        let more = sockets(addr, 2).unwrap();
        assert_eq!(more.len(), 2);
        for s in &more {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        let family = sockets("[::1]:0".parse().unwrap(), 1);
        if let Ok(v6) = family {
            assert!(v6[0].local_addr().unwrap().is_ipv6());
        }
    }
}
