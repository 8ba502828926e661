//! The lab's nodes: registering one (a free name, node IP and pod CIDR, its namespace plugged
//! into the fabric, its Node object, its kubelet) and removing one (its pods rescheduled, its
//! namespaces and processes gone). Pod CIDRs are handed out the way kube-controller-manager's
//! node IPAM does it: the first /N of the cluster CIDR that no node holds.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use weft_model::cidr::Ipv4Cidr;
use weft_model::config::ClusterConfig;
use weft_model::{Object, ObjectKey};
use weft_sources::Store;

use crate::layout::Layout;
use crate::{process, topology, LabError};

/// Where a new node goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSlot {
    pub index: u32,
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Cidr,
}

pub fn list_nodes(store: &Store) -> Result<Vec<Node>, LabError> {
    Ok(store
        .list("Node")?
        .into_iter()
        .filter_map(|o| o.as_node().cloned())
        .collect())
}

/// The first free slot: the lowest unused node number, its node IP, and the first pod CIDR no
/// node holds. Pure, so the allocation rules are unit-tested.
pub fn next_slot(config: &ClusterConfig, existing: &[Node]) -> Result<NodeSlot, LabError> {
    let names: BTreeSet<String> = existing
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let ips: BTreeSet<Ipv4Addr> = existing
        .iter()
        .filter_map(weft_model::node::internal_ip)
        .collect();
    let cidrs: BTreeSet<String> = existing
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .collect();
    let index = (0..u32::MAX)
        .find(|i| {
            !names.contains(&config.node_name(*i))
                && config.node_ip(*i).is_none_or(|ip| !ips.contains(&ip))
        })
        .ok_or_else(|| LabError::Invalid("no free node number".into()))?;
    let ip = config
        .node_ip(index)
        .filter(|ip| config.node_network.contains(*ip) && *ip != config.node_network.broadcast())
        .ok_or_else(|| {
            LabError::Invalid(format!(
                "node network {} has no address left for another node",
                config.node_network
            ))
        })?;
    let mask = config.node_cidr_mask;
    let pod_cidr = (0..config.pod_cidr.subnet_count(mask))
        .filter_map(|i| config.pod_cidr.subnet(mask, i))
        .find(|c| !cidrs.contains(&c.to_string()))
        .ok_or_else(|| {
            LabError::Invalid(format!(
                "pod CIDR {} has no free /{mask} left for another node ({} nodes hold one)",
                config.pod_cidr,
                cidrs.len()
            ))
        })?;
    Ok(NodeSlot {
        index,
        name: config.node_name(index),
        ip,
        pod_cidr,
    })
}

/// The Node object of a slot, as a kubelet registers it.
pub fn node_object(
    config: &ClusterConfig,
    slot: &NodeSlot,
    extra_labels: &[(String, String)],
) -> Result<Object, LabError> {
    let name = &slot.name;
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    if slot.index == 0 {
        labels.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
    }
    for (k, v) in config.node_labels.get(name).into_iter().flatten() {
        labels.insert(k.clone(), json!(v));
    }
    for (k, v) in extra_labels {
        labels.insert(k.clone(), json!(v));
    }
    let cidr = slot.pod_cidr.to_string();
    let value = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": slot.ip.to_string()}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "weft lab node is ready"}],
            // The kubelet's default --max-pods: the scheduler keeps a node to this many.
            "capacity": {"pods": MAX_PODS.to_string()},
            "allocatable": {"pods": MAX_PODS.to_string()},
            "nodeInfo": {
                "architecture": std::env::consts::ARCH, "bootID": "", "containerRuntimeVersion": "weft-lab",
                "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": concat!("weft-", env!("CARGO_PKG_VERSION")),
                "machineID": "", "operatingSystem": "linux", "osImage": "weft lab", "systemUUID": ""
            }
        }
    });
    Object::from_json(value).map_err(|e| LabError::Invalid(format!("node {name}: {e}")))
}

/// Pods a lab node runs at most (the kubelet's default `--max-pods`), so a runaway
/// Deployment waits Pending rather than filling the machine with namespaces.
pub const MAX_PODS: usize = weft_model::node::DEFAULT_MAX_PODS;

/// Add a node to a running (or being-built) lab: namespace, Node object, kubelet.
pub fn add(
    layout: &Layout,
    config: &ClusterConfig,
    store: &Store,
    labels: &[(String, String)],
) -> Result<NodeSlot, LabError> {
    let slot = next_slot(config, &list_nodes(store)?)?;
    let object = node_object(config, &slot, labels)?;
    topology::create_node(layout, config, &slot)?;
    let registered = store
        .apply(vec![object])
        .map_err(LabError::from)
        .and_then(|_| crate::supervise::spawn_kubelet(layout, &slot.name));
    if let Err(e) = registered {
        let _ = teardown(layout, &slot.name);
        let _ = store.delete(&[ObjectKey::cluster_scoped("Node", slot.name.clone())]);
        return Err(e);
    }
    Ok(slot)
}

