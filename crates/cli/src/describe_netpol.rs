//! `weft describe netpol NAME`: what `kubectl describe networkpolicy` shows (the spec in
//! kubectl's words), then what the policy does now: the pods it selects (from the API: the
//! namespace's pods matching its podSelector, with node and address) and, per node of those
//! pods, what it allowed and what was dropped, from that node's agent (`GET /policy` on its
//! health port, `weft_policy::report`, asked as [`crate::agents`] says).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_policy::report::{Count, NodeReport, Traffic};

use crate::agents;
use crate::client::{Cluster, Target};
use crate::describe::{section, Fields};
use crate::resources;

/// An agent answers 503 while its policy table is being updated: ask again this often.
const AGENT_TRIES: usize = 5;
/// kubectl leaves this annotation out of describe.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The whole description of `np`.
pub async fn describe(cluster: &Cluster, target: &Target, np: &NetworkPolicy) -> Result<String> {
    let namespace = np.metadata.namespace.clone().unwrap_or_default();
    let selector = np
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.clone())
        .unwrap_or_default();
    let pods_resource = resources::builtin_named("pods").context("pods")?;
    let (items, _) = cluster.list(&pods_resource, Some(&namespace), None).await?;
    let pods: Vec<Pod> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .filter(|p| selected(p, &selector))
        .collect();
    let mut nodes: BTreeMap<String, Result<NodeReport>> = BTreeMap::new();
    let nodes_resource = resources::builtin_named("nodes").context("nodes")?;
    let ports = agents::ports(cluster).await;
    for node in pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
    {
        if nodes.contains_key(&node) {
            continue;
        }
        let report = match cluster.get(&nodes_resource, None, &node).await? {
            Some(v) => {
                let n: Node = serde_json::from_value(v)?;
                match weft_model::node::internal_ip(&n) {
                    Some(ip) => {
                        let port = ports.get(&node).copied().unwrap_or(weft_agent::HEALTH_PORT);
                        agent_report(target.clone(), SocketAddr::from((ip, port))).await
                    }
                    None => Err(anyhow!("node {node} has no InternalIP")),
                }
            }
            None => Err(anyhow!("node {node} is gone")),
        };
        nodes.insert(node, report);
    }
    let key = (namespace, np.metadata.name.clone().unwrap_or_default());
    Ok(spec_text(np) + &pods_text(&pods) + &traffic_text(&key, &nodes))
}

/// Whether `pod` is one the policy selects: in its namespace (listed so), matching the
/// selector, and taking part in policy (not on the host's network, not finished).
fn selected(pod: &Pod, selector: &LabelSelector) -> bool {
    let empty = BTreeMap::new();
    !weft_model::pod::host_network(pod)
        && !matches!(weft_model::pod::phase(pod), "Succeeded" | "Failed")
        && weft_model::selector::matches(selector, pod.metadata.labels.as_ref().unwrap_or(&empty))
}

