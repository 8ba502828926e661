//! Links: veth pairs, bridges, lookups, and attribute changes (up/down, master, netns, name, mtu).
//!
//! ```no_run
//! # use weft_dataplane::{Netlink, NetNs};
//! # fn f(pod: &NetNs) -> weft_dataplane::Result<()> {
//! let mut nl = Netlink::open()?;
//! nl.link_add_veth("weft1a2b", "eth0").peer_netns(pod).mtu(1450).execute()?;
//! nl.link_set("weft1a2b").up().execute()?;
//! # Ok(()) }
//! ```

use std::os::fd::AsRawFd;

use crate::error::{Error, Result};
use crate::netlink::{attr_string, attr_u32, Attrs, Msg, Netlink, NLM_F_CREATE, NLM_F_EXCL};
use crate::types::{IfIndex, MacAddr};
use crate::NetNs;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;

const IFF_UP: u32 = 0x1;
const IF_OPER_UP: u8 = 6;

/// Kernel limit on interface names (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: IfIndex,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    /// Operationally up (carrier and peer up).
    pub oper_up: bool,
    /// `IFLA_INFO_KIND`: "veth", "bridge", ... (None for physical/loopback links).
    pub kind: Option<String>,
    pub master: Option<IfIndex>,
    /// The VXLAN parameters, for links of kind "vxlan".
    pub vxlan: Option<VxlanInfo>,
}

/// What the kernel reports of a VXLAN device: enough to tell whether it is the one we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    /// Local (source) address of the encapsulated packets.
    pub local: Option<std::net::Ipv4Addr>,
    /// Destination UDP port.
    pub port: u16,
    /// Underlay device the tunnel is bound to.
    pub underlay: Option<IfIndex>,
    pub learning: bool,
}

fn parse_vxlan(data: &[u8]) -> VxlanInfo {
    let mut info = VxlanInfo {
        vni: 0,
        local: None,
        port: 0,
        underlay: None,
        learning: false,
    };
    for (ty, d) in Attrs::new(data) {
        match ty {
            IFLA_VXLAN_ID => info.vni = attr_u32(d).unwrap_or(0),
            IFLA_VXLAN_LINK => info.underlay = attr_u32(d).filter(|i| *i != 0).map(IfIndex),
            IFLA_VXLAN_LOCAL if d.len() == 4 => {
                info.local = Some(std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]))
            }
            IFLA_VXLAN_LEARNING => info.learning = d.first().is_some_and(|b| *b != 0),
            // The port travels in network byte order.
            IFLA_VXLAN_PORT if d.len() == 2 => info.port = u16::from_be_bytes([d[0], d[1]]),
            _ => {}
        }
    }
    info
}

/// How an operation names its link: by name or by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRef {
    Name(String),
    Index(IfIndex),
}

impl From<&str> for LinkRef {
    fn from(s: &str) -> Self {
        LinkRef::Name(s.to_string())
    }
}

impl From<&String> for LinkRef {
    fn from(s: &String) -> Self {
        LinkRef::Name(s.clone())
    }
}

impl From<IfIndex> for LinkRef {
    fn from(i: IfIndex) -> Self {
        LinkRef::Index(i)
    }
}

impl std::fmt::Display for LinkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkRef::Name(n) => f.write_str(n),
            LinkRef::Index(i) => write!(f, "ifindex {i}"),
        }
    }
}

pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::Invalid {
            what: "interface name",
            value: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_IFNAME_LEN {
        return bad("longer than 15 bytes");
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
    {
        return bad("contains '/', ':', whitespace or NUL, or is '.'/'..'");
    }
    Ok(())
}

/// ifinfomsg: family, pad, type, index, flags, change.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    if payload.len() < 16 {
        return None;
    }
    let index = u32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]);
    let flags = u32::from_ne_bytes([payload[8], payload[9], payload[10], payload[11]]);
    let mut link = Link {
        index: IfIndex(index),
        name: String::new(),
        mac: None,
        mtu: 0,
        admin_up: flags & IFF_UP != 0,
        oper_up: false,
        kind: None,
        master: None,
        vxlan: None,
    };
    for (ty, data) in Attrs::new(&payload[16..]) {
        match ty {
            IFLA_IFNAME => link.name = attr_string(data),
            IFLA_ADDRESS if data.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(data);
                link.mac = Some(MacAddr(m));
            }
            IFLA_MTU => link.mtu = attr_u32(data).unwrap_or(0),
            IFLA_MASTER => link.master = attr_u32(data).map(IfIndex),
            IFLA_OPERSTATE => link.oper_up = data.first() == Some(&IF_OPER_UP),
            IFLA_LINKINFO => {
                let mut info_data = None;
                for (ity, idata) in Attrs::new(data) {
                    match ity {
                        IFLA_INFO_KIND => link.kind = Some(attr_string(idata)),
                        IFLA_INFO_DATA => info_data = Some(idata),
                        _ => {}
                    }
                }
                if let (Some("vxlan"), Some(d)) = (link.kind.as_deref(), info_data) {
                    link.vxlan = Some(parse_vxlan(d));
                }
            }
            _ => {}
        }
    }
    Some(link)
}

