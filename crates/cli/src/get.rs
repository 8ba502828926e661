//! `weft get`, `weft apply`, `weft delete`: the store of a running lab, shown and changed the way
//! kubectl shows and changes an API server.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use weft_lab::layout::Layout;
use weft_model::config::ClusterName;
use weft_model::object::{Object, ObjectKey};
use weft_sources::{DeleteResult, Store};

use crate::resources::{kind_of, singular};
use crate::table::Table;

#[derive(Args)]
pub struct GetArgs {
    /// What to list: pods, nodes, deployments, namespaces, services, ... (short names work).
    resource: String,
    /// Only this object.
    name: Option<String>,
    /// Output format: wide, yaml or json.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// Namespace (default: "default").
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Manifests naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Or: a resource and a name (`weft delete pod client`).
    resource: Option<String>,
    name: Option<String>,
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

fn open_store(lab: &ClusterName) -> Result<Store> {
    let (_, _, store) = weft_lab::lab::open(lab, &Layout::state_root_from_env())?;
    Ok(store)
}

pub fn apply(lab: &ClusterName, files: &[PathBuf]) -> Result<()> {
    let objects = weft_model::manifest::read_files(files)?;
    let store = open_store(lab)?;
    for result in store.apply(objects)? {
        println!("{result}");
    }
    Ok(())
}

pub fn delete(lab: &ClusterName, args: DeleteArgs) -> Result<()> {
    let keys: Vec<ObjectKey> = match (&args.resource, &args.name, args.files.is_empty()) {
        (None, None, false) => weft_model::manifest::read_files(&args.files)?
            .iter()
            .map(Object::key)
            .collect(),
        (Some(resource), Some(name), true) => {
            let kind = kind_of(resource);
            let namespace = Object::is_namespaced_kind(&kind)
                .then(|| args.namespace.clone().unwrap_or_else(|| "default".into()));
            vec![ObjectKey {
                kind,
                namespace,
                name: name.clone(),
            }]
        }
        _ => bail!(
            "say what to delete: `-f FILE` or `RESOURCE NAME` (e.g. `weft delete pod client`)"
        ),
    };
    let store = open_store(lab)?;
    let mut missing = 0;
    for result in store.delete(&keys)? {
        match result {
            DeleteResult::Deleted(key) => println!("{}/{} deleted", singular(&key.kind), key.name),
            DeleteResult::NotFound(key) => {
                missing += 1;
                eprintln!("Error from server (NotFound): {} not found", key);
            }
        }
    }
    if missing > 0 && missing == keys.len() {
        bail!("nothing was deleted");
    }
    Ok(())
}

pub fn get(lab: &ClusterName, args: GetArgs) -> Result<()> {
    let kind = kind_of(&args.resource);
    let store = open_store(lab)?;
    let namespaced = Object::is_namespaced_kind(&kind);
    let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
    let objects: Vec<Object> = store
        .list(&kind)?
        .into_iter()
        .filter(|o| {
            !namespaced
                || args.all_namespaces
                || o.metadata().namespace.as_deref() == Some(namespace.as_str())
        })
        .filter(|o| args.name.is_none() || o.metadata().name == args.name)
        .collect();
    if let Some(name) = &args.name {
        if objects.is_empty() {
            bail!(
                "{} {name:?} not found{}",
                singular(&kind),
                if namespaced {
                    format!(" in namespace {namespace}")
                } else {
                    String::new()
                }
            );
        }
    }
    match args.output.as_deref() {
        Some("yaml") => {
            for o in &objects {
                print!("---\n{}", serde_yaml::to_string(&o.to_json())?);
            }
            return Ok(());
        }
        Some("json") => {
            let items: Vec<_> = objects.iter().map(Object::to_json).collect();
            let out = if args.name.is_some() && items.len() == 1 {
                items[0].clone()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        Some("wide") | None => {}
        Some(other) => bail!("unknown output format {other:?} (use wide, yaml or json)"),
    }
    let wide = args.output.as_deref() == Some("wide");
    let all = namespaced && args.all_namespaces;
    let table = match kind.as_str() {
        "Pod" => pod_table(&objects, wide, all),
        "Node" => node_table(&objects, wide),
        "Deployment" => deployment_table(&objects, all),
        "Namespace" => generic_table(&objects, false, &["STATUS"], |_| vec!["Active".into()]),
        _ => generic_table(&objects, all, &[], |_| vec![]),
    };
    if table.is_empty() {
        if namespaced && !all {
            eprintln!("No resources found in {namespace} namespace.");
        } else {
            eprintln!("No resources found");
        }
    } else {
        print!("{}", table.render());
    }
    Ok(())
}

/// The pod table `lab up` prints at the end.
pub fn print_pods(lab: &ClusterName, wide: bool, all: bool) -> Result<()> {
    let store = open_store(lab)?;
    let pods = store.list("Pod")?;
    if pods.is_empty() {
        println!("No pods.");
    } else {
        print!("{}", pod_table(&pods, wide, all).render());
    }
    Ok(())
}

fn with_namespace(all: bool, o: &Object, mut cells: Vec<String>) -> Vec<String> {
    if all {
        cells.insert(0, o.metadata().namespace.clone().unwrap_or_default());
    }
    cells
}

fn headers<'a>(all: bool, rest: &[&'a str]) -> Vec<&'a str> {
    let mut h = Vec::new();
    if all {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(rest);
    h
}

fn created(o: &Object) -> String {
    match &o.metadata().creation_timestamp {
        Some(t) => weft_model::time::format_age(t, &weft_model::time::now()),
        None => "<unknown>".into(),
    }
}

fn pod_table(objects: &[Object], wide: bool, all: bool) -> Table {
    let mut cols = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        cols.extend(["IP", "NODE"]);
    }
    let mut t = Table::new(&headers(all, &cols));
    for o in objects {
        let Object::Pod(p) = o else { continue };
        let (ready, total) = weft_model::pod::containers_ready(p);
        let restarts: i32 = p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .sum();
        let mut cells = vec![
            p.metadata.name.clone().unwrap_or_default(),
            format!("{ready}/{total}"),
            pod_status_word(p),
            restarts.to_string(),
            created(o),
        ];
        if wide {
            let status = p.status.as_ref();
            cells.push(
                status
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
            cells.push(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
        }
        t.row(with_namespace(all, o, cells));
    }
    t
}

/// kubectl's STATUS column: the phase, unless a container waits for a reason worth showing.
fn pod_status_word(p: &Pod) -> String {
    let status = p.status.as_ref();
    let waiting = status.and_then(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
    });
    let unschedulable = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
    });
    match (waiting, unschedulable) {
        (_, true) => "Pending".into(),
        (Some(reason), _) => reason,
        (None, _) => weft_model::pod::phase(p).to_string(),
    }
}

