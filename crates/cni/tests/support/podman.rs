//! A private podman (Debian's podman 4.3, runc, CNI network backend) whose storage, state,
//! network configs and plugin directory all live in one temp dir, and which runs inside a test
//! network namespace, so the host-side veths, routes, iptables rules and ip_forward that the CNI
//! plugins set up never reach the machine's root namespace.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

use weft_testutil::{cleanup, describe, require_tool, run, run_ok, TestNetns};

use super::{reference_plugin, weft_cni};

/// The image every test container runs: a rootfs of Debian's busybox-static, imported by `new`.
pub const IMAGE: &str = "localhost/weft-busybox:test";

/// The reference plugins put next to weft-cni in the private plugin directory.
const REFERENCE_PLUGINS: &[&str] = &["loopback", "portmap", "bridge", "host-local"];

/// A container this harness started, with what Drop needs if `podman rm` cannot remove it.
struct Started {
    id: String,
    conmon_pid: u32,
    pid: u32,
    /// The network namespace podman bind-mounted for the container (under /run/netns).
    sandbox: PathBuf,
}

/// A running container as the tests see it.
pub struct Container {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// One private podman: `podman <args>` through [`Podman::command`] always gets this instance's
/// config, storage and namespace. Drop removes its containers, then everything else it made.
pub struct Podman {
    dir: TempDir,
    network: String,
    started: Vec<Started>,
    // Declared last so it is dropped last: containers and their veths go before the namespace.
    host: TestNetns,
}

impl Podman {
    /// Sets up a private podman inside `host` with one CNI network named `network`, and imports
    /// the busybox image. `plugins` returns the conflist entries given a private directory for
    /// plugin state (e.g. weft's IPAM dataDir), removed with everything else on drop.
    pub fn new(host: TestNetns, network: &str, plugins: impl FnOnce(&Path) -> Vec<Value>) -> Self {
        require_tool("podman", "podman");
        require_tool("runc", "runc");
        require_tool("tar", "tar");
        let dir = tempfile::Builder::new()
            .prefix("weft-podman-")
            .tempdir()
            .expect("create podman temp dir");
        let podman = Self {
            dir,
            network: network.to_owned(),
            started: Vec::new(),
            host,
        };
        let state = podman.scratch("plugin-state");
        podman.write_config(plugins(&state));
        podman.import_busybox();
        podman
    }

    pub fn host(&self) -> &TestNetns {
        &self.host
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    /// A scratch directory inside the podman temp dir (e.g. for weft's IPAM dataDir).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).expect("create scratch dir");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, plugins: Vec<Value>) {
        let plugin_dir = self.path("cni-plugins");
        let network_dir = self.path("cni-networks");
        fs::create_dir_all(&plugin_dir).expect("create plugin dir");
        fs::create_dir_all(&network_dir).expect("create network config dir");
        symlink(weft_cni(), plugin_dir.join("weft-cni")).expect("link weft-cni");
        for name in REFERENCE_PLUGINS {
            symlink(reference_plugin(name), plugin_dir.join(name)).expect("link reference plugin");
        }

        let conflist = json!({ "cniVersion": "1.0.0", "name": self.network, "plugins": plugins });
        fs::write(
            network_dir.join(format!("{}.conflist", self.network)),
            serde_json::to_vec_pretty(&conflist).expect("serialize conflist"),
        )
        .expect("write conflist");

        // Seen on these machines: crun fails on the hybrid cgroup layout, so runc + cgroupfs; and
        // the process may not raise rlimits (no CAP_SYS_RESOURCE), so containers get limits
        // below ours instead of podman's defaults (nofile 1048576), which runc cannot set.
        // File locks keep podman's lock state in our dir instead of /dev/shm/libpod_lock.
        let containers_conf = format!(
            r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp}"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{networks}"
"#,
            tmp = self.path("tmp").display(),
            plugins = plugin_dir.display(),
            networks = network_dir.display(),
        );
        fs::write(self.path("containers.conf"), containers_conf).expect("write containers.conf");

