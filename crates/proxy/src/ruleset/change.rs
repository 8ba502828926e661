//! One service port's change as a transaction: its old contribution out of the ruleset, the
//! new one in, and the [`Tx`] that makes the same change in the kernel (only that port's
//! elements and affinity chains, and the shared elements and `pick_<n>` chains whose counts
//! reach or leave zero), so a change costs the same with 10 or 10,000 Services.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_dataplane::nft::{Chain, Elem, Key, Tx, Value};

use super::placement::{count, place_dispatches, unplace, PendingDispatch};
use super::service::add_service_port;
use super::{
    affinity_set, backend_elem, backend_key, goto_elem, hairpin_key, mark_elem, pick, Ruleset,
};
use super::{
    backends, backends_map, count_key, pick_chain, AFFINITY, CLUSTER_IPS, ENDPOINT_COUNTS, HAIRPIN,
};
use crate::view::ServicePortView;
use crate::ProxyNode;

/// The contribution of one service port alone: its chains, sets, refusals and hairpin
/// entries, and its dispatches still to be placed.
fn part(v: &ServicePortView) -> (Ruleset, Vec<PendingDispatch>) {
    let mut rs = Ruleset::default();
    let mut pending = Vec::new();
    add_service_port(&mut rs, &mut pending, v);
    (rs, pending)
}