/// `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` for match-all.
fn format_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<(String, String)> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let mut values = req.values.clone().unwrap_or_default();
        values.sort();
        let values = values.join(",");
        let text = match req.operator.as_str() {
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!("{} {other} ({values})", req.key),
        };
        parts.push((req.key.clone(), text));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    if parts.is_empty() {
        return "<none>".into();
    }
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// kubectl's part: metadata, then `Spec:` as `describeNetworkPolicySpec` writes it. The
/// creation time is in UTC (kubectl uses the local zone).
pub fn spec_text(np: &NetworkPolicy) -> String {
    let meta = &np.metadata;
    let mut f = Fields::new();
    f.add("Name", meta.name.clone().unwrap_or_default());
    f.add("Namespace", meta.namespace.clone().unwrap_or_default());
    f.add(
        "Created on",
        meta.creation_timestamp
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
            .unwrap_or_else(|| "0001-01-01 00:00:00 +0000 UTC".into()),
    );
    f.add("Labels", lines(meta.labels.as_ref()));
    let annotations = meta.annotations.as_ref().map(|a| {
        let mut a = a.clone();
        a.remove(LAST_APPLIED);
        a
    });
    f.add("Annotations", lines(annotations.as_ref()));
    let spec = np.spec.clone().unwrap_or_default();
    let mut out = f.render();
    out.push_str("Spec:\n");
    let selector = spec.pod_selector.clone().unwrap_or_default();
    if format_selector(&selector) == "<none>" {
        out.push_str(
            "  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)\n",
        );
    } else {
        out.push_str(&format!(
            "  PodSelector:     {}\n",
            format_selector(&selector)
        ));
    }
    let types = spec.policy_types.clone().unwrap_or_default();
    let has = |t: &str| types.iter().any(|x| x == t);
    if has("Ingress") {
        out.push_str("  Allowing ingress traffic:\n");
        let rules: Vec<_> = spec
            .ingress
            .iter()
            .flatten()
            .map(|r| (r.ports.as_deref(), r.from.as_deref()))
            .collect();
        rules_text(&mut out, &rules, "From", "source", "ingress");
    } else {
        out.push_str("  Not affecting ingress traffic\n");
    }
    if has("Egress") {
        out.push_str("  Allowing egress traffic:\n");
        let rules: Vec<_> = spec
            .egress
            .iter()
            .flatten()
            .map(|r| (r.ports.as_deref(), r.to.as_deref()))
            .collect();
        rules_text(&mut out, &rules, "To", "destination", "egress");
    } else {
        out.push_str("  Not affecting egress traffic\n");
    }
    let types = if types.is_empty() {
        "<none>".to_string()
    } else {
        types.join(", ")
    };
    out.push_str(&format!("  Policy Types: {types}\n"));
    out
}

type RuleParts<'a> = (
    Option<&'a [NetworkPolicyPort]>,
    Option<&'a [NetworkPolicyPeer]>,
);

/// `printNetworkPolicySpecIngressFrom` / `...EgressTo`, four spaces in.
fn rules_text(out: &mut String, rules: &[RuleParts], peer: &str, side: &str, direction: &str) {
    const IN: &str = "    ";
    if rules.is_empty() {
        out.push_str(&format!(
            "{IN}<none> (Selected pods are isolated for {direction} connectivity)\n"
        ));
        return;
    }
    for (i, (ports, peers)) in rules.iter().enumerate() {
        match ports.filter(|p| !p.is_empty()) {
            None => out.push_str(&format!(
                "{IN}To Port: <any> (traffic allowed to all ports)\n"
            )),
            Some(ports) => {
                for p in ports {
                    let proto = p.protocol.as_deref().unwrap_or("TCP");
                    let port = match &p.port {
                        Some(IntOrString::Int(n)) => n.to_string(),
                        Some(IntOrString::String(s)) => s.clone(),
                        None => "<nil>".into(),
                    };
                    match p.end_port {
                        None => out.push_str(&format!("{IN}To Port: {port}/{proto}\n")),
                        Some(end) => {
                            out.push_str(&format!("{IN}To Port Range: {port}-{end}/{proto}\n"))
                        }
                    }
                }
            }
        }
        match peers.filter(|p| !p.is_empty()) {
            None => out.push_str(&format!(
                "{IN}{peer}: <any> (traffic not restricted by {side})\n"
            )),
            Some(peers) => {
                for p in peers {
                    out.push_str(&format!("{IN}{peer}:\n"));
                    let sel = |s: &LabelSelector| format_selector(s);
                    match (&p.pod_selector, &p.namespace_selector, &p.ip_block) {
                        (Some(pods), Some(nss), _) => {
                            out.push_str(&format!("{IN}  NamespaceSelector: {}\n", sel(nss)));
                            out.push_str(&format!("{IN}  PodSelector: {}\n", sel(pods)));
                        }
                        (Some(pods), None, _) => {
                            out.push_str(&format!("{IN}  PodSelector: {}\n", sel(pods)))
                        }
                        (None, Some(nss), _) => {
                            out.push_str(&format!("{IN}  NamespaceSelector: {}\n", sel(nss)))
                        }
                        (None, None, Some(block)) => {
                            out.push_str(&format!("{IN}  IPBlock:\n"));
                            out.push_str(&format!("{IN}    CIDR: {}\n", block.cidr));
                            let except = block.except.clone().unwrap_or_default().join(", ");
                            out.push_str(&format!("{IN}    Except: {except}\n"));
                        }
                        (None, None, None) => {}
                    }
                }
            }
        }
        if i + 1 != rules.len() {
            out.push_str(&format!("{IN}----------\n"));
        }
    }
}

