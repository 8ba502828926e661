//! A pod sandbox: the pod's network namespace, wired by the CNI plugin, and the record the kubelet
//! keeps of it on disk so a restarted kubelet picks up where it left off.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_dataplane::NetNs;

use crate::cni_client::{CniNetwork, PodRef};
use crate::LabError;

/// What the kubelet remembers about one pod it runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub started_at: String,
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerRecord>,
    /// `hostNetwork: true`: the pod shares its node's namespace (`netns` names it) and address;
    /// it has no CNI attachment and nothing of the namespace is the pod's to delete.
    #[serde(default)]
    pub host_network: bool,
}

/// One container's process and history.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at: Option<String>,
    /// Why the container is not running, if it is not ("ImageNotBuiltIn", "Error", "Completed").
    pub waiting_reason: Option<String>,
    pub message: Option<String>,
    pub last_exit_code: Option<i32>,
    /// Unix seconds before which a restart is not attempted (crash-loop back-off).
    pub restart_after: u64,
}

impl Sandbox {
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// A `hostNetwork` pod's sandbox: the node's own namespace and address, nothing created.
    pub fn host(pod: PodRef, node_netns: String, node_ip: Ipv4Addr) -> Sandbox {
        Sandbox {
            uid: pod.uid,
            namespace: pod.namespace,
            name: pod.name,
            netns: node_netns,
            ip: node_ip,
            started_at: crate::kubelet::now_rfc3339(),
            containers: BTreeMap::new(),
            host_network: true,
        }
    }

    /// Create the namespace and call CNI ADD. On failure nothing is left behind.
    pub fn create(pod: PodRef, netns: String, cni: &CniNetwork) -> Result<Sandbox, LabError> {
        let ns = NetNs::create(&netns).map_err(|e| LabError::Dataplane {
            what: format!(
                "creating network namespace {netns} for pod {}/{}",
                pod.namespace, pod.name
            ),
            error: e,
        })?;
        let wired = ns
            .run(|| weft_dataplane::Netlink::open()?.lo_up())
            .map_err(|e| LabError::Dataplane {
                what: format!("entering {netns}"),
                error: e,
            })
            .and_then(|r| {
                r.map_err(|e| LabError::Dataplane {
                    what: format!("bringing up lo in {netns}"),
                    error: e,
                })
            })
            .and_then(|()| cni.add(&pod.uid, ns.path(), &pod));
        match wired {
            Ok(attachment) => Ok(Sandbox {
                uid: pod.uid.clone(),
                namespace: pod.namespace,
                name: pod.name,
                netns,
                ip: attachment.ip,
                started_at: crate::kubelet::now_rfc3339(),
                containers: BTreeMap::new(),
                host_network: false,
            }),
            Err(e) => {
                // Undo: DEL releases any address the plugin may have taken; then drop the netns.
                let _ = cni.del(&pod.uid, Some(ns.path()), &pod);
                drop(ns);
                let _ = NetNs::delete(&netns);
                Err(e)
            }
        }
    }

    /// CNI DEL, then remove the namespace. Idempotent. A host-network sandbox has neither:
    /// the namespace is the node's.
    pub fn destroy(&self, cni: &CniNetwork) -> Result<(), LabError> {
        if self.host_network {
            return Ok(());
        }
        let path = self.netns_path();
        let netns = path.exists().then_some(path.as_path());
        cni.del(&self.uid, netns, &self.pod_ref())?;
        NetNs::delete(&self.netns).map_err(|e| LabError::Dataplane {
            what: format!("deleting network namespace {}", self.netns),
            error: e,
        })?;
        Ok(())
    }
}

/// The on-disk records of one node's sandboxes.
pub struct SandboxRecords {
    dir: PathBuf,
}

impl SandboxRecords {
    pub fn open(dir: PathBuf) -> Result<SandboxRecords, LabError> {
        fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        Ok(SandboxRecords { dir })
    }

    pub fn load_all(&self) -> Result<BTreeMap<String, Sandbox>, LabError> {
        let mut out = BTreeMap::new();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| LabError::io(format!("reading {}", self.dir.display()), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = fs::read(&path)
                .map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
            let sandbox: Sandbox = serde_json::from_slice(&text).map_err(|e| {
                LabError::Invalid(format!("sandbox record {}: {e}", path.display()))
            })?;
            out.insert(sandbox.uid.clone(), sandbox);
        }
        Ok(out)
    }

    pub fn save(&self, sandbox: &Sandbox) -> Result<(), LabError> {
        let path = self.dir.join(format!("{}.json", sandbox.uid));
        let tmp = self.dir.join(format!(".{}.json.tmp", sandbox.uid));
        let text =
            serde_json::to_vec_pretty(sandbox).map_err(|e| LabError::Invalid(e.to_string()))?;
        fs::write(&tmp, text).map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
    }

    pub fn remove(&self, uid: &str) -> Result<(), LabError> {
        let path = self.dir.join(format!("{uid}.json"));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LabError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }
}
