//! Connection tracking entries, read and deleted through ctnetlink (NETLINK_NETFILTER, the
//! conntrack subsystem), in the calling thread's network namespace. The proxy uses it after a
//! sync: a UDP "connection" is only a conntrack entry that keeps DNATing a client's datagrams to
//! the endpoint it first picked, even after that endpoint is gone, for as long as the client keeps
//! sending. Deleting the entry makes the next datagram go through the Service rules again.
//!
//! One dump of the table, matched here against typed [`ConntrackFilter`]s, then one delete per
//! matching entry (naming it by its original tuple, zone and id, so an entry that was replaced
//! meanwhile is left alone). kube-proxy does the same through vishvananda/netlink.
//!
//! ```no_run
//! use weft_dataplane::conntrack::{Conntrack, ConntrackFilter, L4Proto};
//! # fn main() -> Result<(), weft_dataplane::conntrack::ConntrackError> {
//! let stale = ConntrackFilter::new(L4Proto::Udp)
//!     .orig_dst("10.96.0.10".parse().unwrap(), 53)
//!     .reply_src("10.244.1.9".parse().unwrap());
//! let deleted = Conntrack::open()?.delete_matching(&[stale])?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;

use crate::error::Error;
use crate::netlink::{attr_ip, ip_bytes, u16_at, Attrs, Msg, Netlink, NLA_F_NESTED, NLMSG_HDRLEN};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFNETLINK_V0: u8 = 0;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_ID: u16 = 12;
const IPCTNL_MSG_CT_NEW: u16 = 0;
/// The events socket's receive buffer, in bytes.
const EVENT_BUFFER: libc::c_int = 16 << 20;
/// ctnetlink's multicast groups NFNLGRP_CONNTRACK_NEW (1) and _DESTROY (3), as a bind mask
/// (group N is bit N-1).
const GROUPS_NEW_AND_DESTROY: u32 = 0b001 | 0b100;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A failed conntrack operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConntrackError {
    /// No ctnetlink socket: netlink refused (not root, or no conntrack in this kernel).
    #[error("opening a ctnetlink socket: {0}")]
    Open(#[source] Error),
    /// Reading events failed.
    #[error("reading conntrack events: {0}")]
    Events(#[source] std::io::Error),
    /// The kernel dropped events that were not read in time.
    #[error("conntrack events were lost: they came faster than they were read")]
    Overrun,
    /// The kernel refused or garbled the dump of the table.
    #[error("listing conntrack entries: {0}")]
    List(#[source] Error),
    /// An entry matched but the kernel refused to delete it (entries already gone are not
    /// errors). The other matching entries were still deleted.
    #[error("deleting conntrack entry {entry}: {source}")]
    Delete {
        entry: String,
        #[source]
        source: Error,
    },
    /// A filter with no address and no port would delete every entry of its protocol; refused
    /// before anything is deleted.
    #[error("conntrack filter {filter:?} names no address or port")]
    Unbounded { filter: String },
}

/// The transport protocols the filters select (those Services carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl L4Proto {
    /// The IP protocol number conntrack stores.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => libc::IPPROTO_TCP as u8,
            L4Proto::Udp => libc::IPPROTO_UDP as u8,
            L4Proto::Sctp => libc::IPPROTO_SCTP as u8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        }
    }
}

/// Which entries to delete: every field that is set must match (the `conntrack -D` options
/// `-p`, `--orig-dst`, `--orig-port-dst`, `--reply-src`). The reply source of a DNATed flow is
/// the endpoint it was sent to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConntrackFilter {
    pub protocol: L4Proto,
    pub orig_dst_ip: Option<IpAddr>,
    pub orig_dst_port: Option<u16>,
    pub reply_src_ip: Option<IpAddr>,
}

impl ConntrackFilter {
    /// A filter on the protocol alone; narrow it with the builders below.
    pub fn new(protocol: L4Proto) -> Self {
        ConntrackFilter {
            protocol,
            orig_dst_ip: None,
            orig_dst_port: None,
            reply_src_ip: None,
        }
    }

