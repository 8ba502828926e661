//! Starting a process as a container of a pod: in the pod's network namespace, with its own UTS
//! namespace (the pod's hostname, [`weft_model::pod::hostname`]) and a private mount namespace
//! where the pod's resolv.conf is bind-mounted over /etc/resolv.conf. The kubelet starts
//! workloads this way and `weft exec` runs commands this way, so both see exactly the same
//! network and DNS settings.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LabError;

/// What to run and where.
#[derive(Clone, Debug)]
pub struct ContainerProcess {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub hostname: String,
    /// The pod's network namespace, e.g. /run/netns/weft_demo_pod-0a1b2c3d4e5f.
    pub netns: PathBuf,
    /// The file bind-mounted over /etc/resolv.conf inside the container.
    pub resolv_conf: PathBuf,
    /// Start a new session, so the container outlives its starter and gets no terminal signals.
    pub detach: bool,
    /// The pod's service account directory (token, ca.crt, namespace), mounted read-only at
    /// [`SERVICE_ACCOUNT_DIR`] as the kubelet mounts it.
    pub service_account: Option<PathBuf>,
    /// The pod's volumes, bind-mounted at their `mountPath`s.
    pub mounts: Vec<Mount>,
}

/// One volume mount: a directory or file the kubelet prepared, seen at `target` in the
/// container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Where in-cluster clients find their credentials, in every Kubernetes pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl ContainerProcess {
    /// A `Command` that, once spawned, runs inside the pod. Everything that allocates happens
    /// here, before fork: the hook run in the child only makes raw system calls.
    pub fn command(&self) -> Result<Command, LabError> {
        let netns = File::open(&self.netns).map_err(|e| LabError::Io {
            what: format!("opening pod network namespace {}", self.netns.display()),
            error: e,
        })?;
        let hostname = self.hostname.clone().into_bytes();
        let resolv = cstring(self.resolv_conf.as_os_str().as_bytes())?;
        let target = cstring(b"/etc/resolv.conf")?;
        let root = cstring(b"/")?;
        let sys = cstring(b"/sys")?;
        let sysfs = cstring(b"sysfs")?;
        let detach = self.detach;
        let service_account = match &self.service_account {
            Some(dir) => {
                // The mount point must exist on the machine (a directory under /run, the
                // tmpfs /var/run points to); the mount itself stays in the container.
                std::fs::create_dir_all(SERVICE_ACCOUNT_DIR).map_err(|e| LabError::Io {
                    what: format!("creating the mount point {SERVICE_ACCOUNT_DIR}"),
                    error: e,
                })?;
                Some((
                    cstring(dir.as_os_str().as_bytes())?,
                    cstring(SERVICE_ACCOUNT_DIR.as_bytes())?,
                ))
            }
            None => None,
        };

        let mut mounts = Vec::new();
        for m in &self.mounts {
            // As for the service account: the mount point must exist on the machine (created
            // empty if missing, like a container runtime's); the mount stays in the container.
            let made = if m.source.is_dir() {
                std::fs::create_dir_all(&m.target)
            } else {
                m.target
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&m.target)
                            .map(drop)
                    })
            };
            made.map_err(|e| LabError::Io {
                what: format!("creating the mount point {}", m.target.display()),
                error: e,
            })?;
            mounts.push((
                cstring(m.source.as_os_str().as_bytes())?,
                cstring(m.target.as_os_str().as_bytes())?,
                m.read_only,
            ));
        }

        let mut cmd = Command::new(&self.program);
        // A container sees its own environment, not the environment of whoever started it.
        cmd.env_clear().args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // SAFETY: the hook runs between fork and exec; it only calls async-signal-safe system
        // calls on values prepared above, and keeps `netns` open until exec.
        unsafe {
            cmd.pre_exec(move || {
                crate::process::unblock_signals()?;
                enter_pod(&netns, &hostname, &root, &resolv, &target)?;
                mount_sysfs(&sysfs, &sys)?;
                if let Some((source, target)) = &service_account {
                    bind_read_only(source, target)?;
                }
                for (source, target, read_only) in &mounts {
                    bind(source, target, *read_only)?;
                }
                if detach && libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, LabError> {
    CString::new(bytes)
        .map_err(|_| LabError::Invalid(format!("path {bytes:?} contains a NUL byte")))
}

/// Runs in the forked child: join the pod's netns, then make private UTS and mount namespaces.
fn enter_pod(
    netns: &File,
    hostname: &[u8],
    root: &CString,
    resolv: &CString,
    target: &CString,
) -> std::io::Result<()> {
    fn check(rc: libc::c_int) -> std::io::Result<()> {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    // SAFETY: plain system calls on valid file descriptors and NUL-terminated strings.
    unsafe {
        check(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET))?;
        check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
        check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
        // Private propagation first, so the bind mount below never leaks into the host.
        check(libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            resolv.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
    }
    Ok(())
}

/// The environment a container starts with: a standard PATH and HOME, HOSTNAME set to the pod's
/// hostname ([`weft_model::pod::hostname`], as container runtimes do), then the container's own
/// `env` values.
pub fn container_env(
    hostname: &str,
    container: &k8s_openapi::api::core::v1::Container,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), "/root".to_string()),
        ("HOSTNAME".to_string(), hostname.to_string()),
    ];
    // `valueFrom` variables need the API's objects: the kubelet resolves them.
    for var in container
        .env
        .iter()
        .flatten()
        .filter(|v| v.value_from.is_none())
    {
        env.push((var.name.clone(), var.value.clone().unwrap_or_default()));
    }
    env
}

/// A read-only bind mount, in the child's private mount namespace.
fn bind_read_only(source: &CString, target: &CString) -> std::io::Result<()> {
    bind(source, target, true)
}

/// A bind mount, in the child's private mount namespace.
fn bind(source: &CString, target: &CString, read_only: bool) -> std::io::Result<()> {
    // SAFETY: plain system calls on NUL-terminated strings, in the child's private mount ns.
    unsafe {
        if libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // A bind mount takes MS_RDONLY only on a remount.
        if read_only
            && libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A sysfs of the pod's own network namespace over /sys, as container runtimes mount it, so
/// /sys/class/net lists the pod's interfaces and not the machine's.
fn mount_sysfs(sysfs: &CString, sys: &CString) -> std::io::Result<()> {
    // SAFETY: a plain system call on NUL-terminated strings, in the child's private mount ns.
    let rc = unsafe {
        libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The resolv.conf the kubelet gives `pod`, by its `dnsPolicy` and `dnsConfig` as Kubernetes
/// does: ClusterFirst (the default) the cluster DNS, except for hostNetwork pods, which get the
/// node's like Default; ClusterFirstWithHostNet always the cluster DNS; Default the node's
/// (`node_resolv`); None only what `dnsConfig` says. `dnsConfig` adds nameservers (at most 3 in
/// all), search domains, and options (replacing one of the same name).
pub fn pod_resolv_conf(
    pod: &k8s_openapi::api::core::v1::Pod,
    dns_ip: std::net::Ipv4Addr,
    domain: &str,
    node_resolv: &str,
) -> String {
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let base = match policy {
        "ClusterFirst" if host_network => node_resolv.to_string(),
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            cluster_first_resolv_conf(dns_ip, namespace, domain)
        }
        "None" => String::new(),
        _ => node_resolv.to_string(),
    };
    let mut nameservers = Vec::new();
    let mut searches = Vec::new();
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut option = |text: &str, value: Option<String>| {
        let name = text.to_string();
        match options.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => options.push((name, value)),
        }
    };
    for line in base.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => nameservers.extend(words.next().map(str::to_string)),
            Some("search") => searches.extend(words.map(str::to_string)),
            Some("options") => {
                for o in words {
                    match o.split_once(':') {
                        Some((n, v)) => option(n, Some(v.to_string())),
                        None => option(o, None),
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        nameservers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for o in config.options.iter().flatten() {
            if let Some(name) = &o.name {
                option(name, o.value.clone());
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    nameservers.retain(|n| seen.insert(n.clone()));
    nameservers.truncate(3);
    let mut seen = std::collections::BTreeSet::new();
    searches.retain(|s| seen.insert(s.clone()));
    let mut out = String::new();
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        let words: Vec<String> = options
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}:{v}"),
                None => n.clone(),
            })
            .collect();
        out.push_str(&format!("options {}\n", words.join(" ")));
    }
    out
}

/// The resolv.conf a pod with dnsPolicy ClusterFirst gets in Kubernetes.
pub fn cluster_first_resolv_conf(
    dns_ip: std::net::Ipv4Addr,
    namespace: &str,
    domain: &str,
) -> String {
    format!(
        "nameserver {dns_ip}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n"
    )
}

/// Resolve a container command the way a shell would: a bare name is looked up on PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return p.exists().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_cluster_first() {
        let text =
            cluster_first_resolv_conf("10.96.0.10".parse().unwrap(), "demo", "cluster.local");
        assert_eq!(
            text,
            "nameserver 10.96.0.10\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    fn pod(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "demo"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn resolv_conf_follows_the_pods_dns_policy_and_config() {
        let dns = "10.96.0.10".parse().unwrap();
        let node = "nameserver 203.0.113.10\n";
        let conf = |spec| pod_resolv_conf(&pod(spec), dns, "cluster.local", node);
        let cluster = "nameserver 10.96.0.10\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";
        assert_eq!(conf(serde_json::json!({"containers": []})), cluster);
        assert_eq!(
            conf(serde_json::json!({"containers": [], "hostNetwork": true})),
            node,
            "ClusterFirst on the host network is Default"
        );
        assert_eq!(
            conf(
                serde_json::json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})
            ),
            cluster
        );
        assert_eq!(
            conf(serde_json::json!({"containers": [], "dnsPolicy": "Default"})),
            node
        );
        assert_eq!(
            conf(
                serde_json::json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.2.3.4", "1.2.3.4", "5.6.7.8"],
                    "searches": ["a.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                }})
            ),
            "nameserver 1.2.3.4\nnameserver 5.6.7.8\nsearch a.example\noptions ndots:2 edns0\n"
        );
        assert_eq!(
            conf(serde_json::json!({"containers": [], "dnsConfig": {
                "searches": ["extra.example"],
                "options": [{"name": "ndots", "value": "1"}],
            }})),
            "nameserver 10.96.0.10\nsearch demo.svc.cluster.local svc.cluster.local cluster.local extra.example\noptions ndots:1\n"
        );
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("no-such-program-weft").is_none());
    }
}
