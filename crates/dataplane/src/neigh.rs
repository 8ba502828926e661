//! Neighbour (ARP/NDP) entries: permanent ip -> mac on a link; and the forwarding database of
//! VXLAN devices (`bridge fdb ... self`): which underlay address a remote MAC lives behind.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::netlink::{attr_ip, family, ip_bytes, Attrs, Msg, Netlink, NLM_F_CREATE, NLM_F_REPLACE};
use crate::types::{IfIndex, MacAddr};

const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;
const NUD_PERMANENT: u16 = 0x80;
/// The entry belongs to the device itself (a VXLAN device's own table), not to a bridge master.
const NTF_SELF: u8 = 0x02;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;

/// A neighbour table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub link: IfIndex,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub permanent: bool,
}

/// A forwarding-database entry of a VXLAN device: frames for `mac` are sent to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    pub link: IfIndex,
    pub mac: MacAddr,
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

/// ndmsg: family, pad, pad, ifindex, state, flags, type.
fn ndmsg(fam: u8, index: u32, state: u16) -> [u8; 12] {
    ndmsg_flags(fam, index, state, 0)
}

fn ndmsg_flags(fam: u8, index: u32, state: u16, flags: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = fam;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&state.to_ne_bytes());
    h[10] = flags;
    h
}

fn lladdr(data: &[u8]) -> Option<MacAddr> {
    let b: [u8; 6] = data.try_into().ok()?;
    Some(MacAddr(b))
}

impl Netlink {
    /// Adds (or replaces) a permanent neighbour entry `ip -> mac` on `link`, so the kernel
    /// never has to resolve it.
    pub fn neigh_add_permanent(&mut self, link: IfIndex, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        m.header(&ndmsg(family(ip), link.0, NUD_PERMANENT));
        m.attr(NDA_DST, &ip_bytes(ip));
        m.attr(NDA_LLADDR, &mac.0);
        self.request(m, || {
            format!("adding neighbour {ip} lladdr {mac} on ifindex {link}")
        })
    }

    /// Deletes the neighbour entry for `ip` on `link`.
    pub fn neigh_del(&mut self, link: IfIndex, ip: IpAddr) -> Result<()> {
        let mut m = Msg::new(RTM_DELNEIGH, 0);
        m.header(&ndmsg(family(ip), link.0, 0));
        m.attr(NDA_DST, &ip_bytes(ip));
        self.request(m, || format!("deleting neighbour {ip} on ifindex {link}"))
    }

    /// Adds or replaces the permanent forwarding entry `mac -> dst` of a VXLAN device
    /// (`bridge fdb replace MAC dev LINK dst DST self permanent`).
    pub fn fdb_replace(&mut self, link: IfIndex, mac: MacAddr, dst: IpAddr) -> Result<()> {
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        m.header(&ndmsg_flags(AF_BRIDGE, link.0, NUD_PERMANENT, NTF_SELF));
        m.attr(NDA_LLADDR, &mac.0);
        m.attr(NDA_DST, &ip_bytes(dst));
        self.request(m, || {
            format!("adding fdb entry {mac} dst {dst} on ifindex {link}")
        })
    }

    /// Deletes the forwarding entry for `mac` (toward `dst`, when given) of a VXLAN device.
    pub fn fdb_del(&mut self, link: IfIndex, mac: MacAddr, dst: Option<IpAddr>) -> Result<()> {
        let mut m = Msg::new(RTM_DELNEIGH, 0);
        m.header(&ndmsg_flags(AF_BRIDGE, link.0, 0, NTF_SELF));
        m.attr(NDA_LLADDR, &mac.0);
        if let Some(dst) = dst {
            m.attr(NDA_DST, &ip_bytes(dst));
        }
        self.request(m, || format!("deleting fdb entry {mac} on ifindex {link}"))
    }

    /// The forwarding entries of one device.
    pub fn fdbs(&mut self, link: IfIndex) -> Result<Vec<FdbEntry>> {
        let mut m = Msg::new(RTM_GETNEIGH, 0);
        // For AF_BRIDGE dumps the header's ifindex is the filter.
        m.header(&ndmsg(AF_BRIDGE, link.0, 0));
        let replies = self.dump(m, || format!("listing fdb entries of ifindex {link}"))?;
        let mut out = Vec::new();
        for p in replies {
            if p.len() < 12 {
                return Err(Error::protocol("listing fdb entries", "short ndmsg"));
            }
            let index = IfIndex(u32::from_ne_bytes([p[4], p[5], p[6], p[7]]));
            let state = u16::from_ne_bytes([p[8], p[9]]);
            if p[0] != AF_BRIDGE || index != link {
                continue;
            }
            let (mut mac, mut dst) = (None, None);
            for (t, data) in Attrs::new(&p[12..]) {
                match t {
                    NDA_LLADDR => mac = lladdr(data),
                    NDA_DST => dst = attr_ip(data),
                    _ => {}
                }
            }
            if let Some(mac) = mac {
                out.push(FdbEntry {
                    link: index,
                    mac,
                    dst,
                    permanent: state & NUD_PERMANENT != 0,
                });
            }
        }
        Ok(out)
    }

    /// Neighbour entries of one link (both families).
    pub fn neighs(&mut self, link: IfIndex) -> Result<Vec<Neighbour>> {
        let mut m = Msg::new(RTM_GETNEIGH, 0);
        // Strict dump checking wants the header's ifindex zero and the filter as NDA_IFINDEX.
        m.header(&ndmsg(0, 0, 0));
        m.attr_u32(NDA_IFINDEX, link.0);
        let replies = self.dump(m, || format!("listing neighbours of ifindex {link}"))?;
        let mut out = Vec::new();
        for p in replies {
            if p.len() < 12 {
                return Err(Error::protocol("listing neighbours", "short ndmsg"));
            }
            let index = IfIndex(u32::from_ne_bytes([p[4], p[5], p[6], p[7]]));
            let state = u16::from_ne_bytes([p[8], p[9]]);
            // An unfiltered dump also walks the bridge family's forwarding entries.
            let ip_family = p[0] == libc::AF_INET as u8 || p[0] == libc::AF_INET6 as u8;
            if index != link || !ip_family {
                continue;
            }
            let (mut ip, mut mac) = (None, None);
            for (t, data) in Attrs::new(&p[12..]) {
                match t {
                    NDA_DST => ip = attr_ip(data),
                    NDA_LLADDR => mac = lladdr(data),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.push(Neighbour {
                    link: index,
                    ip,
                    mac,
                    permanent: state & NUD_PERMANENT != 0,
                });
            }
        }
        Ok(out)
    }
}
