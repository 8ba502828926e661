//! The Service proxy, kube-proxy's nftables mode rebuilt for weft: Services and EndpointSlices
//! in, one nftables table (`ip weft_services`) out, so Service traffic is balanced by the kernel
//! with no userspace relay.
//!
//! Three steps, each testable on its own:
//! - [`view`]: Services + EndpointSlices + this node -> one [`ServicePortView`] per service port,
//!   with the endpoints each kind of traffic may use (ready ones; terminating ones only when
//!   nothing else serves; node-local ones for `Local` traffic policies).
//! - [`ruleset`]: views -> a [`Ruleset`]: data maps keyed by address . protocol . port (so the
//!   cost per packet does not grow with the number of Services) whose values pick the shared
//!   chains and endpoint maps, so a service port is elements, not rules (per-endpoint chains
//!   only where session affinity needs them). A ruleset renders as a full, atomic table
//!   replacement or as the incremental transaction from a previous ruleset.
//! - [`Proxy`]: loads rulesets into the kernel as nf_tables netlink batches, incrementally when
//!   it knows what is loaded, in full otherwise (at start, or if an update is refused).
//! - [`stale`]: old and new views -> the UDP/SCTP conntrack entries the change made stale (flows
//!   still DNATed to a removed endpoint); [`clear_stale_flows`] deletes them once the new rules
//!   are loaded, so a client that keeps sending from one socket reaches a live endpoint;
//!   [`clear_unserved_flows`] does the same from the current views alone (after a restart).
//! - [`health`]: the loaded views -> one HTTP health check per LoadBalancer Service with
//!   `externalTrafficPolicy: Local` on its `healthCheckNodePort`, answered as kube-proxy does
//!   (200 with local endpoints, 503 without), so a load balancer sends only to nodes that serve.

mod apply;
pub mod health;
pub mod reconcile;
pub mod ruleset;
pub mod stale;
pub mod view;

use std::net::Ipv4Addr;

use weft_model::cidr::Ipv4Cidr;

pub use apply::{Proxy, SyncKind};
pub use reconcile::ProxyReconciler;
pub use ruleset::{compile, Ruleset, TABLE};
pub use stale::{stale_flows, stale_flows_for_changes, unserved_flows};
pub use view::{Endpoint, Protocol, ServicePortView};
pub use weft_dataplane::conntrack::ConntrackFilter;

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
    /// Where a Service's `spec.externalIPs` may point (the cluster config's `externalIPRanges`);
    /// others are not served. weft's own API refuses them, but on a real cluster the API server
    /// is not weft's, and a Service with someone else's address would capture its traffic on
    /// every node (CVE-2020-8554).
    pub external_ip_ranges: Vec<Ipv4Cidr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Kernel(#[from] weft_dataplane::Error),
    #[error(transparent)]
    Conntrack(#[from] weft_dataplane::conntrack::ConntrackError),
}

/// Deletes the conntrack entries `filters` select (from [`stale_flows`]) in the calling thread's
/// network namespace, returning how many went. Call it after the sync that loaded the new rules:
/// cleared before, a client's next datagram could still be DNATed by the old rules to the
/// endpoint that is going away, and a new entry would pin it there again.
pub fn clear_stale_flows(filters: &[ConntrackFilter]) -> Result<usize, ProxyError> {
    if filters.is_empty() {
        return Ok(0);
    }
    Ok(weft_dataplane::conntrack::Conntrack::open()?.delete_matching(filters)?)
}

/// Deletes, in the calling thread's network namespace, every UDP/SCTP conntrack entry that a
/// Service frontend of `views` DNATed to an address that is not one of its endpoints now
/// ([`unserved_flows`]), returning how many went. Needs no previous state: call it after the
/// first whole sync (an agent that restarted cannot know what changed while it was down) and
/// with the periodic whole check. Reads the whole conntrack table.
pub fn clear_unserved_flows(
    node: &ProxyNode,
    views: &[ServicePortView],
) -> Result<usize, ProxyError> {
    let mut ct = weft_dataplane::conntrack::Conntrack::open()?;
    let entries = ct.entries()?;
    let stale = unserved_flows(node, views, &entries);
    Ok(ct.delete_entries(stale)?)
}