    /// Flows first sent to `ip:port` (a cluster IP, external or load-balancer address).
    pub fn orig_dst(mut self, ip: IpAddr, port: u16) -> Self {
        self.orig_dst_ip = Some(ip);
        self.orig_dst_port = Some(port);
        self
    }

    /// Flows first sent to `port` on any address (a node port).
    pub fn orig_dst_port(mut self, port: u16) -> Self {
        self.orig_dst_port = Some(port);
        self
    }

    /// Flows whose replies come from `ip` (the endpoint they were DNATed to).
    pub fn reply_src(mut self, ip: IpAddr) -> Self {
        self.reply_src_ip = Some(ip);
        self
    }

    /// Whether `entry` is one this filter selects.
    pub fn matches(&self, entry: &ConntrackEntry) -> bool {
        entry.protocol == self.protocol.number()
            && self.orig_dst_ip.is_none_or(|ip| entry.orig.dst == ip)
            && self
                .orig_dst_port
                .is_none_or(|p| entry.orig.dst_port == Some(p))
            && self.reply_src_ip.is_none_or(|ip| entry.reply.src == ip)
    }

    fn is_bounded(&self) -> bool {
        self.orig_dst_ip.is_some() || self.orig_dst_port.is_some() || self.reply_src_ip.is_some()
    }
}

impl fmt::Display for ConntrackFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-p {}", self.protocol.name())?;
        if let Some(ip) = self.orig_dst_ip {
            write!(f, " --orig-dst {ip}")?;
        }
        if let Some(p) = self.orig_dst_port {
            write!(f, " --orig-port-dst {p}")?;
        }
        if let Some(ip) = self.reply_src_ip {
            write!(f, " --reply-src {ip}")?;
        }
        Ok(())
    }
}

/// One direction of a tracked flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports, for the protocols that have them.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl Tuple {
    /// A tuple with ports (TCP, UDP, SCTP).
    pub fn with_ports(src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Tuple {
            src,
            dst,
            src_port: Some(src_port),
            dst_port: Some(dst_port),
        }
    }
}

/// A conntrack entry as the kernel dumped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEntry {
    /// The IP protocol number (17 for UDP).
    pub protocol: u8,
    /// As the first packet was sent (to the Service address, before DNAT).
    pub orig: Tuple,
    /// As replies come back (from the endpoint, after DNAT).
    pub reply: Tuple,
    pub zone: Option<u16>,
    /// The kernel's id: a delete naming it cannot hit a newer entry with the same tuple.
    id: Option<u32>,
    family: u8,
    /// The original tuple attribute as dumped, sent back verbatim to name the entry.
    raw_orig: Vec<u8>,
}

impl ConntrackEntry {
    /// An entry named by its tuples (zone 0), as a caller that knows a flow would describe it:
    /// deleting it deletes the kernel's entry with that original tuple.
    pub fn new(protocol: u8, orig: Tuple, reply: Tuple) -> ConntrackEntry {
        let family = if orig.src.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        ConntrackEntry {
            raw_orig: tuple_bytes(protocol, &orig),
            protocol,
            orig,
            reply,
            zone: None,
            id: None,
            family,
        }
    }
}

impl fmt::Display for ConntrackEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        write!(
            f,
            "proto {} {}{} -> {}{} (replies from {}{})",
            self.protocol,
            self.orig.src,
            port(self.orig.src_port),
            self.orig.dst,
            port(self.orig.dst_port),
            self.reply.src,
            port(self.reply.src_port)
        )
    }
}

/// What a conntrack event says happened to an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A connection's first packet was let through: a new entry.
    New,
    /// The entry ended (closed, timed out or deleted).
    Destroy,
}

/// Packets and bytes one direction of a connection carried (the kernel counts them when the
/// namespace's `net.netfilter.nf_conntrack_acct` is 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One conntrack event: a new or an ended entry, with the ended one's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEvent {
    pub kind: EventKind,
    pub entry: ConntrackEntry,
    /// From the client (original direction) and back (reply direction).
    pub orig: Option<Counters>,
    pub reply: Option<Counters>,
}

