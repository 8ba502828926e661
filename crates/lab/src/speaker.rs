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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use weft_controller::speaker::{Announce, Routes, Speaker};
use weft_dataplane::{Family, IpNet, Netlink, NextHop};
use weft_net::ROUTE_PROTOCOL;
use weft_view::{Reconciler, Shared};

use crate::LabError;

/// The fabric's multipath hash: 1 is layer 4 (addresses, protocol and ports), so two
/// connections from one client can take different nodes.
const MULTIPATH_HASH_POLICY: (&str, &str) = ("net/ipv4/fib_multipath_hash_policy", "1");

/// Runs the speaker until killed, in the fabric namespace it was started in, against the API
/// `kubeconfig` names.
pub fn run(kubeconfig: &Path) -> Result<(), LabError> {
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
        Ok(sync_routes(&mut Netlink::open()?, routes)?)
    }
}

/// Makes the speaker's routes (protocol 0x57) in this namespace exactly `want`: a single-path
/// route for one node, a multipath one for several; replaces what differs, deletes the rest,
/// never touches another owner's route. Returns what it changed.
fn sync_routes(nl: &mut Netlink, want: &Routes) -> Result<Vec<String>, weft_dataplane::Error> {
    let owned: HashMap<IpNet, BTreeSet<IpAddr>> = nl
        .routes(Family::V4)?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .map(|r| (r.dst, r.gateways().into_iter().collect()))
        .collect();
    let mut changes = Vec::new();
    let mut wanted = HashSet::new();
    for (addr, nodes) in want {
        let dst = IpNet::new(IpAddr::V4(*addr), 32)?;
        wanted.insert(dst);
        let gateways: BTreeSet<IpAddr> = nodes.iter().map(|n| IpAddr::V4(*n)).collect();
        if owned.get(&dst) == Some(&gateways) {
            continue;
        }
        let mut add = nl.route_add(dst).protocol(ROUTE_PROTOCOL).replace();
        match nodes.as_slice() {
            [one] => add = add.gateway(IpAddr::V4(*one)),
            many => {
                for n in many {
                    add = add.nexthop(NextHop::via(IpAddr::V4(*n)));
                }
            }
        }
        add.execute()?;
        let via: Vec<String> = nodes.iter().map(Ipv4Addr::to_string).collect();
        changes.push(format!("routed {dst} via {}", via.join(", ")));
    }
    for dst in owned.keys().filter(|d| !wanted.contains(*d)) {
        match nl.route_del(*dst, None, None) {
            Ok(()) => changes.push(format!("deleted route {dst}")),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(changes)
}
