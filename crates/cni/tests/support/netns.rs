//! Test-owned network namespaces: the "host" a runtime and its plugins run in, and bare pod
//! namespaces for driving plugins directly.

use std::path::PathBuf;
use std::process::Command;

use super::{cleanup, require_tool, run_ok, unique_name};

/// A named network namespace this test created (`ip netns add`) and deletes on drop. Its
/// loopback is up, as on a real host.
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `<prefix><pid>-<counter>`.
    pub fn create(prefix: &str) -> Self {
        require_tool("ip", "iproute2");
        require_tool("nsenter", "util-linux");
        let name = unique_name(prefix);
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        // From here on Drop owns the namespace, so a failure below still removes it.
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, as a runtime passes it in CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `program` run inside this namespace.
    ///
    /// This enters only the network namespace (`nsenter --net`), unlike `ip netns exec`, which
    /// also gives every command a fresh mount namespace: podman bind-mounts each container's
    /// network namespace under /run/netns, and the next podman command (`podman rm`, which runs
    /// the CNI DEL) must see that mount, so all podman commands have to share the mount namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// `ip -n <this namespace> <args>`, returning its stdout; fails the test if ip fails.
    pub fn ip(&self, args: &[&str]) -> String {
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
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        cleanup(Command::new("ip").args(["netns", "del", &self.name]));
    }
}
