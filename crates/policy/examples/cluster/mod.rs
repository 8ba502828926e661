//! The synthetic cluster of the policy benchmarks (bench/policy.sh), built as the API would
//! hold it: namespaces with team and env labels, pods with app and tier labels and named
//! container ports, and NetworkPolicies selecting pods by app, whose ingress comes from pod
//! selectors in the policy's namespace, namespace + pod selectors, and ip blocks, with
//! numbered, ranged and named ports; a few isolate egress too.
//!
//! Per namespace `n` (labels `team: team-<n % 10>`, `env: prod` for even `n`, else `staging`):
//! pods of 5 apps (`app-0`..`app-4`; tier `frontend` for apps 0-1, `backend` for 2-3, `db`
//! for 4), each declaring ports `http` 8080 and `metrics` 9090; policy `j` of the namespace
//! selects `app-<j % 5>` and is of kind `(j / 5) % 4`:
//! - 0 `frontends`: from the namespace's frontends (matchLabels, or matchExpressions for odd
//!   `j`), TCP 8080;
//! - 1 `team`: from frontends of the namespaces of the next team (namespaceSelector +
//!   podSelector), named port `http`;
//! - 2 `monitoring`: from backends of every `prod` namespace, named port `metrics`;
//! - 3 `external`: from 10.0.0.0/8 except the pod network, and from 192.168.0.0/16, TCP 443
//!   and 8000-8100; for one app in four also egress: to the namespace's `db` pods on 5432 and
//!   to anything outside 10.0.0.0/8 on 443.
//!
//! Peers are chosen by tier and namespace labels, selection by app: a pod's `tier` moves it
//! in and out of peer sets only, its `app` in and out of policies' selection only.

#![allow(dead_code)] // each example uses part of it

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use weft_view::{Event, Shared};

pub const APPS: usize = 5;
pub const TEAMS: usize = 10;
/// The node whose table is compiled and loaded.
pub const NODE: &str = "node-0";
pub const VXLAN_PORT: u16 = 4789;
/// An app no policy selects.
pub const UNSELECTED_APP: &str = "app-unselected";

/// The size of the cluster.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub namespaces: usize,
    pub pods: usize,
    pub policies: usize,
    /// Pods are spread round-robin over this many nodes; [`NODE`] is the first.
    pub nodes: usize,
}

impl Shape {
    /// `POLICIES PODS NAMESPACES NODES` from the command line, 1000 1000 50 1 by default.
    pub fn from_args(args: &[usize]) -> Shape {
        let shape = Shape {
            policies: args.first().copied().unwrap_or(1000),
            pods: args.get(1).copied().unwrap_or(1000),
            namespaces: args.get(2).copied().unwrap_or(50),
            nodes: args.get(3).copied().unwrap_or(1).max(1),
        };
        assert!(
            shape.namespaces > 0 && shape.pods >= shape.namespaces * APPS,
            "at least {APPS} pods per namespace"
        );
        assert!(shape.pods < 250 * 250, "address plan exceeded");
        shape
    }

    pub fn pods_per_namespace(&self) -> usize {
        self.pods / self.namespaces
    }

    /// One line saying what was built.
    pub fn describe(&self) -> String {
        format!(
            "{} NetworkPolicies x {} pods in {} namespaces ({} per namespace, 5 apps x tier frontend/backend/db, named ports http/metrics), {} on {NODE} of {} node(s); policies select by app, ingress from same-namespace frontends (port 8080), next team's frontends (namespaceSelector+podSelector, named port http), every prod namespace's backends (named port metrics), ipBlocks with except (443, 8000-8100); 1 in 20 also egress (db pods, ipBlock)",
            self.policies,
            self.pods_per_namespace() * self.namespaces,
            self.namespaces,
            self.pods_per_namespace(),
            self.pods_per_namespace() * self.namespaces / self.nodes
                + usize::from(!(self.pods_per_namespace() * self.namespaces).is_multiple_of(self.nodes)),
            self.nodes,
        )
    }
}

/// Everything the view holds.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
}

pub fn namespace_name(n: usize) -> String {
    format!("ns-{n:02}")
}

pub fn tier_of(app: usize) -> &'static str {
    match app {
        0 | 1 => "frontend",
        2 | 3 => "backend",
        _ => "db",
    }
}

/// Pod `g` of the cluster (numbered across namespaces).
pub fn pod_ip(g: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, (g / 250) as u8, (g % 250 + 1) as u8)
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 20, (i / 250) as u8, (i % 250 + 10) as u8)
}

fn from_json<T: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