/// Remove a node: stop its kubelet and agent, remove its pods' sandboxes and its namespace, and
/// hand its pods back to the scheduler (Deployment pods are replaced by the controller; bare
/// pods are unbound and scheduled again).
pub fn remove(layout: &Layout, store: &Store, name: &str) -> Result<usize, LabError> {
    let key = ObjectKey::cluster_scoped("Node", name);
    if store.get(&key)?.is_none() {
        return Err(LabError::Invalid(format!("node {name:?} not found")));
    }
    // The Node goes first: the scheduler stops choosing it, the other agents drop its routes.
    store.delete(std::slice::from_ref(&key))?;
    teardown(layout, name)?;
    let mut moved = 0;
    for pod in crate::list_pods(store)? {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(name) {
            continue;
        }
        moved += 1;
        let pod_key = ObjectKey::namespaced(
            "Pod",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let owned = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "Deployment");
        if owned {
            store.delete(&[pod_key])?;
        } else {
            store.update(&pod_key, |o| {
                if let Some(p) = o.as_pod_mut() {
                    if let Some(spec) = p.spec.as_mut() {
                        spec.node_name = None;
                    }
                    p.status = None;
                }
            })?;
        }
    }
    Ok(moved)
}

/// Stop a node's processes and delete its namespaces (pods first) and its state.
pub fn teardown(layout: &Layout, name: &str) -> Result<(), LabError> {
    if let Some(pid) = process::running_daemon(&layout.kubelet_pid_file(name)) {
        process::kill_and_wait(pid, Duration::from_secs(2));
    }
    let sandboxes = crate::sandbox::SandboxRecords::open(layout.sandboxes_dir(name))?.load_all()?;
    // Host-network pods live in the node's namespace, which goes last.
    for sandbox in sandboxes.values().filter(|s| !s.host_network) {
        let path = sandbox.netns_path();
        process::kill_in_netns(&path);
        delete_netns(&sandbox.netns)?;
    }
    let node_ns = layout.node_netns(name);
    process::kill_in_netns(&Path::new("/run/netns").join(&node_ns));
    delete_netns(&node_ns)?;
    let dir = layout.node_dir(name);
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .map_err(|e| LabError::io(format!("removing {}", dir.display()), e))?;
    }
    Ok(())
}

fn delete_netns(name: &str) -> Result<(), LabError> {
    weft_dataplane::NetNs::delete(name)
        .map(|_| ())
        .map_err(|e| LabError::Dataplane {
            what: format!("deleting namespace {name}"),
            error: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(config: &ClusterConfig, index: u32, cidr: &str) -> Node {
        let slot = NodeSlot {
            index,
            name: config.node_name(index),
            ip: config.node_ip(index).unwrap(),
            pod_cidr: cidr.parse().unwrap(),
        };
        node_object(config, &slot, &[])
            .unwrap()
            .as_node()
            .cloned()
            .unwrap()
    }

    #[test]
    fn slots_fill_the_first_free_name_ip_and_pod_cidr() {
        let config = ClusterConfig::default();
        let first = next_slot(&config, &[]).unwrap();
        assert_eq!(first.name, "weft-node1");
        assert_eq!(first.ip, "172.20.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(first.pod_cidr.to_string(), "10.244.0.0/24");
        // node2 was removed: its number, IP and CIDR are free again, and are taken first.
        let existing = [
            node(&config, 0, "10.244.0.0/24"),
            node(&config, 2, "10.244.2.0/24"),
        ];
        let slot = next_slot(&config, &existing).unwrap();
        assert_eq!(slot.name, "weft-node2");
        assert_eq!(slot.ip, "172.20.0.3".parse::<Ipv4Addr>().unwrap());
        assert_eq!(slot.pod_cidr.to_string(), "10.244.1.0/24");
    }

    #[test]
    fn a_full_pod_cidr_is_refused_by_name() {
        let config = ClusterConfig {
            pod_cidr: "10.244.0.0/23".parse().unwrap(),
            ..ClusterConfig::default()
        };
        let existing = [
            node(&config, 0, "10.244.0.0/24"),
            node(&config, 1, "10.244.1.0/24"),
        ];
        let err = next_slot(&config, &existing).unwrap_err().to_string();
        assert!(
            err.contains("10.244.0.0/23") && err.contains("no free /24"),
            "{err}"
        );
    }
}
