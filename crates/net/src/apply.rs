//! The kernel half: make this namespace match a [`NodePlan`], changing only what differs and
//! only what weft owns. Every change is reported, so "re-applying is a no-op" is checkable.
//!
//! Links, addresses, routes and entries are read back from the kernel at every apply. The
//! egress table goes through the one nftables applier (`weft_dataplane::nft::Applier`), which
//! a [`NodeApplier`] keeps between applies: it remembers what it loaded, so a table deleted,
//! replaced or with a rule edited by hand is loaded again at the next apply.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use weft_dataplane::{nft, Family, IfIndex, IpNet, Link, MacAddr, Netlink, NextHop, Route};

use crate::compile::{NodePlan, PlannedRoute, Via, VxlanPlan};
use crate::{NetError, ROUTE_PROTOCOL, VXLAN_DEVICE};

/// What one apply changed, as `ip`-style lines ("added route ...").
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<String>,
}

impl Applied {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Makes the calling thread's network namespace match `plan`, with no memory of earlier
/// applies: the egress table is kept when the kernel's carries the digest of this plan's (a
/// table deleted or replaced is loaded again; a rule edited in place, under the same comment,
/// is only noticed by a [`NodeApplier`] that loaded or adopted it before).
pub fn apply(plan: &NodePlan) -> Result<Applied, NetError> {
    NodeApplier::new().apply(plan)
}

/// Applies plans to one network namespace (make its first apply inside it), keeping the egress
/// table's applier between applies, so that every apply also checks that the kernel's table is
/// still the one loaded, rules included (one table GET and one dump of its few rules).
pub struct NodeApplier {
    egress: nft::Applier,
}

impl Default for NodeApplier {
    fn default() -> NodeApplier {
        NodeApplier::new()
    }
}

impl NodeApplier {
    pub fn new() -> NodeApplier {
        NodeApplier {
            egress: nft::Applier::new().check_rules(true),
        }
    }

