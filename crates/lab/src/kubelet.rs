//! The lab's kubelet: one per node, running inside the node's network namespace. It watches the
//! store for pods bound to its node, gives each a sandbox (netns + CNI ADD) and runs its containers
//! as processes, restarts them per `restartPolicy`, tears down pods that are gone, and writes each
//! pod's status back to the store, as the real kubelet does through the API server. Readiness
//! probes run from here too (from the node, as a real kubelet's do) and decide whether a running
//! container counts as ready.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use serde_json::json;
use weft_model::config::ClusterConfig;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;
use weft_workloads::{DeclaredPort, Protocol};

use crate::cni_client::{CniNetwork, PodRef};
use crate::container::{find_program, pod_resolv_conf, ContainerProcess};
use crate::layout::Layout;
use crate::probe::{Prober, Timing};
use crate::sandbox::{Sandbox, SandboxRecords};
use crate::{process, LabError};

pub struct Kubelet {
    layout: Layout,
    config: ClusterConfig,
    node: String,
    store: Store,
    cni: CniNetwork,
    records: SandboxRecords,
    sandboxes: BTreeMap<String, Sandbox>,
    /// Children we started in this run (reaped here); adopted ones are watched by pid.
    children: HashMap<(String, String), Child>,
    weft_exe: PathBuf,
    node_ip: Option<String>,
    /// Readiness probers by (pod uid, container name), for running containers with a probe.
    probers: HashMap<(String, String), ProbeSlot>,
    /// Whether the node's network has been up (see `sync`).
    network_up: bool,
}

/// A prober belongs to one run of a container with one probe: a restart (new pid) or a changed
/// probe starts over, not ready.
struct ProbeSlot {
    pid: u32,
    probe: Probe,
    prober: Prober,
}

impl Kubelet {
    pub fn new(layout: Layout, config: ClusterConfig, node: &str) -> Result<Kubelet, LabError> {
        let store = Store::open(&layout.store_dir())?;
        let node_obj = store
            .get(&ObjectKey {
                kind: "Node".into(),
                namespace: None,
                name: node.to_string(),
            })?
            .ok_or_else(|| LabError::Invalid(format!("node {node} is not in the store")))?;
        let pod_cidr = match &node_obj {
            Object::Node(n) => n.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            _ => None,
        }
        .ok_or_else(|| LabError::Invalid(format!("node {node} has no spec.podCIDR")))?;
        let node_ip = node_obj
            .as_node()
            .and_then(weft_model::node::internal_ip)
            .map(|ip| ip.to_string());
        let pod_cidr = pod_cidr.parse().map_err(|e| {
            LabError::Invalid(format!("node {node}: spec.podCIDR {pod_cidr:?}: {e}"))
        })?;
        let weft_exe = crate::weft_exe()?;
        let plugin_dir = crate::cni_plugin_dir()?;
        let cni = CniNetwork::for_node(
            &plugin_dir,
            pod_cidr,
            &layout.ipam_dir(node),
            config.pod_mtu(),
        );
        let records = SandboxRecords::open(layout.sandboxes_dir(node))?;
        let sandboxes = records.load_all()?;
        fs::create_dir_all(layout.resolv_dir(node))
            .map_err(|e| LabError::io("creating resolv dir", e))?;
        fs::create_dir_all(layout.logs_dir()).map_err(|e| LabError::io("creating logs dir", e))?;
        Ok(Kubelet {
            layout,
            config,
            node: node.to_string(),
            store,
            cni,
            records,
            sandboxes,
            children: HashMap::new(),
            weft_exe,
            node_ip,
            probers: HashMap::new(),
            network_up: false,
        })
    }

    /// Reconcile forever: on every store change, and twice a second to notice exited processes.
    pub fn run(mut self) -> Result<(), LabError> {
        let mut watch = self.store.watch(self.store.revision()?)?;
        loop {
            if let Err(e) = self.sync() {
                tracing::warn!(node = %self.node, "sync failed: {e}");
            }
            watch.wait(Duration::from_millis(500))?;
        }
    }

