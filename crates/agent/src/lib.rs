//! The node agent: one per node, inside that node's network namespace. It watches the cluster's
//! Nodes, Services and EndpointSlices through the store's change stream and, on every change
//! (and every [`RESYNC`] to repair drift), compiles this node's network plan (routes, overlay,
//! egress) and its Service proxy table, and applies both.
//!
//! Like a Kubernetes informer, it lists once and then follows the change log, re-reading only the
//! objects that changed: at 10k Services a full re-list costs seconds, a changed object
//! microseconds.
//!
//! The agent holds no state that matters across restarts: killed and restarted, it reads the same
//! objects, compiles the same plan, finds the kernel already matching (the Service table is
//! reloaded whole, atomically), and established connections never notice.
//!
//! In the lab, the node's kubelet starts it (`weft agent --node NAME`); on Kubernetes the same
//! loop runs as a DaemonSet against the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weft_model::{Object, ObjectKey};
use weft_net::{Applied, NetError, NetworkConfig, NodeInfo, NodePlan};
use weft_proxy::{Proxy, ProxyError, ProxyNode, ServicePortView, SyncKind};
use weft_sources::{Store, StoreError};

/// How often the agent re-applies its plan even when nothing in the cluster changed, so that
/// state removed behind its back comes back.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How long to wait before retrying after a failed sync.
const RETRY: Duration = Duration::from_secs(1);
/// Service-port views, per Service (namespace, name).
type ViewsByService = BTreeMap<(String, String), Vec<ServicePortView>>;

/// The kinds whose changes the agent acts on.
const WATCHED: [&str; 3] = ["Node", "Service", "EndpointSlice"];

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

pub struct Agent {
    store: Store,
    config: NetworkConfig,
    node: String,
    proxy: Proxy,
    /// The watched objects as last read, by key.
    objects: BTreeMap<ObjectKey, Object>,
    /// The service-port views last loaded, per Service (namespace, name).
    views: ViewsByService,
    /// Services whose objects or slices changed since the last load.
    dirty: BTreeSet<(String, String)>,
    /// Recompile every Service at the next sync (start, node changes).
    whole: bool,
    /// The store revision `objects` was listed at: the change log is followed from there.
    listed_at: u64,
    /// When the next whole recompile is due anyway (a periodic check that the per-Service
    /// updates add up to the whole).
    next_whole: Instant,
}

impl Agent {
    /// An agent for `node`, with the watched objects listed from `store` now.
    pub fn new(store: Store, config: NetworkConfig, node: &str) -> Result<Agent, AgentError> {
        let mut agent = Agent {
            store,
            config,
            node: node.to_string(),
            proxy: Proxy::new(),
            objects: BTreeMap::new(),
            views: BTreeMap::new(),
            dirty: BTreeSet::new(),
            whole: true,
            next_whole: Instant::now(),
            listed_at: 0,
        };
        agent.relist()?;
        Ok(agent)
    }

    fn relist(&mut self) -> Result<(), AgentError> {
        // The revision first: a change made during the listing is then read again from the
        // log, never missed.
        self.listed_at = self.store.revision()?;
        self.objects.clear();
        for kind in WATCHED {
            for o in self.store.list(kind)? {
                self.objects.insert(o.key(), o);
            }
        }
        Ok(())
    }

