//! The harness the lab tests share: a lab with a unique name and state directory, driven
//! through the real `weft` binary, torn down in Drop (also when the test fails).
#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The real kubectl, installed by scripts/deps.sh.
pub const KUBECTL: &str = "/usr/local/bin/kubectl";

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

    /// A Service as the lab's API serves it (`weft get svc NAME -o json`; `Value::Null` if
    /// there is none), in namespace default.
    pub fn service(&self, name: &str) -> Value {
        let out = self.weft(&["get", "svc", name, "-o", "json"]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The kubeconfig `weft lab up` writes for this lab (client certificate, https://127.0.0.1).
    pub fn kubeconfig(&self) -> PathBuf {
        self.state.path().join(&self.name).join("kubeconfig")
    }

    /// The lab's own state directory (`$WEFT_STATE_DIR/<lab>`): pid files, logs, kubeconfig.
    pub fn dir(&self) -> PathBuf {
        self.state.path().join(&self.name)
    }

    /// The real kubectl against this lab (KUBECONFIG set to the lab's kubeconfig).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("running kubectl")
    }

    /// A kubectl command for this lab, to spawn (watches, follows) or feed stdin.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("WEFT_STATE_DIR", self.state.path())
            .current_dir(workspace_root());
        cmd
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A daemon's pid file: `apiserver`, `controller`, `speaker` (the lab's) or
    /// `nodes/NODE/kubelet`, `nodes/NODE/agent`.
    pub fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir().join(format!("{daemon}.pid"))
    }

    /// The pid in a daemon's pid file, if the file is there and readable.
    pub fn daemon_pid(&self, daemon: &str) -> Option<u32> {
        std::fs::read_to_string(self.pid_file(daemon))
            .ok()
            .and_then(|t| t.trim().parse().ok())
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
pub fn wait_for(cond: impl FnMut() -> bool) {
    wait_for_what("condition", cond)
}

/// Polls for up to 30 s; the panic names `what` was awaited.
pub fn wait_for_what(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not met within 30s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kubectl table (`kubectl get`, `api-resources`) as rows of (column, cell), cut at the
/// header's column starts: kubectl's tabwriter aligns every cell under its header and pads
/// with at least three spaces, while headers like `NOMINATED NODE` hold single spaces.
pub fn table(text: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = header_columns(lines.next().unwrap_or(""));
    lines
        .map(|line| {
            header
                .iter()
                .enumerate()
                .map(|(c, (start, name))| {
                    let from = (*start).min(line.len());
                    let to = header
                        .get(c + 1)
                        .map(|(s, _)| *s)
                        .unwrap_or(line.len())
                        .min(line.len());
                    (
                        name.clone(),
                        line.get(from..to).unwrap_or("").trim().to_string(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The column names of a kubectl table's header (its first line).
pub fn columns(text: &str) -> Vec<String> {
    header_columns(text.lines().next().unwrap_or(""))
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

fn header_columns(header: &str) -> Vec<(usize, String)> {
    let bytes = header.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")) {
            let end = header[i..]
                .find("  ")
                .map(|e| i + e)
                .unwrap_or(header.len());
            out.push((i, header[i..end].to_string()));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// One cell of a table row.
pub fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == column)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}
