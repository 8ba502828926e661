//! `weft apply` and `weft delete` over the Kubernetes API.
//!
//! apply is all or nothing, as weft's apply always was: every object first goes to the server as
//! a dry run (`dryRun=All`: validation and admission, nothing stored), and only when all pass are
//! they written, Namespaces first, then CustomResourceDefinitions, then the rest in manifest order.
//! An object already there is replaced with the manifest's version (no resourceVersion: the
//! server keeps its status and what it allocated, a cluster IP, node ports, the node a pod runs
//! on, and writes nothing when nothing changed, which is how "unchanged" is told apart).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::Value;
use weft_model::object::Object;

use crate::client::{Cluster, Reported, ServerError, Target};
use crate::resources::Resource;

#[derive(Args)]
pub struct DeleteArgs {
    /// Manifests naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Or: a resource and a name (`weft delete pod client`), or TYPE/NAME.
    resource: Option<String>,
    name: Option<String>,
    /// Namespace (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

/// One object of a manifest, ready to send.
struct Planned {
    object: Object,
    /// The resource that stores it; None for a custom resource whose definition is in the same
    /// apply (known once that is created).
    resource: Option<Resource>,
    body: Value,
}

impl Planned {
    fn ns(&self) -> Option<&str> {
        self.object.namespace()
    }

    /// `Service default/web`, how errors name the object.
    fn label(&self) -> String {
        self.object.key().to_string()
    }
}

/// Namespaces first, then CustomResourceDefinitions (their kinds may follow), then the rest.
fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        _ => 2,
    }
}

