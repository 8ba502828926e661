//! `weft lab topology -o dot|mermaid`: the cluster as a diagram for documents. Nodes are boxes
//! (name, address, pod CIDR) holding their pods (name, address); each Service points at its
//! endpoint pods (ready solid, not ready dashed); each NetworkPolicy is a note on the pods it
//! selects. Pure: the cluster view in, Graphviz or Mermaid text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use weft_view::{ClusterView, NsName};

/// A node's address, pod CIDR and pods (namespace/name, address).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeBox {
    pub ip: String,
    pub cidr: String,
    pub pods: Vec<(String, String)>,
}

/// A diagram's content, gathered from the view.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Node name -> (address, pod CIDR, its pods as (namespace/name, address)).
    pub nodes: BTreeMap<String, NodeBox>,
    /// Service namespace/name -> (cluster IP and ports, endpoints as (pod or address, ready)).
    pub services: BTreeMap<String, (String, Vec<(String, bool)>)>,
    /// Policy namespace/name -> the pods it selects.
    pub policies: BTreeMap<String, Vec<String>>,
}

impl Topology {
    pub fn of(view: &ClusterView) -> Topology {
        let mut t = Topology::default();
        for node in view.nodes() {
            let name = node.metadata.name.clone().unwrap_or_default();
            let ip = weft_model::node::internal_ip(node).map_or(String::new(), |i| i.to_string());
            let cidr = weft_model::node::pod_cidr(node).unwrap_or("").to_string();
            t.nodes.insert(
                name,
                NodeBox {
                    ip,
                    cidr,
                    pods: Vec::new(),
                },
            );
        }
        let mut by_ip = BTreeMap::new();
        for pod in view.pods() {
            if weft_model::pod::host_network(pod) {
                continue;
            }
            let key = weft_policy::resolve::pod_key(pod).to_string();
            let ip = weft_model::pod::pod_ip(pod).map_or(String::new(), |i| i.to_string());
            if !ip.is_empty() {
                by_ip.insert(ip.clone(), key.clone());
            }
            if let Some(node) = weft_model::pod::node_name(pod) {
                if let Some(entry) = t.nodes.get_mut(node) {
                    entry.pods.push((key, ip));
                }
            }
        }
        for n in t.nodes.values_mut() {
            n.pods.sort();
        }
        for (key, svc) in view.services() {
            let spec = svc.spec.as_ref();
            let ip = spec
                .and_then(|s| s.cluster_ip.clone())
                .unwrap_or_else(|| "None".into());
            let ports = service_ports(svc);
            let mut endpoints = Vec::new();
            for slice in view.slices_of(key) {
                for ep in &slice.endpoints {
                    let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                    for a in &ep.addresses {
                        let who = by_ip.get(a).cloned().unwrap_or_else(|| a.clone());
                        endpoints.push((who, ready));
                    }
                }
            }
            endpoints.sort();
            endpoints.dedup();
            t.services
                .insert(key.to_string(), (format!("{ip} {ports}"), endpoints));
        }
        for policy in view.network_policies() {
            let ns = policy.metadata.namespace.clone().unwrap_or_default();
            let key = NsName::new(ns.clone(), policy.metadata.name.clone().unwrap_or_default());
            let selector = policy
                .spec
                .as_ref()
                .and_then(|s| s.pod_selector.clone())
                .unwrap_or_default();
            let mut pods: Vec<String> = view
                .select_pods(Some(&ns), &selector)
                .into_iter()
                .map(|p| weft_policy::resolve::pod_key(p).to_string())
                .collect();
            pods.sort();
            t.policies.insert(key.to_string(), pods);
        }
        t
    }

