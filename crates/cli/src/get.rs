//! `weft get`: objects read over the Kubernetes API, shown the way kubectl shows them: one or
//! more resource types (`pod,svc`, `all`), names (`svc web`, `svc/web`), a label selector, and
//! `--watch` to follow changes row by row.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::WatchEvent;
use serde_json::Value;
use weft_model::config::ClusterName;
use weft_model::object::Object;

use crate::client::{Cluster, Reported, ServerError, Target};
use crate::printers;
use crate::resources::{self, Resource};
use crate::table::Table;

#[derive(Args)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...: pods, nodes, deployments, namespaces, services
    /// (svc), endpoints (ep), endpointslices (eps), any resource the server has; `all` is pods,
    /// services and deployments.
    #[arg(required = true, value_name = "TYPE[,TYPE] [NAME]... | TYPE/NAME...")]
    args: Vec<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// Namespace (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Only objects with these labels (`app=web`, `tier in (a,b)`, `!canary`), selected by
    /// the server.
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// After listing, print a row for every change (like kubectl get -w), until Ctrl-C.
    #[arg(short = 'w', long = "watch")]
    watch: bool,
}

/// What the user asked for: resource words, each with the names wanted (none: every object).
pub fn parse_request(args: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let Some(first) = args.first() else {
        bail!("say what to get: `weft get pods`, `weft get svc web`, `weft get svc/web`");
    };
    if first.contains('/') {
        let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
        for arg in args {
            let Some((word, name)) = arg
                .split_once('/')
                .filter(|(w, n)| !w.is_empty() && !n.is_empty())
            else {
                bail!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. `weft get svc/web pod/client`)");
            };
            match wanted.last_mut() {
                Some((last, names)) if last == word => names.push(name.to_string()),
                _ => wanted.push((word.to_string(), vec![name.to_string()])),
            }
        }
        return Ok(wanted);
    }
    let names: Vec<String> = args[1..].to_vec();
    Ok(first
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| (w.to_string(), names.clone()))
        .collect())
}

/// One resource type to show, with what was read of it.
struct Section {
    resource: Resource,
    /// The objects, or for Endpoints the Services they stand for.
    objects: Vec<Object>,
    /// The raw JSON of each object (what `-o json|yaml` prints).
    raw: Vec<Value>,
    /// EndpointSlices, for the Endpoints view.
    slices: Vec<EndpointSlice>,
    /// The list's resourceVersion (a watch starts there).
    version: String,
}

