//! The policy reconciler. Its tracker ([`crate::track`]) turns the changes since the last sync
//! into the policies to resolve again; those are recompiled into fragments and the difference
//! (elements for a pod's labels or address, chains only for a policy that changed or started or
//! stopped selecting pods here) goes to the kernel as one transaction. The first sync, a
//! relist, a node change and every resync period (a sync with nothing noted) compile the whole
//! table and let the applier diff it against what it loaded, and compare the kernel's table
//! with it (rules per chain, every set element): that repairs drift, made by hand or by
//! anything else, and checks the incremental updates add up to the whole.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use weft_dataplane::nft::{Applied, Applier, Table};
use weft_view::{ClusterView, Interest, NsName, Reconciler, Shared, Wake};

use crate::attach::Attachments;
use crate::compile::{NodeContext, Parts};
use crate::resolve::{re_resolve, resolve, NodePolicies, PeerKey};
use crate::spec::Policy;
use crate::track::{Dirty, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("loading the policy table on node {node}: {source}")]
    Apply {
        node: String,
        source: weft_dataplane::Error,
    },
}

/// What the last successful sync loaded.
struct Loaded {
    ctx: NodeContext,
    resolved: Arc<NodePolicies>,
    parts: Parts,
}

/// The policies as last loaded, for readers outside the reconciler (the agent's `/policy`).
pub type Published = Arc<Mutex<Option<Arc<NodePolicies>>>>;

pub struct PolicyReconciler {
    node: String,
    vxlan_port: u16,
    applier: Applier,
    attachments: Arc<Attachments>,
    tracker: Tracker,
    loaded: Option<Loaded>,
    published: Published,
}

impl PolicyReconciler {
    pub fn new(node: &str, vxlan_port: u16) -> PolicyReconciler {
        PolicyReconciler {
            node: node.to_string(),
            vxlan_port,
            // The resync compares the kernel's rules and elements with the table, so an edit
            // by hand (a rule or a pod's map element deleted) is repaired within a period.
            applier: Applier::new().check_contents(true),
            attachments: Attachments::new(),
            tracker: Tracker::new(),
            loaded: None,
            published: Published::default(),
        }
    }

    /// The announcements of this node's CNI plugin (serve them with [`crate::attach::serve`]).
    pub fn attachments(&self) -> Arc<Attachments> {
        self.attachments.clone()
    }

    /// The policies as last loaded into the kernel.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    fn context(&self, view: &ClusterView) -> NodeContext {
        NodeContext {
            node_ips: view
                .nodes()
                .filter_map(weft_model::node::internal_ip)
                .collect::<BTreeSet<_>>(),
            vxlan_port: self.vxlan_port,
        }
    }

    /// This node's policies and whole table for the view as it is.
    pub fn compile(&self, view: &ClusterView) -> (NodePolicies, Table) {
        let resolved = resolve(view, &self.node, &self.attachments.announced());
        let table = Parts::of(&resolved).table(&self.context(view));
        (resolved, table)
    }

    /// Compiles and applies the whole table.
    fn sync_whole(&mut self, view: &Shared) -> Result<(), weft_dataplane::Error> {
        let (ctx, resolved, parts, table) = {
            let view = view.read();
            let ctx = self.context(&view);
            let resolved = resolve(&view, &self.node, &self.attachments.announced());
            let parts = Parts::of(&resolved);
            let table = parts.table(&ctx);
            (ctx, resolved, parts, table)
        };
        match self.applier.apply(&table)? {
            Applied::WholeAfterRefusal(why) => {
                tracing::warn!(node = %self.node, "policy table reloaded whole: {why}");
            }
            Applied::Unchanged => {}
            other => tracing::debug!(node = %self.node, "policy table: {other:?}"),
        }
        self.loaded = Some(Loaded {
            ctx,
            resolved: Arc::new(resolved),
            parts,
        });
        Ok(())
    }

    /// Resolves and compiles only `dirty`, and commits the difference.
    fn sync_some(
        &mut self,
        view: &Shared,
        dirty: Vec<(NsName, Option<Policy>)>,
        dirty_peers: BTreeSet<PeerKey>,
        pods: BTreeSet<NsName>,
    ) -> Result<(), weft_dataplane::Error> {
        let Some(mut loaded) = self.loaded.take() else {
            return self.sync_whole(view);
        };
        let (ctx, (resolved, changed)) = {
            let view = view.read();
            let refs: Vec<(NsName, Option<&Policy>)> =
                dirty.iter().map(|(k, p)| (k.clone(), p.as_ref())).collect();
            let announced = self.attachments.announced();
            // The last sync's resolution is reused, not copied: the published handle lets go
            // of it first (a reader holding it a moment longer costs one copy).
            self.published
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let old = Arc::unwrap_or_clone(loaded.resolved);
            let resolved = re_resolve(
                &view,
                &self.node,
                &announced,
                old,
                &refs,
                &dirty_peers,
                Some(&pods),
            );
            (self.context(&view), resolved)
        };
        if ctx != loaded.ctx {
            return self.sync_whole(view);
        }
        let tx = loaded.parts.update(&resolved, &changed);
        if !tx.is_empty() {
            match self.applier.commit(tx)? {
                Applied::WholeAfterRefusal(why) => {
                    tracing::warn!(node = %self.node, "policy table reloaded whole: {why}");
                }
                applied => tracing::debug!(
                    node = %self.node,
                    policies = changed.policies.len(),
                    peers = changed.peers.len(),
                    "policy table: {applied:?}"
                ),
            }
        }
        self.loaded = Some(Loaded {
            ctx,
            resolved: Arc::new(resolved),
            parts: loaded.parts,
        });
        Ok(())
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

    fn note(&mut self, wake: Wake) {
        self.tracker.note(&wake);
    }

    fn sync(&mut self, view: &Shared) -> Result<(), PolicyError> {
        let dirty = {
            let v = view.read();
            self.tracker.take(&v, &self.attachments.announced())
        };
        let result = match dirty {
            Dirty::All => self.sync_whole(view),
            Dirty::Some {
                policies,
                peers,
                pods,
            } => self.sync_some(view, policies, peers, pods),
        };
        if let Err(source) = result {
            // The facts moved on; what the kernel has is unknown: start over next time.
            self.tracker.reset();
            self.loaded = None;
            self.applier.forget();
            return Err(PolicyError::Apply {
                node: self.node.clone(),
                source,
            });
        }
        if let Some(loaded) = &self.loaded {
            self.attachments.programmed(&loaded.resolved.local);
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            *published = Some(loaded.resolved.clone());
        }
        Ok(())
    }
}