/// `k=v` per line, `<none>` when empty.
fn lines(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "<none>".into(),
    }
}

/// `Selected pods:`: name, node and address of each, as the API has them now.
pub fn pods_text(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "Selected pods:  <none>\n".into();
    }
    let mut rows = vec![
        vec!["Name".to_string(), "Node".into(), "IP".into()],
        vec!["----".to_string(), "----".into(), "--".into()],
    ];
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| p.metadata.name.clone());
    for p in sorted {
        let or_none = |s: Option<String>| s.unwrap_or_else(|| "<none>".into());
        rows.push(vec![
            or_none(p.metadata.name.clone()),
            or_none(p.spec.as_ref().and_then(|s| s.node_name.clone())),
            or_none(p.status.as_ref().and_then(|s| s.pod_ip.clone())),
        ]);
    }
    format!("Selected pods:\n{}", section(&rows))
}

fn count(c: Count) -> String {
    format!("{} packets, {} bytes", c.packets, c.bytes)
}

/// `Traffic:`: per node of the selected pods and direction the policy isolates, what it
/// allowed and what was dropped there (each node's counters since it loaded the policy).
pub fn traffic_text(
    key: &(String, String),
    nodes: &BTreeMap<String, Result<NodeReport>>,
) -> String {
    if nodes.is_empty() {
        return "Traffic:  <none> (no selected pod is on a node)\n".into();
    }
    let mut rows = vec![
        vec![
            "Node".to_string(),
            "Direction".into(),
            "Allowed".into(),
            "Dropped".into(),
        ],
        vec![
            "----".to_string(),
            "---------".into(),
            "-------".into(),
            "-------".into(),
        ],
    ];
    // Nodes whose counters are unknown get a row of their own and the reason after the table.
    let mut problems = Vec::new();
    let unknown = |node: &str| {
        let u = "<unknown>".to_string();
        vec![node.to_string(), u.clone(), u.clone(), u]
    };
    for (node, report) in nodes {
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                rows.push(unknown(node));
                problems.push(format!("  {node}: {e:#}\n"));
                continue;
            }
        };
        let found = report
            .policies
            .iter()
            .find(|p| p.namespace == key.0 && p.name == key.1);
        let Some(policy) = found else {
            rows.push(unknown(node));
            problems.push(format!(
                "  {node}: the agent has not loaded the policy (yet)\n"
            ));
            continue;
        };
        let directions: [(&str, Option<Traffic>); 2] =
            [("ingress", policy.ingress), ("egress", policy.egress)];
        for (name, traffic) in directions {
            if let Some(t) = traffic {
                rows.push(vec![
                    node.clone(),
                    name.into(),
                    count(t.allowed),
                    count(t.dropped),
                ]);
            }
        }
    }
    format!(
        "Traffic:\n{}  (per node since it loaded the policy; allowed: first packets of connections; dropped:\n  what no policy isolating the pod allowed, counted for each of those policies)\n{}",
        section(&rows),
        problems.concat()
    )
}