impl Netlink {
    /// Starts creating a veth pair `name` <-> `peer` (both in this socket's netns unless
    /// [`VethAdd::peer_netns`] is set).
    pub fn link_add_veth<'a>(&'a mut self, name: &str, peer: &str) -> VethAdd<'a> {
        VethAdd {
            nl: self,
            name: name.to_string(),
            peer: peer.to_string(),
            peer_ns: None,
            mtu: None,
            mac: None,
            peer_mac: None,
            queues: None,
        }
    }

    /// Starts creating a bridge.
    pub fn link_add_bridge<'a>(&'a mut self, name: &str) -> BridgeAdd<'a> {
        BridgeAdd {
            nl: self,
            name: name.to_string(),
            mtu: None,
        }
    }

    /// Starts creating a VXLAN device with network identifier `vni` (destination port 4789,
    /// learning off, unless the builder says otherwise).
    pub fn link_add_vxlan<'a>(&'a mut self, name: &str, vni: u32) -> VxlanAdd<'a> {
        VxlanAdd {
            nl: self,
            name: name.to_string(),
            vni,
            local: None,
            port: 4789,
            underlay: None,
            learning: false,
            mtu: None,
            mac: None,
        }
    }

    /// Looks a link up; `Ok(None)` when it does not exist.
    pub fn link_get(&mut self, link: impl Into<LinkRef>) -> Result<Option<Link>> {
        let link = link.into();
        let m = addressed(RTM_GETLINK, &link)?;
        match self.get(m, || format!("getting link {link}")) {
            Ok(payload) => parse_link(&payload)
                .map(Some)
                .ok_or_else(|| Error::protocol(format!("getting link {link}"), "short ifinfomsg")),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All links of this socket's netns.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.header(&ifinfomsg(0, 0, 0));
        let replies = self.dump(m, || "listing links".to_string())?;
        Ok(replies.iter().filter_map(|p| parse_link(p)).collect())
    }

    /// Starts changing a link's attributes.
    pub fn link_set<'a>(&'a mut self, link: impl Into<LinkRef>) -> LinkSet<'a> {
        LinkSet {
            nl: self,
            link: link.into(),
            up: None,
            master: None,
            netns: None,
            name: None,
            mtu: None,
            mac: None,
        }
    }

    /// Deletes a link (deleting one end of a veth deletes both). A missing link is an error
    /// with [`Error::is_not_found`] true, so callers decide whether that is fine.
    pub fn link_del(&mut self, link: impl Into<LinkRef>) -> Result<()> {
        let link = link.into();
        let m = addressed(RTM_DELLINK, &link)?;
        self.request(m, || format!("deleting link {link}"))
    }

    /// Brings the loopback interface up (a new netns starts with `lo` down).
    pub fn lo_up(&mut self) -> Result<()> {
        self.link_set("lo").up().execute()
    }
}

/// A link message naming its link the way the caller did: by name (IFLA_IFNAME) or index.
fn addressed(kind: u16, link: &LinkRef) -> Result<Msg> {
    let mut m = Msg::new(kind, 0);
    match link {
        LinkRef::Name(n) => {
            check_ifname(n)?;
            m.header(&ifinfomsg(0, 0, 0));
            m.attr_str(IFLA_IFNAME, n);
        }
        LinkRef::Index(i) => {
            m.header(&ifinfomsg(i.0, 0, 0));
        }
    }
    Ok(m)
}

