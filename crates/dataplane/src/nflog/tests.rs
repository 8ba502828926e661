use std::net::{IpAddr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// An NFULNL_MSG_PACKET message as the kernel writes it for `log group`: netlink header,
/// nfgenmsg, packet header, interfaces, payload, prefix.
struct Message<'a> {
    family: u8,
    group: u16,
    hw_protocol: u16,
    hook: u8,
    indev: Option<u32>,
    outdev: Option<u32>,
    mark: Option<u32>,
    prefix: &'a str,
    payload: Option<&'a [u8]>,
}

impl Message<'_> {
    fn ipv4<'a>(prefix: &'a str, payload: &'a [u8]) -> Message<'a> {
        Message {
            family: NFPROTO_IPV4,
            group: 87,
            hw_protocol: ETH_P_IP,
            hook: 4,
            indev: Some(7),
            outdev: Some(9),
            mark: None,
            prefix,
            payload: Some(payload),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&packet_type().to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[self.family, 0]);
        m.extend_from_slice(&self.group.to_be_bytes());
        let mut attr = |ty: u16, data: &[u8]| {
            m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(data);
            m.resize(align(m.len()), 0);
        };
        let hw = self.hw_protocol.to_be_bytes();
        attr(NFULA_PACKET_HDR, &[hw[0], hw[1], self.hook, 0]);
        if let Some(mark) = self.mark {
            attr(NFULA_MARK, &mark.to_be_bytes());
        }
        if let Some(i) = self.indev {
            attr(NFULA_IFINDEX_INDEV, &i.to_be_bytes());
        }
        if let Some(i) = self.outdev {
            attr(NFULA_IFINDEX_OUTDEV, &i.to_be_bytes());
        }
        if let Some(p) = self.payload {
            attr(NFULA_PAYLOAD, p);
        }
        let mut p = self.prefix.as_bytes().to_vec();
        p.push(0);
        attr(NFULA_PREFIX, &p);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }
}

/// An IPv4 header without options, then the first 20 bytes of a TCP or UDP header.
fn ipv4_ports(src: [u8; 4], dst: [u8; 4], protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, protocol, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p
}

fn ipv6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, rest.len() as u8, next, 64];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(rest);
    p
}

/// What Linux 6.x sent for `ip weft_nflogtest output udp dport 7070 log prefix "x" group 7`
/// when 127.0.0.1:51858 sent "ping" to 127.0.0.1:7070 (captured from the kernel test in
/// tests/nflog.rs): packet header (IPv4, hook output), prefix, outdev 1 (lo), uid, gid, and
/// the whole 32-byte datagram as payload.
const KERNEL_UDP: &str = "6000000000040000000000000000000002000007080001000800030006000a00\
    78000000080005000000000108000b000000000008000e0000000000240009004500\
    00201ff5400040111cd67f0000017f000001ca921b9e000cfe1f70696e67";

/// The same table's `tcp dport 7071 log prefix "tcp drop" group 7` for a SYN from port 55980:
/// 60 bytes of IPv4 and TCP with options.
const KERNEL_TCP: &str = "840000000004000000000000000000000200000708000100080003000d000a00\
    7463702064726f7000000000080005000000000108000b000000000008000e000000\
    0000400009004500003c9a1340004006a2a67f0000017f000001daac1b9f50f0f80b\
    00000000a002ffd7fe3000000204ffd70402080aba2e322a000000000103030a";

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn reads_a_drop_as_the_kernel_logs_it() {
    let payload = ipv4_ports([10, 244, 1, 4], [10, 244, 0, 3], 6, 40312, 5432);
    let msg = Message::ipv4("weft drop ingress default/deny-db", &payload).bytes();
    let r = parse_message(&msg).unwrap();
    assert_eq!(r.group, 87);
    assert_eq!(r.family, NFPROTO_IPV4);
    assert_eq!(r.hook, 4);
    assert_eq!(r.prefix, "weft drop ingress default/deny-db");
    assert_eq!((r.indev, r.outdev), (Some(IfIndex(7)), Some(IfIndex(9))));
    let p = r.packet.unwrap();
    assert_eq!(p.to_string(), "10.244.1.4:40312 -> 10.244.0.3:5432 tcp");
    assert_eq!(
        p.transport,
        Transport::Ports {
            src: 40312,
            dst: 5432
        }
    );
    // The same through a datagram of two messages, as the kernel batches them.
    let mut two = msg.clone();
    two.extend_from_slice(&msg);
    let both = parse_datagram(&two);
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|r| r.is_ok()), "{both:?}");
}