/// The `/policy` report of the agent at `addr`, asked again while it is busy (503).
async fn agent_report(target: Target, addr: SocketAddr) -> Result<NodeReport> {
    tokio::task::spawn_blocking(move || {
        let mut last = String::new();
        for _ in 0..AGENT_TRIES {
            let (status, body) = agents::get(&target, addr, weft_policy::report::PATH)?;
            match parse_response(status, &body)? {
                Answer::Report(r) => return Ok(r),
                Answer::Busy(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("the agent at {addr} says: {}", last.trim())
    })
    .await?
}

#[derive(Debug)]
enum Answer {
    Report(NodeReport),
    /// 503: not loaded yet, or being updated.
    Busy(String),
}

fn parse_response(status: u16, body: &str) -> Result<Answer> {
    match status {
        200 => Ok(Answer::Report(
            serde_json::from_str(body).context("not a policy report")?,
        )),
        503 => Ok(Answer::Busy(body.to_string())),
        404 => bail!(
            "no {} endpoint (an agent older than this CLI?)",
            weft_policy::report::PATH
        ),
        other => bail!("status {other}: {}", body.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::Ipv4Addr;
    use weft_policy::report::{PodNetworkDrops, PolicyReport, SelectedPod};

    fn np(v: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(v).expect("a NetworkPolicy")
    }

    #[test]
    fn the_spec_reads_as_kubectl_describes_it() {
        let p = np(json!({
            "metadata": {"name": "deny-db", "namespace": "default",
                         "creationTimestamp": "2026-11-30T16:42:17Z",
                         "annotations": {LAST_APPLIED: "{}", "team": "db"}},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                              {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                               "podSelector": {}}],
                     "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "UDP", "port": 1000, "endPort": 2000}]},
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
                ],
                "egress": [],
            },
        }));
        insta::assert_snapshot!(spec_text(&p));
        let open = np(json!({
            "metadata": {"name": "all", "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
        }));
        let text = spec_text(&open);
        assert!(text.contains("  PodSelector:     <none> (Allowing the specific traffic to all pods in this namespace)\n"), "{text}");
        assert!(text.contains("    To Port: <any> (traffic allowed to all ports)\n    From: <any> (traffic not restricted by source)\n"), "{text}");
        assert!(
            text.contains("  Not affecting egress traffic\n  Policy Types: Ingress\n"),
            "{text}"
        );
    }

    #[test]
    fn selected_pods_and_traffic_per_node() {
        let pods: Vec<Pod> = vec![
            serde_json::from_value(json!({"metadata": {"name": "db-1"}, "spec": {"nodeName": "n2", "containers": []}, "status": {"podIP": "10.244.1.5"}})).unwrap(),
            serde_json::from_value(json!({"metadata": {"name": "db-0"}, "spec": {"nodeName": "n1", "containers": []}, "status": {"podIP": "10.244.0.3"}})).unwrap(),
        ];
        let key = ("default".to_string(), "deny-db".to_string());
        let report = NodeReport {
            node: "n1".into(),
            policies: vec![PolicyReport {
                namespace: "default".into(),
                name: "deny-db".into(),
                pods: vec![SelectedPod {
                    namespace: "default".into(),
                    name: "db-0".into(),
                    ip: Ipv4Addr::new(10, 244, 0, 3),
                }],
                ingress: Some(Traffic {
                    allowed: Count {
                        packets: 2,
                        bytes: 120,
                    },
                    dropped: Count {
                        packets: 3,
                        bytes: 180,
                    },
                }),
                egress: None,
            }],
            pod_network: PodNetworkDrops::default(),
        };
        let mut nodes = BTreeMap::new();
        nodes.insert("n1".to_string(), Ok(report));
        nodes.insert(
            "n2".to_string(),
            Err(anyhow!(
                "connecting to the agent at 172.18.0.11:9876: timed out"
            )),
        );
        nodes.insert(
            "n3".to_string(),
            Ok(NodeReport {
                node: "n3".into(),
                ..NodeReport::default()
            }),
        );
        insta::assert_snapshot!(pods_text(&pods) + &traffic_text(&key, &nodes));
        assert_eq!(pods_text(&[]), "Selected pods:  <none>\n");
    }

    #[test]
    fn the_agents_answer_is_read() {
        let body = serde_json::to_string(&NodeReport {
            node: "n".into(),
            ..NodeReport::default()
        })
        .unwrap();
        assert!(matches!(parse_response(200, &body), Ok(Answer::Report(r)) if r.node == "n"));
        assert!(matches!(
            parse_response(503, "not loaded yet\n"),
            Ok(Answer::Busy(_))
        ));
        assert!(parse_response(404, "not found\n")
            .unwrap_err()
            .to_string()
            .contains("/policy"));
        assert!(parse_response(200, "garbage").is_err());
    }
}
