//! `weft exec` and `weft logs`: into a pod's namespaces, and a container's output.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use weft_lab::container::{find_program, ContainerProcess};
use weft_lab::layout::Layout;
use weft_model::config::ClusterName;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

#[derive(Args)]
pub struct ExecArgs {
    /// The pod: NAME, pod/NAME, or deploy/NAME (a ready pod of that Deployment).
    pod: String,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
    /// The container whose environment to use (default: the first).
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    pod: String,
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
}

/// The pod `namespace/name`, or an error naming it.
pub(crate) fn get_pod(store: &Store, namespace: &str, name: &str) -> Result<Pod> {
    match store.get(&ObjectKey {
        kind: "Pod".into(),
        namespace: Some(namespace.into()),
        name: name.into(),
    })? {
        Some(Object::Pod(p)) => Ok(p),
        _ => bail!("pod {name:?} not found in namespace {namespace}"),
    }
}

/// Find the pod a user means by NAME, pod/NAME or deploy/NAME.
pub(crate) fn resolve_pod(store: &Store, namespace: &str, target: &str) -> Result<Pod> {
    let (kind, name) = match target.split_once('/') {
        Some((kind, name)) => (crate::resources::kind_of(kind), name),
        None => ("Pod".to_string(), target),
    };
    match kind.as_str() {
        "Pod" => get_pod(store, namespace, name),
        "Deployment" => weft_lab::list_pods(store)?
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.kind == "Deployment" && r.name == name)
            })
            .find(weft_lab::controller::pod_ready)
            .ok_or_else(|| {
                anyhow!("deployment {name:?} in namespace {namespace} has no ready pod")
            }),
        other => bail!("cannot exec into a {other}; give a pod, pod/NAME or deploy/NAME"),
    }
}

pub fn exec(lab: &ClusterName, args: ExecArgs) -> Result<i32> {
    let (layout, config, store) = weft_lab::lab::open(lab, &Layout::state_root_from_env())?;
    let pod = resolve_pod(&store, &args.namespace, &args.pod)?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| anyhow!("pod {name} is not scheduled to a node yet"))?;
    let netns = std::path::Path::new("/run/netns").join(layout.pod_netns(&uid));
    if !netns.exists() {
        bail!(
            "pod {name} has no sandbox yet (status {})",
            weft_model::pod::phase(&pod)
        );
    }
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let container = match &args.container {
        Some(c) => containers
            .iter()
            .find(|x| &x.name == c)
            .ok_or_else(|| anyhow!("pod {name} has no container {c:?}"))?,
        None => containers
            .first()
            .ok_or_else(|| anyhow!("pod {name} has no containers"))?,
    };
    let program = find_program(&args.command[0])
        .ok_or_else(|| anyhow!("command {:?} not found on PATH", args.command[0]))?;
    let mut env = weft_lab::apiserver::service_env(&config);
    env.extend(weft_lab::container::container_env(&name, container));
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".into(), term));
    }
    let process = ContainerProcess {
        program,
        args: args.command[1..].to_vec(),
        env,
        hostname: name.clone(),
        netns,
        resolv_conf: layout.resolv_dir(&node).join(format!("{uid}.conf")),
        detach: false,
        service_account: Some(layout.service_account_dir(&node, &uid)).filter(|d| d.exists()),
    };
    let status = process
        .command()?
        .status()
        .with_context(|| format!("running {:?} in pod {name}", args.command))?;
    Ok(status.code().unwrap_or(128))
}

pub fn logs(lab: &ClusterName, args: LogsArgs) -> Result<()> {
    let (layout, _, store) = weft_lab::lab::open(lab, &Layout::state_root_from_env())?;
    let pod = resolve_pod(&store, &args.namespace, &args.pod)?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let container = match &args.container {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].name.clone(),
        None => bail!(
            "pod {name} has {} containers; choose one with -c ({})",
            containers.len(),
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let path = layout
        .logs_dir()
        .join(format!("{}_{name}_{container}.log", args.namespace));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no logs for container {container} of pod {name}"))?;
    print!("{text}");
    Ok(())
}
