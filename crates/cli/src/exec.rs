//! `weft exec`: a command in a pod's container through the API's `pods/exec` (a WebSocket of
//! stdin/stdout/stderr channels and an exit status), as kubectl does it; `-i` sends this
//! terminal's input, `-t` gives the command a terminal (ours in raw mode meanwhile, its size
//! kept in step). The lab's API server runs `weft lab exec-local` for it.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, TerminalSize};
use tokio::io::AsyncWriteExt;

use crate::client::{Cluster, Target};
use crate::resources;
use crate::terminal::RawMode;

#[derive(Args)]
pub struct ExecArgs {
    /// The pod: NAME, pod/NAME, or deploy/NAME (a ready pod of that Deployment).
    pod: String,
    /// Namespace (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// The container to run in (default: the first).
    #[arg(short = 'c', long = "container")]
    container: Option<String>,
    /// Pass this terminal's input to the command.
    #[arg(short = 'i', long = "stdin")]
    stdin: bool,
    /// Give the command a terminal (with -i: an interactive shell).
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Names the container `exec` enters when none is given (as kubectl reads it).
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

fn is_ready(pod: &Pod) -> bool {
    weft_model::pod::is_ready(pod)
}

/// The pod a user means by NAME, pod/NAME or deploy/NAME (a ready pod its selector finds, so
/// it works for weft's Deployments and for ReplicaSet-owned pods alike).
pub async fn resolve_pod(cluster: &Cluster, namespace: &str, target: &str) -> Result<Pod> {
    let (word, name) = match target.split_once('/') {
        Some((word, name)) => (word, name),
        None => ("pod", target),
    };
    let kind = resources::builtin_named(word).map(|r| r.kind);
    match kind.as_deref() {
        Some("Pod") => {
            let pods = resources::builtin_named("pods").context("pods")?;
            match cluster.get(&pods, Some(namespace), name).await? {
                Some(v) => serde_json::from_value(v)
                    .with_context(|| format!("reading pod {name} from the server")),
                None => bail!("pod {name:?} not found in namespace {namespace}"),
            }
        }
        Some("Deployment") => {
            let deployments = resources::builtin_named("deployments").context("deployments")?;
            let Some(deploy) = cluster.get(&deployments, Some(namespace), name).await? else {
                bail!("deployment {name:?} not found in namespace {namespace}");
            };
            let selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(deploy["spec"]["selector"].clone())
                    .with_context(|| format!("the selector of deployment {name}"))?;
            let selector = weft_model::selector::format(&selector);
            let pods = resources::builtin_named("pods").context("pods")?;
            let (items, _) = cluster
                .list(&pods, Some(namespace), Some(&selector))
                .await?;
            let mut ready: Vec<Pod> = items
                .into_iter()
                .filter_map(|v| serde_json::from_value::<Pod>(v).ok())
                .filter(is_ready)
                .collect();
            ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            ready.into_iter().next().ok_or_else(|| {
                anyhow!("deployment {name:?} in namespace {namespace} has no ready pod")
            })
        }
        _ => bail!("cannot exec into a {word}; give a pod, pod/NAME or deploy/NAME"),
    }
}

/// The exit code a `pods/exec` status stands for: 0 for Success, the code of a
/// NonZeroExitCode failure; another failure is an error (its message).
pub fn exit_code(status: &Status) -> Result<i32> {
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    bail!(
        "{}",
        status
            .message
            .clone()
            .unwrap_or_else(|| "the command failed without saying why".into())
    )
}

pub async fn exec(target: &Target, args: ExecArgs) -> Result<i32> {
    let cluster = Cluster::connect(target).await?;
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let pod = resolve_pod(&cluster, &namespace, &args.pod).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    // kubectl's default: the container the pod's annotation names, else the first.
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|c| containers.contains(c));
    let container = match (&args.container, annotated) {
        (Some(c), _) | (None, Some(c)) => c.clone(),
        (None, None) => containers
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("pod {name} has no containers"))?,
    };
    let tty = args.tty && {
        let usable = RawMode::stdin_is_terminal();
        if !usable {
            eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        }
        usable
    };
    let params = AttachParams::default()
        .container(container)
        .stdin(args.stdin)
        .stdout(true)
        // With a terminal the command's stderr is the terminal too: one stream.
        .stderr(!tty)
        .tty(tty);
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let mut attached = api
        .exec(&name, args.command.clone(), &params)
        .await
        .map_err(|e| cluster.error(e))?;
    let status = attached.take_status();
    // Raw only once attached, so an error above prints on a normal terminal.
    let raw = if tty && args.stdin {
        Some(RawMode::enter()?)
    } else {
        None
    };
    if let Some(mut sizes) = attached.terminal_size() {
        tokio::spawn(async move {
            let mut changes =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
            loop {
                if let Some((width, height)) = crate::terminal::size() {
                    if sizes.send(TerminalSize { width, height }).await.is_err() {
                        break;
                    }
                }
                match changes.as_mut() {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            break;
                        }
                    }
                    None => break,
                }
            }
        });
    }
    if let Some(mut remote) = attached.stdin() {
        tokio::spawn(async move {
            let mut local = tokio::io::stdin();
            let _ = tokio::io::copy(&mut local, &mut remote).await;
            // End of our input: the command sees EOF on its stdin.
            let _ = remote.shutdown().await;
        });
    }
    let out = attached.stdout().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stdout();
            let _ = tokio::io::copy(&mut remote, &mut local).await;
            let _ = local.flush().await;
        })
    });
    let err = attached.stderr().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stderr();
            let _ = tokio::io::copy(&mut remote, &mut local).await;
            let _ = local.flush().await;
        })
    });
    for task in [out, err].into_iter().flatten() {
        let _ = task.await;
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    drop(raw);
    match status {
        Some(status) => exit_code(&status),
        None => bail!("the connection to the pod ended without an exit status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exit_codes_from_the_status() {
        assert_eq!(
            exit_code(&status(serde_json::json!({"status": "Success"}))).unwrap(),
            0
        );
        let failed = status(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: exit status 7",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
        }));
        assert_eq!(exit_code(&failed).unwrap(), 7);
        let broken = status(serde_json::json!({
            "status": "Failure", "reason": "InternalError", "message": "no such pod sandbox",
        }));
        assert_eq!(
            exit_code(&broken).unwrap_err().to_string(),
            "no such pod sandbox"
        );
    }
}
