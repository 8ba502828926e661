//! Dispatch marks: each dispatch (a service port's cluster-wide endpoints, or its external
//! ones) gets a slot, placed by a hash of its name so it is stable across syncs, and its mark
//! (kind, endpoint count, slot: see `base`) becomes the value of its frontends in the mark
//! maps. Its endpoints are `backends_<n>` elements keyed by `mark . index`; the `pick_<n>`
//! chain shared by every dispatch of n endpoints picks one with `numgen random mod n`. So a
//! service port is only elements: changing it adds a rule only when it is the first dispatch
//! of its size (then its map and pick chain come too). (Not a map per Service either: the kernel walks a
//! table's list of sets to name or find one, and checks every element of a data map against
//! every rule using it, so ten thousand per-service maps load in seconds instead of ms.)

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use weft_dataplane::nft::Key;

use super::base::{Kind, COUNT_SHIFT, KIND_SHIFT, SLOT_MASK};
use super::Ruleset;

/// Endpoints one dispatch can balance over (the count field of its mark).
pub const MAX_ENDPOINTS_PER_DISPATCH: usize = 4095;

/// A dispatch waiting for its mark.
pub(super) struct PendingDispatch {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) endpoints: Vec<(Ipv4Addr, u16)>,
    /// Picked by its own session-affinity chain (named `name`) instead of `pick_<n>`.
    pub(super) affinity: bool,
    /// The mark-map elements that get its mark.
    pub(super) frontends: Vec<(&'static str, Key)>,
}

/// The endpoint count in a dispatch mark.
pub(super) fn count(mark: u32) -> u32 {
    mark >> COUNT_SHIFT & 0xfff
}

/// Gives each dispatch its mark: the slot its name hashes to, or the next free one (a dispatch
/// already placed keeps its slot). Done in name order, so the same services always get the
/// same slots, and a slot only moves when a new dispatch lands on it first.
pub(super) fn place_dispatches(rs: &mut Ruleset, mut pending: Vec<PendingDispatch>) {
    pending.sort_by(|a, b| a.name.cmp(&b.name));
    let mut taken: BTreeSet<u32> = rs.dispatches.values().map(|m| m & SLOT_MASK).collect();
    for d in pending {
        let slot = match rs.dispatches.get(&d.name) {
            Some(mark) => mark & SLOT_MASK,
            None => {
                let mut slot = home_slot(&d.name);
                while !taken.insert(slot) {
                    slot = slot % SLOT_MASK + 1;
                }
                slot
            }
        };
        let n = d.endpoints.len() as u32;
        let mark = (d.kind as u32) << KIND_SHIFT | n << COUNT_SHIFT | slot;
        rs.dispatches.insert(d.name.clone(), mark);
        for (map, key) in d.frontends {
            rs.marks.entry(map).or_default().insert(key, mark);
        }
        if d.affinity {
            rs.affinity.insert(mark, d.name);
        } else if n > 0 {
            *rs.counts.entry(n).or_default() += 1;
            for (i, e) in d.endpoints.into_iter().enumerate() {
                rs.backends.insert((mark, i as u32), e);
            }
        }
    }
}

/// Takes a placed dispatch out again: its frontends, backends, affinity entry and count (and
/// its slot, unless `keep_slot`: it is about to be placed again).
pub(super) fn unplace(rs: &mut Ruleset, d: &PendingDispatch, keep_slot: bool) {
    let mark = if keep_slot {
        rs.dispatches.get(&d.name).copied()
    } else {
        rs.dispatches.remove(&d.name)
    };
    let Some(mark) = mark else { return };
    for (map, key) in &d.frontends {
        if let Some(m) = rs.marks.get_mut(map) {
            m.remove(key);
            if m.is_empty() {
                rs.marks.remove(map);
            }
        }
    }
    if rs.affinity.remove(&mark).is_some() {
        return;
    }
    let n = count(mark);
    if let Some(users) = rs.counts.get_mut(&n) {
        *users -= 1;
        if *users == 0 {
            rs.counts.remove(&n);
        }
    }
    let stale: Vec<(u32, u32)> = rs
        .backends
        .range((mark, 0)..=(mark, u32::MAX))
        .map(|(k, _)| *k)
        .collect();
    for k in stale {
        rs.backends.remove(&k);
    }
}

/// The slot a dispatch's name hashes to (1..2^18).
fn home_slot(name: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % SLOT_MASK + 1
}
