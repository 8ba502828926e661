//! What the kubelet prepares for a pod's containers from its spec beyond the process itself:
//! volumes (configMap, secret, emptyDir, hostPath) as directories bind-mounted at each
//! container's `mountPath`s, and `env` values taken from the pod (`fieldRef`), a ConfigMap or a
//! Secret. A node's "host" file system, for hostPath volumes, is a directory of the lab's own
//! (`nodes/<node>/root`), so a pod writing to `/opt/cni/bin` on its host never touches the
//! machine's.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

use crate::container::Mount;
use crate::LabError;

/// File names (keys) and contents of a ConfigMap or Secret.
type Files = Vec<(String, Vec<u8>)>;

/// Why a container cannot be configured: the kubelet's `CreateContainerConfigError`.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";

/// Where one pod's volumes live on the node, and the node's host file system.
pub struct VolumeDirs {
    pub pod: PathBuf,
    pub host_root: PathBuf,
}

/// Writes the pod's volumes under `dirs.pod` (ConfigMap and Secret contents, empty dirs) and
/// returns the directory of each volume by name. A missing ConfigMap or Secret that is not
/// `optional` is an error naming it.
pub fn prepare(
    store: &Store,
    pod: &Pod,
    dirs: &VolumeDirs,
) -> Result<Vec<(String, PathBuf)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for v in &volumes {
        let dir = dirs.pod.join(&v.name);
        let path = prepare_one(store, ns, v, &dir, &dirs.host_root)
            .map_err(|e| format!("volume {:?}: {e}", v.name))?;
        out.push((v.name.clone(), path));
    }
    Ok(out)
}

fn prepare_one(
    store: &Store,
    ns: &str,
    v: &Volume,
    dir: &Path,
    host_root: &Path,
) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    if let Some(host) = &v.host_path {
        let path = host_root.join(host.path.trim_start_matches('/'));
        match host.type_.as_deref() {
            Some("FileOrCreate") | Some("File") => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io)?;
            }
            _ => fs::create_dir_all(&path).map_err(io)?,
        }
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(io)?;
    let files: Vec<(String, Vec<u8>)> = if let Some(cm) = &v.config_map {
        let data = config_map(store, ns, &cm.name)?;
        match data {
            None if cm.optional == Some(true) => Vec::new(),
            None => return Err(format!("configmap {:?} not found", cm.name)),
            Some(data) => select(data, cm.items.as_deref())?,
        }
    } else if let Some(secret) = &v.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        match secret_data(store, ns, &name)? {
            None if secret.optional == Some(true) => Vec::new(),
            None => return Err(format!("secret {name:?} not found")),
            Some(data) => select(data, secret.items.as_deref())?,
        }
    } else {
        // emptyDir (and kinds the lab does not model): an empty directory of the pod's.
        Vec::new()
    };
    for (path, bytes) in files {
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        fs::write(&file, bytes).map_err(io)?;
    }
    Ok(dir.to_path_buf())
}

/// The files of a ConfigMap/Secret volume: every key, or the `items` asked for.
fn select(
    data: Vec<(String, Vec<u8>)>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let Some(items) = items else {
        return Ok(data);
    };
    items
        .iter()
        .map(|item| {
            data.iter()
                .find(|(k, _)| *k == item.key)
                .map(|(_, bytes)| (item.path.clone(), bytes.clone()))
                .ok_or_else(|| format!("key {:?} is not in the object", item.key))
        })
        .collect()
}

fn config_map(store: &Store, ns: &str, name: &str) -> Result<Option<Files>, String> {
    let key = ObjectKey::namespaced("ConfigMap", ns, name);
    match store.get(&key).map_err(|e| e.to_string())? {
        Some(Object::ConfigMap(cm)) => Ok(Some(
            cm.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .chain(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                )
                .collect(),
        )),
        _ => Ok(None),
    }
}

fn secret_data(store: &Store, ns: &str, name: &str) -> Result<Option<Files>, String> {
    let key = ObjectKey::namespaced("Secret", ns, name);
    match store.get(&key).map_err(|e| e.to_string())? {
        Some(Object::Secret(s)) => Ok(Some(
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .chain(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                )
                .collect(),
        )),
        _ => Ok(None),
    }
}

/// The container's mounts of the prepared volumes.
pub fn mounts(c: &Container, volumes: &[(String, PathBuf)]) -> Result<Vec<Mount>, String> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let (_, dir) = volumes
                .iter()
                .find(|(name, _)| *name == m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let source = match &m.sub_path {
                Some(sub) if !sub.is_empty() => dir.join(sub),
                _ => dir.clone(),
            };
            Ok(Mount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only.unwrap_or(false),
            })
        })
        .collect()
}

/// The container's `valueFrom` variables: from the pod's own fields (`fieldRef`), a ConfigMap
/// or a Secret key. A missing key is skipped when `optional`, else an error naming it.
pub fn env_from(
    store: &Store,
    pod: &Pod,
    host_ip: Option<&str>,
    pod_ip: Option<&str>,
    c: &Container,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Vec::new();
    for var in c.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        let value = if let Some(field) = &from.field_ref {
            let spec = pod.spec.as_ref();
            let v = match field.field_path.as_str() {
                "metadata.name" => pod.metadata.name.clone(),
                "metadata.namespace" => Some(ns.to_string()),
                "metadata.uid" => pod.metadata.uid.clone(),
                "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
                "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
                "status.hostIP" => host_ip.map(str::to_string),
                "status.podIP" => pod_ip.map(str::to_string),
                other => {
                    return Err(format!(
                        "env {:?}: fieldRef {other:?} is not supported by the lab's kubelet",
                        var.name
                    ))
                }
            };
            v.unwrap_or_default()
        } else if let Some(r) = &from.config_map_key_ref {
            let data = config_map(store, ns, &r.name)?.unwrap_or_default();
            match data.into_iter().find(|(k, _)| *k == r.key) {
                Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                None if r.optional == Some(true) => continue,
                None => {
                    return Err(format!(
                        "couldn't find key {} in ConfigMap {ns}/{}",
                        r.key, r.name
                    ))
                }
            }
        } else if let Some(r) = &from.secret_key_ref {
            let data = secret_data(store, ns, &r.name)?.unwrap_or_default();
            match data.into_iter().find(|(k, _)| *k == r.key) {
                Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                None if r.optional == Some(true) => continue,
                None => {
                    return Err(format!(
                        "couldn't find key {} in Secret {ns}/{}",
                        r.key, r.name
                    ))
                }
            }
        } else {
            continue;
        };
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

/// Removes a pod's volume directories (host paths are the node's and stay).
pub fn remove(dirs: &VolumeDirs) -> Result<(), LabError> {
    match fs::remove_dir_all(&dirs.pod) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LabError::io(format!("removing {}", dirs.pod.display()), e))
        }
        _ => Ok(()),
    }
}
