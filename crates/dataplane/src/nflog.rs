//! NFLOG: the packets nftables rules hand to a log group (`log group N prefix "..."`), read
//! through nfnetlink_log (NETLINK_NETFILTER, the ULOG subsystem) in the calling thread's network
//! namespace. The policy table logs its drops this way (rate-limited by the rule itself), and the
//! agent turns each into a log line naming the policy that dropped it.
//!
//! [`Nflog::bind`] takes a group for this socket (one listener per group and namespace: the
//! kernel refuses a second with EPERM) with a small copy range, enough for the IP and transport
//! headers; [`Nflog::recv`] returns the records of one datagram. The kernel's messages are parsed
//! by [`parse_message`] into [`Logged`] records: the prefix, interfaces, mark, and the packet's
//! addresses, protocol and ports ([`Packet`]). The parser faces whatever the kernel (or a fuzzer)
//! hands it: every malformed input is a typed [`ParseError`] or [`PacketError`], never a panic.
//!
//! The family's logger binding (`NFULNL_CFG_CMD_PF_BIND`/`PF_UNBIND`, which libnetfilter_log's
//! examples send) is left alone: nft's `log group` names nfnetlink_log as its logger itself
//! (since Linux 3.17), while the binding is the namespace's default logger for other users of
//! netfilter (conntrack's invalid-packet logs), which are not ours to redirect. Closing the
//! socket releases the group (the kernel drops a departed listener's instances).
//!
//! ```no_run
//! use weft_dataplane::nflog::Nflog;
//! # fn main() -> Result<(), weft_dataplane::nflog::NflogError> {
//! let mut log = Nflog::bind(87, 128)?;
//! loop {
//!     for record in log.recv()? {
//!         match record {
//!             Ok(r) => println!("{}: {}", r.prefix, r.packet.map(|p| p.to_string()).unwrap_or_default()),
//!             Err(e) => eprintln!("unreadable NFLOG message: {e}"),
//!         }
//!     }
//! }
//! # }
//! ```

mod packet;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::netlink::{align, error_code, messages, open_bound, recv_datagram, send_to_kernel};
use crate::netlink::{NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use crate::IfIndex;
pub use packet::{parse_packet, Packet, PacketError, Transport};
#[cfg(test)]
use packet::{ETH_P_IP, ETH_P_IPV6, NFPROTO_IPV4, NFPROTO_IPV6};

/// The NFLOG group weft's tables log to: the policy table's drops (prefix `weft drop `), the
/// Service table's and the egress table's refusals (prefix `weft reject `), read by each node's
/// agent.
pub const WEFT_GROUP: u16 = 87;
/// Logged packets per second per logging rule, and the burst above it.
pub const LOG_RATE: u32 = 10;
pub const LOG_BURST: u32 = 20;

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_COPY_PACKET: u8 = 2;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_MARK: u16 = 2;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// A datagram holds the messages the kernel batched (a few hundred bytes each at our copy
/// range); 64 KiB holds any.
const RECV_BUF: usize = 64 * 1024;
/// The sequence number of our configuration request (the kernel's packets carry 0).
const CONFIG_SEQ: u32 = 1;

/// A failed NFLOG operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NflogError {
    /// No NETLINK_NETFILTER socket (no netfilter netlink in this kernel).
    #[error("opening an NFLOG socket: {0}")]
    Open(#[source] Error),
    /// The kernel refused the group: EPERM when another socket of this namespace has it.
    #[error("binding NFLOG group {group}: {source}")]
    Bind {
        group: u16,
        #[source]
        source: Error,
    },
    /// Receiving failed; the socket is no longer usable.
    #[error("receiving from NFLOG group {group}: {source}")]
    Receive {
        group: u16,
        #[source]
        source: Error,
    },
    /// The socket's buffer overflowed (ENOBUFS): the kernel discarded records. The socket stays
    /// usable; the next [`Nflog::recv`] goes on with what comes next.
    #[error("NFLOG group {group}: the receive buffer overflowed, records were lost")]
    Overrun { group: u16 },
}

/// A message that is not a well-formed NFLOG packet message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The netlink header's length does not fit the datagram.
    #[error("netlink message length {0} does not fit the datagram")]
    MessageLength(usize),
    /// Fewer bytes than the nfgenmsg header after the netlink header.
    #[error("{0} bytes after the netlink header, 4 needed for nfgenmsg")]
    ShortHeader(usize),
    /// An attribute whose length is under its own header or past the message's end.
    #[error("attribute type {ty} has length {len} with {left} bytes left")]
    AttributeLength { ty: u16, len: usize, left: usize },
    /// An attribute shorter than its fixed-size value.
    #[error("attribute type {ty} has {have} bytes of value, {need} needed")]
    ShortAttribute { ty: u16, need: usize, have: usize },
    /// A packet message without its NFULA_PACKET_HDR.
    #[error("packet message without NFULA_PACKET_HDR")]
    NoPacketHeader,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The group it was logged to.
    pub group: u16,
    /// The netfilter family of the rule that logged it (2: ip, 10: ip6, 7: bridge...).
    pub family: u8,
    /// The netfilter hook (0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting).
    pub hook: u8,
    /// The rule's `log prefix`, empty when it has none.
    pub prefix: String,
    /// The interface it came in on, if any (none on output).
    pub indev: Option<IfIndex>,
    /// The interface it was going out of, if known (none before routing).
    pub outdev: Option<IfIndex>,
    pub mark: Option<u32>,
    /// Its IP and transport headers.
    pub packet: Result<Packet, PacketError>,
}

