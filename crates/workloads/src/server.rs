//! Turning a [`Workload`] into bound sockets and serving threads. Binding comes first and on its own,
//! so a taken port fails the start (naming the port) before anything serves, and so tests can bind
//! ephemeral ports and learn which ones they got.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;

use crate::hostname::{os_hostname, Hostname};
use crate::routes::{HttpService, UdpService};
use crate::{tcp, udp, AgnhostMode, Protocol, Workload, WorkloadError};

/// A workload whose sockets are bound but not yet served.
#[derive(Debug)]
pub struct BoundWorkload {
    tcp: Vec<(TcpListener, HttpService)>,
    udp: Vec<(UdpSocket, UdpService)>,
    hostname: Option<Hostname>,
}

/// Binds every port of `workload` on `ip` (port 0 binds an ephemeral port).
pub fn bind(workload: &Workload, ip: IpAddr) -> Result<BoundWorkload, WorkloadError> {
    let mut bound = BoundWorkload {
        tcp: Vec::new(),
        udp: Vec::new(),
        hostname: None,
    };
    match workload {
        Workload::Sleep => {}
        Workload::Nginx(config) => {
            for &port in &config.ports {
                bound.tcp.push((bind_tcp(ip, port)?, HttpService::Nginx));
            }
        }
        Workload::Agnhost(config) => {
            let udp_service = match config.mode {
                AgnhostMode::Netexec => UdpService::Netexec,
                AgnhostMode::ServeHostname => UdpService::ServeHostname,
            };
            for &port in &config.tcp_ports {
                let service = HttpService::Agnhost(config.mode);
                bound.tcp.push((bind_tcp(ip, port)?, service));
            }
            for &port in &config.udp_ports {
                bound.udp.push((bind_udp(ip, port)?, udp_service));
            }
        }
    }
    Ok(bound)
}

/// The accept queue asked for; the kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: libc::c_int = 4096;

fn bind_tcp(ip: IpAddr, port: u16) -> Result<TcpListener, WorkloadError> {
    let addr = SocketAddr::new(ip, port);
    let bind_error = |source| WorkloadError::Bind {
        protocol: Protocol::Tcp,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    // std listens with a backlog of 128: a burst of clients (a load test through a Service) would
    // overflow it and see 1 s SYN retransmits. listen() again on a listening socket only resizes it.
    // SAFETY: the fd is a valid listening socket owned by `listener` for the whole call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(bind_error(std::io::Error::last_os_error()));
    }
    Ok(listener)
}

fn bind_udp(ip: IpAddr, port: u16) -> Result<UdpSocket, WorkloadError> {
    let addr = SocketAddr::new(ip, port);
    UdpSocket::bind(addr).map_err(|source| WorkloadError::Bind {
        protocol: Protocol::Udp,
        addr,
        source,
    })
}

impl BoundWorkload {
    /// The addresses the TCP listeners got, in the order of the workload's ports.
    pub fn tcp_addrs(&self) -> Result<Vec<SocketAddr>, WorkloadError> {
        self.tcp
            .iter()
            .map(|(listener, _)| {
                listener
                    .local_addr()
                    .map_err(|source| WorkloadError::LocalAddr {
                        protocol: Protocol::Tcp,
                        source,
                    })
            })
            .collect()
    }

    /// The addresses the UDP sockets got, in the order of the workload's ports.
    pub fn udp_addrs(&self) -> Result<Vec<SocketAddr>, WorkloadError> {
        self.udp
            .iter()
            .map(|(socket, _)| {
                socket
                    .local_addr()
                    .map_err(|source| WorkloadError::LocalAddr {
                        protocol: Protocol::Udp,
                        source,
                    })
            })
            .collect()
    }

    /// Answers `hostname` instead of the UTS namespace's, for callers that know better (tests).
    pub fn with_hostname(mut self, hostname: Hostname) -> BoundWorkload {
        self.hostname = Some(hostname);
        self
    }

    /// Serves forever. Returns only with the error of a server that stopped for good.
    pub fn serve(self) -> Result<(), WorkloadError> {
        if self.tcp.is_empty() && self.udp.is_empty() {
            sleep_forever();
        }
        let hostname = match self.hostname {
            Some(hostname) => hostname,
            None => os_hostname()?,
        };
        let (stopped_tx, stopped_rx) = mpsc::channel::<WorkloadError>();
        for (listener, service) in self.tcp {
            let (tx, hostname) = (stopped_tx.clone(), hostname.clone());
            let what = format!("TCP {}", describe(listener.local_addr()));
            spawn(what, move || {
                let _ = tx.send(tcp::serve(listener, service, hostname));
            })?;
        }
        for (socket, service) in self.udp {
            let (tx, hostname) = (stopped_tx.clone(), hostname.clone());
            let what = format!("UDP {}", describe(socket.local_addr()));
            spawn(what, move || {
                let _ = tx.send(udp::serve(socket, service, hostname));
            })?;
        }
        drop(stopped_tx);
        match stopped_rx.recv() {
            Ok(err) => Err(err),
            // Every server thread is gone without a word: they panicked.
            Err(mpsc::RecvError) => Err(WorkloadError::ServerStopped {
                protocol: Protocol::Tcp,
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                reason: "every server thread panicked".into(),
            }),
        }
    }
}

fn describe(addr: std::io::Result<SocketAddr>) -> String {
    addr.map_or_else(|err| format!("<unknown address: {err}>"), |a| a.to_string())
}

fn spawn(what: String, body: impl FnOnce() + Send + 'static) -> Result<(), WorkloadError> {
    std::thread::Builder::new()
        .name(what.clone())
        .spawn(body)
        .map(drop)
        .map_err(|source| WorkloadError::Thread { what, source })
}

fn sleep_forever() -> ! {
    loop {
        // park may wake spuriously; nothing ever unparks this thread on purpose.
        std::thread::park();
    }
}

/// Runs `workload` in this process on every IPv4 address of the pod: binds, then serves forever.
pub fn run(workload: &Workload) -> Result<(), WorkloadError> {
    bind(workload, IpAddr::V4(Ipv4Addr::UNSPECIFIED))?.serve()
}
