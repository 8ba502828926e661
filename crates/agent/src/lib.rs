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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weft_model::{Object, ObjectKey};
use weft_net::{Applied, NetError, NetworkConfig, NodeInfo, NodePlan};
use weft_proxy::{Proxy, ProxyError, ProxyNode, SyncKind};
use weft_sources::{Store, StoreError};

/// How often the agent re-applies its plan even when nothing in the cluster changed, so that
/// state removed behind its back comes back.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How long to wait before retrying after a failed sync.
const RETRY: Duration = Duration::from_secs(1);
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
        };
        agent.relist()?;
        Ok(agent)
    }

    fn relist(&mut self) -> Result<(), AgentError> {
        self.objects.clear();
        for kind in WATCHED {
            for o in self.store.list(kind)? {
                self.objects.insert(o.key(), o);
            }
        }
        Ok(())
    }

    /// Re-reads the objects behind `keys` (gone ones are dropped).
    fn refresh(&mut self, keys: impl IntoIterator<Item = ObjectKey>) -> Result<(), AgentError> {
        for key in keys {
            match self.store.get(&key)? {
                Some(o) => self.objects.insert(key, o),
                None => self.objects.remove(&key),
            };
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
        Ok(self.ruleset(&plan.node).0.full_script())
    }

    fn ruleset(&self, me: &NodeInfo) -> (weft_proxy::Ruleset, usize) {
        let node = ProxyNode {
            name: self.node.clone(),
            ip: me.ip,
            cluster_cidr: self.config.cluster_cidr,
        };
        let services: Vec<_> = self
            .objects
            .values()
            .filter_map(|o| o.as_service().cloned())
            .collect();
        let slices: Vec<_> = self
            .objects
            .values()
            .filter_map(|o| o.as_endpoint_slice().cloned())
            .collect();
        let views = weft_proxy::view::views(&node, &services, &slices);
        (weft_proxy::compile(&node, &views), views.len())
    }

    /// One reconcile pass: compile, apply, log what changed.
    pub fn sync(&mut self) -> Result<Applied, AgentError> {
        let plan = self.plan()?;
        let applied = weft_net::apply(&plan)?;
        for change in &applied.changes {
            tracing::info!(node = %self.node, "{change}");
        }
        let (ruleset, ports) = self.ruleset(&plan.node);
        match self.proxy.sync(ruleset)? {
            SyncKind::Unchanged => {}
            SyncKind::FullAfterRefusedUpdate(why) => {
                tracing::warn!(node = %self.node, "services table reloaded whole, the update was refused: {why}")
            }
            kind => {
                tracing::info!(node = %self.node, "services table: {kind:?} load, {ports} service ports")
            }
        }
        Ok(applied)
    }

    /// Runs until the process is killed.
    pub fn run(mut self) -> Result<(), AgentError> {
        // Events after the listing; one that the listing already saw is simply read again.
        let mut watch = self.store.watch(self.store.revision()?)?;
        self.relist()?;
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
