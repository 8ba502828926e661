//! Built-in workloads for lab pods. The lab runs each container as a process inside its pod's network,
//! UTS and mount namespaces; when a container's image is a well-known test image there is no image to
//! unpack, so the lab runs one of these instead, as `weft workload <args>`. [`builtin_for`] decides from
//! a container's image, command, args and declared ports what it runs (an agnhost-style test server, an
//! nginx-style web server, or a process that just sleeps), [`Workload::to_args`] / [`Workload::from_args`]
//! carry that decision across the exec, and [`run`] serves it forever. The agnhost server answers HTTP
//! (`/hostname`, `/clientip`, `/echo?msg=`, `/healthz`, `/dial`), echoes raw TCP connections whose first
//! bytes are not an HTTP request, and echoes UDP datagrams (answering agnhost's `hostname` / `clientip` /
//! `echo <msg>` commands); the nginx server answers every path with the pod name. Servers are plain
//! threads over blocking sockets, with bounded reads, deadlines and a connection cap, so a garbage or slow
//! client cannot wedge or crash the pod. Tests (and anything else that needs the bound ports) use
//! [`bind`] and [`BoundWorkload::serve`], which [`run`] is made of.

mod agnhost_cli;
mod args;
mod dial;
mod hostname;
mod http;
mod image;
mod routes;
mod server;
mod tcp;
mod udp;

use std::fmt;
use std::io;
use std::net::SocketAddr;

pub use hostname::{os_hostname, Hostname};
pub use image::{builtin_for, DeclaredPort};
pub use server::{bind, run, BoundWorkload};

/// What a container runs when its image is built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// Kubernetes' agnhost test server (netexec / serve-hostname).
    Agnhost(AgnhostConfig),
    /// A web server answering every path with the pod name.
    Nginx(NginxConfig),
    /// Does nothing until killed (`busybox` without a command, `agnhost pause`).
    Sleep,
}

/// Which agnhost subcommand's HTTP and UDP behaviour to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgnhostMode {
    /// `netexec`: the routes `/hostname`, `/clientip`, `/echo`, `/healthz`, `/dial`; UDP commands.
    Netexec,
    /// `serve-hostname`: every HTTP path and every UDP datagram answers the hostname.
    ServeHostname,
}

/// The ports and behaviour of an agnhost workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgnhostConfig {
    pub mode: AgnhostMode,
    /// TCP ports serving HTTP (and raw TCP echo for non-HTTP clients). Port 0 binds an ephemeral port.
    pub tcp_ports: Vec<u16>,
    /// UDP ports answering datagrams. Port 0 binds an ephemeral port.
    pub udp_ports: Vec<u16>,
}

/// The ports of an nginx workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConfig {
    /// TCP ports serving HTTP. Port 0 binds an ephemeral port.
    pub ports: Vec<u16>,
}

/// A container port's protocol, as declared in a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// Everything that can go wrong choosing, encoding or running a workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("image {image:?}: agnhost subcommand {subcommand:?} is not built in (built in: netexec, serve-hostname, pause)")]
    UnsupportedAgnhostCommand { image: String, subcommand: String },
    #[error("image {image:?}: agnhost {subcommand} flag {flag:?} is not supported by the built-in agnhost")]
    UnsupportedAgnhostFlag {
        image: String,
        subcommand: String,
        flag: String,
    },
    #[error(
        "image {image:?}: agnhost {subcommand} flag {flag}: invalid value {value:?} ({expected})"
    )]
    InvalidAgnhostFlagValue {
        image: String,
        subcommand: String,
        flag: String,
        value: String,
        expected: &'static str,
    },
    #[error("image {image:?}: agnhost {subcommand} flag {flag} needs a value")]
    MissingAgnhostFlagValue {
        image: String,
        subcommand: String,
        flag: String,
    },
    #[error("workload arguments {args:?}: {reason}")]
    InvalidWorkloadArgs { args: Vec<String>, reason: String },
    #[error("binding {protocol} {addr}: {source}")]
    Bind {
        protocol: Protocol,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("reading the bound address of a {protocol} socket: {source}")]
    LocalAddr {
        protocol: Protocol,
        source: io::Error,
    },
    #[error("reading the hostname from {path}: {source}")]
    Hostname {
        path: &'static str,
        source: io::Error,
    },
    #[error("starting the {what} thread: {source}")]
    Thread { what: String, source: io::Error },
    #[error("{protocol} server on {addr} stopped: {reason}")]
    ServerStopped {
        protocol: Protocol,
        addr: SocketAddr,
        reason: String,
    },
}
