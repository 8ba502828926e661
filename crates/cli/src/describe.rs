//! `weft describe`: one object in full, as kubectl describes it, with what is wrong with it in
//! `Events:`. weft keeps no event log; the controllers leave their diagnosis on the object as
//! annotations (`endpoints.weft.dev/problem`, `loadbalancer.weft.dev/problem`), and describe
//! shows those where kubectl would show the events that say the same.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weft_model::object::Object;

use crate::client::{Cluster, Target};
use crate::resources;
use crate::table as cells;

/// Set by the endpoints controller on a Service whose selector finds nothing to serve it.
pub use weft_model::annotations::ENDPOINTS_PROBLEM as ENDPOINTS_PROBLEM_ANNOTATION;
/// Set by the load-balancer allocator on a Service it could not give an address.
pub use weft_model::annotations::LB_PROBLEM as LB_PROBLEM_ANNOTATION;
/// Kubernetes' default ClientIP affinity timeout (3 hours), shown when the Service sets none.
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

#[derive(Args)]
pub struct DescribeArgs {
    /// What to describe: svc (service), pod or netpol (networkpolicy).
    resource: String,
    /// Its name.
    name: String,
    /// The namespace of the object (default: the context's, "default" for a lab).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

pub async fn describe(target: &Target, args: DescribeArgs) -> Result<()> {
    let resource = resources::builtin_named(&args.resource).filter(|r| {
        matches!(
            r.kind.as_str(),
            "Service" | "Pod" | "NetworkPolicy" | "Ingress"
        )
    });
    let Some(resource) = resource else {
        bail!(
            "cannot describe {:?}: weft describes services (svc), pods, networkpolicies (netpol) and ingresses (ing)",
            args.resource
        );
    };
    let cluster = Cluster::connect(target).await?;
    let namespace = cluster.namespace_or_default(args.namespace.as_deref());
    let Some(value) = cluster.get(&resource, Some(&namespace), &args.name).await? else {
        bail!(
            "{} {:?} not found in namespace {namespace}",
            resource.singular,
            args.name,
        );
    };
    let text = match Object::from_json(value)? {
        Object::Service(svc) => {
            let slices = resources::builtin_named("endpointslices").context("endpointslices")?;
            let selector = format!("{}={}", cells::SERVICE_NAME_LABEL, args.name);
            let (items, _) = cluster
                .list(&slices, Some(&namespace), Some(&selector))
                .await?;
            let slices: Vec<EndpointSlice> = items
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect();
            describe_service(&svc, &slices.iter().collect::<Vec<_>>())
        }
        Object::Pod(pod) => describe_pod(&pod),
        Object::NetworkPolicy(np) => {
            crate::describe_netpol::describe(&cluster, target, &np).await?
        }
        Object::Ingress(ing) => crate::describe_ingress::describe(&cluster, &ing).await?,
        other => bail!("cannot describe a {}", other.kind()),
    };
    print!("{text}");
    Ok(())
}

/// `Label:` / value lines, values aligned in one column; a value's further lines (more labels,
/// more annotations) are indented to that column.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(crate) fn new() -> Fields {
        Fields(Vec::new())
    }

    pub(crate) fn add(&mut self, label: &str, value: impl Into<String>) {
        self.0.push((label.to_string(), value.into()));
    }

    pub(crate) fn render(&self) -> String {
        let width = self.0.iter().map(|(l, _)| l.len() + 1).max().unwrap_or(0) + 2;
        let mut out = String::new();
        for (label, value) in &self.0 {
            let head = format!("{label}:");
            let mut lines = value.lines();
            let first = lines.next().unwrap_or("");
            if first.is_empty() {
                out.push_str(&head);
            } else {
                out.push_str(&format!("{head:width$}{first}"));
            }
            out.push('\n');
            for line in lines {
                out.push_str(&format!("{:width$}{line}\n", ""));
            }
        }
        out
    }
}

/// `k=v` per line, `<none>` when empty (kubectl's Labels and Annotations).
fn map_lines(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "<none>".into(),
    }
}

fn common_fields(fields: &mut Fields, meta: &ObjectMeta) {
    fields.add("Name", meta.name.clone().unwrap_or_default());
    fields.add("Namespace", meta.namespace.clone().unwrap_or_default());
    fields.add("Labels", map_lines(meta.labels.as_ref()));
    fields.add("Annotations", map_lines(meta.annotations.as_ref()));
}

/// Why the cluster DNS has no address for the Service, if it has none: a headless Service's
/// name resolves to its ready endpoints (every endpoint with `publishNotReadyAddresses`), so
/// with none it answers with no address at all.
fn dns_problem(svc: &Service, slices: &[&EndpointSlice]) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    if spec.cluster_ip.as_deref() != Some("None") || spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let publish_all = spec.publish_not_ready_addresses == Some(true);
    let published = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .any(|e| publish_all || weft_model::endpoints::is_ready(e));
    (!published).then(|| {
        "headless Service with no ready endpoints: the cluster DNS has no address for its name (it answers NOERROR with none)".to_string()
    })
}

