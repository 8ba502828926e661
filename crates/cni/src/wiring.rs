//! Routed point-to-point pod wiring, like Calico: no bridge, no proxy-ARP, no L2 shared
//! between pods. Each pod gets a veth pair:
//!
//! - host end `weft<11 hex of sha256(containerID/ifname)>` in the plugin's netns: up, with a
//!   route `<podIP>/32 dev <hostveth> scope link`; the host forwards (ip_forward=1).
//! - pod end `CNI_IFNAME` in the pod's netns: `<podIP>/32`, a permanent neighbour
//!   `169.254.1.1 -> <host veth MAC>`, `169.254.1.1 dev eth0 scope link` and
//!   `default via 169.254.1.1`. The gateway is never a real address: the permanent neighbour
//!   entry makes every packet leave towards the host veth, where the host routes it.
//!
//! The host netns must have its local routing table, i.e. at least one IPv4 address (`lo`
//! up is enough, and every real host has it): without it the kernel resolves the pod's
//! neighbour entry as broadcast and the pod's TCP stack drops the frames.
//!
//! The host name is derived, not stored, so DEL and GC find the veth without any state.

use std::net::{IpAddr, Ipv4Addr};

use sha2::{Digest, Sha256};
use weft_dataplane::{sysctl, Family, IpNet, Link, MacAddr, NetNs, Netlink, Scope};

use crate::env::{ContainerId, IfName};
use crate::error::Error;

/// The link-local next hop every pod routes through.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const HOST_PREFIX: &str = "weft";

/// `weft` + 11 hex chars of sha256(containerID + "/" + ifname): 15 bytes, the kernel's limit.
pub fn host_veth_name(cid: &ContainerId, ifname: &IfName) -> String {
    let digest = Sha256::digest(format!("{}/{}", cid.as_str(), ifname.as_str()).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HOST_PREFIX}{}", &hex[..11])
}

/// Turns IPv6 off on an interface of the calling thread's namespace (before it is up, so it
/// never gets a link-local address). A kernel without IPv6 has nothing to turn off.
fn no_ipv6(ifname: &str) -> Result<(), Error> {
    match sysctl::write(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "1") {
        Err(e) if e.is_not_found() => Ok(()),
        other => Ok(other?),
    }
}

/// What to build for one attachment.
pub struct PodWiring<'a> {
    pub pod_ns: &'a NetNs,
    pub ifname: &'a IfName,
    pub host_veth: &'a str,
    pub ip: Ipv4Addr,
    pub mtu: u32,
    pub mac: Option<MacAddr>,
}

/// The two ends after setup.
#[derive(Debug, Clone)]
pub struct Wired {
    pub host: Link,
    pub pod: Link,
}

fn gone(what: String) -> Error {
    Error::Check(what)
}

