//! The pure half: cluster view + this node -> the kernel state this node should have.

use std::fmt;
use std::net::Ipv4Addr;

use weft_dataplane::nft::{self, Chain, ChainType, Hook, Ipv4Prefix, Policy, Rule, Table};
use weft_dataplane::MacAddr;
use weft_model::cidr::Ipv4Cidr;

use crate::{Mode, NetError, NetworkConfig, NodeInfo, EGRESS_TABLE, VXLAN_DEVICE};

/// Everything one node needs for cluster networking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    pub node: NodeInfo,
    /// The VXLAN device (vxlan mode only; in direct mode any old one is removed).
    pub vxlan: Option<VxlanPlan>,
    /// One route per remote node's pod CIDR.
    pub routes: Vec<PlannedRoute>,
    /// Permanent neighbour entries on the VXLAN device: remote VTEP address -> VTEP MAC.
    pub neighbours: Vec<(Ipv4Addr, MacAddr)>,
    /// Forwarding entries on the VXLAN device: remote VTEP MAC -> that node's underlay IP.
    pub fdb: Vec<(MacAddr, Ipv4Addr)>,
    /// The egress table (`ip weft_egress`), loaded whole and atomically by the applier, which
    /// keeps a digest of it in the table's comment.
    pub egress: Table,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanPlan {
    pub vni: u32,
    pub port: u16,
    /// Source of encapsulated packets: the node IP.
    pub local: Ipv4Addr,
    pub mtu: u32,
    pub mac: MacAddr,
    /// The device's own overlay address: the first address of the node's pod CIDR (as Flannel
    /// does), so traffic the node itself sends into the overlay has a routable source.
    pub address: Ipv4Addr,
}

/// A route to a remote node's pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedRoute {
    pub dst: weft_model::cidr::Ipv4Cidr,
    pub gateway: Ipv4Addr,
    pub via: Via,
    /// The gateway is not on any local subnet; trust the device to reach it (vxlan).
    pub onlink: bool,
}

/// Which device a route leaves through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    Vxlan,
    /// The device holding the node IP.
    Uplink,
}

/// The MAC of a node's VXLAN device, derived from its node IP: locally administered (0x02
/// bit), unicast, and the same every time the agent computes it, on every node.
pub fn vtep_mac(node_ip: Ipv4Addr) -> MacAddr {
    let o = node_ip.octets();
    MacAddr([0x0e, 0x57, o[0], o[1], o[2], o[3]])
}

/// Compiles the plan for node `me` of `nodes`.
pub fn compile(cfg: &NetworkConfig, me: &str, nodes: &[NodeInfo]) -> Result<NodePlan, NetError> {
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by_key(|n| (n.pod_cidr.network(), n.name.clone()));
    for pair in sorted.windows(2) {
        if pair[0].pod_cidr.overlaps(&pair[1].pod_cidr) {
            return Err(NetError::OverlappingPodCidrs {
                a: pair[0].name.clone(),
                b: pair[1].name.clone(),
                cidr: pair[1].pod_cidr.to_string(),
            });
        }
    }
    let this = nodes
        .iter()
        .find(|n| n.name == me)
        .ok_or_else(|| NetError::UnknownSelf(me.to_string()))?
        .clone();
    // Every node's pod CIDR, in order: what the egress table lets through as routed.
    let routed: Vec<Ipv4Cidr> = sorted.iter().map(|n| n.pod_cidr).collect();
    let remotes: Vec<&NodeInfo> = sorted.into_iter().filter(|n| n.name != me).collect();

    let mut plan = NodePlan {
        node: this.clone(),
        vxlan: None,
        routes: Vec::new(),
        neighbours: Vec::new(),
        fdb: Vec::new(),
        egress: egress_table(cfg, &this, &routed),
    };
    match cfg.mode {
        Mode::Vxlan { vni, port } => {
            plan.vxlan = Some(VxlanPlan {
                vni,
                port,
                local: this.ip,
                mtu: cfg.underlay_mtu - weft_model::config::VXLAN_OVERHEAD,
                mac: vtep_mac(this.ip),
                address: this.pod_cidr.network(),
            });
            for r in remotes {
                let vtep = r.pod_cidr.network();
                plan.routes.push(PlannedRoute {
                    dst: r.pod_cidr,
                    gateway: vtep,
                    via: Via::Vxlan,
                    onlink: true,
                });
                plan.neighbours.push((vtep, vtep_mac(r.ip)));
                plan.fdb.push((vtep_mac(r.ip), r.ip));
            }
        }
        Mode::Direct => {
            for r in remotes {
                plan.routes.push(PlannedRoute {
                    dst: r.pod_cidr,
                    gateway: r.ip,
                    via: Via::Uplink,
                    onlink: false,
                });
            }
        }
    }
    Ok(plan)
}

