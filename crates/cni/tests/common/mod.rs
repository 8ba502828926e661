//! Test fixtures: uniquely named netns that remove themselves, and a runner that executes the
//! real `weft-cni` binary inside a "host" netns with env + stdin exactly as a runtime does.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};
use weft_dataplane::{NetNs, Netlink};

pub const BIN: &str = env!("CARGO_BIN_EXE_weft-cni");
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(tag: &str) -> String {
    format!(
        "wcni-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A netns created for one test and deleted in Drop (also on panic).
pub struct TestNs {
    pub name: String,
    pub ns: Option<NetNs>,
}

impl TestNs {
    pub fn new(tag: &str) -> TestNs {
        let name = unique(tag);
        let ns = NetNs::create(&name).expect("creating test netns");
        TestNs { name, ns: Some(ns) }
    }

    pub fn ns(&self) -> &NetNs {
        self.ns.as_ref().expect("netns already deleted")
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    pub fn nl(&self) -> Netlink {
        self.ns().run(Netlink::open).unwrap().unwrap()
    }

    /// Deletes the namespace now (the fd is closed, so the kernel tears it down).
    pub fn delete(&mut self) {
        self.ns = None;
        NetNs::delete(&self.name).unwrap();
    }

    /// Runs an `ip` command inside this netns (for breaking things on purpose).
    pub fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {args:?}", self.name);
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        self.ns = None;
        let _ = NetNs::delete(&self.name);
    }
}

/// A host netns, a data dir and a network name: one isolated "node".
pub struct Node {
    pub host: TestNs,
    pub data: tempfile::TempDir,
    pub network: String,
    pub subnet: String,
}

/// What one plugin run printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "plugin failed: {}", self.stdout);
        self
    }

    /// Asserts a spec error with `code` and returns its msg.
    pub fn err(&self, code: u64) -> String {
        assert_ne!(self.code, 0, "expected failure, got {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v["msg"].as_str().unwrap().to_string()
    }
}

impl Node {
    pub fn new(subnet: &str) -> Node {
        let host = TestNs::new("host");
        // Like any real host: lo up gives the netns its local routing table. Without one the
        // kernel classifies every neighbour as broadcast and pods see ff:ff:.. frames, which
        // TCP drops (ICMP would still pass).
        host.nl().lo_up().unwrap();
        Node {
            host,
            data: tempfile::tempdir().unwrap(),
            network: unique("net"),
            subnet: subnet.to_string(),
        }
    }

    pub fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": self.network,
            "type": "weft-cni",
            "mtu": 1450,
            "ipam": {"subnet": self.subnet, "dataDir": self.data.path()},
        })
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.data.path().join(&self.network)
    }

    /// Allocated addresses on disk.
    pub fn allocations(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.ipam_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Names of weft host veths in the host netns.
    pub fn host_veths(&self) -> Vec<String> {
        self.host
            .nl()
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n.starts_with("weft"))
            .collect()
    }

    pub fn spawn(&self, env: &[(&str, &str)], stdin: &Value) -> Child {
        spawn_in(self.host.ns(), env, stdin.to_string().as_bytes())
    }

    pub fn run(&self, env: &[(&str, &str)], stdin: &Value) -> Run {
        wait(self.spawn(env, stdin))
    }

    pub fn run_raw(&self, env: &[(&str, &str)], stdin: &[u8]) -> Run {
        wait(spawn_in(self.host.ns(), env, stdin))
    }

    pub fn add(&self, conf: &Value, cid: &str, pod: &TestNs) -> Run {
        self.run(&cmd_env("ADD", cid, Some(&pod.path())), conf)
    }

    pub fn del(&self, conf: &Value, cid: &str, netns: Option<&str>) -> Run {
        self.run(&cmd_env("DEL", cid, netns), conf)
    }
}

/// The environment a runtime passes for ADD/DEL/CHECK.
pub fn cmd_env<'a>(
    command: &'a str,
    cid: &'a str,
    netns: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    if let Some(n) = netns {
        v.push(("CNI_NETNS", n));
    }
    v
}

/// Spawns the binary with the calling thread switched into `ns`: the child inherits it,
/// like `ip netns exec`.
pub fn spawn_in(ns: &NetNs, env: &[(&str, &str)], stdin: &[u8]) -> Child {
    let mut child = ns
        .run(|| {
            Command::new(BIN)
                .env_clear()
                .envs(env.iter().copied())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
        })
        .unwrap()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child
}

pub fn wait(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    }
}

pub fn path_exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