/// A RTM_NEWLINK creating link `name` of `kind`, with IFLA_LINKINFO left open after the kind so
/// the caller can add IFLA_INFO_DATA; close it with `end_nest` on the returned offset.
/// `queues` sets both queue counts.
fn create_link_msg(
    name: &str,
    kind: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    queues: Option<u32>,
) -> Result<(Msg, usize)> {
    check_ifname(name)?;
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.header(&ifinfomsg(0, 0, 0));
    m.attr_str(IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(n) = queues {
        m.attr_u32(IFLA_NUM_TX_QUEUES, n);
        m.attr_u32(IFLA_NUM_RX_QUEUES, n);
    }
    if let Some(mac) = mac {
        m.attr(IFLA_ADDRESS, &mac.0);
    }
    let info = m.begin_nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, kind);
    Ok((m, info))
}

/// Builder for a veth pair; see [`Netlink::link_add_veth`].
#[must_use = "call .execute()"]
pub struct VethAdd<'a> {
    nl: &'a mut Netlink,
    name: String,
    peer: String,
    peer_ns: Option<std::os::fd::RawFd>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    peer_mac: Option<MacAddr>,
    queues: Option<u32>,
}

impl VethAdd<'_> {
    /// Creates the peer end directly inside `ns` (no rename/move dance, no name clash with
    /// the caller's netns).
    pub fn peer_netns(mut self, ns: &NetNs) -> Self {
        self.peer_ns = Some(ns.as_fd().as_raw_fd());
        self
    }
    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// MAC of the first (local) end.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// MAC of the peer end.
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        self.peer_mac = Some(mac);
        self
    }
    /// Gives both ends `n` transmit and `n` receive queues (`numtxqueues`/`numrxqueues`).
    /// Without it the kernel allocates one queue per CPU and then cuts the active count to
    /// one, which unregisters the extra queues' sysfs entries again and waits for an RCU
    /// grace period, per end; with `queues(1)` a veth is as it would end up anyway, made
    /// directly.
    pub fn queues(mut self, n: u32) -> Self {
        self.queues = Some(n);
        self
    }

    pub fn execute(self) -> Result<()> {
        let m = self.message()?;
        let (name, peer) = (self.name, self.peer);
        self.nl
            .request(m, || format!("creating veth {name}/{peer}"))
    }

    /// Creates the pair like [`VethAdd::execute`] and returns the local end as the kernel made
    /// it (index, MAC): from the kernel's echo of the request (Linux 6.3 and later), else from
    /// a lookup. The echo costs no extra round trip, and unlike a lookup it does not make the
    /// kernel run the link's pending state changes first.
    pub fn execute_get(self) -> Result<Link> {
        let m = self.message()?;
        let (name, peer) = (self.name, self.peer);
        let echoed = self
            .nl
            .request_echo(m, || format!("creating veth {name}/{peer}"))?;
        if let Some(link) = echoed
            .iter()
            .filter_map(|p| parse_link(p))
            .find(|l| l.name == name)
        {
            return Ok(link);
        }
        self.nl.link_get(name.as_str())?.ok_or_else(|| {
            Error::protocol(
                format!("creating veth {name}/{peer}"),
                "created but not found",
            )
        })
    }

    fn message(&self) -> Result<Msg> {
        check_ifname(&self.peer)?;
        if self.queues == Some(0) {
            return Err(Error::Invalid {
                what: "veth queue count",
                value: "0".into(),
                reason: "a link needs at least one queue",
            });
        }
        let (mut m, info) = create_link_msg(&self.name, "veth", self.mtu, self.mac, self.queues)?;
        let data = m.begin_nest(IFLA_INFO_DATA);
        let peer = m.begin_nest(VETH_INFO_PEER);
        m.header(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, &self.peer);
        if let Some(mtu) = self.mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        if let Some(n) = self.queues {
            m.attr_u32(IFLA_NUM_TX_QUEUES, n);
            m.attr_u32(IFLA_NUM_RX_QUEUES, n);
        }
        if let Some(mac) = self.peer_mac {
            m.attr(IFLA_ADDRESS, &mac.0);
        }
        if let Some(fd) = self.peer_ns {
            m.attr_u32(IFLA_NET_NS_FD, fd as u32);
        }
        m.end_nest(peer);
        m.end_nest(data);
        m.end_nest(info);
        Ok(m)
    }
}

/// Builder for a bridge; see [`Netlink::link_add_bridge`].
#[must_use = "call .execute()"]
pub struct BridgeAdd<'a> {
    nl: &'a mut Netlink,
    name: String,
    mtu: Option<u32>,
}

