//! `weft lab up` and `weft lab down`: build a cluster from a config and manifests, and remove
//! exactly what was built. Up checks everything it can before it creates anything, and undoes
//! what it made if a later step fails.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_model::config::ClusterConfig;
use weft_model::object::Object;
use weft_sources::{ApplyResult, Store};

use crate::layout::Layout;
use crate::{process, topology, LabError};

/// What `up` reports back.
pub struct UpReport {
    pub layout: Layout,
    /// Where the lab's API server listens on this machine.
    pub api_url: String,
    pub applied: Vec<ApplyResult>,
    /// Pods that were not ready when the wait ran out: (namespace/name, why).
    pub not_ready: Vec<(String, String)>,
}

/// Build the lab. `objects` were parsed (and so validated) by the caller.
pub fn up(
    config: &ClusterConfig,
    objects: Vec<Object>,
    state_root: &Path,
    wait: Duration,
) -> Result<UpReport, LabError> {
    config.validate()?;
    let layout = Layout::new(config.name.clone(), state_root);
    if layout.dir().exists() || !topology::lab_namespaces(&layout).is_empty() {
        return Err(LabError::AlreadyUp {
            name: config.name.to_string(),
            dir: layout.dir().to_path_buf(),
        });
    }
    crate::cni_plugin_dir()?;

    let built = build(&layout, config, objects);
    let applied = match built {
        Ok(applied) => applied,
        Err(e) => {
            // Nothing half-made stays behind.
            let _ = down(&layout);
            return Err(e);
        }
    };
    let not_ready = wait_ready(&layout, wait)?;
    let api_url = crate::apiserver::wait_listening(&layout, Duration::from_secs(5))?;
    Ok(UpReport {
        layout,
        api_url,
        applied,
        not_ready,
    })
}

fn build(
    layout: &Layout,
    config: &ClusterConfig,
    objects: Vec<Object>,
) -> Result<Vec<ApplyResult>, LabError> {
    private_state_dir(layout)?;
    fs::create_dir_all(layout.logs_dir())
        .map_err(|e| LabError::io(format!("creating {}", layout.dir().display()), e))?;
    fs::write(layout.config_file(), config.to_yaml())
        .map_err(|e| LabError::io("writing the cluster config", e))?;
    let store = open_store(layout, config)?;
    // weft itself, from the manifests a real cluster installs (deploy/), stored after the
    // user's objects (below), but installed first as far as those can tell: their Ingresses
    // without a class get the default IngressClass, as if created through the API afterwards.
    let (ca_cert, ca_key) = cluster_ca(layout)?;
    let weft = crate::deploy::objects(config, Some((&ca_cert, &ca_key)))?;
    let objects = with_default_ingress_class(objects, &weft)?;
    // The `kubernetes` Service first, so it holds the service CIDR's first address as in every
    // cluster; then the user's objects: a bad manifest must fail before any namespace exists.
    store.apply(crate::apiserver::kubernetes_service(config)?)?;
    let applied = store.apply(objects)?;
    store.apply(
        SYSTEM_NAMESPACES
            .iter()
            .map(|ns| namespace_object(ns))
            .collect::<Result<Vec<_>, _>>()?,
    )?;
    store.apply(weft)?;

    topology::create_fabric(layout, config)?;
    topology::create_outside(layout)?;
    start_outside_server(layout)?;
    crate::apiserver::start(layout, config)?;
    // Every node registers before the controller starts, so the scheduler spreads the pods
    // over all of them from the first pass.
    for _ in 0..config.nodes {
        crate::nodes::add(layout, config, &store, &[])?;
    }
    crate::supervise::spawn_controller(layout)?;
    // The load-balancer speaker routes LoadBalancer addresses from the fabric to the nodes.
    crate::supervise::spawn_speaker(layout)?;
    crate::supervise::begin(layout)?;
    Ok(applied)
}