/// The warnings weft's controllers left on the Service, and what the cluster DNS lacks for it,
/// as (reason, message) events.
pub fn service_events(svc: &Service, slices: &[&EndpointSlice]) -> Vec<(String, String)> {
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let mut events = Vec::new();
    if let Some(problems) = annotations.get(ENDPOINTS_PROBLEM_ANNOTATION) {
        // The controller joins several problems with "; ".
        for problem in problems.split("; ").filter(|p| !p.is_empty()) {
            let reason = if problem.starts_with("no pods match") {
                "NoPods"
            } else if problem.starts_with("targetPort") {
                "TargetPortUnresolved"
            } else {
                "EndpointsProblem"
            };
            events.push((reason.to_string(), problem.to_string()));
        }
    }
    if let Some(problem) = annotations.get(LB_PROBLEM_ANNOTATION) {
        events.push(("LoadBalancerPending".to_string(), problem.clone()));
    }
    if let Some(problem) = dns_problem(svc, slices) {
        events.push(("NoDNSRecords".to_string(), problem));
    }
    events
}

/// Rows in columns two spaces apart, indented two (kubectl's sections inside describe).
pub(crate) fn section(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            line.push(' ');
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:w$} ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn events_section(warnings: &[(String, String)]) -> String {
    if warnings.is_empty() {
        return "Events:  <none>\n".into();
    }
    let mut rows = vec![
        vec!["Type".into(), "Reason".into(), "Message".into()],
        vec!["----".into(), "------".into(), "-------".into()],
    ];
    for (reason, message) in warnings {
        rows.push(vec!["Warning".into(), reason.clone(), message.clone()]);
    }
    format!("Events:\n{}", section(&rows))
}

pub fn describe_service(svc: &Service, slices: &[&EndpointSlice]) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let ty = cells::service_type(svc);
    let mut f = Fields::new();
    common_fields(&mut f, &svc.metadata);
    f.add("Selector", cells::selector_cell(spec.selector.as_ref()));
    f.add("Type", ty);
    if let Some(policy) = &spec.ip_family_policy {
        f.add("IP Family Policy", policy.clone());
    }
    if let Some(families) = spec.ip_families.as_ref().filter(|f| !f.is_empty()) {
        f.add("IP Families", families.join(","));
    }
    if ty == "ExternalName" {
        f.add(
            "External Name",
            spec.external_name.clone().unwrap_or_default(),
        );
    } else {
        f.add("IP", cells::cluster_ip_cell(svc));
        let ips = spec
            .cluster_ips
            .clone()
            .filter(|ips| !ips.is_empty())
            .unwrap_or_else(|| vec![cells::cluster_ip_cell(svc)]);
        f.add("IPs", ips.join(","));
    }
    if let Some(external) = spec.external_ips.as_ref().filter(|e| !e.is_empty()) {
        f.add("External IPs", external.join(","));
    }
    if ty == "LoadBalancer" {
        let ingress = cells::load_balancer_ingress(svc);
        f.add(
            "LoadBalancer Ingress",
            if ingress.is_empty() {
                "<pending>".to_string()
            } else {
                ingress.join(", ")
            },
        );
    }
    for port in spec.ports.iter().flatten() {
        let name = port.name.clone().filter(|n| !n.is_empty());
        let label = name.clone().unwrap_or_else(|| "<unset>".into());
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        f.add("Port", format!("{label}  {}/{protocol}", port.port));
        f.add("TargetPort", cells::target_port_word(port));
        if let Some(node_port) = port.node_port.filter(|p| *p > 0) {
            f.add("NodePort", format!("{label}  {node_port}/{protocol}"));
        }
        let endpoints = cells::ready_endpoints(slices, Some(name.as_deref().unwrap_or("")));
        f.add("Endpoints", cells::truncated_list(&endpoints, "<none>"));
    }
    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    f.add("Session Affinity", affinity);
    if affinity == "ClientIP" {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
        f.add("Session Affinity Timeout", format!("{timeout}s"));
    }
    let external = matches!(ty, "NodePort" | "LoadBalancer")
        || spec.external_ips.as_ref().is_some_and(|e| !e.is_empty());
    if external || spec.external_traffic_policy.is_some() {
        f.add(
            "External Traffic Policy",
            spec.external_traffic_policy.as_deref().unwrap_or("Cluster"),
        );
    }
    if ty != "ExternalName" {
        f.add(
            "Internal Traffic Policy",
            spec.internal_traffic_policy.as_deref().unwrap_or("Cluster"),
        );
    }
    if let Some(port) = spec.health_check_node_port.filter(|p| *p > 0) {
        f.add("HealthCheck NodePort", port.to_string());
    }
    f.render() + &events_section(&service_events(svc, slices))
}