/// A ctnetlink socket subscribed to the new and destroyed entries of the network namespace of
/// the thread that opened it: the kernel's own stream of connections, no packet copied. The
/// kernel sends each event as a datagram of its own; they are read [`BATCH`] at a time.
pub struct ConntrackEvents {
    fd: std::os::fd::OwnedFd,
    datagrams: crate::netlink::Datagrams,
    /// Events longer than a slot, skipped (none seen: an event is a few hundred bytes).
    pub cut_short: u64,
}

/// Event datagrams read per system call, and the room for each.
const BATCH: usize = 64;
const SLOT: usize = 4096;

impl ConntrackEvents {
    pub fn subscribe() -> Result<ConntrackEvents, ConntrackError> {
        let fd = crate::netlink::open_bound_groups(
            libc::NETLINK_NETFILTER,
            "NETLINK_NETFILTER",
            GROUPS_NEW_AND_DESTROY,
        )
        .map_err(ConntrackError::Open)?;
        // Room for the events of a burst while the reader waits to read them in batches
        // (SO_RCVBUFFORCE: root may go past the system's rmem_max).
        let size: libc::c_int = EVENT_BUFFER;
        // SAFETY: fd is a valid socket; size is a c_int of the length passed.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // Without the privilege the default buffer stays: a burst may then overrun it, which
        // `recv` reports.
        let _ = rc;
        Ok(ConntrackEvents {
            fd,
            datagrams: crate::netlink::Datagrams::new(BATCH, SLOT),
            cut_short: 0,
        })
    }

    /// The events already queued (up to [`BATCH`] datagrams' worth), without waiting:
    /// `Ok(None)` when there are none.
    pub fn try_recv(&mut self) -> Result<Option<Vec<ConntrackEvent>>, ConntrackError> {
        match self.datagrams.recv(&self.fd, libc::MSG_DONTWAIT) {
            Ok(()) => Ok(Some(self.events())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(ConntrackError::Overrun),
            Err(e) => Err(ConntrackError::Events(e)),
        }
    }

    /// Waits for the next events (then takes what else is queued, up to [`BATCH`]
    /// datagrams). `Err(Overrun)` when the kernel had to drop events because they were not
    /// read fast enough (the socket stays usable).
    pub fn recv(&mut self) -> Result<Vec<ConntrackEvent>, ConntrackError> {
        match self.datagrams.recv(&self.fd, 0) {
            Ok(()) => Ok(self.events()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Err(ConntrackError::Overrun),
            Err(e) => Err(ConntrackError::Events(e)),
        }
    }

    fn events(&mut self) -> Vec<ConntrackEvent> {
        let mut out = Vec::new();
        for datagram in self.datagrams.iter() {
            match datagram {
                Some(d) => out.extend(parse_events(d)),
                None => self.cut_short += 1,
            }
        }
        out
    }
}

/// The events of one datagram from a [`ConntrackEvents`] socket; messages that are not
/// well-formed entries are skipped.
pub fn parse_events(datagram: &[u8]) -> Vec<ConntrackEvent> {
    crate::netlink::messages(datagram)
        .filter_map(|m| {
            let (ty, _, payload) = m.ok()?;
            let kind = match ty {
                t if t == msg_type(IPCTNL_MSG_CT_NEW) => EventKind::New,
                t if t == msg_type(IPCTNL_MSG_CT_DELETE) => EventKind::Destroy,
                _ => return None,
            };
            let entry = parse_entry(payload)?;
            let (mut orig, mut reply) = (None, None);
            for (ty, data) in Attrs::new(payload.get(4..)?) {
                match ty {
                    CTA_COUNTERS_ORIG => orig = parse_counters(data),
                    CTA_COUNTERS_REPLY => reply = parse_counters(data),
                    _ => {}
                }
            }
            Some(ConntrackEvent {
                kind,
                entry,
                orig,
                reply,
            })
        })
        .collect()
}

fn parse_counters(data: &[u8]) -> Option<Counters> {
    let be64 = |a: &[u8]| Some(u64::from_be_bytes(a.get(..8)?.try_into().ok()?));
    let mut c = Counters::default();
    for (ty, a) in Attrs::new(data) {
        match ty {
            CTA_COUNTERS_PACKETS => c.packets = be64(a)?,
            CTA_COUNTERS_BYTES => c.bytes = be64(a)?,
            _ => {}
        }
    }
    Some(c)
}

/// A ctnetlink client bound to the network namespace of the thread that opened it.
pub struct Conntrack {
    nl: Netlink,
}

impl Conntrack {
    /// Opens a NETLINK_NETFILTER socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack, ConntrackError> {
        Netlink::open_protocol(libc::NETLINK_NETFILTER, "NETLINK_NETFILTER")
            .map(|nl| Conntrack { nl })
            .map_err(ConntrackError::Open)
    }

    /// Every entry of the namespace's table (both address families).
    pub fn entries(&mut self) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        let mut msg = Msg::new(msg_type(IPCTNL_MSG_CT_GET), 0);
        msg.header(&nfgenmsg(libc::AF_UNSPEC as u8));
        let replies = self
            .nl
            .dump(msg, || "ctnetlink dump".to_string())
            .map_err(ConntrackError::List)?;
        // Entries of protocols without the fields we read (no tuple) are skipped: no filter
        // could select them.
        Ok(replies.iter().filter_map(|r| parse_entry(r)).collect())
    }

