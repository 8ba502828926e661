//! One isolated "node" for driving the plugin directly: a host network namespace, an IPAM data
//! dir and a network name; runs the real `weft-cni` binary inside the host namespace with env and
//! stdin exactly as a runtime does, and reads back what it left (allocations, host veths).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use weft_dataplane::NetNs;
use weft_testutil::{unique_name, TestNetns};

use super::weft_cni;

/// A host netns, a data dir and a network name: one isolated "node".
pub struct Node {
    pub host: TestNetns,
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
        // Like any real host, with its loopback up (see `with_loopback_up`).
        let host = TestNetns::new("wcni-host").with_loopback_up();
        Node {
            host,
            data: tempfile::tempdir().unwrap(),
            network: unique_name("wcni-net"),
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
            .netlink()
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

    pub fn add(&self, conf: &Value, cid: &str, pod: &TestNetns) -> Run {
        self.run(&cmd_env("ADD", cid, Some(pod.path_str())), conf)
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
            Command::new(weft_cni())
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