/// A socket subscribed to one NFLOG group of the namespace that opened it.
pub struct Nflog {
    fd: OwnedFd,
    group: u16,
    buf: Vec<u8>,
    /// Records that arrived while waiting for the bind's acknowledgement.
    early: VecDeque<Result<Logged, ParseError>>,
}

impl Nflog {
    /// Takes `group` in the calling thread's network namespace, copying up to `copy_range`
    /// bytes of each packet (from its network header), and asks the kernel to send each record
    /// at once rather than batching them for up to a second.
    pub fn bind(group: u16, copy_range: u16) -> Result<Nflog, NflogError> {
        let fd =
            open_bound(libc::NETLINK_NETFILTER, "NETLINK_NETFILTER").map_err(NflogError::Open)?;
        let mut log = Nflog {
            fd,
            group,
            buf: Vec::with_capacity(RECV_BUF),
            early: VecDeque::new(),
        };
        let op = || format!("binding NFLOG group {group}");
        send_to_kernel(&log.fd, &config_message(group, copy_range))
            .map_err(|e| log.bind_error(Error::os(op(), e)))?;
        loop {
            recv_datagram(&log.fd, &mut log.buf).map_err(|e| log.bind_error(Error::os(op(), e)))?;
            let mut acked = None;
            for message in messages(&log.buf) {
                match message {
                    Ok((NLMSG_ERROR, CONFIG_SEQ, payload)) => {
                        acked = Some(error_code(payload).unwrap_or(-libc::EPROTO));
                    }
                    Ok((ty, _, payload)) if ty == packet_type() => {
                        log.early.push_back(parse_packet_message(payload));
                    }
                    Ok(_) => {}
                    Err(len) => log.early.push_back(Err(ParseError::MessageLength(len))),
                }
            }
            match acked {
                Some(0) => return Ok(log),
                Some(code) => return Err(log.bind_error(Error::errno(op(), -code))),
                None => {}
            }
        }
    }

    fn bind_error(&self, source: Error) -> NflogError {
        NflogError::Bind {
            group: self.group,
            source,
        }
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// Makes [`Nflog::recv`] return an empty list when nothing came within `timeout` (None:
    /// wait for ever, the default).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), NflogError> {
        let tv = match timeout {
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            // A zero timeval means no timeout: anything shorter than 1 µs waits 1 µs.
            Some(t) => libc::timeval {
                tv_sec: t.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                tv_usec: libc::suseconds_t::from(t.subsec_micros())
                    .max(libc::suseconds_t::from(t < Duration::from_micros(1))),
            },
        };
        // SAFETY: setsockopt with a valid timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(self.receive_error(Error::last_os("setting the NFLOG receive timeout")));
        }
        Ok(())
    }

    /// Waits for the next datagram and returns its records, in the order logged (an empty list
    /// when the timeout passed). A message that does not parse is an `Err` in the list, and the
    /// ones after it are still read.
    pub fn recv(&mut self) -> Result<Vec<Result<Logged, ParseError>>, NflogError> {
        if !self.early.is_empty() {
            return Ok(self.early.drain(..).collect());
        }
        if let Err(e) = recv_datagram(&self.fd, &mut self.buf) {
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(Vec::new()),
                Some(libc::ENOBUFS) => Err(NflogError::Overrun { group: self.group }),
                _ => Err(self.receive_error(Error::os("receiving NFLOG records", e))),
            };
        }
        Ok(parse_datagram(&self.buf))
    }

    fn receive_error(&self, source: Error) -> NflogError {
        NflogError::Receive {
            group: self.group,
            source,
        }
    }
}