fn prefix(c: Ipv4Cidr) -> Ipv4Prefix {
    // An Ipv4Cidr is valid by construction (prefix <= 32, host bits clear).
    Ipv4Prefix {
        addr: c.network(),
        len: c.prefix(),
    }
}

/// The NFLOG prefix of a connection refused for want of a route (the flow log's REJECTED "no
/// route").
pub const REJECT_NO_ROUTE: &str = "weft reject no route";

/// The egress table: this node's pods going anywhere but to pods or Services leave with the
/// node's address. Pod-to-pod traffic never matches, in either mode.
///
/// Its `forward` chain refuses what no route leads to: an address of the pod network that no
/// node's pod CIDR holds (`routed`) would otherwise follow the default route out of the node,
/// with a pod's address as its source. The pod gets ICMP net unreachable at once, and the
/// refusal is logged (rate-limited) to weft's NFLOG group for the flow log. Only a
/// connection's first packet is looked at, against one rule per node (an interval set would
/// make it one lookup; the typed nftables model has none yet).
fn egress_table(cfg: &NetworkConfig, this: &NodeInfo, routed: &[Ipv4Cidr]) -> Table {
    let mut t = Table::new(nft::Family::Ip, EGRESS_TABLE).comment("weft node egress");
    t.add_chain(
        Chain::base(
            "postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            nft::priority::SRCNAT,
            Policy::Accept,
        )
        .rule(
            Rule::new()
                .ip_saddr(prefix(this.pod_cidr))
                .ip_daddr_ne(prefix(cfg.cluster_cidr))
                .ip_daddr_ne(prefix(cfg.service_cidr))
                .masquerade(false),
        ),
    );
    // Every node's pod CIDR returns; what is left has no route. One rule per node (the kernel
    // allows 128 expressions in one rule, so not one rule listing them all).
    let mut no_route = Chain::new("no_route");
    for cidr in routed {
        no_route = no_route.rule(Rule::new().ip_daddr(prefix(*cidr)).ret());
    }
    t.add_chain(
        no_route
            .rule(
                Rule::new()
                    .limit_per_second(
                        weft_dataplane::nflog::LOG_RATE,
                        weft_dataplane::nflog::LOG_BURST,
                    )
                    .log_group(weft_dataplane::nflog::WEFT_GROUP, REJECT_NO_ROUTE),
            )
            .rule(Rule::new().reject_net_unreachable()),
    );
    t.add_chain(
        Chain::base(
            "forward",
            ChainType::Filter,
            Hook::Forward,
            nft::priority::FILTER,
            Policy::Accept,
        )
        .rule(
            Rule::new()
                .ct_state(nft::ct_state::NEW)
                .ip_saddr(prefix(this.pod_cidr))
                .ip_daddr(prefix(cfg.cluster_cidr))
                .jump("no_route"),
        ),
    );
    t
}

