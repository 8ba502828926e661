//! Loading rulesets: the first one (and any after a refused update, or when the kernel's table
//! was deleted or replaced) replaces the whole table in one transaction; later ones send only
//! the difference, as nf_tables netlink batches of weft's own (`weft_dataplane::nft::Applier`:
//! no `nft` process, no libnftables cache of the whole table).

use weft_dataplane::nft::{Applied, Applier, Tx};

use crate::{ProxyError, ProxyNode, Ruleset, ServicePortView};

/// What one [`Proxy::sync`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncKind {
    Unchanged,
    Incremental,
    Full,
    /// The incremental transaction was refused, or the kernel's table was not the one loaded
    /// (the table was changed behind our back); the whole table was reloaded instead. Carries
    /// the refusal.
    FullAfterRefusedUpdate(String),
}

impl From<Applied> for SyncKind {
    fn from(a: Applied) -> SyncKind {
        match a {
            Applied::Unchanged => SyncKind::Unchanged,
            Applied::Incremental(_) => SyncKind::Incremental,
            Applied::Whole => SyncKind::Full,
            Applied::WholeAfterRefusal(e) => SyncKind::FullAfterRefusedUpdate(e.to_string()),
        }
    }
}

/// The loaded state of this node's service table, and the applier that loads it (one per
/// network namespace: make the proxy's first sync inside the namespace it manages).
#[derive(Default)]
pub struct Proxy {
    /// What the kernel holds, as far as we know; None after any failure, so the next sync
    /// starts over with a whole load.
    loaded: Option<Ruleset>,
    applier: Applier,
}

impl Proxy {
    pub fn new() -> Proxy {
        Proxy::default()
    }

    /// Makes the kernel's table match `next`, in the calling thread's network namespace. The
    /// same ruleset as loaded costs one round trip checking that the kernel's table is still
    /// ours (reloaded whole if it was deleted or replaced); another one is diffed against what
    /// is loaded and sent as one batch; the first is loaded whole (or kept, when an earlier run
    /// loaded this very table).
    pub fn sync(&mut self, next: Ruleset) -> Result<SyncKind, ProxyError> {
        let same = self.loaded.take().is_some_and(|old| old == next);
        let applied = if same {
            self.applier.check()?
        } else {
            self.applier.apply(&next.table())?
        };
        self.loaded = Some(next);
        Ok(applied.into())
    }

    /// Applies changes of individual service ports (`(old, new)` views; None for none) to what
    /// is loaded, compiling and writing only those, as one batch. Returns None when nothing is
    /// loaded yet (or the node changed): then only a whole [`Proxy::sync`] will do.
    pub fn sync_changes(
        &mut self,
        node: &ProxyNode,
        changes: &[(Option<ServicePortView>, Option<ServicePortView>)],
    ) -> Result<Option<SyncKind>, ProxyError> {
        let Some(mut loaded) = self.loaded.take() else {
            return Ok(None);
        };
        if !loaded.base_for(node) {
            self.loaded = Some(loaded);
            return Ok(None);
        }
        let mut tx = Tx::new();
        for (old, new) in changes {
            tx.extend(loaded.change(node, old.as_ref(), new.as_ref()));
        }
        if tx.is_empty() {
            self.loaded = Some(loaded);
            return Ok(Some(SyncKind::Unchanged));
        }
        // A refused batch makes the applier reload the whole table with the changes in it,
        // which is what `loaded` now holds.
        let applied = self.applier.commit(tx)?;
        self.loaded = Some(loaded);
        Ok(Some(applied.into()))
    }
}
