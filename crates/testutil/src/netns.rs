//! The network-namespace fixture: a named namespace the test creates (`<prefix>-<pid>-<n>`, made
//! with `weft_dataplane::NetNs` exactly as `ip netns add` would) and deletes in `Drop`, also while
//! a failing test unwinds. It plays a node, a pod or the host a runtime runs in.

use std::path::Path;
use std::process::Command;

use weft_dataplane::{IpNet, NetNs, Netlink};

use crate::command::{require_tool, run_ok};
use crate::names::unique_name;

/// A named network namespace this test created and deletes on drop.
pub struct TestNetns {
    name: String,
    /// `None` once [`TestNetns::delete`] has removed it.
    ns: Option<NetNs>,
}

impl TestNetns {
    /// Creates `<prefix>-<pid>-<n>`, bare as `ip netns add` makes it: only a loopback, down.
    pub fn new(prefix: &str) -> TestNetns {
        let name = unique_name(prefix);
        let ns = NetNs::create(&name).unwrap_or_else(|e| panic!("creating netns {name}: {e}"));
        TestNetns { name, ns: Some(ns) }
    }

    /// Brings the loopback up, as on any real host: it gives the namespace its local routing
    /// table. Without one the kernel classifies every neighbour as broadcast and TCP between
    /// pods fails (ICMP still passes).
    pub fn with_loopback_up(self) -> TestNetns {
        self.netlink()
            .lo_up()
            .unwrap_or_else(|e| panic!("bringing lo up in {}: {e}", self.name));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open namespace, for `weft_dataplane` calls that take one (`peer_netns`, `NetNs::run`).
    pub fn ns(&self) -> &NetNs {
        self.ns
            .as_ref()
            .unwrap_or_else(|| panic!("netns {} was already deleted", self.name))
    }

    /// The bind-mounted namespace file under /run/netns, as a runtime passes it in CNI_NETNS.
    pub fn path(&self) -> &Path {
        self.ns().path()
    }

    /// [`TestNetns::path`] as text, for environment variables and JSON.
    pub fn path_str(&self) -> &str {
        self.path()
            .to_str()
            .expect("netns paths are the names we chose")
    }

    /// Runs `f` on this thread switched into the namespace, then switches back (also when `f`
    /// panics). Sockets opened inside stay in the namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        self.ns()
            .run(f)
            .unwrap_or_else(|e| panic!("entering netns {}: {e}", self.name))
    }

    /// A netlink socket inside the namespace.
    pub fn netlink(&self) -> Netlink {
        self.run(Netlink::open)
            .unwrap_or_else(|e| panic!("netlink in netns {}: {e}", self.name))
    }

    /// `program` run inside this namespace.
    ///
    /// This enters only the network namespace (`nsenter --net`), unlike `ip netns exec`, which
    /// also gives every command a fresh mount namespace: podman bind-mounts each container's
    /// network namespace under /run/netns, and the next podman command (`podman rm`, which runs
    /// the CNI DEL) must see that mount, so all podman commands have to share the mount namespace.
    /// `nsenter` execs the program, so the child's pid is the program's (a server can be killed).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        require_tool("nsenter", "util-linux");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `sh -c <script>` inside the namespace, which must succeed; its stdout.
    pub fn sh(&self, script: &str) -> String {
        run_ok(self.command("sh").args(["-c", script]))
    }

    /// `ip -n <this namespace> <args>`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        require_tool("ip", "iproute2");
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// The namespace's IPv4 routes, one per line.
    pub fn routes(&self) -> String {
        self.ip(&["-4", "route", "show"])
    }

    /// Names of the links in the namespace (without the `@peer` suffix).
    pub fn link_names(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|line| line.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .collect()
    }

    /// Reads a sysctl such as `net.ipv4.ip_forward` as seen from inside this namespace: the kernel
    /// shows /proc/sys/net of the reader's network namespace.
    pub fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        run_ok(self.command("cat").arg(path)).trim().to_owned()
    }

    /// Joins this namespace and `peer` with a veth pair: `here` is (name, address/prefix) of the
    /// end in this namespace, `there` of the end in `peer`. Both ends get their address and come
    /// up, and both namespaces' loopbacks come up, so the pair carries TCP at once.
    pub fn veth_to(&self, peer: &TestNetns, here: (&str, &str), there: (&str, &str)) {
        let mut nl = self.netlink();
        nl.link_add_veth(here.0, there.0)
            .peer_netns(peer.ns())
            .execute()
            .unwrap_or_else(|e| panic!("veth {} in {} to {}: {e}", here.0, self.name, peer.name));
        for (ns, (link, addr)) in [(self, here), (peer, there)] {
            let mut nl = ns.netlink();
            let fail = |e: weft_dataplane::Error| -> ! {
                panic!("setting up {link} ({addr}) in {}: {e}", ns.name)
            };
            nl.lo_up().unwrap_or_else(|e| fail(e));
            let index = match nl.link_get(link) {
                Ok(Some(l)) => l.index,
                Ok(None) => panic!("{link} is not in {} after creating it", ns.name),
                Err(e) => fail(e),
            };
            let net: IpNet = addr
                .parse()
                .unwrap_or_else(|e| panic!("address {addr}: {e}"));
            nl.addr_add(index, net)
                .execute()
                .unwrap_or_else(|e| fail(e));
            nl.link_set(index)
                .up()
                .execute()
                .unwrap_or_else(|e| fail(e));
        }
    }

    /// Deletes the namespace now (for tests of what happens when it is gone); `Drop` then has
    /// nothing left to do.
    pub fn delete(&mut self) {
        self.ns = None;
        NetNs::delete(&self.name).unwrap_or_else(|e| panic!("deleting netns {}: {e}", self.name));
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Close our fd first so the kernel can free the namespace once the mount is gone.
        if self.ns.take().is_some() {
            if let Err(e) = NetNs::delete(&self.name) {
                eprintln!("cleanup: deleting netns {}: {e}", self.name);
            }
        }
    }
}