fn to_object(v: Value) -> Result<Object> {
    let what = format!(
        "{} {}",
        v["kind"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    );
    Object::from_json(v).with_context(|| format!("reading {what} from the server"))
}

fn slices_of_values(values: Vec<Value>) -> Vec<EndpointSlice> {
    values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

pub async fn get(target: &Target, args: GetArgs) -> Result<()> {
    let cluster = Cluster::connect(target).await?;
    let wanted = parse_request(&args.args)?;
    let mut resolved: Vec<(Resource, Vec<String>)> = Vec::new();
    let mut mixed = wanted.len() > 1;
    for (word, names) in &wanted {
        if word.eq_ignore_ascii_case(resources::ALL) {
            mixed = true;
            resolved.extend(
                resources::all_category()
                    .into_iter()
                    .map(|r| (r, names.clone())),
            );
        } else {
            resolved.push((cluster.resource(word).await?, names.clone()));
        }
    }
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let ns = (!args.all_namespaces).then_some(namespace.as_str());
    if args.all_namespaces
        && resolved
            .iter()
            .any(|(r, names)| r.namespaced && !names.is_empty())
    {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    if args.watch && resolved.len() != 1 {
        bail!("--watch follows one resource type at a time");
    }

    let mut sections = Vec::new();
    let mut missing: Vec<ServerError> = Vec::new();
    for (resource, names) in resolved {
        let (section, not_found) =
            read_section(&cluster, resource, ns, &names, args.selector.as_deref()).await?;
        sections.push(section);
        missing.extend(not_found);
    }
    let single = wanted.len() == 1 && wanted[0].1.len() == 1 && !mixed;
    let widths = print_sections(
        &sections,
        &args,
        single,
        mixed,
        &namespace,
        missing.is_empty(),
    )?;
    for e in &missing {
        eprintln!("{e}");
    }
    if args.watch {
        if let (Some(section), true) = (sections.first(), missing.is_empty()) {
            let names = wanted.first().map(|(_, n)| n.clone()).unwrap_or_default();
            return watch(&cluster, section, ns, &names, &args, widths).await;
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Reported.into())
    }
}

/// Reads one resource type: the named objects (with a NotFound error for each missing one),
/// or every object in `ns` matching `selector`.
async fn read_section(
    cluster: &Cluster,
    resource: Resource,
    ns: Option<&str>,
    names: &[String],
    selector: Option<&str>,
) -> Result<(Section, Vec<ServerError>)> {
    // Endpoints are shown from the Services and their EndpointSlices, so a Service without a
    // selector gets a hint, and the same cells work on any cluster.
    let endpoints = resource.kind == "Endpoints";
    let read = if endpoints {
        resources::builtin_named("services").context("the services resource")?
    } else {
        resource.clone()
    };
    let mut raw = Vec::new();
    let mut missing = Vec::new();
    let mut version = String::new();
    if names.is_empty() {
        let (items, rv) = cluster.list(&read, ns, selector).await?;
        raw = items;
        version = rv;
    } else {
        for name in names {
            match cluster.get(&read, ns, name).await? {
                Some(v) => raw.push(v),
                None => missing.push(ServerError {
                    code: 404,
                    reason: "NotFound".into(),
                    message: format!("{} {name:?} not found", resource.qualified()),
                    details: None,
                }),
            }
        }
    }
    let slices = if endpoints {
        let eps = resources::builtin_named("endpointslices").context("endpointslices")?;
        slices_of_values(cluster.list(&eps, ns, None).await?.0)
    } else {
        Vec::new()
    };
    let objects = raw
        .iter()
        .cloned()
        .map(to_object)
        .collect::<Result<Vec<_>>>()?;
    let raw = if endpoints {
        objects
            .iter()
            .map(|o| endpoints_value(o, &slices))
            .collect()
    } else {
        raw
    };
    Ok((
        Section {
            resource,
            objects,
            raw,
            slices,
            version,
        },
        missing,
    ))
}

fn endpoints_value(o: &Object, slices: &[EndpointSlice]) -> Value {
    match o {
        Object::Service(svc) => printers::endpoints_json(svc, &printers::slices_of(slices, svc)),
        other => other.to_json(),
    }
}

fn table_of(section: &Section, objects: &[Object], wide: bool, all: bool, mixed: bool) -> Table {
    let r = &section.resource;
    let mut table =
        printers::table_for(&r.kind, objects, &section.slices, wide, all && r.namespaced);
    if mixed {
        table.prefix_names(&format!("{}/", resources::qualified_singular(r)));
    }
    table
}

/// Prints every section in the chosen format; returns the first table's column widths (a
/// watch lines its rows up with them).
fn print_sections(
    sections: &[Section],
    args: &GetArgs,
    single: bool,
    mixed: bool,
    namespace: &str,
    all_found: bool,
) -> Result<Vec<usize>> {
    let raw: Vec<&Value> = sections.iter().flat_map(|s| s.raw.iter()).collect();
    match args.output.as_deref() {
        Some("yaml") => {
            for v in &raw {
                print!("---\n{}", serde_norway::to_string(v)?);
            }
            return Ok(Vec::new());
        }
        Some("json") => {
            let out = match raw.as_slice() {
                [one] if single => (*one).clone(),
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": raw}),
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(Vec::new());
        }
        Some("name") => {
            for s in sections {
                let kind = resources::qualified_singular(&s.resource);
                for o in &s.objects {
                    println!("{kind}/{}", o.name());
                }
            }
            return Ok(Vec::new());
        }
        Some("wide") | None => {}
        Some(other) => bail!("unknown output format {other:?} (use wide, yaml, json or name)"),
    }
    let wide = args.output.as_deref() == Some("wide");
    let mut printed = 0;
    let mut widths = Vec::new();
    for s in sections {
        let table = table_of(s, &s.objects, wide, args.all_namespaces, mixed);
        if table.is_empty() {
            continue;
        }
        if printed > 0 {
            println!();
        }
        if printed == 0 {
            widths = table.widths();
        }
        print!("{}", table.render());
        printed += 1;
    }
    let any_namespaced = sections.iter().any(|s| s.resource.namespaced);
    if printed == 0 && all_found && !args.watch {
        if any_namespaced && !args.all_namespaces {
            eprintln!("No resources found in {namespace} namespace.");
        } else {
            eprintln!("No resources found");
        }
    }
    for s in sections.iter().filter(|s| s.resource.kind == "Endpoints") {
        if !single {
            break;
        }
        for o in &s.objects {
            if let Object::Service(svc) = o {
                if let Some(hint) =
                    printers::no_endpoints_hint(svc, &printers::slices_of(&s.slices, svc))
                {
                    eprintln!("hint: {hint}");
                }
            }
        }
    }
    Ok(widths)
}

/// Follows one resource type after its listing: a row (or a document) per change, like
/// `kubectl get -w`. Endpoints follow their EndpointSlices and Services.
async fn watch(
    cluster: &Cluster,
    section: &Section,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
    widths: Vec<usize>,
) -> Result<()> {
    let endpoints = section.resource.kind == "Endpoints";
    let watched = if endpoints {
        resources::builtin_named("endpointslices").context("endpointslices")?
    } else {
        section.resource.clone()
    };
    let field = match names {
        [one] if !endpoints => Some(format!("metadata.name={one}")),
        _ => None,
    };
    let selector = if endpoints {
        None
    } else {
        args.selector.as_deref()
    };
    let mut version = if endpoints {
        cluster.list(&watched, ns, None).await?.1
    } else {
        section.version.clone()
    };
    if version.is_empty() {
        // Named reads carry no list version: start from a listing of the same objects.
        version = cluster.list(&watched, ns, selector).await?.1;
    }
    let wide = args.output.as_deref() == Some("wide");
    let mut widths = widths;
    loop {
        let mut events = Box::pin(
            cluster
                .watch(&watched, ns, selector, field.as_deref(), &version)
                .await?,
        );
        while let Some(event) = events.next().await {
            let object = match event? {
                WatchEvent::Added(v) | WatchEvent::Modified(v) | WatchEvent::Deleted(v) => v,
                WatchEvent::Bookmark(b) => {
                    version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) if status.code == 410 => {
                    // Too old: start again from now, as kubectl's watch does.
                    version = cluster.list(&watched, ns, selector).await?.1;
                    break;
                }
                WatchEvent::Error(status) => {
                    bail!("the watch ended: {} ({})", status.message, status.reason)
                }
            };
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
                version = rv.to_string();
            }
            let shown = if endpoints {
                match endpoints_row_object(cluster, &object, ns, names, args).await? {
                    Some(shown) => shown,
                    None => continue,
                }
            } else {
                WatchedRow {
                    object: to_object(object.clone())?,
                    raw: object,
                    slices: Vec::new(),
                }
            };
            print_watched(section, &shown, args, wide, &mut widths)?;
        }
    }
}

/// One changed object as a watch shows it.
struct WatchedRow {
    object: Object,
    raw: Value,
    slices: Vec<EndpointSlice>,
}

/// The Endpoints row a changed EndpointSlice stands for: its Service, with all its slices now.
async fn endpoints_row_object(
    cluster: &Cluster,
    slice: &Value,
    ns: Option<&str>,
    names: &[String],
    args: &GetArgs,
) -> Result<Option<WatchedRow>> {
    let Some(svc_name) = slice["metadata"]["labels"][crate::table::SERVICE_NAME_LABEL].as_str()
    else {
        return Ok(None);
    };
    if !names.is_empty() && !names.iter().any(|n| n == svc_name) {
        return Ok(None);
    }
    let svc_ns = slice["metadata"]["namespace"].as_str().or(ns);
    let services = resources::builtin_named("services").context("services")?;
    let Some(raw) = cluster.get(&services, svc_ns, svc_name).await? else {
        return Ok(None);
    };
    let object = to_object(raw)?;
    if let (Some(selector), Object::Service(svc)) = (&args.selector, &object) {
        let parsed = weft_model::selector::parse(selector).map_err(anyhow::Error::msg)?;
        let labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
        if !weft_model::selector::matches(&parsed, &labels) {
            return Ok(None);
        }
    }
    let eps = resources::builtin_named("endpointslices").context("endpointslices")?;
    let selector = format!("{}={svc_name}", crate::table::SERVICE_NAME_LABEL);
    let slices = slices_of_values(cluster.list(&eps, svc_ns, Some(&selector)).await?.0);
    let raw = endpoints_value(&object, &slices);
    Ok(Some(WatchedRow {
        object,
        raw,
        slices,
    }))
}

fn print_watched(
    section: &Section,
    row: &WatchedRow,
    args: &GetArgs,
    wide: bool,
    widths: &mut Vec<usize>,
) -> Result<()> {
    match args.output.as_deref() {
        Some("yaml") => print!("---\n{}", serde_norway::to_string(&row.raw)?),
        Some("json") => println!("{}", serde_json::to_string_pretty(&row.raw)?),
        Some("name") => println!(
            "{}/{}",
            resources::qualified_singular(&section.resource),
            row.object.name()
        ),
        _ => {
            let shown = Section {
                resource: section.resource.clone(),
                objects: Vec::new(),
                raw: Vec::new(),
                slices: row.slices.clone(),
                version: String::new(),
            };
            let table = table_of(
                &shown,
                std::slice::from_ref(&row.object),
                wide,
                args.all_namespaces,
                false,
            );
            if widths.is_empty() {
                // Nothing was listed first: this row starts the table, headers included.
                *widths = table.widths();
                print!("{}", table.render());
            } else {
                print!("{}", table.render_rows(widths));
            }
        }
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(())
}

/// The pod table `lab up` prints at the end, read through the lab's API server.
pub fn print_pods(lab: &ClusterName, wide: bool, all: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cluster = Cluster::connect(&Target::Lab(lab.clone())).await?;
        let pods = resources::builtin_named("pods").context("pods")?;
        let (items, _) = cluster.list(&pods, None, None).await?;
        let objects = items
            .into_iter()
            .map(to_object)
            .collect::<Result<Vec<_>>>()?;
        if objects.is_empty() {
            println!("No pods.");
        } else {
            print!("{}", printers::pod_table(&objects, wide, all).render());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Vec<(String, Vec<String>)> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_request(&args).unwrap()
    }

    #[test]
    fn requests_like_kubectl() {
        assert_eq!(parse(&["pods"]), [("pods".to_string(), vec![])]);
        assert_eq!(
            parse(&["svc", "web", "db"]),
            [("svc".to_string(), vec!["web".to_string(), "db".to_string()])]
        );
        assert_eq!(
            parse(&["pod,svc"]),
            [("pod".to_string(), vec![]), ("svc".to_string(), vec![])]
        );
        assert_eq!(
            parse(&["svc/web", "svc/db", "pod/client"]),
            [
                ("svc".to_string(), vec!["web".to_string(), "db".to_string()]),
                ("pod".to_string(), vec!["client".to_string()])
            ]
        );
        let args: Vec<String> = vec!["svc/web".into(), "db".into()];
        assert!(parse_request(&args).is_err());
    }
}