/// The plan as the commands that would build it by hand: what the snapshots hold and what
/// `weft agent --plan` prints.
impl fmt::Display for NodePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.node;
        writeln!(f, "# node {} ({}), pods {}", n.name, n.ip, n.pod_cidr)?;
        if let Some(v) = &self.vxlan {
            writeln!(
                f,
                "ip link add {VXLAN_DEVICE} type vxlan id {} local {} dstport {} dev <uplink> nolearning",
                v.vni, v.local, v.port
            )?;
            writeln!(
                f,
                "ip link set {VXLAN_DEVICE} address {} mtu {} up",
                v.mac, v.mtu
            )?;
            writeln!(f, "ip addr add {}/32 dev {VXLAN_DEVICE}", v.address)?;
        } else {
            writeln!(f, "# no {VXLAN_DEVICE} (removed if present)")?;
        }
        for r in &self.routes {
            let dev = match r.via {
                Via::Vxlan => VXLAN_DEVICE,
                Via::Uplink => "<uplink>",
            };
            let onlink = if r.onlink { " onlink" } else { "" };
            writeln!(
                f,
                "ip route replace {} via {} dev {dev}{onlink} proto 0x57",
                r.dst, r.gateway
            )?;
        }
        for (ip, mac) in &self.neighbours {
            writeln!(
                f,
                "ip neigh replace {ip} lladdr {mac} dev {VXLAN_DEVICE} nud permanent"
            )?;
        }
        for (mac, dst) in &self.fdb {
            writeln!(
                f,
                "bridge fdb replace {mac} dev {VXLAN_DEVICE} dst {dst} self permanent"
            )?;
        }
        write!(f, "nft -f - <<EOF\n{}EOF\n", self.egress.replace_script())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: Mode) -> NetworkConfig {
        // The lab's defaults: cluster 10.244.0.0/16, services 10.96.0.0/12, MTU 1500.
        NetworkConfig {
            mode,
            ..NetworkConfig::from_cluster(&weft_model::config::ClusterConfig::default())
        }
    }

    fn three() -> Vec<NodeInfo> {
        // Deliberately out of order: the plan must not depend on listing order.
        vec![
            NodeInfo::new(
                "lab-node3",
                "172.20.0.4".parse().unwrap(),
                "10.244.2.0/24".parse().unwrap(),
            ),
            NodeInfo::new(
                "lab-node1",
                "172.20.0.2".parse().unwrap(),
                "10.244.0.0/24".parse().unwrap(),
            ),
            NodeInfo::new(
                "lab-node2",
                "172.20.0.3".parse().unwrap(),
                "10.244.1.0/24".parse().unwrap(),
            ),
        ]
    }

    #[test]
    fn three_nodes_vxlan() {
        let plan = compile(
            &cfg(Mode::Vxlan { vni: 1, port: 4789 }),
            "lab-node1",
            &three(),
        )
        .unwrap();
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn three_nodes_direct() {
        let plan = compile(&cfg(Mode::Direct), "lab-node2", &three()).unwrap();
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn listing_order_does_not_matter() {
        let c = cfg(Mode::Vxlan { vni: 7, port: 8472 });
        let mut nodes = three();
        let a = compile(&c, "lab-node3", &nodes).unwrap();
        nodes.reverse();
        assert_eq!(a, compile(&c, "lab-node3", &nodes).unwrap());
    }

    #[test]
    fn a_single_node_has_no_routes_but_still_masquerades() {
        let nodes = &three()[1..2];
        let plan = compile(&cfg(Mode::Vxlan { vni: 1, port: 4789 }), "lab-node1", nodes).unwrap();
        assert!(plan.routes.is_empty() && plan.fdb.is_empty() && plan.neighbours.is_empty());
        assert!(plan.egress.render().contains(
            "ip saddr 10.244.0.0/24 ip daddr != 10.244.0.0/16 ip daddr != 10.96.0.0/12 masquerade"
        ));
    }

    #[test]
    fn the_no_route_check_stays_within_the_kernels_rule_size_at_any_node_count() {
        // 1,000 nodes: each rule well under the kernel's 128 expressions per rule.
        let nodes: Vec<NodeInfo> = (0..1000u32)
            .map(|i| {
                NodeInfo::new(
                    &format!("n{i}"),
                    std::net::Ipv4Addr::from(0xac10_0000 + i),
                    format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let c = NetworkConfig {
            cluster_cidr: "10.96.0.0/11".parse().unwrap(),
            service_cidr: "10.200.0.0/16".parse().unwrap(),
            ..cfg(Mode::Direct)
        };
        let plan = compile(&c, "n7", &nodes).unwrap();
        let text = plan.egress.render();
        let longest = text
            .lines()
            .map(|l| l.split_whitespace().count())
            .max()
            .unwrap();
        assert!(longest < 40, "a rule of {longest} words");
        assert_eq!(text.matches(" return").count(), 1000);
    }

    #[test]
    fn vtep_macs_are_unicast_locally_administered_and_distinct() {
        let macs: Vec<MacAddr> = three().iter().map(|n| vtep_mac(n.ip)).collect();
        for m in &macs {
            assert_eq!(m.0[0] & 0x01, 0, "unicast");
            assert_eq!(m.0[0] & 0x02, 0x02, "locally administered");
        }
        assert_ne!(macs[0], macs[1]);
        assert_ne!(macs[1], macs[2]);
    }

    #[test]
    fn the_egress_table_follows_the_node() {
        let c = cfg(Mode::Direct);
        let a = compile(&c, "lab-node1", &three()).unwrap();
        let b = compile(&c, "lab-node2", &three()).unwrap();
        assert_ne!(a.egress, b.egress);
        assert_eq!(a.egress, compile(&c, "lab-node1", &three()).unwrap().egress);
    }

    #[test]
    fn bad_views_are_refused_with_names() {
        let mut nodes = three();
        nodes[0].pod_cidr = "10.244.1.0/25".parse().unwrap();
        let err = compile(&cfg(Mode::Direct), "lab-node1", &nodes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lab-node2") && err.contains("lab-node3"),
            "{err}"
        );
        let err = compile(&cfg(Mode::Direct), "lab-node9", &three())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "this node (lab-node9) is not in the cluster view");
    }
}
