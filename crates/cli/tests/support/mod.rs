//! The harness the lab tests share: a lab with a unique name and state directory, driven
//! through the real `weft` binary, torn down in Drop (also when the test fails).
#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    pub name: String,
    pub state: tempfile::TempDir,
    files: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Cluster names are short (they prefix netns names): "t" + pid in base 36 + counter.
        let name = format!("t{}{n}", radix36(std::process::id()));
        Lab {
            name,
            state: tempfile::tempdir().expect("temp dir"),
            files: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn weft(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["--lab", &self.name])
            .args(args)
            .env("WEFT_STATE_DIR", self.state.path())
            .current_dir(workspace_root())
            .output()
            .expect("running weft")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.weft(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file for manifests and configs, removed with the lab.
    pub fn write(&self, name: &str, content: &str) -> String {
        let path = self.files.path().join(name);
        std::fs::write(&path, content).expect("writing a test file");
        path.to_string_lossy().into_owned()
    }

    /// `weft exec POD -- curl -sS --max-time 5 URL`, which must succeed; its output.
    pub fn curl(&self, pod: &str, url: &str) -> String {
        self.ok(&["exec", pod, "--", "curl", "-sS", "--max-time", "5", url])
    }

    /// A Service as stored (`Value::Null` if there is none), in namespace default.
    pub fn service(&self, name: &str) -> Value {
        let path = self
            .state
            .path()
            .join(&self.name)
            .join("store/objects/Service/default")
            .join(format!("{name}.json"));
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn pods(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["get", "pods", "-o", "json"];
        args.extend_from_slice(extra);
        let v: Value = serde_json::from_str(&self.ok(&args)).expect("pods json");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// This lab's namespaces that exist now.
    pub fn netns(&self) -> Vec<String> {
        let prefix = format!("weft_{}_", self.name);
        netns_list()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Run a command in a node's namespace (as a process on that node), returning its stdout.
    pub fn in_node(&self, node: &str, cmd: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("weft_{}_{node}", self.name)])
            .args(cmd)
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{cmd:?} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pod_netns(&self, pod: &Value) -> PathBuf {
        let uid: String = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| *c != '-')
            .take(12)
            .collect();
        PathBuf::from(format!("/run/netns/weft_{}_pod-{uid}", self.name))
    }

    fn agent_pid_file(&self, node: &str) -> PathBuf {
        self.state
            .path()
            .join(&self.name)
            .join("nodes")
            .join(node)
            .join("agent.pid")
    }

    pub fn agent_pid(&self, node: &str) -> u32 {
        let file = self.agent_pid_file(node);
        wait_for(|| file.exists());
        std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A daemon's log file (`agent-NODE`, `kubelet-NODE`, `controller`), empty if not there yet.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(
            self.state
                .path()
                .join(&self.name)
                .join("logs")
                .join(format!("{name}.log")),
        )
        .unwrap_or_default()
    }

    pub fn agent_alive(&self, node: &str) -> bool {
        Path::new(&format!("/proc/{}", self.agent_pid(node))).exists()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.weft(&["lab", "down"]);
    }
}

pub fn radix36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Polls for up to 30 s.
pub fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 30s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
