//! The policy reconciler: any change to a NetworkPolicy, a pod, a namespace or a node
//! recompiles this node's table from the view, and the applier sends the kernel the
//! difference from what it loaded (element changes for a pod's address or labels, chains for
//! a policy that starts or stops selecting pods here).

use std::collections::BTreeSet;
use std::sync::Arc;

use weft_dataplane::nft::{Applied, Applier, Table};
use weft_view::{ClusterView, Interest, Reconciler, Shared, Wake};

use crate::attach::Attachments;
use crate::compile::{compile, NodeContext};
use crate::resolve::{resolve, NodePolicies};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("loading the policy table on node {node}: {source}")]
    Apply {
        node: String,
        source: weft_dataplane::Error,
    },
}

pub struct PolicyReconciler {
    node: String,
    vxlan_port: u16,
    applier: Applier,
    attachments: Arc<Attachments>,
}

impl PolicyReconciler {
    pub fn new(node: &str, vxlan_port: u16) -> PolicyReconciler {
        PolicyReconciler {
            node: node.to_string(),
            vxlan_port,
            applier: Applier::new(),
            attachments: Attachments::new(),
        }
    }

    /// The announcements of this node's CNI plugin (serve them with [`crate::attach::serve`]).
    pub fn attachments(&self) -> Arc<Attachments> {
        self.attachments.clone()
    }

    /// This node's policies and table for the view as it is.
    pub fn compile(&self, view: &ClusterView) -> (NodePolicies, Table) {
        let ctx = NodeContext {
            node_ips: view
                .nodes()
                .filter_map(weft_model::node::internal_ip)
                .collect::<BTreeSet<_>>(),
            vxlan_port: self.vxlan_port,
        };
        let resolved = resolve(view, &self.node, &self.attachments.announced());
        let table = compile(&resolved, &ctx);
        (resolved, table)
    }
}

impl Reconciler for PolicyReconciler {
    type Error = PolicyError;

    fn name(&self) -> &'static str {
        "policy"
    }

    fn interest(&self) -> Interest {
        Interest {
            nodes: true,
            pods: true,
            namespaces: true,
            network_policies: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every sync recompiles the node's table; the applier sends only the difference.
    }

    fn sync(&mut self, view: &Shared) -> Result<(), PolicyError> {
        let (resolved, table) = self.compile(&view.read());
        let applied = self
            .applier
            .apply(&table)
            .map_err(|source| PolicyError::Apply {
                node: self.node.clone(),
                source,
            })?;
        match applied {
            Applied::Unchanged => {}
            Applied::WholeAfterRefusal(why) => {
                tracing::warn!(node = %self.node, "policy table reloaded whole: {why}");
            }
            other => tracing::debug!(node = %self.node, "policy table: {other:?}"),
        }
        self.attachments.programmed(&resolved.local);
        Ok(())
    }
}