    /// One reconcile pass.
    pub fn sync(&mut self) -> Result<(), LabError> {
        let pods: Vec<Pod> = crate::list_pods(&self.store)?
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node.as_str())
            })
            .collect();
        let wanted: BTreeMap<String, &Pod> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.clone().map(|uid| (uid, p)))
            .collect();

        // Pods that are gone (or were replaced under the same name with a new uid).
        let stale: Vec<String> = self
            .sandboxes
            .keys()
            .filter(|uid| !wanted.contains_key(*uid))
            .cloned()
            .collect();
        for uid in stale {
            self.teardown(&uid)?;
        }
        // The kubelet's NetworkReady: a pod on the pod network gets no sandbox until the node's
        // network is up, here until weft's agent on this node has been Ready (its routes,
        // overlay and Service table programmed; a real kubelet waits for the CNI config the
        // network plugin writes). Once up it stays up, as that config does: the kernel keeps
        // the node's network while the agent restarts. A restarted kubelet that already runs
        // pod-network sandboxes knows the network was up. hostNetwork pods, the agent itself
        // among them, start regardless.
        self.network_up |= pods
            .iter()
            .any(|p| is_weft_agent(p) && weft_model::pod::is_ready(p))
            || self.sandboxes.values().any(|s| !s.host_network);
        let network_ready = self.network_up;
        for (uid, pod) in wanted {
            if !network_ready
                && !weft_model::pod::host_network(pod)
                && !self.sandboxes.contains_key(&uid)
            {
                continue;
            }
            if let Err(e) = self.sync_pod(&uid, pod) {
                tracing::warn!(node = %self.node, "pod {}: {e}", pod_name(pod));
                self.report_failure(pod, &e)?;
            }
        }
        Ok(())
    }

    fn sync_pod(&mut self, uid: &str, pod: &Pod) -> Result<(), LabError> {
        if !self.sandboxes.contains_key(uid) {
            let pod_ref = PodRef {
                namespace: pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: uid.to_string(),
            };
            let resolv = self.resolv_path(uid);
            let text = pod_resolv_conf(
                pod,
                self.config.dns_service_ip,
                &self.config.cluster_domain,
                &crate::outside_dns::node_resolv_conf(),
            );
            fs::write(&resolv, text)
                .map_err(|e| LabError::io(format!("writing {}", resolv.display()), e))?;
            if spec_automounts(pod) {
                crate::apiserver::write_service_account(
                    &self.layout,
                    &self.layout.service_account_dir(&self.node, uid),
                    &pod_ref.namespace,
                )?;
            }
            let sandbox = if weft_model::pod::host_network(pod) {
                let ip = self
                    .node_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| {
                        LabError::Invalid(format!("node {} has no InternalIP", self.node))
                    })?;
                Sandbox::host(pod_ref, self.layout.node_netns(&self.node), ip)
            } else {
                Sandbox::create(pod_ref, self.layout.pod_netns(uid), &self.cni)?
            };
            self.records.save(&sandbox)?;
            self.sandboxes.insert(uid.to_string(), sandbox);
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut changed = false;
        // Init containers run one after another, each to success, before any container starts
        // (a failed one is retried with back-off). Their records are kept as `init:<name>`.
        let mut initialized = true;
        for init in spec.init_containers.iter().flatten() {
            let mut as_run = init.clone();
            as_run.name = format!("init:{}", init.name);
            changed |= self.sync_container(uid, pod, &as_run, "OnFailure")?;
            let done = self
                .sandboxes
                .get(uid)
                .and_then(|s| s.containers.get(&as_run.name))
                .is_some_and(|r| r.pid.is_none() && r.last_exit_code == Some(0));
            if !done {
                initialized = false;
                break;
            }
        }
        for container in spec.containers.iter().filter(|_| initialized) {
            changed |= self.sync_container(uid, pod, container, &restart_policy)?;
        }
        if changed {
            if let Some(sandbox) = self.sandboxes.get(uid) {
                self.records.save(sandbox)?;
            }
        }
        let verdicts = self.sync_probes(uid, pod);
        self.write_status(uid, pod, &verdicts)
    }

    /// Advances the readiness probers of a pod's running containers and returns their verdicts
    /// (only containers that have a readinessProbe appear).
    fn sync_probes(&mut self, uid: &str, pod: &Pod) -> BTreeMap<String, bool> {
        let Some(sandbox) = self.sandboxes.get(uid) else {
            return BTreeMap::new();
        };
        let pod_ip = std::net::IpAddr::V4(sandbox.ip);
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let mut verdicts = BTreeMap::new();
        for c in containers {
            let key = (uid.to_string(), c.name.clone());
            let pid = sandbox.containers.get(&c.name).and_then(|r| r.pid);
            let (Some(pid), Some(probe)) = (pid, c.readiness_probe.as_ref()) else {
                self.probers.remove(&key);
                continue;
            };
            let current = self
                .probers
                .get(&key)
                .is_some_and(|slot| slot.pid == pid && slot.probe == *probe);
            if !current {
                let action = crate::probe::action(probe, c, pod_ip, |command| {
                    self.exec_process(uid, pod, c, command)
                });
                let prober = Prober::new(action, Timing::of(probe), Instant::now());
                let slot = ProbeSlot {
                    pid,
                    probe: probe.clone(),
                    prober,
                };
                self.probers.insert(key.clone(), slot);
            }
            let Some(slot) = self.probers.get_mut(&key) else {
                continue;
            };
            if slot.prober.tick(Instant::now()) {
                tracing::info!(
                    node = %self.node,
                    "pod {} container {}: {}{}",
                    pod_name(pod),
                    c.name,
                    if slot.prober.ready() { "ready" } else { "not ready" },
                    slot.prober.last_failure.as_deref().map(|w| format!(" (readiness probe: {w})")).unwrap_or_default()
                );
            }
            verdicts.insert(c.name.clone(), slot.prober.ready());
        }
        verdicts
    }

    /// An exec probe's command as a process in the container's namespaces, as `weft exec` runs
    /// commands.
    fn exec_process(
        &self,
        uid: &str,
        pod: &Pod,
        c: &Container,
        command: &[String],
    ) -> Result<ContainerProcess, String> {
        let first = command.first().ok_or("exec probe has an empty command")?;
        let program = find_program(first)
            .ok_or_else(|| format!("command {first:?} is not on this machine's PATH"))?;
        Ok(ContainerProcess {
            program,
            args: command[1..].to_vec(),
            env: self.env(uid, pod, c)?,
            hostname: weft_model::pod::hostname(pod).to_string(),
            netns: self.pod_netns_path(uid),
            resolv_conf: self.resolv_path(uid),
            detach: false,
            service_account: self.service_account(uid, pod),
            mounts: self.mounts(uid, pod, c)?,
        })
    }

    /// Start, reap or restart one container. Returns whether its record changed.
    fn sync_container(
        &mut self,
        uid: &str,
        pod: &Pod,
        container: &Container,
        restart_policy: &str,
    ) -> Result<bool, LabError> {
        let key = (uid.to_string(), container.name.clone());
        let record = self
            .sandboxes
            .get(uid)
            .and_then(|s| s.containers.get(&container.name).cloned())
            .unwrap_or_default();
        let mut next = record.clone();

        if let Some(pid) = record.pid {
            let exited = match self.children.get_mut(&key) {
                Some(child) => child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|status| status.code().unwrap_or(128)),
                // Adopted after a kubelet restart: alive while the pid is alive.
                None => (!process::alive(pid)).then_some(-1),
            };
            match exited {
                None => return Ok(false),
                Some(code) => {
                    self.children.remove(&key);
                    next.pid = None;
                    next.last_exit_code = Some(code);
                    next.waiting_reason = Some(if code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    });
                    next.message = Some(format!("exited with code {code}"));
                    let restart = match restart_policy {
                        "Never" => false,
                        "OnFailure" => code != 0,
                        _ => true,
                    };
                    // Crash-loop back-off: 1 s, 2 s, 4 s ... capped at 30 s.
                    next.restart_after = if restart {
                        unix_now() + (1u64 << next.restarts.min(5)).min(30)
                    } else {
                        u64::MAX
                    };
                }
            }
        } else if record.started_at.is_none() || (record.restart_after <= unix_now()) {
            match self.container_process(uid, pod, container)? {
                Ok(process) => {
                    let log = self.layout.logs_dir().join(format!(
                        "{}_{}_{}.log",
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                        pod_name(pod),
                        container.name
                    ));
                    // Each run of a container has a log of its own; the last run's is kept beside
                    // it for `kubectl logs --previous`, as the kubelet keeps one file per restart.
                    if log.exists() {
                        let _ = fs::rename(&log, log.with_extension("previous.log"));
                    }
                    let out = fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .map_err(|e| LabError::io(format!("opening {}", log.display()), e))?;
                    let err = out
                        .try_clone()
                        .map_err(|e| LabError::io("duplicating log fd", e))?;
                    let child = process
                        .command()?
                        .stdin(Stdio::null())
                        .stdout(out)
                        .stderr(err)
                        .spawn()
                        .map_err(|e| {
                            LabError::io(
                                format!(
                                    "starting container {} of pod {}",
                                    container.name,
                                    pod_name(pod)
                                ),
                                e,
                            )
                        })?;
                    if record.started_at.is_some() {
                        next.restarts += 1;
                    }
                    next.pid = Some(child.id());
                    next.started_at = Some(now_rfc3339());
                    next.waiting_reason = None;
                    next.message = None;
                    next.restart_after = 0;
                    self.children.insert(key, child);
                }
                Err((reason, message)) => {
                    next.waiting_reason = Some(reason);
                    next.message = Some(message);
                    next.started_at = Some(String::new());
                    next.restart_after = u64::MAX;
                }
            }
        }
        let changed = next != record;
        if let Some(sandbox) = self.sandboxes.get_mut(uid) {
            sandbox.containers.insert(container.name.clone(), next);
        }
        Ok(changed)
    }

    /// What runs for a container: a built-in workload for known images, else its command.
    /// The inner error is a (reason, message) shown in the pod's status, not a kubelet failure.
    #[allow(clippy::type_complexity)]
    fn container_process(
        &self,
        uid: &str,
        pod: &Pod,
        c: &Container,
    ) -> Result<Result<ContainerProcess, (String, String)>, LabError> {
        let image = c.image.clone().unwrap_or_default();
        let command = c.command.clone().unwrap_or_default();
        let args = c.args.clone().unwrap_or_default();
        let ports: Vec<DeclaredPort> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    _ => Protocol::Tcp,
                };
                u16::try_from(p.container_port)
                    .ok()
                    .map(|port| DeclaredPort { port, protocol })
            })
            .collect();
        let weft_image = is_weft_image(&image);
        let (program, argv) = match weft_workloads::builtin_for(&image, &command, &args, &ports) {
            Err(e) => return Ok(Err(("InvalidArgs".into(), e.to_string()))),
            Ok(Some(workload)) => {
                let mut argv = vec!["workload".to_string()];
                argv.extend(workload.to_args());
                (self.weft_exe.clone(), argv)
            }
            Ok(None) => {
                // Images the lab does not emulate run their command on the machine. With no
                // command, the args are run as given, as for an image without an ENTRYPOINT
                // (busybox: `kubectl run tmp --image=busybox -- wget -qO- URL`).
                let command = if command.is_empty() {
                    args.clone()
                } else {
                    command.clone()
                };
                let args = if c.command.as_deref().unwrap_or_default().is_empty() {
                    Vec::new()
                } else {
                    args.clone()
                };
                let Some(first) = command.first() else {
                    return Ok(Err((
                        "ImageNotBuiltIn".into(),
                        format!("image {image:?} is not a built-in workload (agnhost, nginx, busybox) and the container has no command"),
                    )));
                };
                // weft's own image (deploy/): its `weft` is the lab's weft binary, so the lab
                // runs weft from the same manifests a real cluster does.
                let own = weft_image.then(|| match first.as_str() {
                    "weft" => Some(self.weft_exe.clone()),
                    "weft-cni" => self.weft_exe.parent().map(|d| d.join("weft-cni")),
                    _ => None,
                });
                let Some(program) = own.flatten().or_else(|| find_program(first)) else {
                    return Ok(Err((
                        "CommandNotFound".into(),
                        format!("command {first:?} is not on this machine's PATH"),
                    )));
                };
                (
                    program,
                    command[1..].iter().chain(args.iter()).cloned().collect(),
                )
            }
        };
        let env = match self.env(uid, pod, c) {
            Ok(env) => env,
            Err(e) => return Ok(Err((crate::volumes::CONFIG_ERROR.into(), e))),
        };
        let mounts = match self.mounts(uid, pod, c) {
            Ok(m) => m,
            Err(e) => return Ok(Err((crate::volumes::CONFIG_ERROR.into(), e))),
        };
        Ok(Ok(ContainerProcess {
            program,
            args: argv,
            env,
            hostname: weft_model::pod::hostname(pod).to_string(),
            netns: self.pod_netns_path(uid),
            resolv_conf: self.resolv_path(uid),
            detach: true,
            service_account: self.service_account(uid, pod),
            mounts,
        }))
    }

    fn teardown(&mut self, uid: &str) -> Result<(), LabError> {
        let Some(sandbox) = self.sandboxes.get(uid).cloned() else {
            return Ok(());
        };
        for (name, record) in &sandbox.containers {
            if let Some(pid) = record.pid {
                process::kill_and_wait(pid, Duration::from_secs(2));
            }
            if let Some(mut child) = self.children.remove(&(uid.to_string(), name.clone())) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Anything else still inside the pod (a `weft exec` session, say) goes too; not for a
        // host-network pod, whose namespace is the node's (the kubelet's own among them).
        if !sandbox.host_network {
            process::kill_in_netns(&sandbox.netns_path());
        }
        sandbox.destroy(&self.cni)?;
        crate::volumes::remove(&self.volume_dirs(uid))?;
        let _ = fs::remove_file(self.resolv_path(uid));
        let _ = fs::remove_dir_all(self.layout.service_account_dir(&self.node, uid));
        self.records.remove(uid)?;
        self.sandboxes.remove(uid);
        self.probers.retain(|(pod_uid, _), _| pod_uid != uid);
        tracing::info!(node = %self.node, "pod {}/{} torn down", sandbox.namespace, sandbox.name);
        Ok(())
    }

    /// A container's environment: the `kubernetes` Service's variables, then its own (values,
    /// then `valueFrom` ones, which win as later entries do).
    fn env(&self, uid: &str, pod: &Pod, c: &Container) -> Result<Vec<(String, String)>, String> {
        let mut env = crate::apiserver::service_env(&self.config);
        env.extend(crate::container::container_env(
            weft_model::pod::hostname(pod),
            c,
        ));
        let pod_ip = self.sandboxes.get(uid).map(|s| s.ip.to_string());
        env.extend(crate::volumes::env_from(
            &self.store,
            pod,
            self.node_ip.as_deref(),
            pod_ip.as_deref(),
            c,
        )?);
        Ok(env)
    }

    /// The namespace a pod's processes run in: its own, or the node's for hostNetwork.
    fn pod_netns_path(&self, uid: &str) -> PathBuf {
        match self.sandboxes.get(uid) {
            Some(s) => s.netns_path(),
            None => Path::new("/run/netns").join(self.layout.pod_netns(uid)),
        }
    }

    fn volume_dirs(&self, uid: &str) -> crate::volumes::VolumeDirs {
        crate::volumes::VolumeDirs {
            pod: self.layout.node_dir(&self.node).join("volumes").join(uid),
            host_root: self.layout.node_dir(&self.node).join("root"),
        }
    }

    /// The container's volume mounts, the volumes (re)written first.
    fn mounts(
        &self,
        uid: &str,
        pod: &Pod,
        c: &Container,
    ) -> Result<Vec<crate::container::Mount>, String> {
        if c.volume_mounts.as_ref().is_none_or(|m| m.is_empty()) {
            return Ok(Vec::new());
        }
        let volumes = crate::volumes::prepare(&self.store, pod, &self.volume_dirs(uid))?;
        crate::volumes::mounts(c, &volumes)
    }

    fn service_account(&self, uid: &str, pod: &Pod) -> Option<PathBuf> {
        spec_automounts(pod).then(|| self.layout.service_account_dir(&self.node, uid))
    }

    fn resolv_path(&self, uid: &str) -> PathBuf {
        self.layout
            .resolv_dir(&self.node)
            .join(format!("{uid}.conf"))
    }

    fn write_status(
        &self,
        uid: &str,
        pod: &Pod,
        probes: &BTreeMap<String, bool>,
    ) -> Result<(), LabError> {
        let Some(sandbox) = self.sandboxes.get(uid) else {
            return Ok(());
        };
        let status = crate::status::pod_status(pod, sandbox, self.node_ip.as_deref(), probes);
        self.update_status(pod, status)
    }

    fn report_failure(&self, pod: &Pod, error: &LabError) -> Result<(), LabError> {
        let status = json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "SandboxFailed", "message": error.to_string()}],
            "message": error.to_string(),
            "reason": "SandboxFailed",
        });
        self.update_status(pod, status)
    }

    fn update_status(&self, pod: &Pod, status: serde_json::Value) -> Result<(), LabError> {
        let status: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(status)
            .map_err(|e| LabError::Invalid(format!("building pod status: {e}")))?;
        let key = ObjectKey {
            kind: "Pod".into(),
            namespace: pod.metadata.namespace.clone(),
            name: pod_name(pod).to_string(),
        };
        let uid = pod.metadata.uid.clone();
        self.store.update(&key, |obj| {
            if let Object::Pod(p) = obj {
                // Never write over a newer pod that took this name.
                if p.metadata.uid == uid && p.status.as_ref() != Some(&status) {
                    p.status = Some(status);
                }
            }
        })?;
        Ok(())
    }
}

/// Now as RFC 3339, whole seconds, the form object timestamps take.
pub(crate) fn now_rfc3339() -> String {
    weft_model::time::now().0.to_string()
}

fn unix_now() -> u64 {
    u64::try_from(weft_model::time::unix_seconds(&weft_model::time::now())).unwrap_or(0)
}

pub(crate) fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Whether `pod` is weft's node agent (the DaemonSet of deploy/agent.yaml), by its labels.
fn is_weft_agent(pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    pod.metadata.namespace.as_deref() == Some("kube-system")
        && label("app.kubernetes.io/name") == Some("weft-agent")
}

/// Whether `image` is weft's own (`…/weft:<tag>` or `weft`), which the lab runs from its own
/// binaries.
fn is_weft_image(image: &str) -> bool {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    repo == "weft" || repo.ends_with("/weft")
}

/// Whether the pod gets its service account token mounted (`automountServiceAccountToken`
/// defaults to true).
fn spec_automounts(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        .unwrap_or(true)
}
