//! The headers of a logged packet: IPv4 or IPv6 (extension headers walked), then the ports of
//! TCP, UDP, UDP-Lite, SCTP and DCCP or the type of ICMP. The kernel copies the packet from its
//! network header, as far as the group's copy range; whatever was cut off or malformed is a
//! [`PacketError`] or a [`Transport::Other`], never a panic.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub(super) const ETH_P_IP: u16 = 0x0800;
pub(super) const ETH_P_IPV6: u16 = 0x86dd;
pub(super) const NFPROTO_IPV4: u8 = 2;
pub(super) const NFPROTO_IPV6: u8 = 10;

/// Why a record's packet could not be read (the record itself still has prefix and interfaces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// No NFULA_PAYLOAD (the group copies metadata only).
    #[error("no packet copied")]
    NoPayload,
    /// Not IPv4 or IPv6 (an ARP frame logged by a bridge rule, say).
    #[error("not an IP packet (hardware protocol 0x{0:04x})")]
    NotIp(u16),
    /// Cut off before the end of the IP header.
    #[error("IP header cut off: {have} bytes of {need}")]
    Truncated { need: usize, have: usize },
    /// The version field disagrees with the family the kernel named.
    #[error("IP version {0} where {1} was expected")]
    Version(u8, u8),
    /// An IPv4 header length under 20 bytes.
    #[error("IPv4 header length {0} under 20 bytes")]
    HeaderLength(usize),
}

/// What a logged packet's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number (6 tcp, 17 udp, 132 sctp, 1 icmp, 58 icmpv6).
    pub protocol: u8,
    pub transport: Transport,
}

/// The transport header, as far as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP, UDP, UDP-Lite, SCTP and DCCP, whose headers start with the two ports.
    Ports {
        src: u16,
        dst: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
    /// A fragment after the first: no transport header.
    Fragment,
    /// A protocol without ports, or a header cut off.
    Other,
}

impl Packet {
    /// The protocol's name as nft spells it (`tcp`, `udp`...), or its number.
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            33 => "dccp".into(),
            58 => "icmpv6".into(),
            132 => "sctp".into(),
            136 => "udplite".into(),
            n => format!("proto {n}"),
        }
    }
}

/// `10.244.1.4:40312 -> 10.244.0.3:5432 tcp`, `[fd00::1]:53 -> ...` for IPv6, and
/// `10.0.0.1 -> 10.0.0.2 icmp type 8 code 0` without ports.
impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = |ip: IpAddr, port: Option<u16>| match (ip, port) {
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (a, Some(p)) => format!("{a}:{p}"),
            (a, None) => a.to_string(),
        };
        let (sport, dport) = match self.transport {
            Transport::Ports { src, dst } => (Some(src), Some(dst)),
            _ => (None, None),
        };
        write!(
            f,
            "{} -> {} {}",
            addr(self.src, sport),
            addr(self.dst, dport),
            self.protocol_name()
        )?;
        match self.transport {
            Transport::Icmp { kind, code } => write!(f, " type {kind} code {code}"),
            Transport::Fragment => f.write_str(" fragment"),
            Transport::Ports { .. } | Transport::Other => Ok(()),
        }
    }
}

/// Reads a logged packet's IP and transport headers. The family names the IP version for ip
/// and ip6 rules; for the others (bridge, netdev, inet) the hardware protocol does.
pub fn parse_packet(family: u8, hw_protocol: u16, bytes: &[u8]) -> Result<Packet, PacketError> {
    let version = match (family, hw_protocol) {
        (NFPROTO_IPV4, _) | (_, ETH_P_IP) => 4,
        (NFPROTO_IPV6, _) | (_, ETH_P_IPV6) => 6,
        _ => return Err(PacketError::NotIp(hw_protocol)),
    };
    let have = bytes.first().map(|b| b >> 4);
    if let Some(v) = have.filter(|v| *v != version) {
        return Err(PacketError::Version(v, version));
    }
    if version == 4 {
        parse_ipv4(bytes)
    } else {
        parse_ipv6(bytes)
    }
}

fn truncated(need: usize, bytes: &[u8]) -> PacketError {
    PacketError::Truncated {
        need,
        have: bytes.len(),
    }
}

fn parse_ipv4(b: &[u8]) -> Result<Packet, PacketError> {
    let h: &[u8; 20] = b.first_chunk().ok_or_else(|| truncated(20, b))?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(PacketError::HeaderLength(ihl));
    }
    let l4 = b.get(ihl..).ok_or_else(|| truncated(ihl, b))?;
    let protocol = h[9];
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let transport = if fragment_offset != 0 {
        Transport::Fragment
    } else {
        transport(protocol, l4)
    };
    Ok(Packet {
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]).into(),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]).into(),
        protocol,
        transport,
    })
}

/// The extension headers an IPv6 packet may carry before its transport header.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;
/// Extension headers walked at most (a packet with more is read as `Transport::Other`).
const MAX_EXTENSIONS: usize = 8;

fn parse_ipv6(b: &[u8]) -> Result<Packet, PacketError> {
    let h: &[u8; 40] = b.first_chunk().ok_or_else(|| truncated(40, b))?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        IpAddr::from(Ipv6Addr::from(a))
    };
    let (mut next, mut at) = (h[6], 40);
    let mut transport_header = None;
    for _ in 0..MAX_EXTENSIONS {
        let ext = b.get(at..at + 8);
        match (next, ext) {
            (HOP_BY_HOP | ROUTING | DEST_OPTS, Some(e)) => {
                next = e[0];
                at += (usize::from(e[1]) + 1) * 8;
            }
            (AUTH, Some(e)) => {
                next = e[0];
                at += (usize::from(e[1]) + 2) * 4;
            }
            (FRAGMENT, Some(e)) => {
                next = e[0];
                at += 8;
                if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                    transport_header = Some(Transport::Fragment);
                    break;
                }
            }
            (HOP_BY_HOP | ROUTING | DEST_OPTS | AUTH | FRAGMENT, None) => {
                transport_header = Some(Transport::Other);
                break;
            }
            (p, _) => {
                transport_header = Some(transport(p, b.get(at..).unwrap_or_default()));
                break;
            }
        }
    }
    Ok(Packet {
        src: addr(8),
        dst: addr(24),
        protocol: next,
        transport: transport_header.unwrap_or(Transport::Other),
    })
}

/// The ports or ICMP type of a transport header (`l4`, possibly cut off).
fn transport(protocol: u8, l4: &[u8]) -> Transport {
    match (protocol, l4) {
        (6 | 17 | 33 | 132 | 136, [a, b, c, d, ..]) => Transport::Ports {
            src: u16::from_be_bytes([*a, *b]),
            dst: u16::from_be_bytes([*c, *d]),
        },
        (1 | 58, [kind, code, ..]) => Transport::Icmp {
            kind: *kind,
            code: *code,
        },
        _ => Transport::Other,
    }
}
