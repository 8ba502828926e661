//! A transaction of explicit changes to a loaded table (kube-proxy's knftables style): the
//! caller that knows what changed (one Service) says so, and the applier sends exactly that
//! as one batch and applies it to its copy of the table, in time proportional to the change,
//! not to the table. [`super::Applier::apply`] remains for whole-table diffs.

use super::encode::Encoder;
use super::model::{Chain, Elem, Key, Set, Table};
use super::wire::{Batch, MsgType};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    AddSet(Set),
    DeleteSet(String),
    /// Creates the chain, or replaces its rules (flush, then add) when it exists.
    PutChain(Chain),
    DeleteChain(String),
    PutElement(String, Key, Elem),
    DeleteElement(String, Key),
}

impl Op {
    /// Batch order: what rules and elements refer to exists before them, and goes after them.
    fn phase(&self) -> u8 {
        match self {
            Op::AddSet(_) => 0,
            Op::PutChain(_) => 1,
            Op::DeleteElement(..) => 2,
            Op::PutElement(..) => 3,
            Op::DeleteChain(_) => 4,
            Op::DeleteSet(_) => 5,
        }
    }
}

/// Changes to send as one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tx {
    ops: Vec<Op>,
}

impl Tx {
    pub fn new() -> Tx {
        Tx::default()
    }

    /// How many changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds a new set or map (with its elements).
    pub fn add_set(&mut self, set: Set) -> &mut Tx {
        self.ops.push(Op::AddSet(set));
        self
    }

    pub fn delete_set(&mut self, name: impl Into<String>) -> &mut Tx {
        self.ops.push(Op::DeleteSet(name.into()));
        self
    }

    /// Adds the chain, or replaces the rules of the chain of that name.
    pub fn put_chain(&mut self, chain: Chain) -> &mut Tx {
        self.ops.push(Op::PutChain(chain));
        self
    }

    pub fn delete_chain(&mut self, name: impl Into<String>) -> &mut Tx {
        self.ops.push(Op::DeleteChain(name.into()));
        self
    }

    /// Adds an element, or replaces the data of the element with that key.
    pub fn put_element(&mut self, set: impl Into<String>, key: Key, elem: Elem) -> &mut Tx {
        self.ops.push(Op::PutElement(set.into(), key, elem));
        self
    }

    pub fn delete_element(&mut self, set: impl Into<String>, key: Key) -> &mut Tx {
        self.ops.push(Op::DeleteElement(set.into(), key));
        self
    }

    /// The batch taking `table` (what is loaded) through these changes; changes that change
    /// nothing (an element already there, a chain with the same rules) are left out.
    pub(crate) fn batch(&self, table: &Table) -> Batch {
        let mut ops: Vec<&Op> = self.ops.iter().collect();
        ops.sort_by_key(|o| o.phase());
        let mut batch = Batch::new();
        let mut e = Encoder::new(&mut batch, table);
        for op in ops {
            match op {
                Op::AddSet(s) => {
                    e.add_set(s);
                    e.elements(
                        MsgType::NewSetElem,
                        &s.name,
                        None,
                        s.elements.iter().map(|(k, v)| (k, Some(v))),
                    );
                }
                Op::DeleteSet(name) => e.delete_set(name),
                Op::PutChain(c) => {
                    match table.chains.get(&c.name) {
                        Some(old) if old.rules == c.rules && old.base == c.base => continue,
                        Some(_) => e.flush_chain(&c.name),
                        None => e.add_chain(c),
                    }
                    for r in &c.rules {
                        e.add_rule(&c.name, r);
                    }
                }
                Op::DeleteChain(name) => {
                    e.flush_chain(name);
                    e.delete_chain(name);
                }
                Op::PutElement(set, key, elem) => {
                    let old = table.sets.get(set).and_then(|s| s.elements.get(key));
                    if old == Some(elem) {
                        continue;
                    }
                    if old.is_some() {
                        e.elements(MsgType::DelSetElem, set, None, [(key, None)].into_iter());
                    }
                    e.elements(
                        MsgType::NewSetElem,
                        set,
                        None,
                        [(key, Some(elem))].into_iter(),
                    );
                }
                Op::DeleteElement(set, key) => {
                    if table
                        .sets
                        .get(set)
                        .is_some_and(|s| s.elements.contains_key(key))
                    {
                        e.elements(MsgType::DelSetElem, set, None, [(key, None)].into_iter());
                    }
                }
            }
        }
        batch
    }

    /// Applies the changes to the model.
    pub(crate) fn apply_to(self, table: &mut Table) {
        for op in self.ops {
            match op {
                Op::AddSet(s) => {
                    table.sets.insert(s.name.clone(), s);
                }
                Op::DeleteSet(name) => {
                    table.sets.remove(&name);
                }
                Op::PutChain(c) => match table.chains.get_mut(&c.name) {
                    Some(old) => old.rules = c.rules,
                    None => {
                        table.chains.insert(c.name.clone(), c);
                    }
                },
                Op::DeleteChain(name) => {
                    table.chains.remove(&name);
                }
                Op::PutElement(set, key, elem) => {
                    if let Some(s) = table.sets.get_mut(&set) {
                        s.elements.insert(key, elem);
                    }
                }
                Op::DeleteElement(set, key) => {
                    if let Some(s) = table.sets.get_mut(&set) {
                        s.elements.remove(&key);
                    }
                }
            }
        }
    }
}
