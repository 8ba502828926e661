//! One service port's change as a transaction: its old contribution out of the ruleset, the
//! new one in, and the [`Tx`] that makes the same change in the kernel (only that port's
//! chains, sets and elements, and the shared elements whose counts reach or leave zero), so a
//! change costs the same with 10 or 10,000 Services.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_dataplane::nft::{Chain, Elem, Key, Tx, Value};

use super::placement::{block, place_dispatches, PendingDispatch};
use super::service::add_service_port;
use super::{affinity_set, backend_elem, hairpin_key, verdict_elem, Ruleset};
use super::{BACKENDS, CLUSTER_IPS, HAIRPIN};
use crate::view::ServicePortView;
use crate::ProxyNode;

/// The contribution of one service port alone: its chains, sets, map elements and hairpin
/// entries, and its dispatches still to be placed.
fn part(node: &ProxyNode, v: &ServicePortView) -> (Ruleset, Vec<PendingDispatch>) {
    let mut rs = Ruleset::default();
    let mut pending = Vec::new();
    add_service_port(&mut rs, &mut pending, node, v);
    (rs, pending)
}

/// What a change touches, on either side.
#[derive(Default)]
struct Touched {
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
    elements: BTreeSet<(&'static str, Key)>,
    hairpin: BTreeSet<Ipv4Addr>,
    cluster_ips: BTreeSet<Ipv4Addr>,
    blocks: BTreeSet<u32>,
}

impl Touched {
    fn add(&mut self, p: &Ruleset) {
        self.chains.extend(p.chains.keys().cloned());
        self.sets.extend(p.sets.keys().cloned());
        for (map, entries) in &p.maps {
            self.elements
                .extend(entries.keys().map(|k| (*map, k.clone())));
        }
        self.hairpin.extend(p.hairpin.keys());
        self.cluster_ips.extend(p.cluster_ips.keys());
    }
}

impl Ruleset {
    /// Replaces one service port's contribution (`old` -> `new`; None for none) in this
    /// ruleset and returns the transaction that makes the same change in the kernel: only
    /// that service port's chains, sets and elements are compiled, compared and written, so a
    /// change costs the same with 10 or 10,000 Services. The result equals a whole `compile`
    /// of the new views, except that a dispatch keeps its slot where a whole compile might
    /// have ordered a hash collision the other way.
    pub fn change(
        &mut self,
        node: &ProxyNode,
        old: Option<&ServicePortView>,
        new: Option<&ServicePortView>,
    ) -> Tx {
        let (old_part, old_pending) = old.map(|v| part(node, v)).unwrap_or_default();
        let (new_part, new_pending) = new.map(|v| part(node, v)).unwrap_or_default();
        let mut touched = Touched::default();
        touched.add(&old_part);
        touched.add(&new_part);
        for d in &old_pending {
            touched.blocks.extend(self.slots.get(&d.chain));
        }
        let before = self.subset(&touched);

        // Take the old contribution out.
        for c in old_part.chains.keys() {
            self.chains.remove(c);
        }
        for name in old_part.sets.keys() {
            self.sets.remove(name);
        }
        for (map, entries) in &old_part.maps {
            if let Some(m) = self.maps.get_mut(map) {
                for k in entries.keys() {
                    m.remove(k);
                }
            }
        }
        uncount(&mut self.hairpin, &old_part.hairpin);
        uncount(&mut self.cluster_ips, &old_part.cluster_ips);
        let kept: BTreeSet<String> = new_pending.iter().map(|d| d.chain.clone()).collect();
        for d in &old_pending {
            let slot = if kept.contains(&d.chain) {
                self.slots.get(&d.chain).copied()
            } else {
                self.slots.remove(&d.chain)
            };
            if let Some(slot) = slot {
                let stale: Vec<u32> = self.backends.range(block(slot)).map(|(k, _)| *k).collect();
                for k in stale {
                    self.backends.remove(&k);
                }
            }
        }
        // Put the new one in.
        self.chains.extend(new_part.chains);
        self.sets.extend(new_part.sets);
        for (map, entries) in new_part.maps {
            self.maps.entry(map).or_default().extend(entries);
        }
        for (k, n) in new_part.hairpin {
            *self.hairpin.entry(k).or_default() += n;
        }
        for (k, n) in new_part.cluster_ips {
            *self.cluster_ips.entry(k).or_default() += n;
        }
        place_dispatches(self, new_pending);
        for c in &kept {
            touched.blocks.extend(self.slots.get(c));
        }
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
        for (map, key) in &t.elements {
            if let Some(v) = self.maps.get(map).and_then(|m| m.get(key)) {
                sub.map(map).insert(key.clone(), v.clone());
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
        for slot in &t.blocks {
            for (k, v) in self.backends.range(block(*slot)) {
                sub.backends.insert(*k, *v);
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
        let empty = BTreeMap::new();
        for (map, entries) in &self.maps {
            let before = old.maps.get(map).unwrap_or(&empty);
            elements(&mut tx, map, before, entries, verdict_elem);
        }
        for (map, entries) in &old.maps {
            if !self.maps.contains_key(map) {
                elements(&mut tx, map, entries, &empty, verdict_elem);
            }
        }
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
        let backends = |m: &BTreeMap<u32, (Ipv4Addr, u16)>| {
            m.iter()
                .map(|(i, b)| (vec![Value::Int(*i)], *b))
                .collect::<BTreeMap<Key, _>>()
        };
        elements(
            &mut tx,
            BACKENDS,
            &backends(&old.backends),
            &backends(&self.backends),
            |b| backend_elem(*b),
        );
        // Chains and sets nobody refers to any more (the Tx deletes them after the rest).
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            tx.delete_chain(name.as_str());
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