        let storage_conf = format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            self.path("runroot").display(),
            self.path("root").display(),
        );
        fs::write(self.path("storage.conf"), storage_conf).expect("write storage.conf");
    }

    /// `podman <args>` with this instance's config, inside the host namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.host.command("podman");
        cmd.env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("TMPDIR", self.scratch("var-tmp"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(args);
        cmd
    }

    /// Runs podman and returns stdout, failing the test with podman's output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    /// Runs podman and returns whatever happened, for tests that inspect failures.
    pub fn output(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Imports a rootfs of Debian's busybox-static (/bin/busybox and one symlink per applet).
    fn import_busybox(&self) {
        let busybox = require_tool("busybox", "busybox-static");
        let rootfs = self.path("rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).expect("create rootfs/bin");
        // The image has no libc, so the binary must be the static build.
        fs::copy(&busybox, bin.join("busybox")).expect("copy busybox");
        let applets = run_ok(Command::new(&busybox).arg("--list"));
        for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
            symlink("busybox", bin.join(applet)).expect("link busybox applet");
        }
        let tar = self.path("rootfs.tar");
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        let tar = tar.to_str().expect("temp path is UTF-8");
        self.ok(&["import", tar, IMAGE]);
    }

    /// Starts a detached container on the test network and returns its name and address.
    pub fn start(&mut self, name: &str, extra: &[&str], argv: &[&str]) -> Container {
        let network = self.network.clone();
        let mut args = vec!["run", "-d", "--name", name, "--network", &network];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(argv);
        let output = self.output(&args);
        // Record it before judging the run: a container that failed to start may still exist.
        self.adopt(name);
        assert!(
            output.status.success(),
            "container {name} did not start: {}",
            describe(&self.command(&args), &output)
        );
        self.container(name)
    }

    /// A running container's name and the address podman got from the CNI result.
    pub fn container(&self, name: &str) -> Container {
        let ip = self.inspect(
            name,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        );
        let ip = ip
            .parse()
            .unwrap_or_else(|e| panic!("container {name}: podman reports IP {ip:?}: {e}"));
        Container {
            name: name.to_owned(),
            ip,
        }
    }

    /// `podman inspect -f <format> <name>`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "-f", format, name]).trim().to_owned()
    }

    /// `podman exec <name> <argv>`, returning the whole output.
    pub fn exec(&self, name: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend_from_slice(argv);
        self.output(&args)
    }

    /// `podman rm -f <name>`, which tears the container's network down through the CNI DEL chain.
    pub fn remove(&self, name: &str) {
        self.ok(&["rm", "--force", "--time", "0", name]);
    }

    /// Remembers a container started outside [`Podman::start`] (e.g. from several threads) so
    /// that Drop can clean up after it even if `podman rm` fails.
    pub fn adopt(&mut self, name: &str) {
        let output = self.output(&[
            "inspect",
            "-f",
            "{{.Id}} {{.State.ConmonPid}} {{.State.Pid}} {{.NetworkSettings.SandboxKey}}",
            name,
        ]);
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<&str> = text.split_whitespace().collect();
        if let [id, conmon, pid, rest @ ..] = fields.as_slice() {
            self.started.push(Started {
                id: (*id).to_owned(),
                conmon_pid: conmon.parse().unwrap_or(0),
                pid: pid.parse().unwrap_or(0),
                sandbox: rest.first().map(PathBuf::from).unwrap_or_default(),
            });
        }
    }

    /// Kills `pid` only if it is still one of ours: conmon names the container id on its command
    /// line, and a container process has its root inside our storage dir.
    fn kill_if_ours(&self, pid: u32, container_id: &str) {
        if pid == 0 {
            return;
        }
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let root = fs::read_link(proc_dir.join("root")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(container_id)
            || root.starts_with(self.dir.path());
        if ours {
            let Ok(raw) = i32::try_from(pid) else { return };
            if let Err(e) = kill(Pid::from_raw(raw), Signal::SIGKILL) {
                eprintln!("cleanup: cannot kill {pid} of container {container_id}: {e}");
            }
        }
    }

    /// Processes whose command line names our temp dir: conmon, and the `podman container
    /// cleanup` that conmon starts when a container exits, which would otherwise recreate
    /// storage dirs after the temp dir is gone.
    fn processes_using_dir(&self) -> Vec<u32> {
        let needle = self.dir.path().to_string_lossy().into_owned();
        let me = std::process::id();
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&needle)
            })
            .collect()
    }

    /// Waits (bounded) for those processes to finish on their own, then kills what is left.
    fn reap_stragglers(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut left = self.processes_using_dir();
        while !left.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
            left = self.processes_using_dir();
        }
        for pid in left {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            eprintln!(
                "cleanup: killing podman helper {pid} still using {}",
                self.dir.path().display()
            );
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }

    /// Mount points under our temp dir (container shm mounts), deepest first.
    fn mounts_under(dir: &Path) -> Vec<String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<String> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| Path::new(point).starts_with(dir))
            .map(str::to_owned)
            .collect();
        mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
        mounts
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The normal path: podman stops the containers and runs the CNI DEL chain.
        cleanup(&mut self.command(&["rm", "--all", "--force", "--time", "0"]));
        // Whatever podman could not remove: only the processes, namespaces and mounts it
        // reported for containers this harness started.
        for started in &self.started {
            self.kill_if_ours(started.conmon_pid, &started.id);
            self.kill_if_ours(started.pid, &started.id);
            if started.sandbox.starts_with("/run/netns") && started.sandbox.exists() {
                cleanup(Command::new("umount").arg("-l").arg(&started.sandbox));
                if let Err(e) = fs::remove_file(&started.sandbox) {
                    eprintln!("cleanup: cannot remove {}: {e}", started.sandbox.display());
                }
            }
        }
        // libcni caches each ADD result under /var/lib/cni/results/<network>-<id>-<ifname>; the
        // network name is unique to this test.
        if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
            let prefix = format!("{}-", self.network);
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        self.reap_stragglers();
        for point in Self::mounts_under(self.dir.path()) {
            cleanup(Command::new("umount").arg("-l").arg(point));
        }
        // Fields drop next: the temp dir, then the host namespace with any veth left in it.
    }
}
