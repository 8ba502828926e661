//! Loading rulesets: the first one (and any after a refused update) replaces the whole table in
//! one transaction; later ones load only the difference from what is known to be loaded.

use weft_dataplane::nft;

use crate::{ProxyError, Ruleset, ServicePortView};

/// What one [`Proxy::sync`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncKind {
    Unchanged,
    Incremental,
    Full,
    /// The incremental transaction was refused (the table was changed behind our back); the
    /// whole table was reloaded instead. Carries the refusal.
    FullAfterRefusedUpdate(String),
}

/// The loaded state of this node's service table, and the nftables session that loads it (one
/// per network namespace: create the proxy's first sync inside the namespace it manages).
#[derive(Default)]
pub struct Proxy {
    loaded: Option<Ruleset>,
    nft: nft::Session,
}

impl Proxy {
    pub fn new() -> Proxy {
        Proxy::default()
    }

    /// Makes the kernel's table match `next`, in the calling thread's network namespace.
    pub fn sync(&mut self, next: Ruleset) -> Result<SyncKind, ProxyError> {
        let update = match &self.loaded {
            Some(old) if *old == next => return Ok(SyncKind::Unchanged),
            Some(old) => next.update_script(old),
            None => None,
        };
        let kind = match update {
            Some(script) => match self.nft.apply(&script) {
                Ok(()) => SyncKind::Incremental,
                Err(refused) => {
                    // What is loaded is not what we think (someone changed the table): start over.
                    self.loaded = None;
                    nft::apply(&next.full_script())?;
                    SyncKind::FullAfterRefusedUpdate(refused.to_string())
                }
            },
            None => {
                // Whole loads go through the `nft` tool: a session that had loaded the whole
                // table would keep a cache of all of it and refresh all of it before every later
                // update (measured: ~60 ms per update at 10k Services, instead of ~10 ms).
                nft::apply(&next.full_script())?;
                SyncKind::Full
            }
        };
        self.loaded = Some(next);
        Ok(kind)
    }

    /// Applies changes of individual service ports (`(old, new)` views; None for none) to what
    /// is loaded, compiling and writing only those. Returns None when nothing is loaded yet (or
    /// the node changed): then only a whole [`Proxy::sync`] will do.
    pub fn sync_changes(
        &mut self,
        node: &crate::ProxyNode,
        changes: &[(Option<ServicePortView>, Option<ServicePortView>)],
    ) -> Result<Option<SyncKind>, ProxyError> {
        let Some(loaded) = self.loaded.as_mut() else {
            return Ok(None);
        };
        if loaded.base_for(node) {
            let mut script = String::new();
            for (old, new) in changes {
                script.push_str(&loaded.change(node, old.as_ref(), new.as_ref()));
            }
            if script.is_empty() {
                return Ok(Some(SyncKind::Unchanged));
            }
            match self.nft.apply(&script) {
                Ok(()) => return Ok(Some(SyncKind::Incremental)),
                Err(refused) => {
                    // `loaded` now holds the wanted state: load it whole.
                    let whole = loaded.full_script();
                    nft::apply(&whole)?;
                    return Ok(Some(SyncKind::FullAfterRefusedUpdate(refused.to_string())));
                }
            }
        }
        Ok(None)
    }
}