fn packet_type() -> u16 {
    (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
}

/// The NFULNL_MSG_CONFIG request that binds `group` (one message: the kernel creates the
/// instance, then applies the mode, timeout and threshold to it).
fn config_message(group: u16, copy_range: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, patched below
    m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&CONFIG_SEQ.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, version 0, the group as resource id.
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    let mut attr = |ty: u16, data: &[u8]| {
        m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(align(m.len()), 0);
    };
    attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    let mut mode = u32::from(copy_range).to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    attr(NFULA_CFG_MODE, &mode);
    // Flush each record at once: the rules rate-limit what they log, so batching saves
    // nothing and would delay a log line by up to the default second.
    attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
    attr(NFULA_CFG_TIMEOUT, &1u32.to_be_bytes());
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The records of one received datagram (messages other than packets are skipped).
pub fn parse_datagram(datagram: &[u8]) -> Vec<Result<Logged, ParseError>> {
    let mut out = Vec::new();
    for message in messages(datagram) {
        match message {
            Ok((ty, _, payload)) if ty == packet_type() => out.push(parse_packet_message(payload)),
            Ok(_) => {}
            Err(len) => out.push(Err(ParseError::MessageLength(len))),
        }
    }
    out
}

/// Parses one whole NFULNL_MSG_PACKET message, netlink header included.
pub fn parse_message(message: &[u8]) -> Result<Logged, ParseError> {
    let Some(first) = messages(message).next() else {
        return Err(ParseError::MessageLength(message.len()));
    };
    let (_, _, payload) = first.map_err(ParseError::MessageLength)?;
    parse_packet_message(payload)
}

/// Parses a packet message's payload: nfgenmsg, then the attributes.
fn parse_packet_message(payload: &[u8]) -> Result<Logged, ParseError> {
    let Some((head, mut rest)) = payload.split_first_chunk::<4>() else {
        return Err(ParseError::ShortHeader(payload.len()));
    };
    let (family, group) = (head[0], u16::from_be_bytes([head[2], head[3]]));
    let (mut header, mut prefix, mut mark) = (None, String::new(), None);
    let (mut indev, mut outdev, mut data) = (None, None, None);
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        // The top bits are the nested and byte-order flags.
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return Err(ParseError::AttributeLength {
                ty,
                len,
                left: rest.len(),
            });
        }
        let value = &rest[4..len];
        rest = &rest[align(len).min(rest.len())..];
        match ty {
            NFULA_PACKET_HDR => {
                let v = fixed::<4>(ty, value)?;
                header = Some((u16::from_be_bytes([v[0], v[1]]), v[2]));
            }
            NFULA_MARK => mark = Some(u32::from_be_bytes(fixed::<4>(ty, value)?)),
            NFULA_IFINDEX_INDEV => {
                indev = Some(IfIndex(u32::from_be_bytes(fixed::<4>(ty, value)?)));
            }
            NFULA_IFINDEX_OUTDEV => {
                outdev = Some(IfIndex(u32::from_be_bytes(fixed::<4>(ty, value)?)));
            }
            NFULA_PREFIX => {
                let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
                prefix = String::from_utf8_lossy(&value[..end]).into_owned();
            }
            NFULA_PAYLOAD => data = Some(value),
            _ => {}
        }
    }
    let (hw_protocol, hook) = header.ok_or(ParseError::NoPacketHeader)?;
    let packet = match data {
        None => Err(PacketError::NoPayload),
        Some(bytes) => parse_packet(family, hw_protocol, bytes),
    };
    Ok(Logged {
        group,
        family,
        hook,
        prefix,
        indev,
        outdev,
        mark,
        packet,
    })
}

fn fixed<const N: usize>(ty: u16, value: &[u8]) -> Result<[u8; N], ParseError> {
    value
        .first_chunk::<N>()
        .copied()
        .ok_or(ParseError::ShortAttribute {
            ty,
            need: N,
            have: value.len(),
        })
}

#[cfg(test)]
mod tests;