pub fn node(i: usize) -> Node {
    from_json(json!({
        "metadata": {"name": format!("node-{i}")},
        "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i).to_string()}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
}

pub fn namespace(n: usize) -> Namespace {
    let name = namespace_name(n);
    from_json(json!({"metadata": {"name": name, "labels": {
        "kubernetes.io/metadata.name": name,
        "team": format!("team-{}", n % TEAMS),
        "env": if n.is_multiple_of(2) { "prod" } else { "staging" },
    }}}))
}

/// A running pod with an address, bound to `node`.
pub fn pod(ns: &str, name: &str, node: &str, ip: Ipv4Addr, labels: Value) -> Pod {
    from_json(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels, "resourceVersion": "1"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "app", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "metrics", "containerPort": 9090}
        ]}]},
        "status": {"podIP": ip.to_string(), "phase": "Running"}
    }))
}

fn cluster_pod(shape: &Shape, g: usize) -> Pod {
    let per_ns = shape.pods_per_namespace();
    let (n, i) = (g / per_ns, g % per_ns);
    let app = i % APPS;
    pod(
        &namespace_name(n),
        &format!("app-{app}-{i}"),
        &format!("node-{}", g % shape.nodes),
        pod_ip(g),
        json!({"app": format!("app-{app}"), "tier": tier_of(app)}),
    )
}

/// Policy `j` of namespace `n`.
pub fn policy(n: usize, j: usize) -> NetworkPolicy {
    let app = j % APPS;
    let kind = (j / APPS) % 4;
    let ns = namespace_name(n);
    let select = json!({"matchLabels": {"app": format!("app-{app}")}});
    let frontends = if j.is_multiple_of(2) {
        json!({"matchLabels": {"tier": "frontend"}})
    } else {
        json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}]})
    };
    let (name, spec) = match kind {
        0 => (
            "frontends",
            json!({"podSelector": select, "ingress": [{
                "from": [{"podSelector": frontends}],
                "ports": [{"protocol": "TCP", "port": 8080}]
            }]}),
        ),
        1 => (
            "team",
            json!({"podSelector": select, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": format!("team-{}", (n + 1) % TEAMS)}},
                          "podSelector": {"matchLabels": {"tier": "frontend"}}}],
                "ports": [{"port": "http"}]
            }]}),
        ),
        2 => (
            "monitoring",
            json!({"podSelector": select, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                          "podSelector": {"matchLabels": {"tier": "backend"}}}],
                "ports": [{"protocol": "TCP", "port": "metrics"}]
            }]}),
        ),
        _ => {
            let mut spec = json!({"podSelector": select, "ingress": [{
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}},
                         {"ipBlock": {"cidr": "192.168.0.0/16"}}],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8000, "endPort": 8100}]
            }]});
            if (n + app).is_multiple_of(4) {
                spec["policyTypes"] = json!(["Ingress", "Egress"]);
                spec["egress"] = json!([
                    {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}],
                     "ports": [{"protocol": "TCP", "port": 5432}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                     "ports": [{"protocol": "TCP", "port": 443}]}
                ]);
            }
            ("external", spec)
        }
    };
    from_json(json!({
        "metadata": {"name": format!("p{j:03}-app-{app}-{name}"), "namespace": ns, "resourceVersion": "1"},
        "spec": spec
    }))
}

pub fn cluster(shape: &Shape) -> Cluster {
    let per_ns = shape.pods_per_namespace();
    let policies_per_ns = shape.policies / shape.namespaces;
    let extra = shape.policies % shape.namespaces;
    Cluster {
        nodes: (0..shape.nodes).map(node).collect(),
        namespaces: (0..shape.namespaces).map(namespace).collect(),
        pods: (0..per_ns * shape.namespaces)
            .map(|g| cluster_pod(shape, g))
            .collect(),
        policies: (0..shape.namespaces)
            .flat_map(|n| (0..policies_per_ns + usize::from(n < extra)).map(move |j| policy(n, j)))
            .collect(),
    }
}

impl Cluster {
    /// The view the agent would hold after its watches' first lists.
    pub fn shared(&self) -> Arc<Shared> {
        let shared = Shared::new();
        shared.apply(Event::Relisted(self.nodes.clone()));
        shared.apply(Event::Relisted(self.namespaces.clone()));
        shared.apply(Event::Relisted(self.pods.clone()));
        shared.apply(Event::Relisted(self.policies.clone()));
        shared
    }
}

/// `pod` with one label set to `value`, at the next resourceVersion.
pub fn relabeled(pod: &Pod, key: &str, value: &str) -> Pod {
    let mut p = pod.clone();
    let labels: &mut BTreeMap<String, String> = p.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(key.to_string(), value.to_string());
    let version: u64 = p
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    p.metadata.resource_version = Some((version + 1).to_string());
    p
}

/// This process's resident memory, and its peak, in MiB (`VmRSS`, `VmHWM`).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