pub fn describe_pod(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut f = Fields::new();
    f.add("Name", pod.metadata.name.clone().unwrap_or_default());
    f.add(
        "Namespace",
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    f.add(
        "Node",
        match (&spec.node_name, &status.host_ip) {
            (Some(node), Some(ip)) => format!("{node}/{ip}"),
            (Some(node), None) => node.clone(),
            (None, _) => "<none>".into(),
        },
    );
    f.add("Labels", map_lines(pod.metadata.labels.as_ref()));
    f.add("Annotations", map_lines(pod.metadata.annotations.as_ref()));
    f.add("Status", weft_model::pod::phase(pod).to_string());
    f.add(
        "IP",
        status.pod_ip.clone().unwrap_or_else(|| "<none>".into()),
    );
    let ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .collect();
    f.add(
        "IPs",
        if ips.is_empty() {
            "<none>".to_string()
        } else {
            ips.join("\n")
        },
    );
    if let Some(owner) = pod.metadata.owner_references.iter().flatten().next() {
        f.add("Controlled By", format!("{}/{}", owner.kind, owner.name));
    }
    let mut out = f.render();
    out.push_str("Containers:\n");
    for c in &spec.containers {
        let mut cf = Fields::new();
        cf.add("Image", c.image.clone().unwrap_or_default());
        let ports: Vec<String> = c
            .ports
            .iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("TCP")
                )
            })
            .collect();
        cf.add(
            "Port",
            if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(", ")
            },
        );
        if let Some(args) = c.args.as_ref().filter(|a| !a.is_empty()) {
            cf.add("Args", args.join("\n"));
        }
        let state = status
            .container_statuses
            .iter()
            .flatten()
            .find(|s| s.name == c.name);
        if let Some(s) = state {
            let word = match &s.state {
                Some(st) if st.running.is_some() => "Running".to_string(),
                Some(st) if st.terminated.is_some() => "Terminated".to_string(),
                Some(st) => st
                    .waiting
                    .as_ref()
                    .map(|w| format!("Waiting ({})", w.reason.clone().unwrap_or_default()))
                    .unwrap_or_else(|| "Waiting".into()),
                None => "<unknown>".into(),
            };
            cf.add("State", word);
            cf.add("Ready", if s.ready { "True" } else { "False" });
            cf.add("Restart Count", s.restart_count.to_string());
        }
        out.push_str(&format!("  {}:\n", c.name));
        for line in cf.render().lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    let mut conditions = vec![
        vec!["Type".to_string(), "Status".to_string()],
        vec!["----".into(), "------".into()],
    ];
    for c in status.conditions.iter().flatten() {
        conditions.push(vec![c.type_.clone(), c.status.clone()]);
    }
    out.push_str("Conditions:\n");
    out.push_str(&section(&conditions));
    out.push_str("Events:  <none>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("an EndpointSlice")
    }

    #[test]
    fn describes_a_node_port_service_with_endpoints() {
        let s = svc(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                "selector": {"app": "web"},
                "sessionAffinity": "ClientIP",
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                    {"name": "metrics", "port": 9090, "targetPort": 9090, "nodePort": 30090},
                ],
            },
        }));
        let sl = slice(json!({
            "metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.244.0.5"]},
                {"addresses": ["10.244.1.5"], "conditions": {"ready": false}},
            ],
        }));
        insta::assert_snapshot!(describe_service(&s, &[&sl]));
    }

    #[test]
    fn describes_the_endpoints_problem_as_events() {
        let s = svc(json!({
            "metadata": {"name": "lonely", "namespace": "default", "annotations": {
                "endpoints.weft.dev/problem": "no pods match selector app=x; targetPort \"web\" of port http names no TCP container port of any selected pod",
            }},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21", "selector": {"app": "x"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 31111}]},
        }));
        insta::assert_snapshot!(describe_service(&s, &[]));
    }

    #[test]
    fn describes_headless_and_external_name_services() {
        let headless = svc(json!({
            "metadata": {"name": "db", "namespace": "data"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
        }));
        let text = describe_service(&headless, &[]);
        assert!(
            text.contains("\nIP:                       None\n"),
            "{text}"
        );
        assert!(
            text.contains("\nPort:                     <unset>  5432/TCP\n"),
            "{text}"
        );
        // No ready endpoint: the cluster DNS has no address for it, and describe says so.
        assert!(text.contains("NoDNSRecords"), "{text}");
        let ready: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-1", "namespace": "data", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": true}}],
        }))
        .unwrap();
        let text = describe_service(&headless, &[&ready]);
        assert!(text.ends_with("Events:  <none>\n"), "{text}");
        let external = svc(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        }));
        let text = describe_service(&external, &[]);
        assert!(
            text.contains("\nExternal Name:     db.example.com\n"),
            "{text}"
        );
        assert!(!text.contains("\nIP:"), "{text}");
    }
}
