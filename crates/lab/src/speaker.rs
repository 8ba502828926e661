//! The lab's load-balancer announcer: it runs inside the lab's fabric namespace, the router
//! between the outside host and the nodes, and makes the speaker's plan
//! (`weft_controller::speaker`) real as routes there: each LoadBalancer address (and each
//! externalIP) routed to its nodes as one ECMP route with a nexthop per node.
//!
//! The fabric hashes flows over the nexthops by addresses and ports
//! (`net.ipv4.fib_multipath_hash_policy=1`, set when the speaker starts), so different client
//! connections spread while each connection stays on one node. Routes carry protocol 0x57 so the
//! speaker only ever replaces or removes its own.
//!
//! Like the agent, the speaker is a Kubernetes client: it watches Nodes, Services and
//! EndpointSlices through the API into a cluster view and runs as a reconciler of it (the part
//! of weft that would run on a real cluster reads nothing of the lab's store).

use std::net::IpAddr;
use std::path::Path;

use weft_controller::speaker::{Announce, Routes, Speaker};
use weft_dataplane::{IpNet, Netlink};
use weft_model::config::{Announcement, ClusterConfig};
use weft_net::OwnedRoute;
use weft_view::{Reconciler, Shared};

use crate::LabError;

/// The fabric's multipath hash: 1 is layer 4 (addresses, protocol and ports), so two
/// connections from one client can take different nodes.
const MULTIPATH_HASH_POLICY: (&str, &str) = ("net/ipv4/fib_multipath_hash_policy", "1");

/// Runs the speaker until killed, in the fabric namespace it was started in, against the API
/// `kubeconfig` names. With `loadBalancerAnnouncement: arp` the nodes announce (each agent, by
/// ARP) and the fabric only needs the pool on its node bridge: it routes the pool there on-link,
/// so it asks by ARP which node holds an address, as a router on a real node network would.
pub fn run(kubeconfig: &Path, config: &ClusterConfig) -> Result<(), LabError> {
    if config.load_balancer_announcement == Announcement::Arp {
        let pool = config.load_balancer_pool;
        let mut nl = Netlink::open()?;
        let bridge = nl
            .link_get(crate::topology::FABRIC_BRIDGE)?
            .ok_or_else(|| LabError::Invalid("the fabric has no bridge".into()))?;
        nl.route_add(IpNet::new(IpAddr::V4(pool.network()), pool.prefix())?)
            .oif(bridge.index)
            .replace()
            .execute()?;
        tracing::info!("load-balancer pool {pool} on-link on the node network (announced by ARP)");
        loop {
            std::thread::park();
        }
    }
    let (key, value) = MULTIPATH_HASH_POLICY;
    weft_dataplane::sysctl::write(key, value)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| LabError::io("starting the speaker's runtime", e))?;
    let shared = Shared::new();
    let client = runtime
        .block_on(weft_view::source::client(Some(kubeconfig)))
        .map_err(|e| LabError::Invalid(format!("speaker: {e}")))?;
    let speaker = Speaker::new(FabricRoutes);
    {
        // The watchers run on the runtime's worker; the reconciler on this thread.
        let _entered = runtime.enter();
        weft_view::source::spawn(&client, &shared, speaker.interest());
    }
    weft_view::reconciler::run(speaker, shared, weft_view::reconciler::Readiness::new())
}

/// Announces by routing in the namespace the process runs in (the fabric).
pub struct FabricRoutes;

impl Announce for FabricRoutes {
    type Error = LabError;

    fn announce(&mut self, routes: &Routes) -> Result<Vec<String>, LabError> {
        sync_routes(&mut Netlink::open()?, routes)
    }
}

/// Makes the speaker's routes (protocol 0x57) in this namespace exactly `want`: a single-path
/// route for one node, a multipath one for several; replaces what differs, deletes the rest,
/// never touches another owner's route (the agents' own route sync). Returns what it changed.
fn sync_routes(nl: &mut Netlink, want: &Routes) -> Result<Vec<String>, LabError> {
    let mut owned = Vec::with_capacity(want.len());
    for (addr, nodes) in want {
        owned.push(OwnedRoute {
            dst: IpNet::new(IpAddr::V4(*addr), 32)?,
            via: nodes.iter().map(|n| IpAddr::V4(*n)).collect(),
            oif: None,
            onlink: false,
        });
    }
    weft_net::sync_owned_routes(nl, &owned).map_err(|e| LabError::Invalid(format!("speaker: {e}")))
}