impl BridgeAdd<'_> {
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn execute(self) -> Result<()> {
        let (mut m, info) = create_link_msg(&self.name, "bridge", self.mtu, None, None)?;
        m.end_nest(info);
        let name = self.name;
        self.nl.request(m, || format!("creating bridge {name}"))
    }
}

/// Builder for a VXLAN device; see [`Netlink::link_add_vxlan`].
#[must_use = "call .execute()"]
pub struct VxlanAdd<'a> {
    nl: &'a mut Netlink,
    name: String,
    vni: u32,
    local: Option<std::net::Ipv4Addr>,
    port: u16,
    underlay: Option<IfIndex>,
    learning: bool,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
}

impl VxlanAdd<'_> {
    /// Source address of encapsulated packets (the node's underlay address).
    pub fn local(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.local = Some(ip);
        self
    }
    /// Destination UDP port of encapsulated packets.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// The underlay device the tunnel sends through.
    pub fn underlay(mut self, link: IfIndex) -> Self {
        self.underlay = Some(link);
        self
    }
    /// Learn remote MACs from received packets (off by default: entries are programmed).
    pub fn learning(mut self, on: bool) -> Self {
        self.learning = on;
        self
    }
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    pub fn execute(self) -> Result<()> {
        if self.vni == 0 || self.vni >= 1 << 24 {
            return Err(Error::Invalid {
                what: "VXLAN network identifier",
                value: self.vni.to_string(),
                reason: "must be between 1 and 16777215",
            });
        }
        let (mut m, info) = create_link_msg(&self.name, "vxlan", self.mtu, self.mac, None)?;
        let data = m.begin_nest(IFLA_INFO_DATA);
        m.attr_u32(IFLA_VXLAN_ID, self.vni);
        if let Some(local) = self.local {
            m.attr(IFLA_VXLAN_LOCAL, &local.octets());
        }
        if let Some(link) = self.underlay {
            m.attr_u32(IFLA_VXLAN_LINK, link.0);
        }
        m.attr(IFLA_VXLAN_LEARNING, &[u8::from(self.learning)]);
        m.attr(IFLA_VXLAN_PORT, &self.port.to_be_bytes());
        m.end_nest(data);
        m.end_nest(info);
        let (name, vni) = (self.name, self.vni);
        self.nl
            .request(m, || format!("creating vxlan {name} (vni {vni})"))
    }
}

/// Builder for link attribute changes; see [`Netlink::link_set`]. All changes go in one
/// RTM_NEWLINK request, so they apply together.
#[must_use = "call .execute()"]
pub struct LinkSet<'a> {
    nl: &'a mut Netlink,
    link: LinkRef,
    up: Option<bool>,
    master: Option<u32>,
    netns: Option<std::os::fd::RawFd>,
    name: Option<String>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
}

