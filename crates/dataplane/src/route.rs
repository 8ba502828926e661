//! Routes in the main table: add/replace/delete/list with gateway, output link, scope,
//! onlink and source hint, and multipath (ECMP) routes with one nexthop per path
//! (`RTA_MULTIPATH`, a list of `rtnexthop`s each carrying its own gateway).

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::netlink::{
    align, attr_ip, attr_u32, family, ip_bytes, u16_at, u32_at, Attrs, Msg, Netlink, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REPLACE,
};
use crate::types::{Family, IfIndex, IpNet};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
/// `ip route` marks routes it adds as "boot"; routes default to it so they look familiar.
pub const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 4;
/// `struct rtnexthop`: len u16, flags u8, hops u8, ifindex i32.
const RTNEXTHOP_LEN: usize = 8;

/// Route scope: how far the destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Reached through a gateway (the default for routes with one).
    Universe,
    /// Directly on the link: no gateway.
    Link,
    /// Local to this host.
    Host,
    /// Any other kernel value.
    Other(u8),
}

impl Scope {
    fn raw(self) -> u8 {
        match self {
            Scope::Universe => 0,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Other(v) => v,
        }
    }
    fn from_raw(v: u8) -> Self {
        match v {
            0 => Scope::Universe,
            253 => Scope::Link,
            254 => Scope::Host,
            v => Scope::Other(v),
        }
    }
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<IfIndex>,
    pub scope: Scope,
    pub onlink: bool,
    pub src: Option<IpAddr>,
    /// Who installed the route (`proto` in `ip route`): lets an owner find its own routes.
    pub protocol: u8,
    /// The paths of a multipath route (`ip route ... nexthop via A nexthop via B`), in the
    /// kernel's order; empty for a single-path route, which uses `gateway`/`oif`. (The kernel
    /// lists a multipath route given one nexthop as a single-path one.)
    pub multipath: Vec<NextHop>,
}

impl Route {
    /// Every gateway the route sends through: its nexthops', or its one gateway.
    pub fn gateways(&self) -> Vec<IpAddr> {
        if self.multipath.is_empty() {
            self.gateway.into_iter().collect()
        } else {
            self.multipath.iter().map(|n| n.gateway).collect()
        }
    }
}

/// One path of a multipath route. The kernel spreads flows over the paths in proportion to
/// their weights, by a hash of each packet's addresses (and ports, with
/// `net.ipv4.fib_multipath_hash_policy=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// Output interface, or None for wherever the gateway is reached.
    pub oif: Option<IfIndex>,
    /// Relative share, 1..=256 (`weight` in `ip route`; the kernel stores weight - 1).
    pub weight: u16,
    pub onlink: bool,
}

impl NextHop {
    /// An equal-weight path through `gateway`.
    pub fn via(gateway: IpAddr) -> NextHop {
        NextHop {
            gateway,
            oif: None,
            weight: 1,
            onlink: false,
        }
    }

    /// The `rtnexthop` with its gateway attribute, as one entry of `RTA_MULTIPATH`.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let hops = self
            .weight
            .checked_sub(1)
            .and_then(|h| u8::try_from(h).ok())
            .ok_or_else(|| Error::Invalid {
                what: "nexthop weight",
                value: self.weight.to_string(),
                reason: "must be 1 to 256",
            })?;
        let gw = ip_bytes(self.gateway);
        let gw_attr = align(4 + gw.len());
        let len = RTNEXTHOP_LEN + gw_attr;
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.push(if self.onlink { RTNH_F_ONLINK as u8 } else { 0 });
        out.push(hops);
        out.extend_from_slice(&self.oif.map_or(0, |o| o.0).to_ne_bytes());
        out.extend_from_slice(&((4 + gw.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&RTA_GATEWAY.to_ne_bytes());
        out.extend_from_slice(&gw);
        out.resize(out.len() + (gw_attr - 4 - gw.len()), 0);
        Ok(())
    }

    /// The nexthops of an `RTA_MULTIPATH` attribute. Entries without a gateway (device-only
    /// paths) are skipped: nothing weft installs has them.
    fn decode_all(mut data: &[u8]) -> Vec<NextHop> {
        let mut out = Vec::new();
        while data.len() >= RTNEXTHOP_LEN {
            let len = u16_at(data, 0) as usize;
            if len < RTNEXTHOP_LEN || len > data.len() {
                break;
            }
            let (flags, hops) = (data[2], data[3]);
            let ifindex = u32_at(data, 4);
            let gateway = Attrs::new(&data[RTNEXTHOP_LEN..len])
                .find(|(t, _)| *t == RTA_GATEWAY)
                .and_then(|(_, d)| attr_ip(d));
            if let Some(gateway) = gateway {
                out.push(NextHop {
                    gateway,
                    oif: (ifindex != 0).then_some(IfIndex(ifindex)),
                    weight: u16::from(hops) + 1,
                    onlink: u32::from(flags) & RTNH_F_ONLINK != 0,
                });
            }
            data = &data[align(len).min(data.len())..];
        }
        out
    }
}

/// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
fn rtmsg(fam: u8, dst_len: u8, scope: u8, flags: u32, proto: u8, ty: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = fam;
    h[1] = dst_len;
    h[4] = RT_TABLE_MAIN;
    h[5] = proto;
    h[6] = scope;
    h[7] = ty;
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h
}

impl Netlink {
    /// Starts adding a route to `dst` (fails with EEXIST if one exists; see [`RouteAdd::replace`]).
    pub fn route_add(&mut self, dst: IpNet) -> RouteAdd<'_> {
        RouteAdd {
            nl: self,
            route: Route {
                dst: dst.network(),
                gateway: None,
                oif: None,
                scope: Scope::Universe,
                onlink: false,
                src: None,
                protocol: RTPROT_BOOT,
                multipath: Vec::new(),
            },
            scope_set: false,
            replace: false,
        }
    }

