//! `weft policy check` and `weft policy matrix`: what the NetworkPolicies do to traffic between
//! two ends, and between every pod of some namespaces, computed by the agents' own compiler.
//! Pods, Namespaces, NetworkPolicies, Nodes, Services and EndpointSlices are listed from the
//! API into a cluster view, each node's table is compiled from it with `weft_policy`, and the
//! connection's first packet is run through the tables with the nft simulator; never a second
//! evaluation of the policies. `--probe` also makes the connection for real from the source
//! pod and says whether it agrees.

pub(crate) mod ends;
pub(crate) mod ports;
pub(crate) mod probe;
pub(crate) mod render;
pub(crate) mod verdict;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use weft_dataplane::nft::L4Proto;
use weft_view::{ClusterView, Event, NsName};

use crate::client::{Cluster, Target};
use ends::{End, Member};
use ports::{DstPort, PortRef, PortSpec};
use probe::Observed;
use verdict::{PathVerdict, Tables};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Whether traffic from FROM to TO is allowed, and which policy and rule decides, at the
    /// source (egress) and at the destination (ingress).
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// The reachability matrix of every pod of some namespaces to every other (rows from,
    /// columns to; `.` allowed, `X` denied), as upstream's network policy e2e tests print it.
    #[command(after_help = MATRIX_HELP)]
    Matrix(MatrixArgs),
}

const CHECK_HELP: &str = "Examples:
  weft policy check x/a default/db 5432            # pod to pod, TCP
  weft policy check client svc/web 80              # to each ready endpoint of Service web
  weft policy check x/a 203.0.113.10 80/tcp --probe # to outside the cluster, and try it for real
  weft policy check -n demo web db dns/udp -o json # a named container port, as JSON

FROM and TO: POD, NS/POD, svc/NAME, NS/svc/NAME, or an IPv4 address (outside the cluster, or a
pod's or node's). PORT[/PROTO]: a number or a port name (the pod's container port, the Service's
port), TCP unless PROTO says udp or sctp; without it, every port TO declares.

The verdict is computed as the kernel does it: each node's policy table is compiled from the
API's objects by the agent's own compiler, and the connection's first packet is simulated
through it. --probe also connects from the FROM pod through the API's exec (curl for TCP, bash's
/dev/udp for UDP; to a Service's endpoints directly, each on its target port; an answer or a
refusal means the packet got through, silence means dropped) and exits 1 if a probe disagrees.";

const MATRIX_HELP: &str = "Examples:
  weft policy matrix -n x,y,z
  weft policy matrix -n x --port 80/tcp --port 53/udp
  weft policy matrix -n x,y --probe                 # also connect for real, and compare

A pod's traffic to itself is always allowed (it never leaves the pod). --probe connects from every
pod to every other (curl for TCP, bash's /dev/udp for UDP), prints the probed matrix and the
comparison (. agrees, X disagrees) and exits 1 if any cell disagrees.";

#[derive(Args)]
pub struct CheckArgs {
    /// The sender: POD, NS/POD, svc/NAME, NS/svc/NAME or an IPv4 address.
    from: String,
    /// The receiver: POD, NS/POD, svc/NAME, NS/svc/NAME or an IPv4 address.
    to: String,
    /// PORT[/PROTO] (80, 53/udp, http); default: every port TO declares.
    #[arg(value_parser = port_arg)]
    port: Option<PortSpec>,
    /// The namespace of names without one (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// Also make the connection for real from the FROM pod, and compare.
    #[arg(long)]
    probe: bool,
    /// Seconds a probe waits for a connection or an answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    timeout: u64,
    /// Output format: json.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    output: Option<String>,
}

#[derive(Args)]
pub struct MatrixArgs {
    /// The namespaces whose pods make the matrix (comma-separated or repeated).
    #[arg(
        short = 'n',
        long = "namespace",
        value_delimiter = ',',
        required = true
    )]
    namespaces: Vec<String>,
    /// A port to check, PORT[/PROTO] with a number (repeatable; default 80/tcp).
    #[arg(long = "port", value_parser = port_arg)]
    ports: Vec<PortSpec>,
    /// Also connect for real from every pod to every other, and compare.
    #[arg(long)]
    probe: bool,
    /// Seconds a probe waits for a connection or an answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    timeout: u64,
    /// Output format: json.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    output: Option<String>,
}

