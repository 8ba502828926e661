//! The Service proxy, kube-proxy's nftables mode rebuilt for weft: Services and EndpointSlices
//! in, one nftables table (`ip weft_services`) out, so Service traffic is balanced by the kernel
//! with no userspace relay.
//!
//! Three steps, each testable on its own:
//! - [`view`]: Services + EndpointSlices + this node -> one [`ServicePortView`] per service port,
//!   with the endpoints each kind of traffic may use (ready ones; terminating ones only when
//!   nothing else serves; node-local ones for `Local` traffic policies).
//! - [`ruleset`]: views -> a [`Ruleset`]: verdict maps keyed by address . protocol . port (so the
//!   cost per packet does not grow with the number of Services), one chain per service port, and
//!   per-endpoint chains only where session affinity needs them. A ruleset renders as a full,
//!   atomic table replacement or as the incremental transaction from a previous ruleset.
//! - [`Proxy`]: loads rulesets into the kernel through `nft -f`, incrementally when it knows what
//!   is loaded, in full otherwise (at start, or if an update is refused).

mod apply;
pub mod ruleset;
pub mod view;

use std::net::Ipv4Addr;

use weft_model::cidr::Ipv4Cidr;

pub use apply::{Proxy, SyncKind};
pub use ruleset::{compile, Ruleset, TABLE};
pub use view::{Endpoint, Protocol, ServicePortView};

/// The packet mark bit that asks for masquerade on the way out (the bit kube-proxy uses).
pub const MASQUERADE_MARK: u32 = 0x4000;

/// What the proxy needs to know about the node it runs on and the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyNode {
    pub name: String,
    /// The address NodePorts are served on.
    pub ip: Ipv4Addr,
    /// Pod addresses: traffic from outside it to a cluster IP is masqueraded so replies return.
    pub cluster_cidr: Ipv4Cidr,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Kernel(#[from] weft_dataplane::Error),
}
