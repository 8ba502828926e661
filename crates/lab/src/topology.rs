//! The lab's machines, as network namespaces: a "fabric" namespace holding the underlay bridge,
//! and one namespace per node plugged into it with its node IP. Pods hang off their node (the
//! CNI plugin wires them); nothing here ever touches the machine's own namespace.

use std::net::{IpAddr, Ipv4Addr};

use weft_dataplane::NetNs;
use weft_dataplane::Netlink;
use weft_dataplane::{sysctl, Error as DpError};
use weft_dataplane::{IfIndex, IpNet};
use weft_model::config::ClusterConfig;

use crate::layout::{fabric_port_name, Layout};
use crate::nodes::NodeSlot;
use crate::LabError;

/// The underlay bridge inside the fabric namespace.
pub const FABRIC_BRIDGE: &str = "br0";
/// A node's underlay interface, inside the node namespace.
pub const NODE_UPLINK: &str = "eth0";

fn dp(what: impl Into<String>) -> impl FnOnce(DpError) -> LabError {
    let what = what.into();
    move |source| LabError::Dataplane {
        what,
        error: source,
    }
}

/// Create the fabric namespace with its bridge, holding the underlay gateway address.
pub fn create_fabric(layout: &Layout, config: &ClusterConfig) -> Result<(), LabError> {
    let name = layout.fabric_netns();
    let ns = NetNs::create(&name).map_err(dp(format!("creating namespace {name}")))?;
    let gateway = config.node_gateway_ip();
    let prefix = config.node_network.prefix();
    ns.run(|| -> Result<(), LabError> {
        let mut nl = Netlink::open()?;
        nl.lo_up()?;
        nl.link_add_bridge(FABRIC_BRIDGE).execute()?;
        let bridge = link_index(&mut nl, FABRIC_BRIDGE)?;
        nl.addr_add(bridge, IpNet::new(IpAddr::V4(gateway), prefix)?)
            .execute()?;
        // A MAC of its own: a bridge without one takes its lowest port's, so removing a node
        // could change the gateway's MAC under every other node's ARP entry (~30 s without the
        // API until the entry is probed again).
        let o = gateway.octets();
        nl.link_set(bridge)
            .mac(weft_dataplane::MacAddr([
                0x0e, 0x77, o[0], o[1], o[2], o[3],
            ]))
            .up()
            .execute()?;
        sysctl::write("net/ipv4/ip_forward", "1")?;
        Ok(())
    })
    .map_err(dp(format!("entering {name}")))?
    .map_err(context(format!("setting up the fabric bridge in {name}")))
}

/// Create a node: its namespace, a veth into the fabric bridge, its node IP and routes.
pub fn create_node(
    layout: &Layout,
    config: &ClusterConfig,
    slot: &NodeSlot,
) -> Result<(), LabError> {
    let node = slot.name.clone();
    let node_ip = slot.ip;
    let index = slot.index;
    let gateway = config.node_gateway_ip();
    let prefix = config.node_network.prefix();
    let fabric =
        NetNs::open_named(&layout.fabric_netns()).map_err(dp("opening the fabric namespace"))?;
    let name = layout.node_netns(&node);
    let ns = NetNs::create(&name).map_err(dp(format!("creating namespace {name}")))?;
    let port = fabric_port_name(index);

    fabric
        .run(|| -> Result<(), LabError> {
            let mut nl = Netlink::open()?;
            nl.link_add_veth(&port, NODE_UPLINK)
                .peer_netns(&ns)
                .execute()?;
            let bridge = link_index(&mut nl, FABRIC_BRIDGE)?;
            nl.link_set(port.as_str()).master(bridge).up().execute()?;
            Ok(())
        })
        .map_err(dp("entering the fabric namespace"))?
        .map_err(context(format!("plugging node {node} into the fabric")))?;

    ns.run(|| -> Result<(), LabError> {
        let mut nl = Netlink::open()?;
        nl.lo_up()?;
        let uplink = link_index(&mut nl, NODE_UPLINK)?;
        nl.addr_add(uplink, IpNet::new(IpAddr::V4(node_ip), prefix)?)
            .execute()?;
        nl.link_set(uplink).up().execute()?;
        nl.route_add(IpNet::default_v4())
            .gateway(IpAddr::V4(gateway))
            .oif(uplink)
            .execute()?;
        // A node forwards for its pods.
        sysctl::write("net/ipv4/ip_forward", "1")?;
        Ok(())
    })
    .map_err(dp(format!("entering {name}")))?
    .map_err(context(format!(
        "configuring node {node} ({node_ip}/{prefix})"
    )))
}