impl LinkSet<'_> {
    /// Sets the link's hardware address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    pub fn up(mut self) -> Self {
        self.up = Some(true);
        self
    }
    pub fn down(mut self) -> Self {
        self.up = Some(false);
        self
    }
    /// Enslaves the link to a bridge (or other master).
    pub fn master(mut self, master: IfIndex) -> Self {
        self.master = Some(master.0);
        self
    }
    /// Releases the link from its master.
    pub fn nomaster(mut self) -> Self {
        self.master = Some(0);
        self
    }
    /// Moves the link into another netns (it disappears from this one).
    pub fn netns(mut self, ns: &NetNs) -> Self {
        self.netns = Some(ns.as_fd().as_raw_fd());
        self
    }
    pub fn name(mut self, new_name: &str) -> Self {
        self.name = Some(new_name.to_string());
        self
    }
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    pub fn execute(mut self) -> Result<()> {
        // A rename carries the new name in IFLA_IFNAME, so the link must be named by index.
        if let (Some(new), LinkRef::Name(old)) = (&self.name, &self.link) {
            let op = || format!("renaming link {old} to {new}");
            let index = self
                .nl
                .link_get(old.as_str())?
                .ok_or_else(|| Error::errno(op(), libc::ENODEV))?
                .index;
            self.link = LinkRef::Index(index);
        }
        let (flags, change) = match self.up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        // RTM_NEWLINK without CREATE modifies an existing link, found by index or, when the
        // index is 0, by IFLA_IFNAME.
        let mut m = Msg::new(RTM_NEWLINK, 0);
        let mut what = Vec::new();
        match &self.link {
            LinkRef::Name(n) => {
                check_ifname(n)?;
                m.header(&ifinfomsg(0, flags, change));
                m.attr_str(IFLA_IFNAME, n);
            }
            LinkRef::Index(i) => {
                m.header(&ifinfomsg(i.0, flags, change));
            }
        }
        if let Some(new) = &self.name {
            check_ifname(new)?;
            m.attr_str(IFLA_IFNAME, new);
            what.push(format!("name {new}"));
        }
        if let Some(up) = self.up {
            what.push(if up { "up" } else { "down" }.to_string());
        }
        if let Some(mtu) = self.mtu {
            m.attr_u32(IFLA_MTU, mtu);
            what.push(format!("mtu {mtu}"));
        }
        if let Some(mac) = self.mac {
            m.attr(IFLA_ADDRESS, &mac.0);
            what.push(format!("address {mac}"));
        }
        if let Some(master) = self.master {
            m.attr_u32(IFLA_MASTER, master);
            what.push(format!("master {master}"));
        }
        if let Some(fd) = self.netns {
            m.attr_u32(IFLA_NET_NS_FD, fd as u32);
            what.push("netns".to_string());
        }
        let link = self.link;
        self.nl
            .request(m, || format!("setting link {link} {}", what.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type OwnedAttrs = Vec<(u16, Vec<u8>)>;

    /// The attributes of a link message (after nlmsghdr and ifinfomsg), and those of the veth
    /// peer nested in IFLA_LINKINFO / IFLA_INFO_DATA / VETH_INFO_PEER (after its ifinfomsg).
    fn veth_attrs(bytes: &[u8]) -> (OwnedAttrs, OwnedAttrs) {
        let top: OwnedAttrs = Attrs::new(&bytes[32..])
            .map(|(t, d)| (t, d.to_vec()))
            .collect();
        let info = &top.iter().find(|(t, _)| *t == IFLA_LINKINFO).unwrap().1;
        let data = Attrs::new(info)
            .find(|(t, _)| *t == IFLA_INFO_DATA)
            .unwrap()
            .1;
        let peer = Attrs::new(data)
            .find(|(t, _)| *t == VETH_INFO_PEER)
            .unwrap()
            .1;
        let peer = Attrs::new(&peer[16..])
            .map(|(t, d)| (t, d.to_vec()))
            .collect();
        (top, peer)
    }

    #[test]
    fn veth_queues_are_set_on_both_ends() {
        let mut nl = Netlink::open().unwrap();
        let m = nl
            .link_add_veth("weftq", "eth0")
            .queues(1)
            .message()
            .unwrap();
        let (top, peer) = veth_attrs(&m.into_bytes());
        for attrs in [&top, &peer] {
            for ty in [IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES] {
                let v = attrs
                    .iter()
                    .find(|(t, _)| *t == ty)
                    .map(|(_, d)| attr_u32(d));
                assert_eq!(v, Some(Some(1)), "attribute {ty}");
            }
        }
        // Without queues(), the kernel's defaults stay.
        let m = nl.link_add_veth("weftq", "eth0").message().unwrap();
        let (top, peer) = veth_attrs(&m.into_bytes());
        assert!(!top
            .iter()
            .chain(&peer)
            .any(|(t, _)| *t == IFLA_NUM_TX_QUEUES));
        assert!(nl
            .link_add_veth("weftq", "eth0")
            .queues(0)
            .message()
            .is_err());
    }

    /// Needs root: namespaces of its own, removed on drop.
    #[test]
    fn execute_get_returns_the_link_as_created() {
        let host = crate::ScopedNetNs::create_unique("wdp-echo").unwrap();
        let pod = crate::ScopedNetNs::create_unique("wdp-echo").unwrap();
        let mut nl = host.run(Netlink::open).unwrap().unwrap();
        let made = nl
            .link_add_veth("wecho0", "eth0")
            .peer_netns(&pod)
            .mtu(1400)
            .queues(1)
            .execute_get()
            .unwrap();
        let looked_up = nl.link_get("wecho0").unwrap().unwrap();
        assert_eq!(made.index, looked_up.index);
        assert_eq!(made.mac, looked_up.mac);
        assert!(made.mac.is_some());
        assert_eq!((made.name.as_str(), made.mtu), ("wecho0", 1400));
        let err = nl
            .link_add_veth("wecho0", "eth1")
            .peer_netns(&pod)
            .execute_get()
            .unwrap_err();
        assert!(err.is_exists(), "{err}");
    }

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("weft0123456789a").is_ok());
        assert!(check_ifname("weft0123456789ab").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("..").is_err());
    }
}