/// `(group, kind)` of the custom kinds CustomResourceDefinitions in the manifests define.
fn defined_kinds(objects: &[Object]) -> Vec<(String, String)> {
    objects
        .iter()
        .filter(|o| o.kind() == "CustomResourceDefinition")
        .map(|o| {
            let v = o.to_json();
            (
                v["spec"]["group"].as_str().unwrap_or_default().to_string(),
                v["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The body to send: the manifest's object, without a resourceVersion (an unconditional
/// replace) and without a namespace when its resource has none.
fn body_of(object: &Object, resource: Option<&Resource>) -> Value {
    let mut body = object.to_json();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if resource.is_some_and(|r| !r.namespaced) {
            meta.remove("namespace");
        }
    }
    body
}

async fn plan(cluster: &Cluster, objects: Vec<Object>) -> Result<Vec<Planned>> {
    let defined = defined_kinds(&objects);
    let mut planned = Vec::with_capacity(objects.len());
    for object in objects {
        let resource = cluster
            .resource_for(object.api_version(), object.kind())
            .await?;
        let later = defined
            .iter()
            .any(|(g, k)| g == group_of(object.api_version()) && k == object.kind());
        if resource.is_none() && !later {
            bail!(
                "{}: no matches for kind {:?} in version {:?} (is its CustomResourceDefinition installed?)",
                object.key(),
                object.kind(),
                object.api_version()
            );
        }
        let body = body_of(&object, resource.as_ref());
        planned.push(Planned {
            object,
            resource,
            body,
        });
    }
    planned.sort_by_key(|p| rank(p.object.kind()));
    Ok(planned)
}

fn server_error(e: anyhow::Error, what: String) -> anyhow::Error {
    match e.downcast::<ServerError>() {
        Ok(s) => s.about(what).into(),
        Err(e) => e.context(what),
    }
}

pub async fn apply(target: &Target, files: &[PathBuf]) -> Result<()> {
    // Parse everything before talking to anyone.
    let objects = weft_model::manifest::read_files(files)?;
    let mut cluster = Cluster::connect(target).await?;
    let mut planned = plan(&cluster, objects).await?;
    let new_namespaces: HashSet<String> = planned
        .iter()
        .filter(|p| p.object.kind() == "Namespace")
        .map(|p| p.object.name().to_string())
        .collect();

    // The dry run: the server checks every object; the first refusal stops everything.
    for p in &planned {
        let Some(r) = &p.resource else { continue };
        let name = p.object.name();
        let result = match cluster.get(r, p.ns(), name).await? {
            None => cluster.create(r, p.ns(), &p.body, true).await,
            Some(_) => cluster.replace(r, p.ns(), name, &p.body, true).await,
        };
        if let Err(e) = result {
            // Objects in a Namespace this apply creates can only be checked once it exists.
            let waits_for_namespace = e.downcast_ref::<ServerError>().is_some_and(|s| {
                s.is_not_found()
                    && s.details.as_ref().is_some_and(|(kind, ns)| {
                        kind == "namespaces" && new_namespaces.contains(ns)
                    })
            });
            if !waits_for_namespace {
                return Err(server_error(
                    e,
                    format!("error when applying {}", p.label()),
                ));
            }
        }
    }

    // For real. A refusal now (one the dry run could not foresee: an object in a Namespace
    // this apply creates, or two objects of the batch wanting the same node port) undoes what
    // this apply created, so nothing is left half-applied; lines print once all is written.
    let mut created: Vec<(Resource, Option<String>, String)> = Vec::new();
    let mut lines = Vec::new();
    let mut discovered_again = false;
    for p in &mut planned {
        match write_one(&mut cluster, p, &mut discovered_again).await {
            Ok((line, was_created)) => {
                if let (true, Some(r)) = (was_created, &p.resource) {
                    created.push((
                        r.clone(),
                        p.ns().map(str::to_string),
                        p.object.name().to_string(),
                    ));
                }
                lines.push(line);
            }
            Err(e) => {
                for (r, ns, name) in created.iter().rev() {
                    if let Err(undo) = cluster.delete(r, ns.as_deref(), name).await {
                        eprintln!(
                            "warning: could not undo the creation of {} {name}: {undo:#}",
                            r.kind
                        );
                    }
                }
                return Err(e);
            }
        }
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Creates or replaces one object; its line (`pod/x created`) and whether it was created.
async fn write_one(
    cluster: &mut Cluster,
    p: &mut Planned,
    discovered_again: &mut bool,
) -> Result<(String, bool)> {
    if p.resource.is_none() {
        p.resource = resolve_later(cluster, p, discovered_again).await?;
        p.body = body_of(&p.object, p.resource.as_ref());
    }
    let Some(r) = &p.resource else {
        bail!("{}: no resource to write it to", p.label());
    };
    let name = p.object.name();
    let what = p.object.key().resource_ref();
    let (outcome, created) = match cluster.get(r, p.ns(), name).await? {
        None => {
            cluster
                .create(r, p.ns(), &p.body, false)
                .await
                .map_err(|e| server_error(e, format!("error when creating {}", p.label())))?;
            ("created", true)
        }
        Some(stored) => {
            let written = cluster
                .replace(r, p.ns(), name, &p.body, false)
                .await
                .map_err(|e| server_error(e, format!("error when applying {}", p.label())))?;
            let version = |v: &Value| v["metadata"]["resourceVersion"].clone();
            if version(&written) == version(&stored) {
                ("unchanged", false)
            } else {
                ("configured", false)
            }
        }
    };
    let line = if !p.object.is_handled() && outcome != "unchanged" {
        format!(
            "{what} stored (ignored: kind {} is not handled by weft)",
            p.object.kind()
        )
    } else {
        format!("{what} {outcome}")
    };
    Ok((line, created))
}

/// The resource of a custom kind whose CustomResourceDefinition this apply just created: the
/// server serves it once the definition is established, which may take a moment.
async fn resolve_later(
    cluster: &mut Cluster,
    p: &Planned,
    discovered_again: &mut bool,
) -> Result<Option<Resource>> {
    for attempt in 0..20 {
        if attempt > 0 || !*discovered_again {
            cluster.rediscover().await?;
            *discovered_again = true;
        }
        if let Some(r) = cluster
            .resource_for(p.object.api_version(), p.object.kind())
            .await?
        {
            return Ok(Some(r));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "{}: the server does not serve kind {:?} in version {:?} although its CustomResourceDefinition was created",
        p.label(),
        p.object.kind(),
        p.object.api_version()
    )
}

pub async fn delete(target: &Target, args: DeleteArgs) -> Result<()> {
    let cluster = Cluster::connect(target).await?;
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    // (resource, namespace, name, how to say it)
    let mut keys: Vec<(Resource, Option<String>, String, String)> = Vec::new();
    let by_name = match (&args.resource, &args.name) {
        (Some(word), Some(name)) => Some((word.clone(), name.clone())),
        (Some(both), None) => both
            .split_once('/')
            .map(|(w, n)| (w.to_string(), n.to_string())),
        _ => None,
    };
    match (by_name, args.files.is_empty()) {
        (None, false) if args.resource.is_none() => {
            for object in weft_model::manifest::read_files(&args.files)? {
                let Some(r) = cluster
                    .resource_for(object.api_version(), object.kind())
                    .await?
                else {
                    eprintln!(
                        "error: {}: the server has no resource for kind {:?} in version {:?}",
                        object.key(),
                        object.kind(),
                        object.api_version()
                    );
                    continue;
                };
                let ns = r
                    .namespaced
                    .then(|| object.namespace().unwrap_or(&namespace).to_string());
                let what = object.key().resource_ref();
                keys.push((r, ns, object.name().to_string(), what));
            }
        }
        (Some((word, name)), true) => {
            let r = cluster.resource(&word).await?;
            let ns = r.namespaced.then(|| namespace.clone());
            let what = format!("{}/{name}", r.kind.to_ascii_lowercase());
            keys.push((r, ns, name, what));
        }
        _ => bail!(
            "say what to delete: `-f FILE` or `RESOURCE NAME` (e.g. `weft delete pod client`)"
        ),
    }
    let mut missing = 0;
    for (r, ns, name, what) in &keys {
        if cluster.delete(r, ns.as_deref(), name).await? {
            println!("{what} deleted");
        } else {
            missing += 1;
            eprintln!(
                "Error from server (NotFound): {} {name:?} not found",
                r.qualified()
            );
        }
    }
    if keys.is_empty() || (missing > 0 && missing == keys.len()) {
        return Err(Reported.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: serde_json::Value) -> Object {
        Object::from_json(v).unwrap()
    }

    #[test]
    fn namespaces_then_definitions_then_the_rest() {
        let mut kinds = vec!["Service", "CustomResourceDefinition", "Pod", "Namespace"];
        kinds.sort_by_key(|k| rank(k));
        assert_eq!(
            kinds,
            ["Namespace", "CustomResourceDefinition", "Service", "Pod"]
        );
    }

    #[test]
    fn bodies_replace_unconditionally_and_fit_the_scope() {
        let pod = object(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "resourceVersion": "7"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}));
        let pods = crate::resources::builtin_named("pods").unwrap();
        let body = body_of(&pod, Some(&pods));
        assert!(body["metadata"].get("resourceVersion").is_none());
        assert_eq!(body["metadata"]["namespace"], "default");
        let widget = object(
            serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}}),
        );
        let mut cluster_scoped = pods.clone();
        cluster_scoped.namespaced = false;
        let body = body_of(&widget, Some(&cluster_scoped));
        assert!(body["metadata"].get("namespace").is_none());
    }

    #[test]
    fn definitions_in_the_same_apply_are_found() {
        let crd = object(serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"},
                     "scope": "Namespaced", "versions": []}}));
        assert_eq!(
            defined_kinds(&[crd]),
            [("example.com".to_string(), "Widget".to_string())]
        );
        assert_eq!(group_of("example.com/v1"), "example.com");
        assert_eq!(group_of("v1"), "");
    }
}