#[test]
fn reads_messages_the_kernel_sent() {
    let r = parse_message(&unhex(KERNEL_UDP)).unwrap();
    assert_eq!(r.prefix, "x");
    assert_eq!(r.group, 7);
    assert_eq!(r.family, NFPROTO_IPV4);
    assert_eq!(r.hook, 3, "output");
    assert_eq!((r.indev, r.outdev, r.mark), (None, Some(IfIndex(1)), None));
    assert_eq!(
        r.packet.unwrap().to_string(),
        "127.0.0.1:51858 -> 127.0.0.1:7070 udp"
    );
    let r = parse_message(&unhex(KERNEL_TCP)).unwrap();
    assert_eq!(r.prefix, "tcp drop");
    assert_eq!(
        r.packet.unwrap().to_string(),
        "127.0.0.1:55980 -> 127.0.0.1:7071 tcp"
    );
    // Both in one datagram, as the kernel batches them when asked to.
    let mut both = unhex(KERNEL_UDP);
    both.extend(unhex(KERNEL_TCP));
    let records = parse_datagram(&both);
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(Result::is_ok), "{records:?}");
    // Every cut of a real message fails cleanly.
    let whole = unhex(KERNEL_TCP);
    for len in 0..whole.len() {
        assert!(parse_message(&whole[..len]).is_err(), "cut at {len}");
    }
}

#[test]
fn packets_without_ports_say_what_they_are() {
    let mut icmp = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 1, 0, 0);
    icmp[20] = 8;
    let p = parse_packet(NFPROTO_IPV4, ETH_P_IP, &icmp).unwrap();
    assert_eq!(p.to_string(), "10.0.0.1 -> 10.0.0.2 icmp type 8 code 0");
    let mut fragment = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 17, 1, 2);
    fragment[7] = 0x10;
    let p = parse_packet(NFPROTO_IPV4, ETH_P_IP, &fragment).unwrap();
    assert_eq!(p.to_string(), "10.0.0.1 -> 10.0.0.2 udp fragment");
    let gre = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 47, 1, 2);
    let p = parse_packet(NFPROTO_IPV4, ETH_P_IP, &gre).unwrap();
    assert_eq!(p.to_string(), "10.0.0.1 -> 10.0.0.2 proto 47");
    // Cut off inside the UDP header: addresses still, no ports.
    let udp = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 17, 1, 2);
    let p = parse_packet(NFPROTO_IPV4, ETH_P_IP, &udp[..22]).unwrap();
    assert_eq!(p.transport, Transport::Other);
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_ports() {
    let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    // Hop-by-hop options (8 bytes), then UDP.
    let mut rest = vec![17, 0, 0, 0, 0, 0, 0, 0];
    rest.extend_from_slice(&[0x00, 0x35, 0x1f, 0x90, 0, 8, 0, 0]);
    let p = parse_packet(NFPROTO_IPV6, ETH_P_IPV6, &ipv6(0, a, b, &rest)).unwrap();
    assert_eq!(p.to_string(), "[fd00::1]:53 -> [fd00::2]:8080 udp");
    // A later fragment carries no transport header.
    let frag = [6, 0, 0x00, 0x08, 0, 0, 0, 1];
    let p = parse_packet(NFPROTO_IPV6, ETH_P_IPV6, &ipv6(44, a, b, &frag)).unwrap();
    assert_eq!(p.transport, Transport::Fragment);
    // ICMPv6 echo.
    let p = parse_packet(NFPROTO_IPV6, ETH_P_IPV6, &ipv6(58, a, b, &[128, 0, 0, 0])).unwrap();
    assert_eq!(p.to_string(), "fd00::1 -> fd00::2 icmpv6 type 128 code 0");
    // A bridge rule's IPv6 frame: the hardware protocol names the version.
    assert!(parse_packet(7, ETH_P_IPV6, &ipv6(58, a, b, &[128, 0])).is_ok());
}

#[test]
fn what_is_not_an_ip_packet_is_a_typed_error() {
    let udp = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 17, 1, 2);
    assert_eq!(
        parse_packet(7, 0x0806, &udp),
        Err(PacketError::NotIp(0x0806))
    );
    assert_eq!(
        parse_packet(NFPROTO_IPV6, ETH_P_IPV6, &udp),
        Err(PacketError::Version(4, 6))
    );
    assert_eq!(
        parse_packet(NFPROTO_IPV4, ETH_P_IP, &udp[..12]),
        Err(PacketError::Truncated { need: 20, have: 12 })
    );
    let mut short_ihl = udp.clone();
    short_ihl[0] = 0x44;
    assert_eq!(
        parse_packet(NFPROTO_IPV4, ETH_P_IP, &short_ihl),
        Err(PacketError::HeaderLength(16))
    );
    let mut long_ihl = udp.clone();
    long_ihl[0] = 0x4f;
    assert_eq!(
        parse_packet(NFPROTO_IPV4, ETH_P_IP, &long_ihl),
        Err(PacketError::Truncated { need: 60, have: 40 })
    );
    // Metadata only: the record, without a packet.
    let mut meta = Message::ipv4("p", &[]);
    meta.payload = None;
    let r = parse_message(&meta.bytes()).unwrap();
    assert_eq!(r.packet, Err(PacketError::NoPayload));
}