    /// Makes the calling thread's network namespace match `plan`.
    pub fn apply(&mut self, plan: &NodePlan) -> Result<Applied, NetError> {
        let mut done = apply_links_and_routes(plan)?;
        sync_nft(&mut self.egress, plan, &mut done)?;
        Ok(done)
    }
}

/// Everything but the egress table.
fn apply_links_and_routes(plan: &NodePlan) -> Result<Applied, NetError> {
    let mut nl = Netlink::open()?;
    let mut done = Applied::default();
    let uplink = uplink(&mut nl, plan.node.ip)?;
    let vxlan = match &plan.vxlan {
        Some(want) => Some(ensure_vxlan(&mut nl, want, uplink.index, &mut done)?),
        None => {
            if nl.link_get(VXLAN_DEVICE)?.is_some() {
                nl.link_del(VXLAN_DEVICE)?;
                done.changes
                    .push(format!("deleted link {VXLAN_DEVICE} (not in direct mode)"));
            }
            None
        }
    };
    sync_routes(&mut nl, &plan.routes, uplink.index, vxlan, &mut done)?;
    if let Some(vx) = vxlan {
        sync_neighbours(&mut nl, vx, &plan.neighbours, &mut done)?;
        sync_fdb(&mut nl, vx, &plan.fdb, &mut done)?;
    }
    Ok(done)
}

/// The link holding the node IP: the underlay, found rather than configured, so the same agent
/// works in the lab (eth0) and on any real node.
fn uplink(nl: &mut Netlink, node_ip: Ipv4Addr) -> Result<Link, NetError> {
    let holder = nl
        .addrs(None)?
        .into_iter()
        .find(|a| a.local.addr() == IpAddr::V4(node_ip))
        .ok_or(NetError::NoUplink(node_ip))?;
    nl.link_get(holder.link)?.ok_or(NetError::NoUplink(node_ip))
}

fn ensure_vxlan(
    nl: &mut Netlink,
    want: &VxlanPlan,
    underlay: IfIndex,
    done: &mut Applied,
) -> Result<IfIndex, NetError> {
    let existing = nl.link_get(VXLAN_DEVICE)?;
    let fits = |l: &Link| {
        l.kind.as_deref() == Some("vxlan")
            && l.vxlan.as_ref().is_some_and(|v| {
                v.vni == want.vni
                    && v.port == want.port
                    && v.local == Some(want.local)
                    && v.underlay == Some(underlay)
                    && !v.learning
            })
    };
    let link = match existing {
        Some(l) if fits(&l) => l,
        other => {
            if other.is_some() {
                // VNI, port and local address are fixed at creation: a different one is rebuilt.
                nl.link_del(VXLAN_DEVICE)?;
                done.changes
                    .push(format!("deleted link {VXLAN_DEVICE} (parameters changed)"));
            }
            nl.link_add_vxlan(VXLAN_DEVICE, want.vni)
                .local(want.local)
                .port(want.port)
                .underlay(underlay)
                .learning(false)
                .mtu(want.mtu)
                .mac(want.mac)
                .execute()?;
            done.changes.push(format!(
                "added link {VXLAN_DEVICE} vxlan id {} local {} dstport {}",
                want.vni, want.local, want.port
            ));
            nl.link_get(VXLAN_DEVICE)?.ok_or_else(|| {
                NetError::Kernel(weft_dataplane::Error::Protocol {
                    op: format!("creating {VXLAN_DEVICE}"),
                    detail: "the device vanished right after it was created".into(),
                })
            })?
        }
    };
    if link.mac != Some(want.mac) || link.mtu != want.mtu {
        nl.link_set(link.index)
            .mtu(want.mtu)
            .mac(want.mac)
            .execute()?;
        done.changes.push(format!(
            "set {VXLAN_DEVICE} address {} mtu {}",
            want.mac, want.mtu
        ));
    }
    if !link.admin_up {
        nl.link_set(link.index).up().execute()?;
        done.changes.push(format!("set {VXLAN_DEVICE} up"));
    }
    let want_addr = IpNet::new(IpAddr::V4(want.address), 32)?;
    let mut have_addr = false;
    for a in nl
        .addrs(Some(link.index))?
        .into_iter()
        .filter(|a| a.link == link.index)
    {
        if a.local == want_addr {
            have_addr = true;
        } else if a.local.addr().is_ipv4() {
            nl.addr_del(link.index, a.local)?;
            done.changes
                .push(format!("deleted address {} from {VXLAN_DEVICE}", a.local));
        }
    }
    if !have_addr {
        nl.addr_add(link.index, want_addr).execute()?;
        done.changes
            .push(format!("added address {want_addr} to {VXLAN_DEVICE}"));
    }
    Ok(link.index)
}

fn sync_routes(
    nl: &mut Netlink,
    want: &[PlannedRoute],
    uplink: IfIndex,
    vxlan: Option<IfIndex>,
    done: &mut Applied,
) -> Result<(), NetError> {
    let mut owned = Vec::with_capacity(want.len());
    for r in want {
        let oif = match r.via {
            Via::Uplink => uplink,
            Via::Vxlan => vxlan.expect("vxlan routes come with a vxlan device"),
        };
        owned.push(OwnedRoute {
            dst: IpNet::new(IpAddr::V4(r.dst.network()), r.dst.prefix())?,
            via: vec![IpAddr::V4(r.gateway)],
            oif: Some(oif),
            onlink: r.onlink,
        });
    }
    done.changes.extend(sync_owned_routes(nl, &owned)?);
    Ok(())
}

/// A main-table route weft wants, tagged with [`ROUTE_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRoute {
    pub dst: IpNet,
    /// The gateway, or several: one multipath route with a nexthop each (sorted, not empty).
    pub via: Vec<IpAddr>,
    /// The output device (single path only), or None for wherever the gateway is reached.
    pub oif: Option<IfIndex>,
    pub onlink: bool,
}