    /// Deletes every entry that any of `filters` selects, returning how many went. Entries that
    /// disappear on their own meanwhile are not errors. A refused delete does not stop the
    /// others; the first refusal is returned after all were tried.
    pub fn delete_matching(
        &mut self,
        filters: &[ConntrackFilter],
    ) -> Result<usize, ConntrackError> {
        if let Some(f) = filters.iter().find(|f| !f.is_bounded()) {
            return Err(ConntrackError::Unbounded {
                filter: f.to_string(),
            });
        }
        if filters.is_empty() {
            return Ok(0);
        }
        let entries = self.entries()?;
        self.delete_entries(
            entries
                .iter()
                .filter(|e| filters.iter().any(|f| f.matches(e))),
        )
    }

    /// Deletes the given entries (from [`Conntrack::entries`] on this socket's namespace),
    /// returning how many went; the same error rules as [`Conntrack::delete_matching`].
    pub fn delete_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a ConntrackEntry>,
    ) -> Result<usize, ConntrackError> {
        let mut deleted = 0;
        let mut first_error = None;
        for entry in entries {
            match self.delete(entry) {
                Ok(()) => deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(source) => {
                    first_error.get_or_insert(ConntrackError::Delete {
                        entry: entry.to_string(),
                        source,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    fn delete(&mut self, entry: &ConntrackEntry) -> Result<(), Error> {
        let mut msg = Msg::new(msg_type(IPCTNL_MSG_CT_DELETE), 0);
        msg.header(&nfgenmsg(entry.family));
        msg.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &entry.raw_orig);
        if let Some(zone) = entry.zone {
            msg.attr(CTA_ZONE, &zone.to_be_bytes());
        }
        if let Some(id) = entry.id {
            msg.attr(CTA_ID, &id.to_be_bytes());
        }
        self.nl
            .request(msg, || format!("ctnetlink delete of {entry}"))
    }
}

fn msg_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

/// struct nfgenmsg: family, version, resource id (big endian, 0).
fn nfgenmsg(family: u8) -> [u8; 4] {
    [family, NFNETLINK_V0, 0, 0]
}

/// Decodes one IPCTNL_MSG_CT_NEW payload (nfgenmsg + attributes); None when it lacks a tuple.
fn parse_entry(payload: &[u8]) -> Option<ConntrackEntry> {
    let (&family, _) = payload.split_first()?;
    let attrs = payload.get(4..)?;
    let mut orig = None;
    let mut raw_orig = None;
    let mut reply = None;
    let mut zone = None;
    let mut id = None;
    for (ty, data) in Attrs::new(attrs) {
        match ty {
            CTA_TUPLE_ORIG => {
                orig = parse_tuple(data);
                raw_orig = Some(data.to_vec());
            }
            CTA_TUPLE_REPLY => reply = parse_tuple(data),
            CTA_ZONE if data.len() >= 2 => zone = Some(u16::from_be_bytes([data[0], data[1]])),
            CTA_ID if data.len() >= 4 => {
                id = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            _ => {}
        }
    }
    let ((protocol, orig), (_, reply)) = (orig?, reply?);
    Some(ConntrackEntry {
        protocol,
        orig,
        reply,
        zone,
        id,
        family,
        raw_orig: raw_orig?,
    })
}

/// Decodes a CTA_TUPLE_* nest into (protocol number, tuple).
fn parse_tuple(data: &[u8]) -> Option<(u8, Tuple)> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port) = (None, None);
    for (ty, inner) in Attrs::new(data) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, a) in Attrs::new(inner) {
                    match ty {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = attr_ip(a),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = attr_ip(a),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, a) in Attrs::new(inner) {
                    match ty {
                        CTA_PROTO_NUM => proto = a.first().copied(),
                        CTA_PROTO_SRC_PORT if a.len() >= 2 => {
                            src_port = Some(u16::from_be(u16_at(a, 0)))
                        }
                        CTA_PROTO_DST_PORT if a.len() >= 2 => {
                            dst_port = Some(u16::from_be(u16_at(a, 0)))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto?,
        Tuple {
            src: src?,
            dst: dst?,
            src_port,
            dst_port,
        },
    ))
}

/// The contents of a CTA_TUPLE_* nest, encoded the way the kernel dumps them.
fn tuple_bytes(protocol: u8, t: &Tuple) -> Vec<u8> {
    // A message without a family header is a plain attribute buffer after its nlmsghdr.
    let mut msg = Msg::new(0, 0);
    let ip = msg.begin_nest(CTA_TUPLE_IP);
    let (s, d) = if t.src.is_ipv4() {
        (CTA_IP_V4_SRC, CTA_IP_V4_DST)
    } else {
        (CTA_IP_V6_SRC, CTA_IP_V6_DST)
    };
    msg.attr(s, &ip_bytes(t.src));
    msg.attr(d, &ip_bytes(t.dst));
    msg.end_nest(ip);
    let p = msg.begin_nest(CTA_TUPLE_PROTO);
    msg.attr(CTA_PROTO_NUM, &[protocol]);
    if let Some(port) = t.src_port {
        msg.attr(CTA_PROTO_SRC_PORT, &port.to_be_bytes());
    }
    if let Some(port) = t.dst_port {
        msg.attr(CTA_PROTO_DST_PORT, &port.to_be_bytes());
    }
    msg.end_nest(p);
    msg.into_bytes().split_off(NLMSG_HDRLEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The events socket's parser faces whatever the kernel (or a bug) sends: any bytes
        /// give some events or none, never a panic.
        #[test]
        fn events_parse_from_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_events(&bytes);
        }

        /// A well-framed message with arbitrary attributes after a real header.
        #[test]
        fn events_parse_from_any_attributes(attrs in proptest::collection::vec(proptest::num::u8::ANY, 0..256), destroy in proptest::bool::ANY) {
            let ty = msg_type(if destroy { IPCTNL_MSG_CT_DELETE } else { IPCTNL_MSG_CT_NEW });
            let len = NLMSG_HDRLEN + 4 + attrs.len();
            let mut msg = Vec::with_capacity(len);
            msg.extend_from_slice(&(len as u32).to_ne_bytes());
            msg.extend_from_slice(&ty.to_ne_bytes());
            msg.extend_from_slice(&[0; 10]);
            msg.extend_from_slice(&nfgenmsg(libc::AF_INET as u8));
            msg.extend_from_slice(&attrs);
            let _ = parse_events(&msg);
        }
    }

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::with_ports(src.parse().unwrap(), sport, dst.parse().unwrap(), dport)
    }

    /// A UDP flow from a pod to a cluster IP, DNATed to 10.244.0.5:7070.
    fn dumped() -> Vec<u8> {
        let mut msg = Msg::new(msg_type(0), 0);
        msg.header(&nfgenmsg(libc::AF_INET as u8));
        let orig = tuple("10.244.1.3", 40000, "10.96.0.1", 80);
        let reply = tuple("10.244.0.5", 7070, "10.244.1.3", 40000);
        msg.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple_bytes(17, &orig));
        msg.attr(CTA_TUPLE_REPLY | NLA_F_NESTED, &tuple_bytes(17, &reply));
        msg.attr(CTA_ID, &0x01020304u32.to_be_bytes());
        msg.into_bytes()[16..].to_vec()
    }

    #[test]
    fn decodes_a_dumped_entry() {
        let e = parse_entry(&dumped()).unwrap();
        assert_eq!(e.protocol, 17);
        assert_eq!(e.orig, tuple("10.244.1.3", 40000, "10.96.0.1", 80));
        assert_eq!(e.reply.src, "10.244.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(e.id, Some(0x01020304));
        assert_eq!(e.zone, None);
        assert_eq!(e.family, libc::AF_INET as u8);
        // The tuple goes back to the kernel exactly as it came.
        let again = parse_tuple(&e.raw_orig).unwrap();
        assert_eq!(again, (17, e.orig.clone()));
        // An entry described by its tuples names the same flow.
        let described = ConntrackEntry::new(17, e.orig.clone(), e.reply.clone());
        assert_eq!(described.raw_orig, e.raw_orig);
        assert_eq!(described.family, e.family);
        assert_eq!(
            e.to_string(),
            "proto 17 10.244.1.3:40000 -> 10.96.0.1:80 (replies from 10.244.0.5:7070)"
        );
    }

    #[test]
    fn filters_match_every_field_they_set() {
        let e = parse_entry(&dumped()).unwrap();
        let svc: IpAddr = "10.96.0.1".parse().unwrap();
        let ep: IpAddr = "10.244.0.5".parse().unwrap();
        let other: IpAddr = "10.244.0.6".parse().unwrap();
        let udp = ConntrackFilter::new(L4Proto::Udp);
        assert!(udp.clone().orig_dst(svc, 80).reply_src(ep).matches(&e));
        assert!(udp.clone().orig_dst(svc, 80).matches(&e));
        assert!(udp.clone().orig_dst_port(80).reply_src(ep).matches(&e));
        assert!(!udp.clone().orig_dst(svc, 80).reply_src(other).matches(&e));
        assert!(!udp.clone().orig_dst(svc, 81).matches(&e));
        assert!(!ConntrackFilter::new(L4Proto::Sctp)
            .orig_dst(svc, 80)
            .matches(&e));
        assert_eq!(
            udp.orig_dst(svc, 80).reply_src(ep).to_string(),
            "-p udp --orig-dst 10.96.0.1 --orig-port-dst 80 --reply-src 10.244.0.5"
        );
    }

    #[test]
    fn a_filter_on_the_protocol_alone_is_refused() {
        // Refused before any socket work, so this needs no root.
        let mut ct = Conntrack {
            nl: Netlink::open().unwrap(),
        };
        let err = ct
            .delete_matching(&[ConntrackFilter::new(L4Proto::Udp)])
            .unwrap_err();
        assert!(matches!(err, ConntrackError::Unbounded { .. }), "{err}");
    }

    #[test]
    fn truncated_payloads_are_skipped() {
        let full = dumped();
        for len in [0, 3, 4, 20, full.len() - 9] {
            // Must not panic; a cut-off entry has no complete tuple to match.
            let _ = parse_entry(&full[..len]);
        }
        assert!(parse_entry(&full[..4]).is_none());
    }
}