/// The index of a link that was just created; its absence is reported as the kernel would.
fn link_index(nl: &mut Netlink, name: &str) -> Result<IfIndex, LabError> {
    nl.link_get(name)?.map(|l| l.index).ok_or_else(|| {
        LabError::Invalid(format!("link {name} vanished right after it was created"))
    })
}

/// Give a step's error the context of what was being built.
fn context(what: String) -> impl FnOnce(LabError) -> LabError {
    move |e| LabError::Invalid(format!("{what}: {e}"))
}

/// "Outside the cluster": a namespace hanging off the fabric with one host on a documentation
/// range (RFC 5737), reached through the fabric, never through the machine's uplink.
pub const OUTSIDE_NETWORK: &str = "203.0.113.0/24";
pub const OUTSIDE_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const OUTSIDE_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const OUTSIDE_PORT: &str = "out0";

/// Create the outside namespace, its link to the fabric, and its addresses and routes.
pub fn create_outside(layout: &Layout) -> Result<(), LabError> {
    let fabric =
        NetNs::open_named(&layout.fabric_netns()).map_err(dp("opening the fabric namespace"))?;
    let name = layout.outside_netns();
    let ns = NetNs::create(&name).map_err(dp(format!("creating namespace {name}")))?;
    fabric
        .run(|| -> Result<(), LabError> {
            let mut nl = Netlink::open()?;
            nl.link_add_veth(OUTSIDE_PORT, NODE_UPLINK)
                .peer_netns(&ns)
                .execute()?;
            let port = link_index(&mut nl, OUTSIDE_PORT)?;
            nl.addr_add(port, IpNet::new(IpAddr::V4(OUTSIDE_GATEWAY), 24)?)
                .execute()?;
            nl.link_set(port).up().execute()?;
            Ok(())
        })
        .map_err(dp("entering the fabric namespace"))?
        .map_err(context(format!("plugging {name} into the fabric")))?;
    ns.run(|| -> Result<(), LabError> {
        let mut nl = Netlink::open()?;
        nl.lo_up()?;
        let uplink = link_index(&mut nl, NODE_UPLINK)?;
        nl.addr_add(uplink, IpNet::new(IpAddr::V4(OUTSIDE_HOST), 24)?)
            .execute()?;
        nl.link_set(uplink).up().execute()?;
        nl.route_add(IpNet::default_v4())
            .gateway(IpAddr::V4(OUTSIDE_GATEWAY))
            .oif(uplink)
            .execute()?;
        Ok(())
    })
    .map_err(dp(format!("entering {name}")))?
    .map_err(context(format!("configuring {name} ({OUTSIDE_HOST})")))
}

/// Every namespace of this lab that exists now, pods first, the fabric last: the order to delete.
pub fn lab_namespaces(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| layout.owns_netns(n))
                .collect()
        })
        .unwrap_or_default();
    let fabric = layout.fabric_netns();
    let rank = |n: &String| {
        if n.starts_with(&format!("{}pod-", layout.netns_prefix())) {
            0
        } else if *n == fabric {
            2
        } else {
            1
        }
    };
    // (the outside namespace ranks with the nodes: anything but the fabric goes before it)
    names.sort_by_key(|n| (rank(n), n.clone()));
    names
}
