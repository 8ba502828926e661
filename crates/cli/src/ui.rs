//! `weft ui`: a live map of the cluster on loopback. One page (`ui/index.html`, embedded) shows
//! the nodes with their pods, the Services with their endpoints, the NetworkPolicies and the
//! pods they isolate, and the flow log as it comes (from every node's agent, as `weft observe
//! -f` reads it), drawn between the pods: allowed green, dropped red, refused orange. A second
//! view is a namespace's reachability matrix, judged by the agents' own compiled tables (as
//! `weft policy matrix`). The page is served with its first data inside, then polls
//! `/api/state` and `/api/flows` every two seconds; `/api/matrix` answers the matrix.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_view::ClusterView;

use crate::client::{Cluster, Target};
use crate::policy::Snapshot;

#[derive(Args)]
pub struct UiArgs {
    /// The port on 127.0.0.1 (0: any free one, printed).
    #[arg(long, default_value_t = 8900)]
    port: u16,
}

pub const AFTER_HELP: &str = "Examples:
  weft ui                 # then open http://127.0.0.1:8900/
  weft ui --port 0        # any free port, printed

Serves on 127.0.0.1 only. The map: nodes and their pods (not ready: grey; isolated by a policy:
a red edge), Services and their endpoints, policies, and the flow log's records drawn between
the pods (forwarded green, dropped red, rejected orange). The reachability tab judges every pod
of a namespace to every other by the agents' compiled tables.";

/// The flow records the page has not seen, numbered as they came.
struct Flows {
    next: u64,
    kept: VecDeque<(u64, Value)>,
}

const KEPT_FLOWS: usize = 1000;

pub async fn ui(target: &Target, args: UiArgs) -> Result<i32> {
    let cluster = Arc::new(Cluster::connect(target).await?);
    let mut follower =
        crate::observe::Follower::new(Cluster::connect(target).await?, target.clone()).await?;
    let flows = Arc::new(Mutex::new(Flows {
        next: 1,
        kept: VecDeque::new(),
    }));
    let filling = flows.clone();
    tokio::spawn(async move {
        loop {
            let got = follower.next().await;
            {
                let mut f = filling.lock().unwrap_or_else(|e| e.into_inner());
                for v in got {
                    let n = f.next;
                    f.next += 1;
                    f.kept.push_back((n, v));
                    if f.kept.len() > KEPT_FLOWS {
                        f.kept.pop_front();
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
    let addr = listener.local_addr()?;
    println!("weft ui: http://{addr}/");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        let (stream, _) = listener.accept().await?;
        let (cluster, flows) = (cluster.clone(), flows.clone());
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &cluster, &flows).await {
                tracing::debug!("weft ui: {e:#}");
            }
        });
    }
}

/// One request (HTTP/1.1, answered and closed).
async fn answer(mut stream: TcpStream, cluster: &Cluster, flows: &Mutex<Flows>) -> Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await??;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| decode(v))
        })
    };
    let (status, kind, body) = match path {
        "/" | "/index.html" => {
            let snapshot = Snapshot::fetch(cluster).await?;
            let (last, recent) = flows_after(flows, 0);
            let initial = json!({"state": state(&snapshot.view), "flows": recent, "last": last});
            // `</` in the data would end the script element.
            let data = initial.to_string().replace("</", "<\\/");
            let page = include_str!("ui/index.html").replace("__INITIAL__", &data);
            ("200 OK", "text/html; charset=utf-8", page)
        }
        "/api/state" => {
            let snapshot = Snapshot::fetch(cluster).await?;
            (
                "200 OK",
                "application/json",
                state(&snapshot.view).to_string(),
            )
        }
        "/api/flows" => {
            let after = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let (last, recent) = flows_after(flows, after);
            (
                "200 OK",
                "application/json",
                json!({"last": last, "flows": recent}).to_string(),
            )
        }
        "/api/matrix" => {
            let snapshot = Snapshot::fetch(cluster).await?;
            let ns = param("namespace").unwrap_or_else(|| "default".into());
            let port = param("port").unwrap_or_else(|| "80/tcp".into());
            (
                "200 OK",
                "application/json",
                matrix(&snapshot, &ns, &port).to_string(),
            )
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

/// `%XX` and `+` of a query value.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The records numbered after `after`, and the last number.
fn flows_after(flows: &Mutex<Flows>, after: u64) -> (u64, Vec<Value>) {
    let f = flows.lock().unwrap_or_else(|e| e.into_inner());
    let recent = f
        .kept
        .iter()
        .filter(|(n, _)| *n > after)
        .map(|(_, v)| v.clone())
        .collect();
    (f.next - 1, recent)
}

/// What the map shows (pure).
pub fn state(view: &ClusterView) -> Value {
    let nodes: Vec<Value> = view
        .nodes()
        .map(|n| {
            json!({
                "name": n.metadata.name,
                "ip": weft_model::node::internal_ip(n).map(|i| i.to_string()),
                "cidr": weft_model::node::pod_cidr(n),
                "ready": weft_model::node::is_ready(n),
            })
        })
        .collect();
    let pods: Vec<Value> = view
        .pods()
        .filter(|p| !weft_model::pod::host_network(p))
        .map(|p| {
            json!({
                "namespace": p.metadata.namespace,
                "name": p.metadata.name,
                "ip": weft_model::pod::pod_ip(p).map(|i| i.to_string()),
                "node": weft_model::pod::node_name(p),
                "ready": weft_model::pod::is_ready(p),
                "labels": p.metadata.labels,
            })
        })
        .collect();
    let topology = crate::diagram::Topology::of(view);
    let services: Vec<Value> = view
        .services()
        .map(|(key, svc)| {
            let spec = svc.spec.as_ref();
            let ports = crate::diagram::service_ports(svc);
            let endpoints: Vec<Value> = topology
                .services
                .get(&key.to_string())
                .map(|(_, eps)| {
                    eps.iter()
                        .map(|(who, ready)| json!({"pod": who, "ready": ready}))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "namespace": key.namespace,
                "name": key.name,
                "clusterIP": spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_else(|| "None".into()),
                "ports": ports,
                "endpoints": endpoints,
            })
        })
        .collect();
    let policies: Vec<Value> = view
        .network_policies()
        .map(|p| {
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or("")
            );
            let types = p
                .spec
                .as_ref()
                .and_then(|s| s.policy_types.clone())
                .unwrap_or_else(|| vec!["Ingress".into()]);
            json!({
                "namespace": p.metadata.namespace,
                "name": p.metadata.name,
                "types": types,
                "selects": topology.policies.get(&key).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let mut namespaces: Vec<String> = view
        .pods()
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    json!({"nodes": nodes, "pods": pods, "services": services, "policies": policies, "namespaces": namespaces})
}

/// The reachability matrix of `namespace`'s pods on `port` (`80/tcp`).
fn matrix(snapshot: &Snapshot, namespace: &str, port: &str) -> Value {
    let run = || -> Result<Value> {
        let spec = crate::policy::ports::parse_port(port)?;
        let crate::policy::ports::PortRef::Number(number) = spec.port else {
            anyhow::bail!("give the port as a number");
        };
        let proto = spec.proto.unwrap_or(weft_dataplane::nft::L4Proto::Tcp);
        let (members, _) = crate::policy::matrix_members(&snapshot.view, &[namespace.to_string()])?;
        let cells = crate::policy::compute_matrix(snapshot, &members, proto, number)?;
        Ok(json!({
            "pods": members.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "cells": cells.iter().map(|row| row.iter().map(|v| v.allowed()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        }))
    };
    run().unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(decode("80%2Ftcp"), "80/tcp");
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
