//! The pod subresources `log`, `exec` and `attach`. In the lab the kubelet's work is done by
//! weft's own tools: container output is in the kubelet's log files, and `exec` runs
//! `weft lab exec-local`, which enters the pod's namespaces with the container's environment.

use std::path::PathBuf;
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::api::Api;
use weft_model::ObjectKey;
use weft_sources::Store;

use crate::crud::{blocking, get};
use crate::request::Query;
use crate::status::ApiError;
use crate::stream::{self, AttachSpec, ExecSpec, LogOptions};
use crate::Body;

fn stream_error(e: stream::StreamError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// The container a request means: the one named, or the pod's only one.
fn container(pod: &Value, query: &Query) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => match names.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(ApiError::bad_request(format!(
                "pod {name} has no containers"
            ))),
            many => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                many.join(" ")
            ))),
        },
    }
}

/// Waits until the pod is gone (or replaced by another of the same name), or, with `exit`, its
/// container has terminated, and gives that container's exit code if it has one.
async fn until_done(
    store: Store,
    key: ObjectKey,
    uid: Value,
    container: String,
    exit: bool,
) -> Option<i32> {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let s = store.clone();
        let k = key.clone();
        let pod = match blocking(move || s.get(&k)).await {
            Ok(Some(pod)) => pod.to_json(),
            _ => return None,
        };
        if pod["metadata"]["uid"] != uid {
            return None;
        }
        if !exit {
            continue;
        }
        let terminated = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == container.as_str())
            .and_then(|s| s["state"]["terminated"]["exitCode"].as_i64());
        if let Some(code) = terminated {
            return i32::try_from(code).ok();
        }
    }
}

pub(crate) async fn serve(
    api: &Api,
    mut req: Request<Body>,
    ns: String,
    name: String,
    sub: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let tools = api.pods.clone().ok_or_else(ApiError::no_route)?;
    let resources = api.resources();
    let pods = resources
        .find("", "v1", "pods")
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    let pod = get(api, &pods, Some(&ns), &name).await?;
    let container = container(&pod, query)?;
    let uid = pod["metadata"]["uid"].clone();
    let log: PathBuf = tools.logs_dir.join(format!("{ns}_{name}_{container}.log"));
    let pod_key = ObjectKey::namespaced("Pod", &ns, &name);
    match sub {
        "log" => {
            if req.method() != Method::GET {
                return Err(ApiError::method_not_allowed("pods/log is read with GET"));
            }
            if !log.exists() {
                let reason = pod["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| s["name"] == container.as_str())
                    .and_then(|s| s["state"]["waiting"]["reason"].as_str())
                    .unwrap_or("ContainerCreating");
                return Err(ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
                )));
            }
            let options = LogOptions::from_query(req.uri().query().unwrap_or_default())
                .map_err(stream_error)?;
            let log = if options.previous {
                let previous = log.with_extension("previous.log");
                if !previous.exists() {
                    return Err(ApiError::bad_request(format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    )));
                }
                previous
            } else {
                log
            };
            let done = until_done(api.store.clone(), pod_key, uid, container, false);
            let done = async move {
                done.await;
            };
            let mut response = Response::new(stream::log_body(log, options, done));
            *response.status_mut() = StatusCode::OK;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(response)
        }
        "exec" => {
            let command: Vec<String> = query.all("command").to_vec();
            if command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let mut args = vec![
                "--lab".to_string(),
                tools.lab.clone(),
                "lab".into(),
                "exec-local".into(),
                "-n".into(),
                ns.clone(),
                name.clone(),
                "-c".into(),
                container.clone(),
                "--".into(),
            ];
            args.extend(command);
            let spec = ExecSpec {
                program: tools.weft.clone(),
                args,
                env: Vec::new(),
                stdin: query.flag("stdin"),
                stdout: query.flag("stdout"),
                stderr: query.flag("stderr"),
                tty: query.flag("tty"),
            };
            let (response, upgrade) = stream::accept_websocket(&mut req).map_err(stream_error)?;
            tokio::spawn(stream::run_exec(upgrade, spec));
            Ok(response)
        }
        "attach" => {
            let (response, upgrade) = stream::accept_websocket(&mut req).map_err(stream_error)?;
            let spec = AttachSpec {
                // The file is this run's alone: all of it, so a command that finished before
                // the attach is still seen (`kubectl run -i`).
                log_offset: 0,
                log,
                stdin_pipe: None,
                stdin: query.flag("stdin"),
                stdout: query.flag("stdout"),
                stderr: query.flag("stderr"),
                tty: query.flag("tty"),
            };
            let done = until_done(api.store.clone(), pod_key, uid, container, true);
            tokio::spawn(stream::run_attach(upgrade, spec, done));
            Ok(response)
        }
        _ => Err(ApiError::no_route()),
    }
}