/// `objects` with the DefaultIngressClass admission applied to their Ingresses, the classes
/// being theirs and weft's own.
fn with_default_ingress_class(
    objects: Vec<Object>,
    weft: &[Object],
) -> Result<Vec<Object>, LabError> {
    let classes: Vec<serde_json::Value> = objects
        .iter()
        .chain(weft)
        .filter(|o| o.kind() == "IngressClass")
        .map(Object::to_json)
        .collect();
    let Some(default) = weft_model::ingress_class::default_class(&classes) else {
        return Ok(objects);
    };
    objects
        .into_iter()
        .map(|object| {
            if object.kind() != "Ingress" {
                return Ok(object);
            }
            let mut value = object.to_json();
            if !weft_model::ingress_class::admit(&mut value, Some(&default)) {
                return Ok(object);
            }
            Object::from_json(value).map_err(|e| LabError::Invalid(format!("an Ingress: {e}")))
        })
        .collect()
}

/// The namespaces every Kubernetes cluster starts with.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

fn namespace_object(name: &str) -> Result<Object, LabError> {
    Object::from_json(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}))
    .map_err(|e| LabError::Invalid(format!("namespace {name}: {e}")))
}

/// The outside host's servers: agnhost netexec (HTTP on 80 answering /clientip with the caller's
/// address, UDP echo on 8081), so pods' egress can be checked from the receiving end, and its DNS
/// server, the lab's upstream resolver ([`crate::outside_dns`]).
fn start_outside_server(layout: &Layout) -> Result<(), LabError> {
    fs::write(
        outside_resolv_conf(layout),
        crate::outside_dns::node_resolv_conf(),
    )
    .map_err(|e| LabError::io("writing outside resolv.conf", e))?;
    crate::outside_dns::start(layout)?;
    let workload = weft_workloads::Workload::Agnhost(weft_workloads::AgnhostConfig {
        mode: weft_workloads::AgnhostMode::Netexec,
        tcp_ports: vec![80],
        udp_ports: vec![8081],
    });
    let mut args = vec!["workload".to_string()];
    args.extend(workload.to_args());
    spawn_outside(
        layout,
        crate::weft_exe()?,
        args,
        "outside",
        "the outside server",
    )
}

/// The outside host's resolv.conf (its own DNS server).
fn outside_resolv_conf(layout: &Layout) -> PathBuf {
    layout.dir().join("outside-resolv.conf")
}

/// `program args` as a process of the outside host; `detach`: in a session of its own.
fn outside_process(
    layout: &Layout,
    program: PathBuf,
    args: Vec<String>,
    detach: bool,
) -> crate::container::ContainerProcess {
    crate::container::ContainerProcess {
        program,
        args,
        env: vec![(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        )],
        hostname: "outside".into(),
        netns: Path::new("/run/netns").join(layout.outside_netns()),
        resolv_conf: outside_resolv_conf(layout),
        detach,
        service_account: None,
        mounts: Vec::new(),
    }
}

/// Starts `program args` detached on the outside host, logging to `<log>.log` in the lab's logs
/// (the lab's `down` stops every process in its namespaces); `what` names it in errors.
pub(crate) fn spawn_outside(
    layout: &Layout,
    program: PathBuf,
    args: Vec<String>,
    log: &str,
    what: &str,
) -> Result<(), LabError> {
    let log = layout.logs_dir().join(format!("{log}.log"));
    let out = fs::File::create(&log)
        .map_err(|e| LabError::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("duplicating a log fd", e))?;
    outside_process(layout, program, args, true)
        .command()?
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| LabError::io(format!("starting {what}"), e))?;
    Ok(())
}