fn port_arg(text: &str) -> Result<PortSpec, String> {
    ports::parse_port(text).map_err(|e| e.to_string())
}

/// Every object of kind `K` in every namespace.
pub(crate) async fn all<K>(cluster: &Cluster) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(cluster.client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| cluster.error(e))
        .with_context(|| format!("listing {}", K::plural(&())))?;
    Ok(list.items)
}

/// The objects the tables are compiled from, the overlay port they close to pods, and the
/// cluster config weft runs with.
pub struct Snapshot {
    pub view: ClusterView,
    pub vxlan_port: u16,
    pub config: weft_model::ClusterConfig,
}

impl Snapshot {
    /// Lists what the policy compiler reads (and Services with their slices, for svc/NAME).
    pub async fn fetch(cluster: &Cluster) -> Result<Snapshot> {
        let mut view = ClusterView::new();
        view.apply(Event::Relisted(all::<Node>(cluster).await?));
        view.apply(Event::Relisted(all::<Namespace>(cluster).await?));
        view.apply(Event::Relisted(all::<Pod>(cluster).await?));
        view.apply(Event::Relisted(all::<NetworkPolicy>(cluster).await?));
        view.apply(Event::Relisted(all::<Service>(cluster).await?));
        view.apply(Event::Relisted(all::<EndpointSlice>(cluster).await?));
        let config = cluster_config(cluster).await;
        Ok(Snapshot {
            view,
            vxlan_port: config.vxlan_port,
            config,
        })
    }
}

/// The cluster config weft is deployed with (the `weft-config` ConfigMap), else the default.
async fn cluster_config(cluster: &Cluster) -> weft_model::ClusterConfig {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "kube-system");
    let Ok(Some(cm)) = api.get_opt("weft-config").await else {
        return weft_model::ClusterConfig::default();
    };
    cm.data
        .as_ref()
        .and_then(|d| d.get("cluster.yaml"))
        .and_then(|text| weft_model::ClusterConfig::from_yaml("weft-config", text).ok())
        .unwrap_or_default()
}

pub async fn run(target: &Target, command: PolicyCommand) -> Result<i32> {
    let cluster = Cluster::connect(target).await?;
    let snapshot = Snapshot::fetch(&cluster).await?;
    match command {
        PolicyCommand::Check(args) => check(&cluster, &snapshot, args).await,
        PolicyCommand::Matrix(args) => matrix(&cluster, &snapshot, args).await,
    }
}

/// One path of a check: the verdict, and how its port was found.
pub struct CheckPath {
    pub verdict: PathVerdict,
    pub port_label: String,
}

/// A check's ends and paths, computed (pure).
pub struct Checked {
    pub from: End,
    pub to: End,
    pub paths: Vec<CheckPath>,
}

/// Resolves FROM and TO and judges every path between them (pure: the view in, verdicts out).
pub fn compute_check(
    snapshot: &Snapshot,
    from: &str,
    to: &str,
    port: Option<&PortSpec>,
    namespace: &str,
    explicit_namespace: bool,
) -> Result<Checked> {
    let view = &snapshot.view;
    let from = ends::resolve_end(view, from, namespace, explicit_namespace)?;
    let to = ends::resolve_end(view, to, namespace, explicit_namespace)?;
    let mut tables = Tables::new(view, snapshot.vxlan_port);
    let mut paths = Vec::new();
    for dst in &to.members {
        let ports: Vec<DstPort> = ports::dst_ports(view, &to, dst, port)?;
        for src in &from.members {
            for p in &ports {
                let hairpin = to.service.is_some() && src.pod.is_some() && src.pod == dst.pod;
                let verdict = verdict::judge(&mut tables, src, dst, p.proto, p.port, hairpin)?;
                paths.push(CheckPath {
                    verdict,
                    port_label: p.label.clone(),
                });
            }
        }
    }
    Ok(Checked { from, to, paths })
}