fn node_table(objects: &[Object], wide: bool) -> Table {
    let mut cols = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        cols.extend(["INTERNAL-IP", "POD-CIDR"]);
    }
    let mut t = Table::new(&cols);
    for o in objects {
        let Object::Node(n) = o else { continue };
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let roles: Vec<&str> = labels
            .keys()
            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        let status = n.status.as_ref();
        let mut cells = vec![
            n.metadata.name.clone().unwrap_or_default(),
            if weft_lab::controller::node_ready(n) {
                "Ready".into()
            } else {
                "NotReady".into()
            },
            if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            created(o),
            status
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default(),
        ];
        if wide {
            cells.push(
                status
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
            cells.push(
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
        }
        t.row(cells);
    }
    t
}

fn deployment_table(objects: &[Object], all: bool) -> Table {
    let mut t = Table::new(&headers(
        all,
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
    ));
    for o in objects {
        let Object::Deployment(d) = o else { continue };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let cells = vec![
            d.metadata.name.clone().unwrap_or_default(),
            format!("{}/{want}", s.ready_replicas.unwrap_or(0)),
            s.updated_replicas.unwrap_or(0).to_string(),
            s.available_replicas.unwrap_or(0).to_string(),
            created(o),
        ];
        t.row(with_namespace(all, o, cells));
    }
    t
}

fn generic_table(
    objects: &[Object],
    all: bool,
    extra: &[&str],
    cells: impl Fn(&Object) -> Vec<String>,
) -> Table {
    let mut cols = vec!["NAME"];
    cols.extend_from_slice(extra);
    cols.push("AGE");
    let mut t = Table::new(&headers(all, &cols));
    for o in objects {
        let mut row = vec![o.metadata().name.clone().unwrap_or_default()];
        row.extend(cells(o));
        row.push(created(o));
        t.row(with_namespace(all, o, row));
    }
    t
}