impl PodWiring<'_> {
    /// Builds the veth pair, addresses, neighbour and routes. On error the caller removes
    /// the host veth (which removes the pod end and the host route with it).
    pub fn setup(&self, host: &mut Netlink) -> Result<Wired, Error> {
        let ifname = self.ifname.as_str();
        let create = |host: &mut Netlink| {
            // One queue per end, which a veth is cut down to anyway: see `VethAdd::queues`.
            let mut veth = host
                .link_add_veth(self.host_veth, ifname)
                .peer_netns(self.pod_ns)
                .mtu(self.mtu)
                .queues(1);
            if let Some(mac) = self.mac {
                veth = veth.peer_mac(mac);
            }
            // The host end as created (index, MAC) comes back with the kernel's ACK.
            veth.execute_get()
        };
        let host_link = match create(host) {
            Ok(link) => link,
            // A leftover of an earlier ADD of this attachment (crashed, or repeated by the
            // runtime) holds the name; it is ours by construction of the name, so replace it.
            // Deleting it also removes its pod end, which frees CNI_IFNAME in the pod.
            Err(e) if e.is_exists() && teardown(host, self.host_veth)? => create(host)?,
            Err(e) => return Err(e.into()),
        };

        // The order below keeps the kernel from waiting for RCU grace periods: an end that is
        // up without carrier (its peer still down) is "deactivated" by the link watcher, which
        // waits for one, under the RTNL lock, either in a later request of ours (a link lookup
        // runs the watcher's pending work for its link) or in a kernel worker that our next
        // request then waits for. So both ends are looked up while down, the pod end comes up
        // first, and the host end last, which gives the pair its carrier at once.
        let host_mac = host_link
            .mac
            .ok_or_else(|| weft_dataplane::Error::Protocol {
                op: format!("getting link {}", self.host_veth),
                detail: "veth has no MAC address".into(),
            })?;

        let mut pod = self.pod_ns.run(Netlink::open)??;
        let pod_link = pod
            .link_get(ifname)?
            .ok_or_else(|| weft_dataplane::Error::Protocol {
                op: format!("getting link {ifname} in {}", self.pod_ns.path().display()),
                detail: "created but not found".into(),
            })?;
        // The pod network is IPv4 and the policy table judges IPv4: IPv6 link-local addresses
        // on the two ends would be a path between the pod and its node that no policy sees.
        self.pod_ns.run(|| no_ipv6(ifname))??;
        no_ipv6(self.host_veth)?;
        let pod_ip = IpAddr::V4(self.ip);
        let gw = IpAddr::V4(GATEWAY);
        // One round trip for the pod's five changes; the kernel applies them in this order.
        pod.batch(|pod| {
            pod.addr_add(pod_link.index, IpNet::host(pod_ip))
                .execute()?;
            pod.link_set(pod_link.index).up().execute()?;
            pod.neigh_add_permanent(pod_link.index, gw, host_mac)?;
            pod.route_add(IpNet::host(gw))
                .oif(pod_link.index)
                .scope(Scope::Link)
                .execute()?;
            pod.route_add(IpNet::default_v4())
                .gateway(gw)
                .oif(pod_link.index)
                .execute()
        })?;

        host.batch(|host| {
            host.link_set(host_link.index).up().execute()?;
            host.route_add(IpNet::host(pod_ip))
                .oif(host_link.index)
                .scope(Scope::Link)
                .replace()
                .execute()
        })?;
        // Reading first keeps the common case (already on) free of a write.
        if sysctl::read("net/ipv4/ip_forward")? != "1" {
            sysctl::write("net/ipv4/ip_forward", "1")?;
        }
        Ok(Wired {
            host: host_link,
            pod: pod_link,
        })
    }

    /// CHECK: everything setup built is still there.
    pub fn check(&self, host: &mut Netlink) -> Result<(), Error> {
        let ifname = self.ifname.as_str();
        let ns = self.pod_ns.path().display().to_string();
        let host_link = host.link_get(self.host_veth)?.ok_or_else(|| {
            gone(format!(
                "failed: host veth {} does not exist",
                self.host_veth
            ))
        })?;
        if !host_link.admin_up {
            return Err(gone(format!(
                "failed: host veth {} is down",
                self.host_veth
            )));
        }
        let pod_ip = IpAddr::V4(self.ip);
        let host_routes = host.routes(Family::V4)?;
        if !host_routes
            .iter()
            .any(|r| r.dst == IpNet::host(pod_ip) && r.oif == Some(host_link.index))
        {
            return Err(gone(format!(
                "failed: host route {pod_ip}/32 dev {} is missing",
                self.host_veth
            )));
        }
        let mut pod = self.pod_ns.run(Netlink::open)??;
        let link = pod.link_get(ifname)?.ok_or_else(|| {
            gone(format!(
                "failed: interface {ifname} does not exist in netns {ns}"
            ))
        })?;
        if let Some(mac) = self.mac {
            if link.mac != Some(mac) {
                return Err(gone(format!(
                    "failed: interface {ifname} in netns {ns} has MAC {:?}, expected {mac}",
                    link.mac.map(|m| m.to_string())
                )));
            }
        }
        let addrs = pod.addrs(Some(link.index))?;
        if !addrs.iter().any(|a| a.local == IpNet::host(pod_ip)) {
            return Err(gone(format!(
                "failed: interface {ifname} in netns {ns} does not have address {pod_ip}/32"
            )));
        }
        let routes = pod.routes(Family::V4)?;
        let gw = IpAddr::V4(GATEWAY);
        if !routes
            .iter()
            .any(|r| r.dst.prefix() == 0 && r.gateway == Some(gw) && r.oif == Some(link.index))
        {
            return Err(gone(format!(
                "failed: default route via {GATEWAY} dev {ifname} is missing in netns {ns}"
            )));
        }
        let neighs = pod.neighs(link.index)?;
        if !neighs
            .iter()
            .any(|n| n.ip == gw && n.mac == host_link.mac && n.permanent)
        {
            return Err(gone(format!(
                "failed: permanent neighbour {GATEWAY} -> {} on {ifname} is missing in netns {ns}",
                host_link.mac.map(|m| m.to_string()).unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// Removes an attachment's host veth (and with it the pod end and the host route).
/// Ok(false) when it was already gone.
pub fn teardown(host: &mut Netlink, host_veth: &str) -> Result<bool, Error> {
    match host.link_del(host_veth) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_is_deterministic_and_fits() {
        let c = ContainerId::parse("abc123").unwrap();
        let e = IfName::parse("eth0").unwrap();
        let n = host_veth_name(&c, &e);
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("weft"));
        assert_eq!(n, host_veth_name(&c, &e));
        // sha256("abc123/eth0") starts with these 11 hex chars.
        let full = format!("{:x}", Sha256::digest(b"abc123/eth0"));
        assert_eq!(&n[4..], &full[..11]);
        assert_ne!(n, host_veth_name(&c, &IfName::parse("eth1").unwrap()));
    }
}
