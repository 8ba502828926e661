//! What this process's appliers sent to the kernel, per table: batches by kind and outcome,
//! their messages, and the size of the table last loaded (for `/metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::model::Table;

/// One table's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Batches sent, by (`whole` or `incremental`, `ok` or `refused`).
    pub batches: BTreeMap<(&'static str, &'static str), u64>,
    /// Netlink messages in the batches sent.
    pub messages: u64,
    /// Rules and set elements of the table as last loaded.
    pub rules: u64,
    pub elements: u64,
}

static STATS: Mutex<BTreeMap<String, TableStats>> = Mutex::new(BTreeMap::new());

/// Every table's figures so far, by table name (`family name`).
pub fn stats() -> BTreeMap<String, TableStats> {
    STATS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A batch of `messages` sent for `table`, whole or incremental, and whether the kernel took it.
pub(crate) fn batch(table: &Table, kind: &'static str, ok: bool, messages: usize) {
    let mut all = STATS.lock().unwrap_or_else(|e| e.into_inner());
    let s = all.entry(table.id()).or_default();
    *s.batches
        .entry((kind, if ok { "ok" } else { "refused" }))
        .or_default() += 1;
    s.messages += messages as u64;
}

/// `table` is what the kernel holds now.
pub(crate) fn loaded(table: &Table) {
    let rules = table.chains.values().map(|c| c.rules.len() as u64).sum();
    let elements = table.sets.values().map(|s| s.elements.len() as u64).sum();
    let mut all = STATS.lock().unwrap_or_else(|e| e.into_inner());
    let s = all.entry(table.id()).or_default();
    s.rules = rules;
    s.elements = elements;
}
