//! IPv4 CIDR ranges: the one CIDR type of the project (pod, service, node and underlay ranges).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{input:?} is not a CIDR like 10.244.0.0/16: {reason}")]
    Syntax { input: String, reason: String },
    #[error("prefix length /{prefix} is longer than 32")]
    PrefixTooLong { prefix: u8 },
    #[error("{given} has host bits set; did you mean {suggestion}?")]
    HostBitsSet { given: String, suggestion: String },
}

/// An IPv4 network: a network address (host bits all zero) and a prefix length.
///
/// Ordered by network address, then prefix, so sorted lists read like routing tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

const fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl Ipv4Cidr {
    /// A CIDR from its network address; refuses prefixes over 32 and addresses with host bits set,
    /// because `10.244.0.1/16` is almost always a typo for `10.244.0.0/16`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::PrefixTooLong { prefix });
        }
        let bits = u32::from(addr);
        let network = bits & mask(prefix);
        if network != bits {
            return Err(CidrError::HostBitsSet {
                given: format!("{addr}/{prefix}"),
                suggestion: format!("{}/{prefix}", Ipv4Addr::from(network)),
            });
        }
        Ok(Ipv4Cidr { network, prefix })
    }

    /// The `/prefix` network that contains `addr` (host bits cleared; prefix capped at 32).
    pub const fn containing(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = if prefix > 32 { 32 } else { prefix };
        Ipv4Cidr {
            network: addr.to_bits() & mask(prefix),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask, e.g. 255.255.0.0 for a /16.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The last address of the range.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.prefix))
    }

    /// Number of addresses in the range (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// True when `other` lies entirely inside this range.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// True when the two ranges share at least one address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }

    /// How many `/new_prefix` subnets this range splits into (0 if `new_prefix` is shorter than ours
    /// or longer than 32).
    pub fn subnet_count(&self, new_prefix: u8) -> u64 {
        if new_prefix < self.prefix || new_prefix > 32 {
            0
        } else {
            1u64 << (new_prefix - self.prefix)
        }
    }

    /// The `index`-th `/new_prefix` subnet, counting from the network address.
    pub fn subnet(&self, new_prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(new_prefix) {
            return None;
        }
        let step = 1u64 << (32 - u32::from(new_prefix));
        let network = u64::from(self.network) + index * step;
        Some(Ipv4Cidr {
            network: u32::try_from(network).ok()?,
            prefix: new_prefix,
        })
    }

    /// The address `n` steps after the network address, None when that leaves the range.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        let addr = u64::from(self.network) + n;
        u32::try_from(addr).ok().map(Ipv4Addr::from)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = |reason: &str| CidrError::Syntax {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| syntax("missing /prefix"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| syntax(&format!("{addr:?} is not an IPv4 address")))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax(&format!("{prefix:?} is not a prefix length")));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| syntax(&format!("prefix length /{prefix} is longer than 32")))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let c = cidr("10.244.0.0/16");
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert_eq!(c.network(), Ipv4Addr::new(10, 244, 0, 0));
        assert_eq!(c.prefix(), 16);
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 244, 255, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(c.size(), 65536);
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(
            cidr("0.0.0.0/0").broadcast(),
            Ipv4Addr::new(255, 255, 255, 255)
        );
        assert_eq!(cidr("1.2.3.4/32").size(), 1);
    }

    #[test]
    fn refuses_bad_input_with_clear_errors() {
        let err = "10.244.0.1/16".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.244.0.1/16 has host bits set; did you mean 10.244.0.0/16?"
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Ipv4Cidr>().unwrap_err().to_string(),
            "prefix length /33 is longer than 32"
        );
        assert_eq!(
            "10.0.0.0/999".parse::<Ipv4Cidr>().unwrap_err().to_string(),
            "\"10.0.0.0/999\" is not a CIDR like 10.244.0.0/16: prefix length /999 is longer than 32"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/x",
            "/8",
            "",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert!(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 33).is_err());
    }

    #[test]
    fn subnets_and_nth() {
        let c = cidr("10.244.0.0/16");
        assert_eq!(c.subnet_count(24), 256);
        assert_eq!(c.subnet(24, 0), Some(cidr("10.244.0.0/24")));
        assert_eq!(c.subnet(24, 255), Some(cidr("10.244.255.0/24")));
        assert_eq!(c.subnet(24, 256), None);
        assert_eq!(c.subnet(8, 0), None);
        assert_eq!(c.subnet_count(33), 0);
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 244, 0, 1)));
        assert_eq!(c.nth(65535), Some(Ipv4Addr::new(10, 244, 255, 255)));
        assert_eq!(c.nth(65536), None);
        assert_eq!(
            cidr("255.255.255.0/24").nth(255),
            Some(Ipv4Addr::new(255, 255, 255, 255))
        );
    }

    #[test]
    fn overlap_and_containment() {
        let pods = cidr("10.244.0.0/16");
        assert!(pods.overlaps(&cidr("10.244.128.0/17")));
        assert!(cidr("10.244.128.0/17").overlaps(&pods));
        assert!(!pods.overlaps(&cidr("10.96.0.0/12")));
        assert!(pods.contains_cidr(&cidr("10.244.3.0/24")));
        assert!(!cidr("10.244.3.0/24").contains_cidr(&pods));
        assert!(cidr("0.0.0.0/0").contains(Ipv4Addr::new(192, 168, 1, 1)));
    }

    #[test]
    fn serde_as_string() {
        let c = cidr("10.96.0.0/12");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"10.96.0.0/12\"");
        let back: Ipv4Cidr = serde_json::from_str("\"10.96.0.0/12\"").unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<Ipv4Cidr>("\"10.96.0.1/12\"").is_err());
    }

    fn any_cidr() -> impl Strategy<Value = Ipv4Cidr> {
        (any::<u32>(), 0u8..=32).prop_map(|(bits, prefix)| {
            Ipv4Cidr::new(Ipv4Addr::from(bits & mask(prefix)), prefix).unwrap()
        })
    }

    proptest! {
        #[test]
        fn subnets_tile_the_parent(c in any_cidr(), extra in 0u8..=8, pick in any::<u64>()) {
            let new_prefix = (c.prefix() + extra).min(32);
            let count = c.subnet_count(new_prefix);
            prop_assert_eq!(count * (1u64 << (32 - u32::from(new_prefix))), c.size());
            let index = pick % count;
            let sub = c.subnet(new_prefix, index).unwrap();
            prop_assert!(c.contains_cidr(&sub));
            prop_assert!(c.overlaps(&sub));
            prop_assert_eq!(sub.prefix(), new_prefix);
            if index + 1 < count {
                let next = c.subnet(new_prefix, index + 1).unwrap();
                prop_assert!(!sub.overlaps(&next));
                prop_assert_eq!(u64::from(u32::from(sub.broadcast())) + 1, u64::from(u32::from(next.network())));
            }
            prop_assert_eq!(c.subnet(new_prefix, count), None);
        }

        #[test]
        fn contains_matches_range_arithmetic(c in any_cidr(), ip in any::<u32>()) {
            let lo = u32::from(c.network());
            let hi = u32::from(c.broadcast());
            prop_assert_eq!(c.contains(Ipv4Addr::from(ip)), lo <= ip && ip <= hi);
        }

        #[test]
        fn nth_stays_inside(c in any_cidr(), n in any::<u64>()) {
            let n = n % (c.size() + 1);
            match c.nth(n) {
                Some(ip) => prop_assert!(c.contains(ip)),
                None => prop_assert_eq!(n, c.size()),
            }
        }

        #[test]
        fn overlap_is_symmetric_and_matches_ranges(a in any_cidr(), b in any_cidr()) {
            let (alo, ahi) = (u32::from(a.network()), u32::from(a.broadcast()));
            let (blo, bhi) = (u32::from(b.network()), u32::from(b.broadcast()));
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            prop_assert_eq!(a.overlaps(&b), alo <= bhi && blo <= ahi);
        }

        #[test]
        fn display_parse_roundtrip(c in any_cidr()) {
            prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>().unwrap(), c);
        }
    }
}
