//! Routes in the main table: add/replace/delete/list with gateway, output link, scope,
//! onlink and source hint.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::netlink::{
    attr_ip, attr_u32, family, ip_bytes, Attrs, Msg, Netlink, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REPLACE,
};
use crate::types::{Family, IfIndex, IpNet};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
/// `ip route` marks routes it adds as "boot"; routes default to it so they look familiar.
pub const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 4;

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
            };
            let mut dst = None;
            for (t, data) in Attrs::new(&p[12..]) {
                match t {
                    RTA_DST => dst = attr_ip(data),
                    RTA_GATEWAY => r.gateway = attr_ip(data),
                    RTA_OIF => r.oif = attr_u32(data).map(IfIndex),
                    RTA_PREFSRC => r.src = attr_ip(data),
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
        let scope = if self.scope_set || r.gateway.is_some() {
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
        let (dst, gw, oif) = (r.dst, r.gateway, r.oif);
        self.nl.request(m, || {
            let mut s = format!("adding route {dst}");
            if let Some(g) = gw {
                s.push_str(&format!(" via {g}"));
            }
            if let Some(o) = oif {
                s.push_str(&format!(" dev ifindex {o}"));
            }
            s
        })
    }
}
