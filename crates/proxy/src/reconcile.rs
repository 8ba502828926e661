//! The proxy reconciler, kube-proxy's proxier for weft: it owns its change tracking (which
//! Services changed since the last sync, as kube-proxy's `serviceChanges`/`endpointsChanges`),
//! reads only those Services and their EndpointSlices from the cluster view, compiles their
//! service-port views and loads the difference. A Node change (this node's address) or a relist
//! recompiles everything, and so does the periodic check every [`WHOLE_CHECK`] that the
//! per-Service updates add up to the whole (normally nothing to load).
//!
//! After each load, UDP/SCTP conntrack entries that still point at endpoints that went away are
//! deleted ([`crate::stale`]), so a client that keeps sending from one socket reaches a live one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_model::cidr::Ipv4Cidr;
use weft_view::{Change, ClusterView, Interest, NsName, Reconciler, Shared, Wake};

use crate::{Proxy, ProxyError, ProxyNode, Ruleset, ServicePortView, SyncKind};

/// How often the whole table is recompiled as a check on the incremental updates.
pub const WHOLE_CHECK: Duration = Duration::from_secs(10);

/// Service-port views per Service.
type ViewsByService = BTreeMap<NsName, Vec<ServicePortView>>;

/// What changed since the last sync.
#[derive(Debug, Default)]
pub struct ServiceChanges {
    /// Services whose object or slices changed.
    dirty: BTreeSet<NsName>,
    /// Recompile every Service (start, relist, node change).
    whole: bool,
}