/// `FROM is x/a (10.244.1.2, node n1)`, or a Service's ready endpoints.
fn end_text(word: &str, end: &End) -> String {
    let members: Vec<String> = end
        .members
        .iter()
        .map(|m| match &m.pod {
            Some(p) => format!("{p} ({})", m.ip),
            None => m.ip.to_string(),
        })
        .collect();
    match &end.service {
        Some(_) if members.is_empty() => format!("{word} {}: no ready endpoints\n", end.label),
        Some(_) => format!(
            "{word} {}: ready endpoints {}\n",
            end.label,
            members.join(", ")
        ),
        None => format!("{word} {}\n", end.label),
    }
}

async fn check(cluster: &Cluster, snapshot: &Snapshot, args: CheckArgs) -> Result<i32> {
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let checked = compute_check(
        snapshot,
        &args.from,
        &args.to,
        args.port.as_ref(),
        &namespace,
        args.namespace.is_some(),
    )?;
    let timeout = Duration::from_secs(args.timeout);
    let mut probes: Vec<Option<Observed>> = Vec::new();
    for path in &checked.paths {
        probes.push(if args.probe {
            let v = &path.verdict;
            Some(
                probe::probe(
                    cluster,
                    v.src.pod.as_ref(),
                    v.dst.ip,
                    v.proto,
                    v.port,
                    timeout,
                )
                .await,
            )
        } else {
            None
        });
    }
    let disagree = checked.paths.iter().zip(&probes).any(|(p, o)| {
        o.as_ref()
            .and_then(Observed::allowed)
            .is_some_and(|a| a != p.verdict.allowed())
    });
    let view = &snapshot.view;
    if args.output.is_some() {
        let out = json!({
            "from": checked.from.label,
            "to": checked.to.label,
            "allowed": !checked.paths.is_empty() && checked.paths.iter().all(|p| p.verdict.allowed()),
            "paths": checked.paths.iter().zip(&probes)
                .map(|(p, o)| render::path_json(view, &p.verdict, &p.port_label, o.as_ref()))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut out = end_text("from", &checked.from);
        out.push_str(&end_text("to  ", &checked.to));
        for (p, o) in checked.paths.iter().zip(&probes) {
            out.push('\n');
            out.push_str(&render::path_text(
                view,
                &p.verdict,
                &p.port_label,
                o.as_ref(),
            ));
        }
        print!("{out}");
    }
    Ok(if disagree { 1 } else { 0 })
}

/// The matrix's pods (those with an address of the pod network), sorted, and the ones left
/// out with the reason.
pub fn matrix_members(
    view: &ClusterView,
    namespaces: &[String],
) -> Result<(Vec<Member>, Vec<String>)> {
    let mut members = Vec::new();
    let mut skipped = Vec::new();
    for ns in namespaces {
        if view.namespace(ns).is_none() {
            bail!("unknown namespace {ns:?}");
        }
        let mut pods: Vec<&Pod> = view.pods_in(ns).collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for pod in pods {
            match ends::pod_member(pod) {
                Ok(m) if m.host => skipped.push(format!(
                    "{}: in its node's network (NetworkPolicy does not apply)",
                    m.name()
                )),
                Ok(m) => members.push(m),
                Err(e) => skipped.push(e.to_string()),
            }
        }
    }
    Ok((members, skipped))
}

/// Every cell of one port's matrix: rows from, columns to.
pub fn compute_matrix(
    snapshot: &Snapshot,
    members: &[Member],
    proto: L4Proto,
    port: u16,
) -> Result<Vec<Vec<PathVerdict>>> {
    let mut tables = Tables::new(&snapshot.view, snapshot.vxlan_port);
    members
        .iter()
        .map(|src| {
            members
                .iter()
                .map(|dst| verdict::judge(&mut tables, src, dst, proto, port, false))
                .collect()
        })
        .collect()
}

/// The matrix's ports: numbers only (a name means a different port on every pod).
fn matrix_ports(ports: &[PortSpec]) -> Result<Vec<(L4Proto, u16)>> {
    if ports.is_empty() {
        return Ok(vec![(L4Proto::Tcp, 80)]);
    }
    ports
        .iter()
        .map(|p| match &p.port {
            PortRef::Number(n) => Ok((p.proto.unwrap_or(L4Proto::Tcp), *n)),
            PortRef::Name(name) => bail!(
                "bad port {name:?}: the matrix takes port numbers (a name may mean a different port on every pod)"
            ),
        })
        .collect()
}

async fn matrix(cluster: &Cluster, snapshot: &Snapshot, args: MatrixArgs) -> Result<i32> {
    let ports = matrix_ports(&args.ports)?;
    let (members, skipped) = matrix_members(&snapshot.view, &args.namespaces)?;
    let names: Vec<String> = members.iter().map(Member::name).collect();
    let timeout = Duration::from_secs(args.timeout);
    let mut text = String::new();
    let mut json_ports = Vec::new();
    let mut disagreements = 0;
    for (proto, port) in ports {
        let label = format!("{port}/{}", ports::proto_name(proto));
        let cells = compute_matrix(snapshot, &members, proto, port)?;
        let probed = if args.probe {
            Some(probe_matrix(cluster, &members, proto, port, timeout).await)
        } else {
            None
        };
        let computed = |i: usize, j: usize| Some(cells[i][j].allowed());
        text.push_str(&format!("{label} computed:\n"));
        text.push_str(&render::truth_table(&names, computed));
        if let Some(probed) = &probed {
            let observed = |i: usize, j: usize| probed[i][j].allowed();
            let compared = |i: usize, j: usize| observed(i, j).map(|o| Some(o) == computed(i, j));
            let n = (0..names.len())
                .flat_map(|i| (0..names.len()).map(move |j| (i, j)))
                .filter(|(i, j)| compared(*i, *j) == Some(false))
                .count();
            disagreements += n;
            text.push_str(&format!("\n{label} probed:\n"));
            text.push_str(&render::truth_table(&names, observed));
            text.push_str(&format!("\n{label} comparison (. agrees, X disagrees):\n"));
            text.push_str(&render::truth_table(&names, compared));
            for (i, row) in probed.iter().enumerate() {
                for (j, o) in row.iter().enumerate() {
                    if let Observed::Failed(why) = o {
                        text.push_str(&format!(
                            "  {} -> {}: probe failed: {why}\n",
                            names[i], names[j]
                        ));
                    }
                }
            }
            text.push_str(&match n {
                0 => "every probe agrees with the computed verdicts\n".to_string(),
                n => format!("{n} cells disagree with the computed verdicts\n"),
            });
        }
        text.push('\n');
        let view = &snapshot.view;
        let json_cells: Vec<Value> = cells
            .iter()
            .enumerate()
            .flat_map(|(i, row)| row.iter().enumerate().map(move |(j, v)| (i, j, v)))
            .map(|(i, j, v)| {
                let o = probed.as_ref().map(|p| &p[i][j]);
                render::path_json(view, v, &label, o)
            })
            .collect();
        json_ports.push(json!({"port": label, "cells": json_cells}));
    }
    if args.output.is_some() {
        let out = json!({
            "namespaces": args.namespaces,
            "pods": names,
            "skipped": skipped,
            "ports": json_ports,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &skipped {
            text.push_str(&format!("left out: {s}\n"));
        }
        print!("{}", text.trim_end_matches('\n'));
        println!();
    }
    Ok(if disagreements > 0 { 1 } else { 0 })
}

/// Probes every cell of a matrix, a few at a time (a pod to itself too: through its loopback).
async fn probe_matrix(
    cluster: &Cluster,
    members: &[Member],
    proto: L4Proto,
    port: u16,
    timeout: Duration,
) -> Vec<Vec<Observed>> {
    const AT_ONCE: usize = 16;
    let cells: Vec<(usize, usize, Option<NsName>, Ipv4Addr)> = members
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            members
                .iter()
                .enumerate()
                .map(move |(j, d)| (i, j, s.pod.clone(), d.ip))
        })
        .collect();
    let results: Vec<(usize, usize, Observed)> = futures::stream::iter(cells)
        .map(|(i, j, src, dst)| async move {
            let o = probe::probe(cluster, src.as_ref(), dst, proto, port, timeout).await;
            (i, j, o)
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let mut out = vec![vec![Observed::NotProbed(String::new()); members.len()]; members.len()];
    for (i, j, o) in results {
        out[i][j] = o;
    }
    out
}
