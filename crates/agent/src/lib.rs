//! The node agent: one per node, inside that node's network namespace. It watches the cluster's
//! Nodes, Services and EndpointSlices through the store's change stream and, on every change
//! (and every [`RESYNC`] to repair drift), compiles this node's network plan (routes, overlay,
//! egress) and its Service proxy table, and applies both. The agent holds no state of its
//! own: killed and restarted, it reads the same Nodes, compiles the same plan, finds the kernel
//! already matching, and changes nothing, so connections through the node never notice.
//!
//! In the lab, the node's kubelet starts it (`weft agent --node NAME`); on Kubernetes the same
//! loop runs as a DaemonSet against the API server.

use std::time::{Duration, Instant};

use weft_net::{Applied, NetError, NetworkConfig, NodeInfo, NodePlan};
use weft_proxy::{Proxy, ProxyError, ProxyNode, SyncKind};
use weft_sources::{Store, StoreError};

/// The kinds whose changes the agent acts on.
const WATCHED: [&str; 3] = ["Node", "Service", "EndpointSlice"];

/// How often the agent re-applies its plan even when nothing in the cluster changed, so that
/// state removed behind its back comes back.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How long to wait before retrying after a failed sync.
const RETRY: Duration = Duration::from_secs(1);

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
}

impl Agent {
    pub fn new(store: Store, config: NetworkConfig, node: &str) -> Agent {
        Agent {
            store,
            config,
            node: node.to_string(),
            proxy: Proxy::new(),
        }
    }

    /// The cluster view: every Node that has a pod CIDR and an address. Nodes still missing
    /// either are skipped (and logged): they cannot be routed to yet.
    pub fn nodes(&self) -> Result<Vec<NodeInfo>, AgentError> {
        let mut out = Vec::new();
        for object in self.store.list("Node")? {
            let Some(node) = object.as_node() else {
                continue;
            };
            match NodeInfo::from_node(node) {
                Ok(info) => out.push(info),
                Err(e) => tracing::info!(node = %self.node, "skipping: {e}"),
            }
        }
        Ok(out)
    }

    /// This node's plan for the cluster as the store has it now.
    pub fn plan(&self) -> Result<NodePlan, AgentError> {
        Ok(weft_net::compile(&self.config, &self.node, &self.nodes()?)?)
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

    /// Compiles this node's Service table from the stored Services and EndpointSlices and
    /// loads what changed.
    fn sync_services(&mut self, me: &NodeInfo) -> Result<(), AgentError> {
        let node = ProxyNode {
            name: self.node.clone(),
            ip: me.ip,
            cluster_cidr: self.config.cluster_cidr,
        };
        let services: Vec<_> = self
            .store
            .list("Service")?
            .iter()
            .filter_map(|o| o.as_service().cloned())
            .collect();
        let slices: Vec<_> = self
            .store
            .list("EndpointSlice")?
            .iter()
            .filter_map(|o| o.as_endpoint_slice().cloned())
            .collect();
        let views = weft_proxy::view::views(&node, &services, &slices);
        let ruleset = weft_proxy::compile(&node, &views);
        match self.proxy.sync(ruleset)? {
            SyncKind::Unchanged => {}
            SyncKind::FullAfterRefusedUpdate(why) => {
                tracing::warn!(node = %self.node, "services table reloaded in full, the update was refused: {why}")
            }
            kind => {
                tracing::info!(node = %self.node, "services table: {kind:?} load, {} service ports", views.len())
            }
        }
        Ok(())
    }

    /// Runs until the process is killed.
    pub fn run(mut self) -> Result<(), AgentError> {
        let mut watch = self.store.watch(self.store.revision()?)?;
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
            if events
                .iter()
                .any(|e| WATCHED.contains(&e.key.kind.as_str()))
            {
                due = Instant::now();
            }
        }
    }
}