    /// Graphviz: a cluster per node.
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph weft {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        );
        for (i, (name, NodeBox { ip, cidr, pods })) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  subgraph cluster_{i} {{\n    label=\"{}\";\n    style=rounded;",
                q(&format!("node {name}\\n{ip}  pods {cidr}"))
            );
            for (pod, ip) in pods {
                let _ = writeln!(
                    out,
                    "    \"pod:{}\" [label=\"{}\"];",
                    q(pod),
                    q(&format!("{pod}\\n{ip}"))
                );
            }
            out.push_str("  }\n");
        }
        for (svc, (addr, endpoints)) in &self.services {
            let _ = writeln!(
                out,
                "  \"svc:{}\" [shape=ellipse, label=\"{}\"];",
                q(svc),
                q(&format!("svc {svc}\\n{addr}"))
            );
            for (ep, ready) in endpoints {
                let style = if *ready { "solid" } else { "dashed" };
                let _ = writeln!(
                    out,
                    "  \"svc:{}\" -> \"pod:{}\" [style={style}];",
                    q(svc),
                    q(ep)
                );
            }
        }
        for (policy, pods) in &self.policies {
            let _ = writeln!(
                out,
                "  \"netpol:{}\" [shape=note, label=\"{}\"];",
                q(policy),
                q(&format!("netpol {policy}"))
            );
            for pod in pods {
                let _ = writeln!(
                    out,
                    "  \"netpol:{}\" -> \"pod:{}\" [arrowhead=dot, color=red];",
                    q(policy),
                    q(pod)
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid: a flowchart with a subgraph per node.
    pub fn mermaid(&self) -> String {
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        let mut id = |key: String| -> String {
            let n = ids.len();
            ids.entry(key).or_insert_with(|| format!("n{n}")).clone()
        };
        let mut out = String::from("flowchart LR\n");
        for (name, NodeBox { ip, cidr, pods }) in &self.nodes {
            let _ = writeln!(
                out,
                "  subgraph {}[\"node {} {} pods {}\"]",
                id(format!("node:{name}")),
                m(name),
                ip,
                cidr
            );
            for (pod, ip) in pods {
                let _ = writeln!(
                    out,
                    "    {}[\"{}<br/>{ip}\"]",
                    id(format!("pod:{pod}")),
                    m(pod)
                );
            }
            out.push_str("  end\n");
        }
        for (svc, (addr, endpoints)) in &self.services {
            let s = id(format!("svc:{svc}"));
            let _ = writeln!(out, "  {s}([\"svc {}<br/>{}\"])", m(svc), m(addr));
            for (ep, ready) in endpoints {
                let e = id(format!("pod:{ep}"));
                let arrow = if *ready { "-->" } else { "-.->" };
                let _ = writeln!(out, "  {s} {arrow} {e}");
            }
        }
        for (policy, pods) in &self.policies {
            let p = id(format!("netpol:{policy}"));
            let _ = writeln!(out, "  {p}>\"netpol {}\"]", m(policy));
            for pod in pods {
                let e = id(format!("pod:{pod}"));
                let _ = writeln!(out, "  {p} -. selects .- {e}");
            }
        }
        out
    }
}

/// A Service's ports as `80/TCP,53/UDP`.
pub fn service_ports(svc: &k8s_openapi::api::core::v1::Service) -> String {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A Graphviz string's quotes escaped.
fn q(s: &str) -> String {
    s.replace('"', "\\\"")
}

/// A Mermaid label's quotes replaced.
fn m(s: &str) -> String {
    s.replace('"', "#quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_view::Event;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn view() -> ClusterView {
        let mut v = ClusterView::new();
        let node = |name: &str, ip: &str, cidr: &str| {
            obj::<k8s_openapi::api::core::v1::Node>(json!({
                "metadata": {"name": name, "resourceVersion": "1"},
                "spec": {"podCIDR": cidr},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}]}
            }))
        };
        v.apply(Event::Relisted(vec![
            node("n1", "172.20.0.2", "10.244.0.0/24"),
            node("n2", "172.20.0.3", "10.244.1.0/24"),
        ]));
        let pod = |name: &str, node: &str, ip: &str, app: &str| {
            obj::<k8s_openapi::api::core::v1::Pod>(json!({
                "metadata": {"name": name, "namespace": "default", "resourceVersion": "1", "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
            }))
        };
        v.apply(Event::Relisted(vec![
            pod("web-1", "n1", "10.244.0.5", "web"),
            pod("web-2", "n2", "10.244.1.7", "web"),
            pod("client", "n2", "10.244.1.8", "client"),
        ]));
        v.apply(Event::Relisted(vec![obj::<
            k8s_openapi::api::core::v1::Service,
        >(json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}
        }))]));
        v.apply(Event::Relisted(vec![obj::<
            k8s_openapi::api::discovery::v1::EndpointSlice,
        >(json!({
            "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "1",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 80}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.244.1.7"], "conditions": {"ready": false}}
            ]
        }))]));
        v.apply(Event::Relisted(vec![obj::<
            k8s_openapi::api::networking::v1::NetworkPolicy,
        >(json!({
            "metadata": {"name": "deny-web", "namespace": "default", "resourceVersion": "1"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}
        }))]));
        v
    }

    #[test]
    fn the_cluster_as_dot_and_mermaid() {
        let t = Topology::of(&view());
        insta::assert_snapshot!("topology_dot", t.dot());
        insta::assert_snapshot!("topology_mermaid", t.mermaid());
    }

    /// Graphviz itself reads the diagram (scripts/deps.sh installs it).
    #[test]
    fn graphviz_renders_the_dot() {
        use std::io::Write as _;
        let dot = Topology::of(&view()).dot();
        let mut child = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dot (graphviz: scripts/deps.sh)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let svg = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            svg.contains("default/web&#45;1") || svg.contains("default/web-1"),
            "{svg}"
        );
        assert!(
            svg.contains("netpol default/deny&#45;web") || svg.contains("netpol default/deny-web"),
            "{svg}"
        );
    }
}