impl ServiceChanges {
    fn note(&mut self, wake: Wake) {
        self.whole |= wake.relisted;
        for change in wake.changes {
            match change {
                Change::Service(svc) => {
                    self.dirty.insert(svc);
                }
                // This node's address decides NodePorts and local endpoints: rare, so simplest
                // to recompile everything.
                Change::Node(_) => self.whole = true,
                _ => {}
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("node {0} is not in the cluster view or has no IPv4 InternalIP yet")]
    NoNodeAddress(String),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

pub struct ProxyReconciler {
    node: String,
    cluster_cidr: Ipv4Cidr,
    external_ip_ranges: Vec<Ipv4Cidr>,
    /// Services with externalIPs this node does not serve, as last logged.
    refused: RefusedExternalIps,
    proxy: Proxy,
    changes: ServiceChanges,
    /// The views last loaded, per Service.
    loaded: ViewsByService,
    /// The node the loaded table was compiled for.
    loaded_for: Option<ProxyNode>,
    next_whole: Instant,
    /// Where the loaded views go after each successful sync, for the health check servers.
    health: Option<tokio::sync::watch::Sender<crate::health::HealthState>>,
}

impl ProxyReconciler {
    pub fn new(node: &str, cluster_cidr: Ipv4Cidr) -> ProxyReconciler {
        ProxyReconciler {
            node: node.to_string(),
            cluster_cidr,
            external_ip_ranges: Vec::new(),
            refused: RefusedExternalIps::default(),
            proxy: Proxy::new(),
            changes: ServiceChanges {
                whole: true,
                ..Default::default()
            },
            loaded: BTreeMap::new(),
            loaded_for: None,
            next_whole: Instant::now(),
            health: None,
        }
    }

    /// Publishes the loaded views to `tx` after each successful sync ([`crate::health`]).
    pub fn with_health(
        mut self,
        tx: tokio::sync::watch::Sender<crate::health::HealthState>,
    ) -> ProxyReconciler {
        self.health = Some(tx);
        self
    }

    /// Serves `spec.externalIPs` only inside `ranges` (the cluster config's `externalIPRanges`;
    /// by default none).
    pub fn with_external_ip_ranges(mut self, ranges: Vec<Ipv4Cidr>) -> ProxyReconciler {
        self.external_ip_ranges = ranges;
        self
    }

    fn publish_health(&self) {
        if let Some(tx) = &self.health {
            crate::health::publish(tx, self.loaded.values().flatten());
        }
    }

    fn proxy_node(&self, view: &ClusterView) -> Result<ProxyNode, ReconcileError> {
        let ip = view
            .node(&self.node)
            .and_then(weft_model::node::internal_ip)
            .ok_or_else(|| ReconcileError::NoNodeAddress(self.node.clone()))?;
        Ok(ProxyNode {
            name: self.node.clone(),
            ip,
            cluster_cidr: self.cluster_cidr,
            external_ip_ranges: self.external_ip_ranges.clone(),
        })
    }

    /// The whole table the view compiles to, as the `nft` script that would load it.
    pub fn script(&self, view: &Shared) -> Result<String, ReconcileError> {
        let view = view.read();
        let node = self.proxy_node(&view)?;
        let flat: Vec<ServicePortView> = views_of(&view, &node, None)
            .into_values()
            .flatten()
            .collect();
        Ok(crate::compile(&node, &flat).full_script())
    }

    /// Loads only the changed Services. Returns None when only a whole load will do (nothing
    /// loaded yet, or the node changed).
    fn sync_dirty(
        &mut self,
        node: &ProxyNode,
        fresh: ViewsByService,
        dirty: BTreeSet<NsName>,
    ) -> Result<Option<SyncKind>, ReconcileError> {
        let mut changes = Vec::new();
        for svc in &dirty {
            let old = self.loaded.get(svc).map(Vec::as_slice).unwrap_or_default();
            let new = fresh.get(svc).map(Vec::as_slice).unwrap_or_default();
            let ids: BTreeSet<String> = old.iter().chain(new).map(ServicePortView::id).collect();
            for id in ids {
                let o = old.iter().find(|v| v.id() == id).cloned();
                let n = new.iter().find(|v| v.id() == id).cloned();
                if o != n {
                    changes.push((o, n));
                }
            }
        }
        let Some(kind) = self.proxy.sync_changes(node, &changes)? else {
            return Ok(None);
        };
        for svc in dirty {
            match fresh.get(&svc) {
                Some(v) => self.loaded.insert(svc, v.clone()),
                None => self.loaded.remove(&svc),
            };
        }
        self.publish_health();
        log_sync(&self.node, &kind, changes.len());
        clear(
            &self.node,
            crate::clear_stale_flows(&crate::stale_flows_for_changes(&changes)),
        );
        Ok(Some(kind))
    }

    fn sync_whole(&mut self, node: ProxyNode, all: ViewsByService) -> Result<(), ReconcileError> {
        let old: Vec<ServicePortView> = self.loaded.values().flatten().cloned().collect();
        let new: Vec<ServicePortView> = all.values().flatten().cloned().collect();
        let ruleset: Ruleset = crate::compile(&node, &new);
        let kind = self.proxy.sync(ruleset)?;
        log_sync(&self.node, &kind, new.len());
        let first = self.loaded_for.is_none();
        self.loaded = all;
        self.loaded_for = Some(node.clone());
        self.changes.whole = false;
        self.next_whole = Instant::now() + WHOLE_CHECK;
        self.publish_health();
        if first {
            // After a restart nothing says what changed while we were down: check every flow.
            clear(&self.node, crate::clear_unserved_flows(&node, &new));
        } else {
            clear(
                &self.node,
                crate::clear_stale_flows(&crate::stale_flows(&old, &new)),
            );
        }
        Ok(())
    }
}

impl Reconciler for ProxyReconciler {
    type Error = ReconcileError;

    fn name(&self) -> &'static str {
        "proxy"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            services: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, wake: Wake) {
        self.changes.note(wake);
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), ReconcileError> {
        if Instant::now() >= self.next_whole {
            self.changes.whole = true;
        }
        // Compile under the view's read lock; load with it released.
        let (node, whole, fresh, dirty) = {
            let view = shared.read();
            let node = self.proxy_node(&view)?;
            if self.loaded_for.as_ref() != Some(&node) {
                self.changes.whole = true;
            }
            if self.changes.whole {
                self.changes.dirty.clear();
                self.refused.note(&self.node, &view, &node, None);
                (
                    node.clone(),
                    true,
                    views_of(&view, &node, None),
                    BTreeSet::new(),
                )
            } else {
                let dirty = std::mem::take(&mut self.changes.dirty);
                self.refused.note(&self.node, &view, &node, Some(&dirty));
                let fresh = views_of(&view, &node, Some(&dirty));
                (node, false, fresh, dirty)
            }
        };
        if whole {
            return self.sync_whole(node, fresh);
        }
        if dirty.is_empty() {
            return Ok(());
        }
        if self.sync_dirty(&node, fresh, dirty)?.is_none() {
            self.changes.whole = true;
            let all = views_of(&shared.read(), &node, None);
            self.sync_whole(node, all)?;
        }
        Ok(())
    }
}

/// The externalIPs of each Service that this node does not serve, as last logged: a refusal is
/// logged once per Service (and again only when it changes), not at every sync.
#[derive(Debug, Default)]
struct RefusedExternalIps(BTreeMap<NsName, Vec<Ipv4Addr>>);

impl RefusedExternalIps {
    /// Looks at the given Services (all when None) and logs each new or changed refusal;
    /// returns the Services it logged.
    fn note(
        &mut self,
        node: &str,
        view: &ClusterView,
        proxy_node: &ProxyNode,
        only: Option<&BTreeSet<NsName>>,
    ) -> Vec<NsName> {
        let mut logged = Vec::new();
        let mut check = |key: &NsName, svc: Option<&Service>| {
            let refused = svc
                .map(|svc| crate::view::refused_external_ips(proxy_node, svc))
                .unwrap_or_default();
            if refused.is_empty() {
                self.0.remove(key);
            } else if self.0.get(key) != Some(&refused) {
                let ips: Vec<String> = refused.iter().map(ToString::to_string).collect();
                let ranges: Vec<String> = proxy_node
                    .external_ip_ranges
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                tracing::warn!(
                    node,
                    service = %key,
                    "not serving externalIPs {} of Service {key}: outside the cluster config's \
                     externalIPRanges [{}]",
                    ips.join(", "),
                    ranges.join(", ")
                );
                self.0.insert(key.clone(), refused);
                logged.push(key.clone());
            }
        };
        match only {
            Some(keys) => {
                for key in keys {
                    check(key, view.service(key));
                }
            }
            None => {
                for (key, svc) in view.services() {
                    check(key, Some(svc));
                }
                self.0.retain(|key, _| view.service(key).is_some());
            }
        }
        logged
    }
}

/// The service-port views of the given Services (all when None), grouped per Service, read
/// from the view's Service and EndpointSlice-by-Service indexes.
fn views_of(
    view: &ClusterView,
    node: &ProxyNode,
    only: Option<&BTreeSet<NsName>>,
) -> ViewsByService {
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    let mut add = |key: &NsName, svc: &Service| {
        services.push(svc.clone());
        slices.extend(view.slices_of(key).cloned());
    };
    match only {
        Some(keys) => {
            for key in keys {
                if let Some(svc) = view.service(key) {
                    add(key, svc);
                }
            }
        }
        None => {
            for (key, svc) in view.services() {
                add(key, svc);
            }
        }
    }
    let mut out: ViewsByService = BTreeMap::new();
    for v in crate::view::views(node, &services, &slices) {
        out.entry(NsName::new(&v.namespace, &v.name))
            .or_default()
            .push(v);
    }
    out
}

fn clear(node: &str, result: Result<usize, ProxyError>) {
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            node,
            "deleted {n} conntrack entries to endpoints that went away"
        ),
        Err(e) => tracing::warn!(node, "clearing stale conntrack entries: {e}"),
    }
}