    /// Deletes the main-table route to `dst` (narrowed by `oif`/`gateway` when given).
    pub fn route_del(
        &mut self,
        dst: IpNet,
        oif: Option<IfIndex>,
        gateway: Option<IpAddr>,
    ) -> Result<()> {
        let dst = dst.network();
        let mut m = Msg::new(RTM_DELROUTE, 0);
        // Scope "nowhere" (255) on delete matches routes of any scope.
        m.header(&rtmsg(family(dst.addr()), dst.prefix(), 255, 0, 0, 0));
        if dst.prefix() > 0 {
            m.attr(RTA_DST, &ip_bytes(dst.addr()));
        }
        if let Some(o) = oif {
            m.attr_u32(RTA_OIF, o.0);
        }
        if let Some(g) = gateway {
            m.attr(RTA_GATEWAY, &ip_bytes(g));
        }
        self.request(m, || format!("deleting route {dst}"))
    }

    /// Routes of the main table for one family.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>> {
        let fam = family.raw();
        let mut m = Msg::new(RTM_GETROUTE, 0);
        m.header(&rtmsg(fam, 0, 0, 0, 0, 0));
        let replies = self.dump(m, || "listing routes".to_string())?;
        let mut out = Vec::new();
        for p in replies {
            if p.len() < 12 {
                return Err(Error::protocol("listing routes", "short rtmsg"));
            }
            let (rfam, dst_len, mut table, protocol, scope, ty) =
                (p[0], p[1], u32::from(p[4]), p[5], p[6], p[7]);
            let flags = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
            let mut r = Route {
                dst: IpNet::default_v4(),
                gateway: None,
                oif: None,
                scope: Scope::from_raw(scope),
                onlink: flags & RTNH_F_ONLINK != 0,
                src: None,
                protocol,
                multipath: Vec::new(),
            };
            let mut dst = None;
            for (t, data) in Attrs::new(&p[12..]) {
                match t {
                    RTA_DST => dst = attr_ip(data),
                    RTA_GATEWAY => r.gateway = attr_ip(data),
                    RTA_OIF => r.oif = attr_u32(data).map(IfIndex),
                    RTA_PREFSRC => r.src = attr_ip(data),
                    RTA_MULTIPATH => r.multipath = NextHop::decode_all(data),
                    RTA_TABLE => table = attr_u32(data).unwrap_or(table),
                    _ => {}
                }
            }
            if rfam != fam || table != u32::from(RT_TABLE_MAIN) || ty != RTN_UNICAST {
                continue;
            }
            let unspecified: IpAddr = match family {
                Family::V4 => std::net::Ipv4Addr::UNSPECIFIED.into(),
                Family::V6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
            };
            r.dst = IpNet::new(dst.unwrap_or(unspecified), dst_len)?;
            out.push(r);
        }
        Ok(out)
    }
}

/// Builder for a route; see [`Netlink::route_add`].
#[must_use = "call .execute()"]
pub struct RouteAdd<'a> {
    nl: &'a mut Netlink,
    route: Route,
    scope_set: bool,
    replace: bool,
}