/// Start `weft <args>` detached, optionally inside a node namespace, logging to the lab's logs.
pub(crate) fn spawn_daemon(
    layout: &Layout,
    args: &[&str],
    netns: Option<&str>,
    log: &str,
    pid_file: &Path,
) -> Result<(), LabError> {
    let exe = crate::weft_exe()?;
    let log_path = layout.logs_dir().join(format!("{log}.log"));
    // Appended to, so a restarted daemon's log follows the previous one's.
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| LabError::io(format!("creating {}", log_path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("duplicating a log fd", e))?;
    let ns_file = match netns {
        Some(name) => Some(
            fs::File::open(Path::new("/run/netns").join(name))
                .map_err(|e| LabError::io(format!("opening namespace {name}"), e))?,
        ),
        None => None,
    };
    let mut cmd = Command::new(exe);
    cmd.args(["--lab", layout.name().as_str()])
        .args(args)
        .env(
            "WEFT_STATE_DIR",
            layout.dir().parent().unwrap_or(Path::new("/")),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only raw system calls between fork and exec; `ns_file` stays open until exec.
    unsafe {
        cmd.pre_exec(move || {
            crate::process::unblock_signals()?;
            if let Some(f) = &ns_file {
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("starting weft {}", args.join(" ")), e))?;
    fs::create_dir_all(pid_file.parent().unwrap_or(Path::new("/")))
        .map_err(|e| LabError::io("creating a pid file dir", e))?;
    fs::write(pid_file, child.id().to_string())
        .map_err(|e| LabError::io(format!("writing {}", pid_file.display()), e))?;
    Ok(())
}

/// Wait until every pod is ready and every Deployment has its replicas (or `wait` runs out).
pub fn wait_ready(layout: &Layout, wait: Duration) -> Result<Vec<(String, String)>, LabError> {
    let store = Store::open(&layout.store_dir())?;
    let deadline = Instant::now() + wait;
    let mut stuck_since: Option<Instant> = None;
    loop {
        let (not_ready, only_unschedulable) = unready(&store)?;
        if not_ready.is_empty() || Instant::now() >= deadline {
            return Ok(not_ready);
        }
        // Pods no node can take will not become ready by waiting: once every unready pod has
        // been unschedulable for a second, say so instead of sitting out the whole wait.
        if only_unschedulable {
            let since = *stuck_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return Ok(not_ready);
            }
        } else {
            stuck_since = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unschedulable(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// What is not ready yet, with why; and whether there are unready pods and every one of them
/// is unschedulable.
fn unready(store: &Store) -> Result<(Vec<(String, String)>, bool), LabError> {
    let mut out = Vec::new();
    let (mut unready_pods, mut stuck_pods) = (0, 0);
    for o in store.list_all()? {
        match o {
            Object::Pod(p) => {
                let phase = weft_model::pod::phase(&p).to_string();
                if !weft_model::pod::is_ready(&p) && phase != "Succeeded" {
                    unready_pods += 1;
                    stuck_pods += usize::from(unschedulable(&p));
                    let why = p
                        .status
                        .as_ref()
                        .and_then(|s| {
                            s.container_statuses
                                .iter()
                                .flatten()
                                .find_map(|c| {
                                    c.state.as_ref()?.waiting.as_ref().map(|w| {
                                        format!(
                                            "{}: {}",
                                            w.reason.clone().unwrap_or_default(),
                                            w.message.clone().unwrap_or_default()
                                        )
                                    })
                                })
                                .or_else(|| {
                                    s.conditions
                                        .iter()
                                        .flatten()
                                        .find_map(|c| c.message.clone())
                                })
                        })
                        .unwrap_or(phase);
                    out.push((
                        format!(
                            "{}/{}",
                            p.metadata.namespace.unwrap_or_default(),
                            p.metadata.name.unwrap_or_default()
                        ),
                        why,
                    ));
                }
            }
            Object::Deployment(d) => {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let have = d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                if have < want {
                    out.push((
                        format!(
                            "{}/{}",
                            d.metadata.namespace.unwrap_or_default(),
                            d.metadata.name.unwrap_or_default()
                        ),
                        format!("deployment has {have}/{want} ready replicas"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok((out, unready_pods > 0 && stuck_pods == unready_pods))
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub processes: usize,
    pub namespaces: Vec<String>,
    pub state_removed: bool,
}

/// Remove everything the lab made: its processes, its namespaces (pods, nodes, fabric), its state.
/// Safe to run twice, and on a lab that failed half-way up.
pub fn down(layout: &Layout) -> Result<DownReport, LabError> {
    let mut report = DownReport::default();
    crate::supervise::end(layout);
    // The daemons first, so nothing recreates what we remove.
    // The API server and the controller restart each other: stop both before either notices.
    let mut pid_files = vec![
        layout.apiserver_pid_file(),
        layout.controller_pid_file(),
        layout.speaker_pid_file(),
    ];
    if let Ok(nodes) = fs::read_dir(layout.dir().join("nodes")) {
        for node in nodes.flatten() {
            pid_files.push(node.path().join("kubelet.pid"));
        }
    }
    for pid_file in pid_files {
        if let Some(pid) = process::running_daemon(&pid_file) {
            process::kill_and_wait(pid, Duration::from_secs(2));
            report.processes += 1;
        }
    }
    for name in topology::lab_namespaces(layout) {
        let path = PathBuf::from("/run/netns").join(&name);
        report.processes += process::pids_in_netns(&path).len();
        process::kill_in_netns(&path);
        weft_dataplane::NetNs::delete(&name).map_err(|e| LabError::Dataplane {
            what: format!("deleting namespace {name}"),
            error: e,
        })?;
        report.namespaces.push(name);
    }
    if layout.dir().exists() {
        fs::remove_dir_all(layout.dir())
            .map_err(|e| LabError::io(format!("removing {}", layout.dir().display()), e))?;
        report.state_removed = true;
    }
    Ok(report)
}

/// One lab found on this machine.
pub struct LabSummary {
    pub name: String,
    pub nodes: usize,
    pub api_running: bool,
    pub server: Option<String>,
    pub kubeconfig: PathBuf,
}

/// The labs under `state_root` (each a directory with a cluster config), sorted by name.
pub fn list(state_root: &Path) -> Result<Vec<LabSummary>, LabError> {
    let entries = match fs::read_dir(state_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("reading {}", state_root.display()), e)),
    };
    let mut labs = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let layout = Layout::new(name, state_root);
        if !layout.config_file().exists() {
            continue;
        }
        let nodes = fs::read_dir(layout.dir().join("nodes"))
            .map(|d| d.count())
            .unwrap_or(0);
        let port = fs::read_to_string(layout.apiserver_port_file()).ok();
        labs.push(LabSummary {
            name: layout.name().to_string(),
            nodes,
            api_running: process::running_daemon(&layout.apiserver_pid_file()).is_some(),
            server: port.map(|p| format!("https://127.0.0.1:{}", p.trim())),
            kubeconfig: layout.kubeconfig_file(),
        });
    }
    labs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(labs)
}

/// Makes an interrupt (Ctrl-C, SIGTERM, SIGHUP) during `up` remove what was half made, then
/// exit 130. Call before any thread is started; the returned guard disarms it once `up` is
/// done, so an interrupt after that leaves the lab alone.
pub fn remove_on_interrupt(layout: Layout) -> Result<InterruptGuard, LabError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    // Blocked in this thread and so in every thread started after it; the waiter below takes
    // them synchronously, so no work happens in a signal handler.
    set.thread_block()
        .map_err(|e| LabError::io("blocking signals", std::io::Error::from(e)))?;
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let waiter_armed = armed.clone();
    std::thread::spawn(move || {
        let Ok(sig) = set.wait() else { return };
        if waiter_armed.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\n{sig}: removing the half-made lab {}", layout.name());
            let _ = down(&layout);
        }
        std::process::exit(130);
    });
    Ok(InterruptGuard { armed })
}

/// Keeps [`remove_on_interrupt`] armed until dropped or disarmed.
pub struct InterruptGuard {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl InterruptGuard {
    /// The lab is complete: an interrupt now only ends the command.
    pub fn disarm(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Open a running lab's layout, config and store.
pub fn open(
    name: &weft_model::config::ClusterName,
    state_root: &Path,
) -> Result<(Layout, ClusterConfig, Store), LabError> {
    let layout = Layout::new(name.clone(), state_root);
    let config_path = layout.config_file();
    let text = fs::read_to_string(&config_path).map_err(|_| LabError::NotUp {
        name: name.to_string(),
        dir: layout.dir().to_path_buf(),
    })?;
    let config = ClusterConfig::from_yaml(&config_path.display().to_string(), &text)?;
    private_state_dir(&layout)?;
    let store = open_store(&layout, &config)?;
    Ok((layout, config, store))
}

/// Makes the lab's state directory root only (0700), or closes it again if it was found open:
/// it holds the CA and admin keys, tokens, every object (Secrets too) and each node's pod IP
/// map. Its parent, the state root, may be a shared directory and is left alone.
fn private_state_dir(layout: &Layout) -> Result<(), LabError> {
    weft_apiserver::pki::create_private_dir(layout.dir()).map_err(|e| match e {
        weft_apiserver::pki::PkiError::Io { path, source } => {
            LabError::io(format!("making {} root only", path.display()), source)
        }
        other => LabError::Invalid(other.to_string()),
    })
}

/// The lab's store, with the Service registry admitting what users apply (the API server's part).
fn open_store(layout: &Layout, config: &ClusterConfig) -> Result<Store, LabError> {
    let registry = std::sync::Arc::new(crate::registry::ServiceRegistry::new(config));
    Ok(Store::open(&layout.store_dir())?
        .with_admission(registry)
        .with_quota(config.object_quota as usize))
}

/// Run a command on the lab's outside host (foreground, its exit code returned).
pub fn run_outside(layout: &Layout, command: &[String]) -> Result<i32, LabError> {
    let first = command
        .first()
        .ok_or_else(|| LabError::Invalid("no command given".into()))?;
    let program = crate::container::find_program(first)
        .ok_or_else(|| LabError::Invalid(format!("command {first:?} not found on PATH")))?;
    let status = outside_process(layout, program, command[1..].to_vec(), false)
        .command()?
        .status()
        .map_err(|e| LabError::io(format!("running {first} outside"), e))?;
    Ok(status.code().unwrap_or(128))
}

/// The lab's cluster CA (certificate and key PEM), made on first use in its PKI directory
/// (private): the ingress controller issues certificates from it for Ingresses that ask a
/// cert-manager issuer for one. Separate from the API server's CA, which clients trust for the
/// API itself.
pub fn cluster_ca(layout: &Layout) -> Result<(String, String), LabError> {
    let dir = layout.pki_dir();
    let (cert, key) = (dir.join("cluster-ca.crt"), dir.join("cluster-ca.key"));
    if let (Ok(c), Ok(k)) = (fs::read_to_string(&cert), fs::read_to_string(&key)) {
        return Ok((c, k));
    }
    let (c, k) = weft_ingress::issuer::new_ca(crate::deploy::CLUSTER_CA_NAME)
        .map_err(|e| LabError::Invalid(format!("making the cluster CA: {e}")))?;
    weft_apiserver::pki::create_private_dir(&dir)
        .map_err(|e| LabError::Invalid(format!("the PKI directory: {e}")))?;
    for (path, text) in [(&cert, &c), (&key, &k)] {
        weft_apiserver::pki::write_private(path, text.as_bytes())
            .map_err(|e| LabError::Invalid(format!("writing {}: {e}", path.display())))?;
    }
    Ok((c, k))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_directory_is_root_only_when_made_and_when_opened() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let layout = Layout::new("perm".parse().unwrap(), &root.path().join("labs"));
        private_state_dir(&layout).unwrap();
        assert_eq!(mode(layout.dir()), 0o700);
        assert_eq!(mode(&root.path().join("labs")), 0o700, "made by weft");
        assert_eq!(mode(root.path()), 0o755, "not weft's: left alone");

        // A lab left open to others (by an older weft, or by hand) is closed when next opened.
        let config = ClusterConfig {
            name: "perm".parse().unwrap(),
            ..ClusterConfig::default()
        };
        fs::write(layout.config_file(), config.to_yaml()).unwrap();
        fs::set_permissions(layout.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let (opened, read, _store) = open(&config.name, &root.path().join("labs")).unwrap();
        assert_eq!(read, config);
        assert_eq!(mode(opened.dir()), 0o700);
    }
}
