//! Interface addresses: add (with optional point-to-point peer), list, delete.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::netlink::{attr_ip, family, ip_bytes, Attrs, Msg, Netlink, NLM_F_CREATE, NLM_F_EXCL};
use crate::types::{IfIndex, IpNet};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

/// An address configured on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub link: IfIndex,
    /// The local address with its prefix length (`10.244.1.5/32`).
    pub local: IpNet,
    /// The point-to-point peer, when one was configured.
    pub peer: Option<IpAddr>,
    /// RT_SCOPE_*: 0 universe, 253 link, 254 host.
    pub scope: u8,
}

/// ifaddrmsg: family, prefixlen, flags, scope, index.
fn ifaddrmsg(fam: u8, prefix: u8, scope: u8, index: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0] = fam;
    h[1] = prefix;
    h[3] = scope;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

impl Netlink {
    /// Starts adding `addr` (address + prefix length) to `link`.
    pub fn addr_add(&mut self, link: IfIndex, addr: IpNet) -> AddrAdd<'_> {
        AddrAdd {
            nl: self,
            link,
            addr,
            peer: None,
        }
    }

    /// Removes `addr` from `link`; not found when it is not configured there.
    pub fn addr_del(&mut self, link: IfIndex, addr: IpNet) -> Result<()> {
        let mut m = Msg::new(RTM_DELADDR, 0);
        m.header(&ifaddrmsg(family(addr.addr()), addr.prefix(), 0, link.0));
        m.attr(IFA_LOCAL, &ip_bytes(addr.addr()));
        self.request(m, || format!("deleting address {addr} from ifindex {link}"))
    }

    /// Addresses of one link (or of every link when `link` is None), both families.
    pub fn addrs(&mut self, link: Option<IfIndex>) -> Result<Vec<Address>> {
        let mut m = Msg::new(RTM_GETADDR, 0);
        m.header(&ifaddrmsg(0, 0, 0, link.map_or(0, |l| l.0)));
        let replies = self.dump(m, || "listing addresses".to_string())?;
        let mut out = Vec::new();
        for p in replies {
            if p.len() < 8 {
                return Err(Error::protocol("listing addresses", "short ifaddrmsg"));
            }
            let prefix = p[1];
            let scope = p[3];
            let index = IfIndex(u32::from_ne_bytes([p[4], p[5], p[6], p[7]]));
            if link.is_some_and(|l| l != index) {
                continue;
            }
            let (mut local, mut address) = (None, None);
            for (ty, data) in Attrs::new(&p[8..]) {
                match ty {
                    IFA_LOCAL => local = attr_ip(data),
                    IFA_ADDRESS => address = attr_ip(data),
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
            // point-to-point links and equals IFA_LOCAL otherwise (IPv6 sends only ADDRESS).
            let Some(own) = local.or(address) else {
                continue;
            };
            let peer = match (local, address) {
                (Some(l), Some(a)) if l != a => Some(a),
                _ => None,
            };
            out.push(Address {
                link: index,
                local: IpNet::new(own, prefix)?,
                peer,
                scope,
            });
        }
        Ok(out)
    }
}

/// Builder for an address; see [`Netlink::addr_add`].
#[must_use = "call .execute()"]
pub struct AddrAdd<'a> {
    nl: &'a mut Netlink,
    link: IfIndex,
    addr: IpNet,
    peer: Option<IpAddr>,
}

impl AddrAdd<'_> {
    /// Point-to-point peer address (`ip addr add A peer B`).
    pub fn peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    pub fn execute(self) -> Result<()> {
        let a = self.addr;
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&ifaddrmsg(family(a.addr()), a.prefix(), 0, self.link.0));
        m.attr(IFA_LOCAL, &ip_bytes(a.addr()));
        m.attr(IFA_ADDRESS, &ip_bytes(self.peer.unwrap_or(a.addr())));
        if let IpAddr::V4(v4) = a.addr() {
            // iproute2 sets the broadcast for IPv4 subnets; /31 and /32 have none.
            if a.prefix() < 31 && self.peer.is_none() {
                let host_bits = u32::MAX >> a.prefix();
                let brd = std::net::Ipv4Addr::from(u32::from(v4) | host_bits);
                m.attr(4 /* IFA_BROADCAST */, &brd.octets());
            }
        }
        let link = self.link;
        self.nl
            .request(m, || format!("adding address {a} to ifindex {link}"))
    }
}
