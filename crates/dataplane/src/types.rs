//! Small value types shared by the netlink operations: interface index, MAC address, IP prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::Error;

/// A kernel interface index (always > 0 for a real link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfIndex(pub u32);

impl fmt::Display for IfIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An address family, for dumps that list one family at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn raw(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// An Ethernet hardware address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::Invalid {
            what: "MAC address",
            value: s.to_string(),
            reason,
        };
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(|| invalid("expected 6 octets"))?;
            if p.len() != 2 {
                return Err(invalid("each octet must be two hex digits"));
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| invalid("not hexadecimal"))?;
        }
        if parts.next().is_some() {
            return Err(invalid("expected 6 octets"));
        }
        if out[0] & 1 == 1 {
            return Err(invalid(
                "multicast addresses cannot be assigned to an interface",
            ));
        }
        Ok(MacAddr(out))
    }
}

/// An IP address with a prefix length: a route destination or an interface address.
/// Host bits are kept (an interface address `10.0.0.5/24` is meaningful); use
/// [`IpNet::network`] to get the masked form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Builds a prefix, refusing lengths longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, Error> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::Invalid {
                what: "prefix length",
                value: format!("{addr}/{prefix}"),
                reason: "longer than the address",
            });
        }
        Ok(IpNet { addr, prefix })
    }

    /// A single host: /32 or /128.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNet { addr, prefix }
    }

    /// The IPv4 (or IPv6) default route destination.
    pub fn default_v4() -> Self {
        IpNet {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            prefix: 0,
        }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The same prefix with host bits cleared.
    pub fn network(&self) -> IpNet {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        IpNet {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && IpNet::host(ip).with_prefix(self.prefix).network() == self.network()
    }

    fn with_prefix(self, prefix: u8) -> IpNet {
        IpNet { prefix, ..self }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::Invalid {
            what: "CIDR",
            value: s.to_string(),
            reason,
        };
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| invalid("missing /prefix"))?;
        let addr: IpAddr = a.parse().map_err(|_| invalid("not an IP address"))?;
        let prefix: u8 = p.parse().map_err(|_| invalid("prefix is not a number"))?;
        IpNet::new(addr, prefix).map_err(|_| invalid("prefix longer than the address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip_and_errors() {
        let m: MacAddr = "c2:11:22:33:44:55".parse().unwrap();
        assert_eq!(m.to_string(), "c2:11:22:33:44:55");
        assert!("c2:11:22:33:44".parse::<MacAddr>().is_err());
        assert!("01:11:22:33:44:55".parse::<MacAddr>().is_err());
        assert!("zz:11:22:33:44:55".parse::<MacAddr>().is_err());
    }

    #[test]
    fn ipnet_parse_network_contains() {
        let n: IpNet = "10.244.1.7/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "10.244.1.0/24");
        assert!(n.contains("10.244.1.200".parse().unwrap()));
        assert!(!n.contains("10.244.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert_eq!(IpNet::default_v4().network().to_string(), "0.0.0.0/0");
        let v6: IpNet = "fd00::1/64".parse().unwrap();
        assert_eq!(v6.network().to_string(), "fd00::/64");
    }
}