fn log_sync(node: &str, kind: &SyncKind, ports: usize) {
    match kind {
        SyncKind::Unchanged => {}
        SyncKind::FullAfterRefusedUpdate(why) => {
            tracing::warn!(
                node,
                "services table reloaded whole, the update was refused: {why}"
            )
        }
        kind => tracing::info!(node, "services table: {kind:?} load, {ports} service ports"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str) -> NsName {
        NsName::new("default", name)
    }

    #[test]
    fn the_tracker_names_services_and_escalates_node_changes_and_relists() {
        let mut t = ServiceChanges::default();
        t.note(Wake {
            changes: vec![
                Change::Service(svc("a")),
                Change::Pod(svc("p")),
                Change::Service(svc("a")),
            ],
            relisted: false,
        });
        assert_eq!(t.dirty.iter().collect::<Vec<_>>(), [&svc("a")]);
        assert!(!t.whole);
        t.note(Wake {
            changes: vec![Change::Node("n1".into())],
            relisted: false,
        });
        assert!(t.whole);
        let mut t = ServiceChanges::default();
        t.note(Wake {
            changes: vec![],
            relisted: true,
        });
        assert!(t.whole);
    }

    #[test]
    fn views_come_from_the_service_and_its_slices_only() {
        let shared = Shared::new();
        let service = |name: &str, ip: &str| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
                "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP"}]}}))
            .unwrap()
        };
        let slice = |name: &str, svc: &str, ip: &str| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "resourceVersion": "1",
                    "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip]}]}))
            .unwrap()
        };
        shared.apply(weft_view::Event::Relisted(vec![
            service("a", "10.96.0.2"),
            service("b", "10.96.0.3"),
        ]));
        shared.apply(weft_view::Event::Relisted(vec![
            slice("a-1", "a", "10.244.0.5"),
            slice("b-1", "b", "10.244.0.6"),
        ]));
        let node = ProxyNode {
            name: "n1".into(),
            ip: "172.20.0.2".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            external_ip_ranges: Vec::new(),
        };
        let only: BTreeSet<NsName> = [svc("a")].into();
        let views = views_of(&shared.read(), &node, Some(&only));
        assert_eq!(views.keys().collect::<Vec<_>>(), [&svc("a")]);
        let endpoints: Vec<String> = views[&svc("a")][0]
            .endpoints
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(endpoints, ["10.244.0.5"]);
        assert_eq!(views_of(&shared.read(), &node, None).len(), 2);
    }

    #[test]
    fn a_refused_external_ip_is_logged_once_per_service_and_again_when_it_changes() {
        let shared = Shared::new();
        // Each version of a Service is a new resourceVersion, or the view keeps the old one.
        let version = std::cell::Cell::new(0);
        let service = |name: &str, ips: &[&str]| -> Service {
            version.set(version.get() + 1);
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default",
                    "resourceVersion": version.get().to_string()},
                "spec": {"clusterIP": "10.96.0.9", "externalIPs": ips,
                    "ports": [{"port": 80, "protocol": "TCP"}]}}))
            .unwrap()
        };
        let node = ProxyNode {
            name: "n1".into(),
            ip: "172.20.0.2".parse().unwrap(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            external_ip_ranges: vec!["192.0.2.0/24".parse().unwrap()],
        };
        let mut refused = RefusedExternalIps::default();
        let mut note = |services: Vec<Service>, only: Option<&BTreeSet<NsName>>| {
            shared.apply(weft_view::Event::Relisted(services));
            refused.note("n1", &shared.read(), &node, only)
        };
        let capture = service("capture", &["203.0.113.10", "192.0.2.5"]);
        let fine = service("fine", &["192.0.2.6"]);
        assert_eq!(
            note(vec![capture.clone(), fine.clone()], None),
            [svc("capture")]
        );
        // The whole check every few seconds, or a change of the Service elsewhere: quiet.
        assert!(note(vec![capture.clone(), fine.clone()], None).is_empty());
        let only: BTreeSet<NsName> = [svc("capture")].into();
        assert!(note(vec![capture, fine.clone()], Some(&only)).is_empty());
        // Another address refused: said again.
        let more = service("capture", &["203.0.113.10", "203.0.113.11"]);
        assert_eq!(
            note(vec![more, fine.clone()], Some(&only)),
            [svc("capture")]
        );
        // Fixed, then broken again: said again.
        assert!(note(vec![service("capture", &[]), fine.clone()], Some(&only)).is_empty());
        let again = service("capture", &["203.0.113.10"]);
        assert_eq!(note(vec![again, fine], None), [svc("capture")]);
    }
}
