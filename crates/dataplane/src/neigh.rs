//! Neighbour (ARP/NDP) entries: permanent ip -> mac on a link.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::netlink::{attr_ip, family, ip_bytes, Attrs, Msg, Netlink, NLM_F_CREATE, NLM_F_REPLACE};
use crate::types::{IfIndex, MacAddr};

const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;
const NUD_PERMANENT: u16 = 0x80;

/// A neighbour table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub link: IfIndex,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub permanent: bool,
}

/// ndmsg: family, pad, pad, ifindex, state, flags, type.
fn ndmsg(fam: u8, index: u32, state: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = fam;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&state.to_ne_bytes());
    h
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
            if index != link {
                continue;
            }
            let (mut ip, mut mac) = (None, None);
            for (t, data) in Attrs::new(&p[12..]) {
                match t {
                    NDA_DST => ip = attr_ip(data),
                    NDA_LLADDR if data.len() == 6 => {
                        let mut b = [0u8; 6];
                        b.copy_from_slice(data);
                        mac = Some(MacAddr(b));
                    }
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
