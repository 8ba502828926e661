//! The net reconciler: the Nodes of the cluster view in, this node's routes, overlay and egress
//! table out. Every Node change recompiles the whole plan: it is a function of the nodes only
//! (a few hundred at most) and compiles in microseconds, and the applier changes only what
//! differs.

use weft_view::{Interest, Reconciler, Shared, Wake};

use crate::{NetError, NetworkConfig, NodeApplier, NodeInfo, NodePlan};

pub struct NetReconciler {
    config: NetworkConfig,
    node: String,
    /// The kernel side, kept between syncs so the egress table is checked at every sync (the
    /// agent syncs every 10 s) and repaired when edited or deleted by hand.
    applier: NodeApplier,
    /// Whether a sync has succeeded since start (the first one says whether the kernel had
    /// kept our state while the agent was down).
    synced_once: bool,
}

impl NetReconciler {
    pub fn new(config: NetworkConfig, node: &str) -> NetReconciler {
        NetReconciler {
            config,
            node: node.to_string(),
            applier: NodeApplier::new(),
            synced_once: false,
        }
    }

    /// This node's plan for the nodes the view holds. Nodes still missing an address or a pod
    /// CIDR are skipped (and logged): they cannot be routed to yet.
    pub fn plan(&self, view: &Shared) -> Result<NodePlan, NetError> {
        let nodes: Vec<NodeInfo> = view
            .read()
            .nodes()
            .filter_map(|n| match NodeInfo::from_node(n) {
                Ok(info) => Some(info),
                Err(e) => {
                    tracing::info!(node = %self.node, "skipping: {e}");
                    None
                }
            })
            .collect();
        crate::compile(&self.config, &self.node, &nodes)
    }
}

impl Reconciler for NetReconciler {
    type Error = NetError;

    fn name(&self) -> &'static str {
        "net"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every sync recompiles from all nodes: nothing to track.
    }

    fn sync(&mut self, view: &Shared) -> Result<(), NetError> {
        let plan = self.plan(view)?;
        let applied = self.applier.apply(&plan)?;
        for change in &applied.changes {
            tracing::info!(node = %self.node, "{change}");
        }
        if !self.synced_once {
            tracing::info!(node = %self.node, "first sync after start: {} change(s)", applied.changes.len());
            self.synced_once = true;
        }
        Ok(())
    }
}