/// Makes weft's own routes (protocol [`ROUTE_PROTOCOL`]) in this namespace exactly `want`:
/// adds or replaces what differs, deletes the rest, and never touches a route somebody else
/// installed. Returns what it changed. (The node agents and the lab's load-balancer speaker
/// both keep their routes this way.)
pub fn sync_owned_routes(nl: &mut Netlink, want: &[OwnedRoute]) -> Result<Vec<String>, NetError> {
    let mut done = Applied::default();
    let owned: Vec<Route> = nl
        .routes(Family::V4)?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .collect();
    for r in want {
        let present = owned.iter().any(|o| {
            o.dst == r.dst
                && o.gateways() == r.via
                && r.oif.is_none_or(|i| r.via.len() > 1 || o.oif == Some(i))
                && o.onlink == r.onlink
        });
        if present {
            continue;
        }
        let mut add = nl.route_add(r.dst).protocol(ROUTE_PROTOCOL).replace();
        let via: Vec<String> = r.via.iter().map(IpAddr::to_string).collect();
        let mut change = format!("added route {} via {}", r.dst, via.join(", "));
        match r.via.as_slice() {
            [one] => {
                add = add.gateway(*one);
                if let Some(oif) = r.oif {
                    add = add.oif(oif);
                    change.push_str(&format!(" dev ifindex {oif}"));
                }
                if r.onlink {
                    add = add.onlink();
                }
            }
            many => {
                for gateway in many {
                    add = add.nexthop(NextHop::via(*gateway));
                }
            }
        }
        add.execute()?;
        done.changes.push(change);
    }
    let wanted_dsts: HashSet<IpNet> = want.iter().map(|r| r.dst).collect();
    for o in owned.iter().filter(|o| !wanted_dsts.contains(&o.dst)) {
        deleted(
            nl.route_del(o.dst, o.oif, o.gateway),
            format!("deleted route {}", o.dst),
            &mut done,
        )?;
    }
    Ok(done.changes)
}

fn sync_neighbours(
    nl: &mut Netlink,
    vx: IfIndex,
    want: &[(Ipv4Addr, MacAddr)],
    done: &mut Applied,
) -> Result<(), NetError> {
    let have: BTreeMap<IpAddr, (Option<MacAddr>, bool)> =
        // Only IPv4 entries are ours: the kernel keeps its own IPv6 multicast ones here.
        nl.neighs(vx)?.into_iter().filter(|n| n.ip.is_ipv4()).map(|n| (n.ip, (n.mac, n.permanent))).collect();
    let wanted: BTreeMap<IpAddr, MacAddr> = want
        .iter()
        .map(|(ip, mac)| (IpAddr::V4(*ip), *mac))
        .collect();
    for (ip, mac) in &wanted {
        if have.get(ip) != Some(&(Some(*mac), true)) {
            nl.neigh_add_permanent(vx, *ip, *mac)?;
            done.changes.push(format!(
                "added neighbour {ip} lladdr {mac} dev {VXLAN_DEVICE}"
            ));
        }
    }
    for ip in have.keys().filter(|ip| !wanted.contains_key(ip)) {
        deleted(
            nl.neigh_del(vx, *ip),
            format!("deleted neighbour {ip} dev {VXLAN_DEVICE}"),
            done,
        )?;
    }
    Ok(())
}

fn sync_fdb(
    nl: &mut Netlink,
    vx: IfIndex,
    want: &[(MacAddr, Ipv4Addr)],
    done: &mut Applied,
) -> Result<(), NetError> {
    let have = nl.fdbs(vx)?;
    for (mac, dst) in want {
        let dst = IpAddr::V4(*dst);
        let present = have
            .iter()
            .any(|e| e.mac == *mac && e.dst == Some(dst) && e.permanent);
        if !present {
            nl.fdb_replace(vx, *mac, dst)?;
            done.changes
                .push(format!("added fdb {mac} dst {dst} dev {VXLAN_DEVICE}"));
        }
    }
    for e in &have {
        let wanted = want
            .iter()
            .any(|(mac, dst)| e.mac == *mac && e.dst == Some(IpAddr::V4(*dst)));
        if !wanted {
            deleted(
                nl.fdb_del(vx, e.mac, e.dst),
                format!("deleted fdb {} dev {VXLAN_DEVICE}", e.mac),
                done,
            )?;
        }
    }
    Ok(())
}

/// Records a delete as a change; an object already gone (a deleted VXLAN device takes its
/// routes and entries along) is neither an error nor a change.
fn deleted(
    result: weft_dataplane::Result<()>,
    change: String,
    done: &mut Applied,
) -> Result<(), NetError> {
    match result {
        Ok(()) => {
            done.changes.push(change);
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn sync_nft(
    egress: &mut nft::Applier,
    plan: &NodePlan,
    done: &mut Applied,
) -> Result<(), NetError> {
    let id = plan.egress.id();
    match egress.apply(&plan.egress)? {
        nft::Applied::Unchanged => {}
        nft::Applied::Incremental(_) => done.changes.push(format!("updated nftables table {id}")),
        nft::Applied::Whole => done.changes.push(format!("loaded nftables table {id}")),
        nft::Applied::WholeAfterRefusal(why) => done
            .changes
            .push(format!("reloaded nftables table {id} ({why})")),
    }
    Ok(())
}