#[test]
fn malformed_messages_are_typed_errors() {
    let payload = ipv4_ports([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 2);
    let msg = Message::ipv4("weft drop egress a/b", &payload).bytes();
    // Every cut of a whole message: an error or a record, never a panic; the netlink header's
    // length no longer fits, so it is an error.
    for len in 0..msg.len() {
        assert!(parse_message(&msg[..len]).is_err(), "cut at {len}");
    }
    // An attribute whose length runs past the end.
    let mut bad = msg.clone();
    bad[20..22].copy_from_slice(&200u16.to_ne_bytes());
    assert!(matches!(
        parse_message(&bad),
        Err(ParseError::AttributeLength {
            ty: 1,
            len: 200,
            ..
        })
    ));
    // A packet header of two bytes.
    let mut short = msg.clone();
    short[20..22].copy_from_slice(&6u16.to_ne_bytes());
    assert!(matches!(
        parse_message(&short),
        Err(ParseError::ShortAttribute {
            ty: 1,
            need: 4,
            have: 2
        }) | Err(ParseError::AttributeLength { .. })
    ));
    // No packet header at all: only the nfgenmsg.
    let mut bare = msg[..20].to_vec();
    bare[0..4].copy_from_slice(&20u32.to_ne_bytes());
    assert_eq!(parse_message(&bare), Err(ParseError::NoPacketHeader));
    let mut tiny = msg[..18].to_vec();
    tiny[0..4].copy_from_slice(&18u32.to_ne_bytes());
    assert_eq!(parse_message(&tiny), Err(ParseError::ShortHeader(2)));
}

#[test]
fn the_bind_request_is_one_config_message() {
    let m = config_message(87, 128);
    assert_eq!(
        u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
        m.len()
    );
    assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (4 << 8) | 1);
    assert_eq!(&m[16..20], &[0, 0, 0, 87], "AF_UNSPEC, group 87 big-endian");
    // cmd (bind), mode (copy packet, range 128), qthresh 1, timeout 1.
    assert_eq!(&m[20..25], &[5, 0, 1, 0, 1]);
    assert_eq!(&m[28..38], &[10, 0, 2, 0, 0, 0, 0, 128, 2, 0]);
    assert_eq!(m.len(), 20 + 8 + 12 + 8 + 8);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_datagram(&bytes);
        let _ = parse_message(&bytes);
        for family in [2u8, 10, 7] {
            let _ = parse_packet(family, ETH_P_IP, &bytes);
            let _ = parse_packet(family, ETH_P_IPV6, &bytes);
        }
    }

    /// Arbitrary attribute contents inside a well-formed frame: the attribute walk and every
    /// value reader meet short and odd values.
    #[test]
    fn arbitrary_attributes_never_panic(
        attrs in proptest::collection::vec((0u16..24, proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
        family in any::<u8>(),
    ) {
        let mut m = vec![0u8; 16];
        m[4..6].copy_from_slice(&packet_type().to_ne_bytes());
        m.extend_from_slice(&[family, 0, 0, 87]);
        for (ty, data) in &attrs {
            m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(data);
            m.resize(align(m.len()), 0);
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        let _ = parse_message(&m);
    }

    /// What goes in comes out: prefix, interfaces, addresses, protocol and ports.
    #[test]
    fn records_read_back_what_was_logged(
        prefix in "[ -~]{0,60}",
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        protocol in prop::sample::select(vec![6u8, 17, 132]),
        sport in any::<u16>(),
        dport in any::<u16>(),
        indev in proptest::option::of(1u32..100_000),
        outdev in proptest::option::of(1u32..100_000),
        mark in proptest::option::of(any::<u32>()),
        hook in 0u8..5,
    ) {
        let payload = ipv4_ports(src, dst, protocol, sport, dport);
        let msg = Message { indev, outdev, mark, hook, ..Message::ipv4(&prefix, &payload) };
        let r = parse_message(&msg.bytes()).unwrap();
        prop_assert_eq!(&r.prefix, &prefix);
        prop_assert_eq!((r.indev, r.outdev, r.mark, r.hook), (indev.map(IfIndex), outdev.map(IfIndex), mark, hook));
        let p = r.packet.unwrap();
        prop_assert_eq!(p.src, IpAddr::from(src));
        prop_assert_eq!(p.dst, IpAddr::from(dst));
        prop_assert_eq!(p.protocol, protocol);
        prop_assert_eq!(p.transport, Transport::Ports { src: sport, dst: dport });
    }
}
