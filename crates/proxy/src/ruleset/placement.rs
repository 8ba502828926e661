//! Where each multi-endpoint dispatch's endpoints live in the shared backends map. A dispatch
//! owns the block `[base, base + n)` of indexes: it stores `numgen random mod n offset base`
//! in the connection's mark and jumps to `backend_dnat`, the only rules that use the map.
//! (Not a map per Service: the kernel walks a table's list of sets to name or find one, and
//! checks every element of a data map against every rule using it, so ten thousand
//! per-service maps, or ten thousand rules on one map, load in seconds instead of ms.)

use std::collections::BTreeSet;

use weft_dataplane::nft::Rule;

use super::base::BACKEND_DNAT;
use super::Ruleset;
use crate::view::Endpoint;

/// Endpoints one dispatch can balance over (the size of its block in the backends map).
pub const MAX_ENDPOINTS_PER_DISPATCH: usize = 4096;
pub(super) const BLOCK_BITS: u32 = 12;
const SLOT_BITS: u32 = 19;

/// A multi-endpoint DNAT waiting for its block of the backends map.
pub(super) struct PendingDispatch {
    pub(super) chain: String,
    pub(super) rule: usize,
    pub(super) endpoints: Vec<Endpoint>,
}

/// The backends-map indexes of the block of `slot`.
pub(super) fn block(slot: u32) -> std::ops::Range<u32> {
    let base = slot << BLOCK_BITS;
    base..base + (1 << BLOCK_BITS)
}

/// Gives each dispatch its block: the slot its chain name hashes to, or the next free one. Done
/// in name order, so the same services always get the same blocks, and a service's block only
/// moves when a new one lands on it first (then both are rewritten).
pub(super) fn place_dispatches(rs: &mut Ruleset, mut pending: Vec<PendingDispatch>) {
    pending.sort_by(|a, b| a.chain.cmp(&b.chain));
    let mut taken: BTreeSet<u32> = rs.slots.values().copied().collect();
    for d in pending {
        let slot = match rs.slots.get(&d.chain) {
            Some(slot) => *slot,
            None => {
                let mut slot = home_slot(&d.chain);
                while !taken.insert(slot) {
                    slot = slot % ((1 << SLOT_BITS) - 1) + 1;
                }
                rs.slots.insert(d.chain.clone(), slot);
                slot
            }
        };
        let base = block(slot).start;
        let eps = &d.endpoints[..d.endpoints.len().min(MAX_ENDPOINTS_PER_DISPATCH)];
        for (i, e) in eps.iter().enumerate() {
            rs.backends.insert(base + i as u32, (e.ip, e.port));
        }
        let rule = Rule::new()
            .ct_mark_set_numgen(eps.len() as u32, base)
            .goto(BACKEND_DNAT);
        if let Some(r) = rs
            .chains
            .get_mut(&d.chain)
            .and_then(|rules| rules.get_mut(d.rule))
        {
            *r = rule;
        }
    }
}

/// The slot a dispatching chain's name hashes to (1..2^19).
fn home_slot(chain: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(chain.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % ((1 << SLOT_BITS) - 1) + 1
}
