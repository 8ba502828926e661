//! weft's dataplane: the part that makes the kernel match a plan. It enters network
//! namespaces ([`NetNs`]) and speaks rtnetlink itself ([`Netlink`]: links, addresses, routes,
//! neighbours) over one synchronous socket, plus the few `/proc/sys/net` knobs we need
//! ([`sysctl`]), deletes stale connection-tracking entries through ctnetlink ([`conntrack`]),
//! and reads the packets nftables rules log to an NFLOG group ([`nflog`]). It is deliberately
//! small and blocking: the CNI plugin, exec'd once per pod, links it, so startup cost and
//! dependency weight matter more than concurrency. Long-running appliers in the agent call the
//! same functions from a blocking thread.
//!
//! ```no_run
//! use weft_dataplane::{IpNet, NetNs, Netlink, Scope};
//! # fn main() -> weft_dataplane::Result<()> {
//! let pod = NetNs::create("pod-a")?;
//! let mut host = Netlink::open()?;
//! host.link_add_veth("weftabc", "eth0").peer_netns(&pod).mtu(1450).execute()?;
//! let mut inside = pod.run(Netlink::open)??;
//! let eth0 = inside.link_get("eth0")?.expect("just created");
//! inside.addr_add(eth0.index, "10.244.1.5/32".parse()?).execute()?;
//! inside.link_set(eth0.index).up().execute()?;
//! inside.route_add("169.254.1.1/32".parse()?).oif(eth0.index).scope(Scope::Link).execute()?;
//! # Ok(()) }
//! ```

mod addr;
pub mod conntrack;
mod error;
mod link;
mod neigh;
mod netlink;
mod netns;
pub mod nflog;
pub mod nft;
mod route;
pub mod sysctl;
mod types;

pub use addr::{AddrAdd, Address};
pub use error::{Error, Result};
pub use link::{BridgeAdd, Link, LinkRef, LinkSet, VethAdd, VxlanAdd, VxlanInfo, MAX_IFNAME_LEN};
pub use neigh::{FdbEntry, Neighbour};
pub use netlink::Netlink;
pub use netns::{NetNs, ScopedNetNs, NETNS_RUN_DIR};
pub use route::{NextHop, Route, RouteAdd, Scope, RTPROT_BOOT};
pub use types::{Family, IfIndex, IpNet, MacAddr};