    /// Re-reads the objects behind `keys` (gone ones are dropped) and notes which Services
    /// they concern.
    fn refresh(&mut self, keys: impl IntoIterator<Item = ObjectKey>) -> Result<(), AgentError> {
        for key in keys {
            let new = self.store.get(&key)?;
            let old = match &new {
                Some(o) => self.objects.insert(key.clone(), o.clone()),
                None => self.objects.remove(&key),
            };
            for o in old.iter().chain(new.iter()) {
                match o {
                    Object::Service(_) => {
                        self.dirty
                            .insert((key.namespace.clone().unwrap_or_default(), key.name.clone()));
                    }
                    Object::EndpointSlice(slice) => {
                        if let Some(svc) = slice
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(weft_proxy::view::SERVICE_NAME_LABEL))
                        {
                            self.dirty
                                .insert((key.namespace.clone().unwrap_or_default(), svc.clone()));
                        }
                    }
                    // Node addresses and readiness: simplest to recompile everything (rare).
                    _ => self.whole = true,
                }
            }
        }
        Ok(())
    }

    /// The cluster view: every Node that has a pod CIDR and an address. Nodes still missing
    /// either are skipped (and logged): they cannot be routed to yet.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut out = Vec::new();
        for node in self.objects.values().filter_map(Object::as_node) {
            match NodeInfo::from_node(node) {
                Ok(info) => out.push(info),
                Err(e) => tracing::info!(node = %self.node, "skipping: {e}"),
            }
        }
        out
    }

    /// This node's plan for the cluster as last read.
    pub fn plan(&self) -> Result<NodePlan, AgentError> {
        Ok(weft_net::compile(&self.config, &self.node, &self.nodes())?)
    }

    /// This node's Service table as last read, as the `nft` script that would load it whole.
    pub fn services_script(&self) -> Result<String, AgentError> {
        let plan = self.plan()?;
        Ok(self
            .compile_all(&self.proxy_node(&plan.node))
            .1
            .full_script())
    }

    fn proxy_node(&self, me: &NodeInfo) -> ProxyNode {
        ProxyNode {
            name: self.node.clone(),
            ip: me.ip,
            cluster_cidr: self.config.cluster_cidr,
        }
    }

    /// The views of the given Services (all of them when None), grouped per Service.
    fn views_of(
        &self,
        node: &ProxyNode,
        only: Option<&BTreeSet<(String, String)>>,
    ) -> ViewsByService {
        let wanted = |ns: &str, name: &str| {
            only.is_none_or(|set| set.contains(&(ns.to_string(), name.to_string())))
        };
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for (key, o) in &self.objects {
            let ns = key.namespace.as_deref().unwrap_or_default();
            match o {
                Object::Service(svc) if wanted(ns, &key.name) => services.push(svc.clone()),
                Object::EndpointSlice(slice) => {
                    let owner = slice
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(weft_proxy::view::SERVICE_NAME_LABEL));
                    if owner.is_some_and(|svc| wanted(ns, svc)) {
                        slices.push(slice.clone());
                    }
                }
                _ => {}
            }
        }
        let mut out: ViewsByService = BTreeMap::new();
        for v in weft_proxy::view::views(node, &services, &slices) {
            out.entry((v.namespace.clone(), v.name.clone()))
                .or_default()
                .push(v);
        }
        out
    }

    /// Every Service's views, grouped per Service, and the whole table they compile to.
    fn compile_all(&self, node: &ProxyNode) -> (ViewsByService, weft_proxy::Ruleset) {
        let views = self.views_of(node, None);
        let flat: Vec<ServicePortView> = views.values().flatten().cloned().collect();
        let ruleset = weft_proxy::compile(node, &flat);
        (views, ruleset)
    }

    /// Loads what changed in the Services: only the changed ones, or everything when asked to
    /// (or when only that will do).
    fn sync_services(&mut self, me: &NodeInfo) -> Result<(), AgentError> {
        let node = self.proxy_node(me);
        if Instant::now() >= self.next_whole {
            self.whole = true;
        }
        if !self.whole && !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            let fresh = self.views_of(&node, Some(&dirty));
            let mut changes = Vec::new();
            for svc in &dirty {
                let old = self.views.get(svc).cloned().unwrap_or_default();
                let new = fresh.get(svc).cloned().unwrap_or_default();
                let ids: BTreeSet<String> =
                    old.iter().chain(&new).map(ServicePortView::id).collect();
                for id in ids {
                    let o = old.iter().find(|v| v.id() == id).cloned();
                    let n = new.iter().find(|v| v.id() == id).cloned();
                    if o != n {
                        changes.push((o, n));
                    }
                }
            }
            match self.proxy.sync_changes(&node, &changes)? {
                Some(kind) => {
                    for svc in dirty {
                        match fresh.get(&svc) {
                            Some(v) => self.views.insert(svc, v.clone()),
                            None => self.views.remove(&svc),
                        };
                    }
                    log_sync(&self.node, kind, changes.len());
                    return Ok(());
                }
                None => self.whole = true,
            }
        }
        if self.whole {
            self.dirty.clear();
            let (views, ruleset) = self.compile_all(&node);
            self.views = views;
            let kind = self.proxy.sync(ruleset)?;
            log_sync(&self.node, kind, self.views.values().map(Vec::len).sum());
            self.whole = false;
            self.next_whole = Instant::now() + RESYNC;
        }
        Ok(())
    }

    /// One reconcile pass: compile, apply, log what changed.
    pub fn sync(&mut self) -> Result<Applied, AgentError> {
        let plan = self.plan()?;
        let applied = weft_net::apply(&plan)?;
        for change in &applied.changes {
            tracing::info!(node = %self.node, "{change}");
        }
        self.sync_services(&plan.node)?;
        Ok(applied)
    }

    /// Runs until the process is killed.
    ///
    /// Changes are applied as they arrive, Service by Service; every [`RESYNC`] the kernel's
    /// routes are re-checked and the whole Service table recompiled (a check that the per-Service
    /// updates add up to it: normally a no-op).
    pub fn run(mut self) -> Result<(), AgentError> {
        // Events after the listing; one that the listing already saw is simply read again.
        let mut watch = self.store.watch(self.listed_at)?;
        tracing::info!(node = %self.node, mode = ?self.config.mode, "agent started");
        let mut due = Instant::now();
        let mut first = true;
        loop {
            if Instant::now() >= due {
                due = match self.sync() {
                    Ok(applied) => {
                        if first {
                            // After a restart this says whether the kernel had kept our state.
                            tracing::info!(node = %self.node, "first sync after start: {} change(s)", applied.changes.len());
                            first = false;
                        }
                        Instant::now() + RESYNC
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.node, "sync failed, retrying: {e}");
                        Instant::now() + RETRY
                    }
                };
            }
            let wait = due.saturating_duration_since(Instant::now());
            let events = watch.wait(wait)?;
            let changed: Vec<ObjectKey> = events
                .into_iter()
                .map(|e| e.key)
                .filter(|k| WATCHED.contains(&k.kind.as_str()))
                .collect();
            if !changed.is_empty() {
                self.refresh(changed)?;
                due = Instant::now();
            }
        }
    }
}

fn log_sync(node: &str, kind: SyncKind, ports: usize) {
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