/// What a change touches, on either side.
#[derive(Default)]
struct Touched {
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
    marks: BTreeSet<(&'static str, Key)>,
    refused: BTreeSet<(&'static str, Key)>,
    hairpin: BTreeSet<Ipv4Addr>,
    cluster_ips: BTreeSet<Ipv4Addr>,
    /// Dispatch marks: their backends and affinity entries.
    dispatches: BTreeSet<u32>,
    /// Endpoint counts: their pick chains.
    counts: BTreeSet<u32>,
}

impl Touched {
    fn add(&mut self, p: &Ruleset, pending: &[PendingDispatch]) {
        self.chains.extend(p.chains.keys().cloned());
        self.sets.extend(p.sets.keys().cloned());
        for (set, keys) in &p.refused {
            self.refused.extend(keys.iter().map(|k| (*set, k.clone())));
        }
        self.hairpin.extend(p.hairpin.keys());
        self.cluster_ips.extend(p.cluster_ips.keys());
        for d in pending {
            self.marks
                .extend(d.frontends.iter().map(|(m, k)| (*m, k.clone())));
            self.counts.insert(d.endpoints.len() as u32);
        }
    }

    fn placed(&mut self, rs: &Ruleset, pending: &[PendingDispatch]) {
        for d in pending {
            if let Some(mark) = rs.dispatches.get(&d.name) {
                self.dispatches.insert(*mark);
                self.counts.insert(count(*mark));
            }
        }
    }
}

impl Ruleset {
    /// Replaces one service port's contribution (`old` -> `new`; None for none) in this
    /// ruleset and returns the transaction that makes the same change in the kernel: only
    /// that service port's elements (and affinity chains) are compiled, compared and written,
    /// so a change costs the same with 10 or 10,000 Services. The result equals a whole
    /// `compile` of the new views, except that a dispatch keeps its slot where a whole compile
    /// might have ordered a hash collision the other way.
    pub fn change(
        &mut self,
        _node: &ProxyNode,
        old: Option<&ServicePortView>,
        new: Option<&ServicePortView>,
    ) -> Tx {
        let (old_part, old_pending) = old.map(part).unwrap_or_default();
        let (new_part, new_pending) = new.map(part).unwrap_or_default();
        let mut touched = Touched::default();
        touched.add(&old_part, &old_pending);
        touched.add(&new_part, &new_pending);
        touched.placed(self, &old_pending);
        let before = self.subset(&touched);

        // Take the old contribution out.
        for c in old_part.chains.keys() {
            self.chains.remove(c);
        }
        for name in old_part.sets.keys() {
            self.sets.remove(name);
        }
        for (set, keys) in &old_part.refused {
            if let Some(s) = self.refused.get_mut(set) {
                for k in keys {
                    s.remove(k);
                }
                if s.is_empty() {
                    self.refused.remove(set);
                }
            }
        }
        uncount(&mut self.hairpin, &old_part.hairpin);
        uncount(&mut self.cluster_ips, &old_part.cluster_ips);
        let kept: BTreeSet<&str> = new_pending.iter().map(|d| d.name.as_str()).collect();
        for d in &old_pending {
            unplace(self, d, kept.contains(d.name.as_str()));
        }
        // Put the new one in.
        self.chains.extend(new_part.chains);
        self.sets.extend(new_part.sets);
        for (set, keys) in new_part.refused {
            self.refused.entry(set).or_default().extend(keys);
        }
        for (k, n) in new_part.hairpin {
            *self.hairpin.entry(k).or_default() += n;
        }
        for (k, n) in new_part.cluster_ips {
            *self.cluster_ips.entry(k).or_default() += n;
        }
        let names: Vec<String> = new_pending.iter().map(|d| d.name.clone()).collect();
        place_dispatches(self, new_pending);
        touched
            .dispatches
            .extend(names.iter().filter_map(|n| self.dispatches.get(n)));
        self.subset(&touched).tx_from(&before)
    }

    /// A ruleset holding only the touched parts of this one, to diff a change.
    fn subset(&self, t: &Touched) -> Ruleset {
        let mut sub = Ruleset::default();
        for c in &t.chains {
            if let Some(rules) = self.chains.get(c) {
                sub.chains.insert(c.clone(), rules.clone());
            }
        }
        for name in &t.sets {
            if let Some(timeout) = self.sets.get(name) {
                sub.sets.insert(name.clone(), *timeout);
            }
        }
        for (map, key) in &t.marks {
            if let Some(m) = self.marks.get(map).and_then(|m| m.get(key)) {
                sub.marks.entry(map).or_default().insert(key.clone(), *m);
            }
        }
        for (set, key) in &t.refused {
            if self.refused.get(set).is_some_and(|s| s.contains(key)) {
                sub.refused.entry(set).or_default().insert(key.clone());
            }
        }
        for ip in &t.hairpin {
            if let Some(n) = self.hairpin.get(ip) {
                sub.hairpin.insert(*ip, *n);
            }
        }
        for ip in &t.cluster_ips {
            if let Some(n) = self.cluster_ips.get(ip) {
                sub.cluster_ips.insert(*ip, *n);
            }
        }
        for mark in &t.dispatches {
            for (k, v) in self.backends.range((*mark, 0)..=(*mark, u32::MAX)) {
                sub.backends.insert(*k, *v);
            }
            if let Some(c) = self.affinity.get(mark) {
                sub.affinity.insert(*mark, c.clone());
            }
        }
        for n in &t.counts {
            if let Some(users) = self.counts.get(n) {
                sub.counts.insert(*n, *users);
            }
        }
        sub
    }

    /// The transaction turning `old` into `self` (both of one table: the fixed part aside).
    fn tx_from(&self, old: &Ruleset) -> Tx {
        let mut tx = Tx::new();
        for (name, timeout) in &self.sets {
            // A new timeout needs a new set; the Tx rewrites the chains that use it.
            if old.sets.get(name) != Some(timeout) {
                tx.add_set(affinity_set(name, *timeout));
            }
        }
        for (name, rules) in &self.chains {
            if old.chains.get(name) != Some(rules) {
                let mut c = Chain::new(name.as_str());
                c.rules = rules.clone();
                tx.put_chain(c);
            }
        }
        // A first dispatch of n endpoints brings its map and pick chain (the Tx adds them
        // before the elements that use or name them).
        for n in self.counts.keys().filter(|n| !old.counts.contains_key(*n)) {
            tx.add_set(backends_map(*n));
            tx.put_chain(pick(*n));
        }
        let no_marks = BTreeMap::new();
        let maps: BTreeSet<&'static str> =
            self.marks.keys().chain(old.marks.keys()).copied().collect();
        for map in maps {
            let before = old.marks.get(map).unwrap_or(&no_marks);
            let after = self.marks.get(map).unwrap_or(&no_marks);
            elements(&mut tx, map, before, after, |m| mark_elem(*m));
        }
        let no_keys = BTreeSet::new();
        let sets: BTreeSet<&'static str> = self
            .refused
            .keys()
            .chain(old.refused.keys())
            .copied()
            .collect();
        for set in sets {
            let keys = |r: &Ruleset| -> BTreeMap<Key, ()> {
                r.refused
                    .get(set)
                    .unwrap_or(&no_keys)
                    .iter()
                    .map(|k| (k.clone(), ()))
                    .collect()
            };
            elements(&mut tx, set, &keys(old), &keys(self), |_| Elem::default());
        }
        let counts = |r: &Ruleset| -> BTreeMap<Key, u32> {
            r.counts.keys().map(|n| (count_key(*n), *n)).collect()
        };
        elements(&mut tx, ENDPOINT_COUNTS, &counts(old), &counts(self), |n| {
            goto_elem(&pick_chain(*n))
        });
        let affinity = |r: &Ruleset| -> BTreeMap<Key, String> {
            r.affinity
                .iter()
                .map(|(m, c)| (vec![Value::Int(*m)], c.clone()))
                .collect()
        };
        elements(&mut tx, AFFINITY, &affinity(old), &affinity(self), |c| {
            goto_elem(c)
        });
        let keys = |m: &BTreeMap<Ipv4Addr, usize>, key: fn(Ipv4Addr) -> Key| {
            m.keys()
                .map(|ip| (key(*ip), ()))
                .collect::<BTreeMap<Key, ()>>()
        };
        let single = |ip| vec![Value::Ipv4(ip)];
        let unit = |_: &()| Elem::default();
        elements(
            &mut tx,
            HAIRPIN,
            &keys(&old.hairpin, hairpin_key),
            &keys(&self.hairpin, hairpin_key),
            unit,
        );
        elements(
            &mut tx,
            CLUSTER_IPS,
            &keys(&old.cluster_ips, single),
            &keys(&self.cluster_ips, single),
            unit,
        );
        // Backends, per map: a dispatch whose count changes moves to another one.
        let by_map = |r: &Ruleset| {
            let mut maps: BTreeMap<u32, BTreeMap<Key, (Ipv4Addr, u16)>> = BTreeMap::new();
            for (k, b) in &r.backends {
                maps.entry(count(k.0))
                    .or_default()
                    .insert(backend_key(*k), *b);
            }
            maps
        };
        let (before, after) = (by_map(old), by_map(self));
        let none = BTreeMap::new();
        let counts: BTreeSet<u32> = before.keys().chain(after.keys()).copied().collect();
        for n in counts {
            // A map that goes is deleted whole (after its pick chain).
            if self.counts.contains_key(&n) || !old.counts.contains_key(&n) {
                elements(
                    &mut tx,
                    &backends(n),
                    before.get(&n).unwrap_or(&none),
                    after.get(&n).unwrap_or(&none),
                    |b| backend_elem(*b),
                );
            }
        }
        // Chains and sets nobody refers to any more (the Tx deletes them after the rest).
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            tx.delete_chain(name.as_str());
        }
        for n in old.counts.keys().filter(|n| !self.counts.contains_key(*n)) {
            tx.delete_chain(pick_chain(*n));
            tx.delete_set(backends(*n));
        }
        for name in old.sets.keys().filter(|n| !self.sets.contains_key(*n)) {
            tx.delete_set(name.as_str());
        }
        tx
    }
}

/// The element changes turning set `set` from `old` into `new`.
fn elements<V: PartialEq>(
    tx: &mut Tx,
    set: &str,
    old: &BTreeMap<Key, V>,
    new: &BTreeMap<Key, V>,
    elem: impl Fn(&V) -> Elem,
) {
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        tx.delete_element(set, k.clone());
    }
    for (k, v) in new {
        if old.get(k) != Some(v) {
            tx.put_element(set, k.clone(), elem(v));
        }
    }
}

/// Takes `gone`'s counts off `counts`, dropping the keys nothing holds any more.
fn uncount(counts: &mut BTreeMap<Ipv4Addr, usize>, gone: &BTreeMap<Ipv4Addr, usize>) {
    for (k, n) in gone {
        if let Some(count) = counts.get_mut(k) {
            *count = count.saturating_sub(*n);
            if *count == 0 {
                counts.remove(k);
            }
        }
    }
}
