//! The lab harness of the cluster tests: a lab with a unique name and state directory, driven
//! through the real `weft` binary and kubectl, torn down with `weft lab down` in `Drop` (also
//! when the test fails). `lab down` removes exactly what the lab made, so labs of parallel tests
//! and of other people's suites on the same machine never touch each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::bins;
use crate::wait::wait_for;

/// The real kubectl, installed by scripts/deps.sh.
pub const KUBECTL: &str = "/usr/local/bin/kubectl";

/// The agnhost image the tests' workloads run (the lab runs it from weft's own agnhost).
pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// A client pod `name` on `node` that sleeps, for `exec`ing clients into.
pub fn client_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox, command: [sleep, \"3600\"]}}]\n"
    )
}

/// A web server pod `name` on `node`: the built-in nginx on port 80, labelled `app: NAME`.
pub fn web_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: web, image: nginx:1.27, ports: [{{containerPort: 80}}]}}]\n"
    )
}

/// A NetworkPolicy `deny-APP` isolating the pods labelled `app: APP` for ingress, with no rule
/// letting anything in.
pub fn deny_ingress(app: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-{app}}}\nspec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Ingress]\n"
    )
}

/// One lab of one test. Nothing exists until the test runs `lab up` (`lab.ok(&["lab", "up", ...])`).
pub struct Lab {
    /// The lab's name (`--lab`): short, since it prefixes the lab's namespace names.
    pub name: String,
    /// `WEFT_STATE_DIR` for every command: the lab's pid files, logs, store and kubeconfig.
    pub state: tempfile::TempDir,
    /// Manifests and configs the test writes ([`Lab::write`]).
    files: tempfile::TempDir,
    weft: PathBuf,
}

impl Lab {
    /// A new lab name and state directory; fails at once if the binaries are not built.
    pub fn new() -> Lab {
        let weft = bins::weft();
        // The lab runs the plugin from beside the weft binary (`weft_lab::cni_plugin_dir`).
        bins::weft_cni();
        let n = crate::names::next();
        // Cluster names are short (they prefix netns names): "t" + pid in base 36 + counter.
        let name = format!("t{}{n}", radix36(std::process::id()));
        Lab {
            name,
            weft,
            state: tempfile::tempdir().expect("temp dir"),
            files: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A `weft --lab NAME ARGS` command for this lab, to spawn (port-forward, follows).
    pub fn weft_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.weft);
        cmd.args(["--lab", &self.name])
            .args(args)
            .env("WEFT_STATE_DIR", self.state.path())
            .current_dir(workspace_root());
        cmd
    }

    /// `weft --lab NAME ARGS`, run to completion.
    pub fn weft(&self, args: &[&str]) -> Output {
        self.weft_cmd(args).output().expect("running weft")
    }

    /// `weft ARGS`, which must succeed; its stdout.
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
        self.service_in("default", name)
    }

    /// The Service `name` of `namespace` as JSON (Null if it cannot be read).
    pub fn service_in(&self, namespace: &str, name: &str) -> Value {
        let out = self.weft(&["get", "svc", "-n", namespace, name, "-o", "json"]);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// From the lab's outside host, `curl -sS --max-time SECS URL`: (exit code, body).
    pub fn outside_curl(&self, url: &str, secs: u32) -> (i32, String) {
        self.curl_via(&["lab", "outside", "--"], url, secs)
    }

    /// From pod `pod`, `curl -sS --max-time SECS URL`: (exit code, body).
    pub fn pod_curl(&self, pod: &str, url: &str, secs: u32) -> (i32, String) {
        self.curl_via(&["exec", pod, "--"], url, secs)
    }

    fn curl_via(&self, via: &[&str], url: &str, secs: u32) -> (i32, String) {
        let secs = secs.to_string();
        let mut args = via.to_vec();
        args.extend(["curl", "-sS", "--max-time", &secs, url]);
        let out = self.weft(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The address `weft controller` gave the LoadBalancer Service `name` (waits for it: the
    /// allocation follows the Service's creation).
    pub fn lb_ip(&self, name: &str) -> String {
        self.lb_ip_in("default", name)
    }

    /// [`Lab::lb_ip`] of a Service in `namespace`.
    pub fn lb_ip_in(&self, namespace: &str, name: &str) -> String {
        let mut ip = None;
        crate::wait::wait_for_what(&format!("an address for LoadBalancer {name}"), || {
            ip = self.service_in(namespace, name)["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string);
            ip.is_some()
        });
        ip.unwrap_or_default()
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
    /// `nodes/NODE/kubelet`.
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

    /// The node's agent, a pod of the `weft-agent` DaemonSet (deploy/agent.yaml): its pod name
    /// and the pid of its running `agent` container, from the node kubelet's sandbox records.
    fn agent_record(&self, node: &str) -> Option<(String, u32)> {
        let dir = self
            .state
            .path()
            .join(&self.name)
            .join("nodes")
            .join(node)
            .join("sandboxes");
        std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
            let record: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
            let name = record["name"].as_str()?;
            if record["namespace"] != "kube-system" || !name.starts_with("weft-agent-") {
                return None;
            }
            let pid = record["containers"]["agent"]["pid"].as_u64()?;
            Some((name.to_string(), u32::try_from(pid).ok()?))
        })
    }

    /// The pid of the node's running agent, waiting for one.
    pub fn agent_pid(&self, node: &str) -> u32 {
        wait_for(|| self.agent_record(node).is_some());
        self.agent_record(node).map(|(_, pid)| pid).unwrap()
    }

    /// The current run's log of the node's agent (its pod's `agent` container), empty if none
    /// yet.
    pub fn agent_log(&self, node: &str) -> String {
        match self.agent_record(node) {
            Some((pod, _)) => self.log(&format!("kube-system_{pod}_agent")),
            None => String::new(),
        }
    }

    /// A daemon's log file (`kubelet-NODE`, `controller`, `NAMESPACE_POD_CONTAINER`), empty if
    /// not there yet.
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

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.weft(&["lab", "down"]);
    }
}

/// `n` in base 36, for short lab names.
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

/// The workspace's root directory (commands run there, so `examples/...` paths work).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The named network namespaces on this machine (anyone's).
pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A pod's `status.podIP` (empty when it has none yet).
pub fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// An object's `metadata.name`.
pub fn name_of(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
