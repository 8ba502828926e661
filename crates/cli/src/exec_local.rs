//! `weft lab exec-local`: a command inside a pod of a lab on this machine, entering the pod's
//! network namespace with its hostname, resolv.conf, service account and the container's
//! environment. This is the lab's kubelet side of `exec`: the lab's API server runs it for
//! `pods/exec`, so `weft exec` and `kubectl exec` reach it through the API. Also the pod lookups
//! of the lab-local `port-forward`, which read the lab's store.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use weft_lab::container::{find_program, ContainerProcess};
use weft_lab::layout::Layout;
use weft_model::config::ClusterName;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

#[derive(Args)]
pub struct ExecLocalArgs {
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
            .find(weft_model::pod::is_ready)
            .ok_or_else(|| {
                anyhow!("deployment {name:?} in namespace {namespace} has no ready pod")
            }),
        other => bail!("cannot exec into a {other}; give a pod, pod/NAME or deploy/NAME"),
    }
}

pub fn exec_local(lab: &ClusterName, args: ExecLocalArgs) -> Result<i32> {
    let (layout, config, store) = weft_lab::lab::open(lab, &Layout::state_root_from_env())?;
    let pod = resolve_pod(&store, &args.namespace, &args.pod)?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| anyhow!("pod {name} is not scheduled to a node yet"))?;
    // A hostNetwork pod runs in its node's namespace, as its sandbox record says.
    let netns = if weft_model::pod::host_network(&pod) {
        std::path::Path::new("/run/netns").join(layout.node_netns(&node))
    } else {
        std::path::Path::new("/run/netns").join(layout.pod_netns(&uid))
    };
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
    let hostname = weft_model::pod::hostname(&pod).to_string();
    env.extend(weft_lab::container::container_env(&hostname, container));
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".into(), term));
    }
    let process = ContainerProcess {
        program,
        args: args.command[1..].to_vec(),
        env,
        hostname,
        netns,
        resolv_conf: layout.resolv_dir(&node).join(format!("{uid}.conf")),
        detach: false,
        service_account: Some(layout.service_account_dir(&node, &uid)).filter(|d| d.exists()),
        mounts: Vec::new(),
    };
    let status = process
        .command()?
        .status()
        .with_context(|| format!("running {:?} in pod {name}", args.command))?;
    Ok(status.code().unwrap_or(128))
}

/// The stored EndpointSlices of one Service.
pub(crate) fn service_slices(
    store: &Store,
    svc: &k8s_openapi::api::core::v1::Service,
) -> Result<Vec<k8s_openapi::api::discovery::v1::EndpointSlice>> {
    let all: Vec<_> = store
        .list("EndpointSlice")?
        .into_iter()
        .filter_map(|o| match o {
            Object::EndpointSlice(s) => Some(s),
            _ => None,
        })
        .collect();
    Ok(crate::printers::slices_of(&all, svc)
        .into_iter()
        .cloned()
        .collect())
}
