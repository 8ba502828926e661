//! `weft logs`: a container's output through the API's `pods/log`, like kubectl logs: one pod
//! (NAME, pod/NAME, deploy/NAME) or every pod a label selector finds, followed with `-f`.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::io::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use crate::client::{Cluster, Target};
use crate::resources;

#[derive(Args)]
pub struct LogsArgs {
    /// The pod: NAME, pod/NAME or deploy/NAME (one of its ready pods); none with -l.
    #[arg(required_unless_present = "selector", conflicts_with = "selector")]
    pod: Option<String>,
    /// Namespace (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
    /// Keep printing new output until Ctrl-C (or the pod goes away).
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long = "tail", default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// The previous run of the container (after a restart).
    #[arg(short = 'p', long = "previous")]
    previous: bool,
    /// The logs of every pod with these labels (`app=web`), one after the other (with -f, all
    /// at once).
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
}

fn container_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect()
}

pub async fn logs(target: &Target, args: LogsArgs) -> Result<()> {
    let cluster = Cluster::connect(target).await?;
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let params = |container: String| LogParams {
        container: Some(container),
        follow: args.follow,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        previous: args.previous,
        ..LogParams::default()
    };
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    if let Some(target) = &args.pod {
        let pod = crate::exec::resolve_pod(&cluster, &namespace, target).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let containers = container_names(&pod);
        let container = match &args.container {
            Some(c) => c.clone(),
            None if containers.len() == 1 => containers[0].clone(),
            None => bail!(
                "pod {name} has {} containers; choose one with -c ({})",
                containers.len(),
                containers.join(", ")
            ),
        };
        return copy_log(&cluster, &api, &name, &params(container)).await;
    }
    let selector = args.selector.clone().unwrap_or_default();
    let pods = resources::builtin_named("pods").context("pods")?;
    let (items, _) = cluster
        .list(&pods, Some(&namespace), Some(&selector))
        .await?;
    let pods: Vec<Pod> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if pods.is_empty() {
        eprintln!("No resources found in {namespace} namespace.");
        return Ok(());
    }
    let mut streams = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let containers = container_names(&pod);
        let container = match &args.container {
            Some(c) => c.clone(),
            None => {
                let Some(first) = containers.first() else {
                    continue;
                };
                if containers.len() > 1 {
                    eprintln!(
                        "Defaulted container {first:?} of pod {name} out of: {}",
                        containers.join(", ")
                    );
                }
                first.clone()
            }
        };
        streams.push((name, params(container)));
    }
    if args.follow {
        // Every pod at once: a follow never ends by itself.
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|(name, lp)| {
                let api = api.clone();
                let cluster = &cluster;
                async move { copy_log(cluster, &api, &name, &lp).await }
            })
            .collect();
        for result in futures::future::join_all(tasks).await {
            if let Err(e) = result {
                eprintln!("error: {e:#}");
            }
        }
    } else {
        for (name, lp) in streams {
            copy_log(&cluster, &api, &name, &lp).await?;
        }
    }
    Ok(())
}

/// Copies one log to stdout, a whole line at a time so several pods' lines never mix.
async fn copy_log(cluster: &Cluster, api: &Api<Pod>, name: &str, lp: &LogParams) -> Result<()> {
    let mut stream = Box::pin(
        api.log_stream(name, lp)
            .await
            .map_err(|e| cluster.error(e))?,
    );
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = stream
            .read_until(b'\n', &mut line)
            .await
            .with_context(|| format!("reading the log of pod {name}"))?;
        if n == 0 {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&line)?;
        out.flush()?;
    }
}