impl RouteAdd<'_> {
    pub fn gateway(mut self, gw: IpAddr) -> Self {
        self.route.gateway = Some(gw);
        self
    }
    /// Adds a path, making this a multipath route (`nexthop via ...`); call once per path.
    /// A multipath route has no route-level gateway or output link: set them per nexthop.
    pub fn nexthop(mut self, hop: NextHop) -> Self {
        self.route.multipath.push(hop);
        self
    }
    /// Output interface (`dev`).
    pub fn oif(mut self, link: IfIndex) -> Self {
        self.route.oif = Some(link);
        self
    }
    pub fn scope(mut self, scope: Scope) -> Self {
        self.route.scope = scope;
        self.scope_set = true;
        self
    }
    /// Treat the gateway as on-link even if no address covers it.
    pub fn onlink(mut self) -> Self {
        self.route.onlink = true;
        self
    }
    /// Preferred source address for locally originated traffic.
    pub fn src(mut self, src: IpAddr) -> Self {
        self.route.src = Some(src);
        self
    }
    /// Marks the route as installed by `protocol` (`ip route ... proto N`).
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.route.protocol = protocol;
        self
    }
    /// Replace an existing route to the same destination instead of failing (`ip route replace`).
    pub fn replace(mut self) -> Self {
        self.replace = true;
        self
    }

    pub fn execute(self) -> Result<()> {
        let r = &self.route;
        // Like `ip route`: without an explicit scope, a gateway-less route is scope link.
        if !r.multipath.is_empty() && (r.gateway.is_some() || r.oif.is_some()) {
            return Err(Error::Invalid {
                what: "multipath route",
                value: r.dst.to_string(),
                reason: "a multipath route takes its gateways and links per nexthop",
            });
        }
        let scope = if self.scope_set || r.gateway.is_some() || !r.multipath.is_empty() {
            r.scope
        } else {
            Scope::Link
        };
        let flags = if self.replace {
            NLM_F_CREATE | NLM_F_REPLACE
        } else {
            NLM_F_CREATE | NLM_F_EXCL
        };
        let mut m = Msg::new(RTM_NEWROUTE, flags);
        let rflags = if r.onlink { RTNH_F_ONLINK } else { 0 };
        m.header(&rtmsg(
            family(r.dst.addr()),
            r.dst.prefix(),
            scope.raw(),
            rflags,
            r.protocol,
            RTN_UNICAST,
        ));
        if r.dst.prefix() > 0 {
            m.attr(RTA_DST, &ip_bytes(r.dst.addr()));
        }
        if let Some(g) = r.gateway {
            m.attr(RTA_GATEWAY, &ip_bytes(g));
        }
        if let Some(o) = r.oif {
            m.attr_u32(RTA_OIF, o.0);
        }
        if let Some(s) = r.src {
            m.attr(RTA_PREFSRC, &ip_bytes(s));
        }
        if !r.multipath.is_empty() {
            let mut hops = Vec::new();
            for hop in &r.multipath {
                hop.encode(&mut hops)?;
            }
            m.attr(RTA_MULTIPATH, &hops);
        }
        let (dst, gw, oif) = (r.dst, r.gateway, r.oif);
        let paths: Vec<IpAddr> = r.multipath.iter().map(|h| h.gateway).collect();
        self.nl.request(m, || {
            let mut s = format!("adding route {dst}");
            if let Some(g) = gw {
                s.push_str(&format!(" via {g}"));
            }
            for g in paths {
                s.push_str(&format!(" nexthop via {g}"));
            }
            if let Some(o) = oif {
                s.push_str(&format!(" dev ifindex {o}"));
            }
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexthops_encode_as_rtnexthops_and_decode_back() {
        let hops = [
            NextHop::via("172.20.0.2".parse().unwrap()),
            NextHop {
                gateway: "fe80::1".parse().unwrap(),
                oif: Some(IfIndex(7)),
                weight: 256,
                onlink: true,
            },
        ];
        let mut bytes = Vec::new();
        for h in &hops {
            h.encode(&mut bytes).unwrap();
        }
        // v4: 8-byte rtnexthop + 8-byte gateway attribute; v6: 8 + 20.
        assert_eq!(bytes.len(), 16 + 28);
        assert_eq!(&bytes[0..4], &[16, 0, 0, 0]);
        assert_eq!(bytes[16 + 3], 255, "weight 256 is hops 255");
        assert_eq!(NextHop::decode_all(&bytes), hops);
        let zero = NextHop {
            weight: 0,
            ..hops[0]
        };
        assert!(zero.encode(&mut Vec::new()).is_err());
    }
}
