//! A transaction of explicit changes to a loaded table (kube-proxy's knftables style): the
//! caller that knows what changed (one Service) says so, and the applier sends exactly that
//! as one batch and applies it to its copy of the table, in time proportional to the change,
//! not to the table. [`super::Applier::apply`] remains for whole-table diffs.
//!
//! Changes mean what they would mean one after the other: the last change to a chain, a set
//! or an element wins (a Tx that deletes an element for one Service and puts it back for
//! another keeps it). The batch is then ordered so that what rules and elements refer to
//! exists before them and goes after them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::encode::Encoder;
use super::model::{Chain, Elem, Key, Set, Table};
use super::render::element;
use super::rule::Rule;
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

/// Changes to send as one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tx {
    ops: Vec<Op>,
}

/// One step of the batch a Tx amounts to against a loaded table (encoded, or rendered as
/// nft commands).
enum Step<'a> {
    AddSet(&'a Set),
    DeleteSet(&'a str),
    AddChain(&'a Chain),
    FlushChain(&'a str),
    AddRule(&'a str, &'a Rule),
    DeleteChain(&'a str),
    DeleteElements(&'a str, Vec<&'a Key>),
    AddElements(&'a str, Vec<(&'a Key, &'a Elem)>),
}

/// Whether two declarations of a set differ (elements aside): then it must be recreated.
pub(crate) fn set_decl_differs(a: &Set, b: &Set) -> bool {
    a.key != b.key || a.data != b.data || a.dynamic != b.dynamic || a.timeout != b.timeout
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

    /// Appends `other`'s changes after this one's.
    pub fn extend(&mut self, other: Tx) -> &mut Tx {
        self.ops.extend(other.ops);
        self
    }

    /// Adds a set or map (with its elements). A set of that name declared otherwise (another
    /// timeout, key or data) is recreated: the chains using it are rewritten around it.
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

    /// [`Rule::check`] of the rules of the chains this Tx puts, named as in `table`.
    pub(crate) fn check(&self, table: &Table) -> crate::error::Result<()> {
        for op in &self.ops {
            if let Op::PutChain(c) = op {
                for (i, r) in c.rules.iter().enumerate() {
                    super::check::check_rule(table, &c.name, i, r)?;
                }
            }
        }
        Ok(())
    }

    /// The steps taking `table` (what is loaded) through these changes; changes that change
    /// nothing (an element already there, a chain with the same rules) are left out.
    fn steps<'a>(&'a self, table: &'a Table) -> Vec<Step<'a>> {
        // The final word on each object.
        let mut sets: BTreeMap<&str, Option<&Set>> = BTreeMap::new();
        let mut chains: BTreeMap<&str, Option<&Chain>> = BTreeMap::new();
        let mut elems: BTreeMap<(&str, &Key), Option<&Elem>> = BTreeMap::new();
        for op in &self.ops {
            match op {
                Op::AddSet(s) => {
                    sets.insert(&s.name, Some(s));
                }
                Op::DeleteSet(n) => {
                    sets.insert(n, None);
                }
                Op::PutChain(c) => {
                    chains.insert(&c.name, Some(c));
                }
                Op::DeleteChain(n) => {
                    chains.insert(n, None);
                }
                Op::PutElement(s, k, e) => {
                    elems.insert((s, k), Some(e));
                }
                Op::DeleteElement(s, k) => {
                    elems.insert((s, k), None);
                }
            }
        }
        let mut steps = Vec::new();
        // Sets first; a redeclared one is recreated, after emptying the chains that use it.
        let mut flushed: BTreeSet<&str> = BTreeSet::new();
        let mut fresh: BTreeSet<&str> = BTreeSet::new();
        for (name, set) in &sets {
            let Some(set) = set else { continue };
            match table.sets.get(*name) {
                Some(old) if !set_decl_differs(old, set) => {
                    // Same declaration: only the elements that differ (explicit element
                    // changes in this Tx have the last word).
                    for k in old.elements.keys() {
                        if !set.elements.contains_key(k) {
                            elems.entry((name, k)).or_insert(None);
                        }
                    }
                    for (k, e) in &set.elements {
                        elems.entry((name, k)).or_insert(Some(e));
                    }
                }
                Some(_) => {
                    for (c, chain) in &table.chains {
                        let uses = chain.rules.iter().any(|r| r.set_refs().any(|s| s == *name));
                        if uses && flushed.insert(c) {
                            steps.push(Step::FlushChain(c));
                        }
                    }
                    steps.push(Step::DeleteSet(name));
                    steps.push(Step::AddSet(set));
                    fresh.insert(name);
                }
                _ => {
                    steps.push(Step::AddSet(set));
                    fresh.insert(name);
                }
            }
        }
        // Emptied chains this Tx does not rewrite get their rules back.
        for c in &flushed {
            if !chains.contains_key(c) {
                for r in &table.chains[*c].rules {
                    steps.push(Step::AddRule(c, r));
                }
            }
        }
        // New chains all exist before any rule goes in: a rule may jump to a chain that comes
        // after its own in name order (`ingress-1a2b` jumping to `ingress/ns/policy`).
        for (name, chain) in &chains {
            if let (Some(c), None) = (chain, table.chains.get(*name)) {
                steps.push(Step::AddChain(c));
            }
        }
        for (name, chain) in &chains {
            let Some(c) = chain else { continue };
            match table.chains.get(*name) {
                Some(old)
                    if old.rules == c.rules && old.base == c.base && !flushed.contains(name) =>
                {
                    continue
                }
                Some(_) if flushed.contains(name) => {}
                Some(_) => steps.push(Step::FlushChain(name)),
                None => {}
            }
            for r in &c.rules {
                steps.push(Step::AddRule(name, r));
            }
        }
        // Elements: every deletion (also of data about to be replaced) before any addition.
        // A set created by this Tx holds exactly its own elements already.
        let mut deletes: BTreeMap<&str, Vec<&Key>> = BTreeMap::new();
        let mut adds: BTreeMap<&str, Vec<(&Key, &Elem)>> = BTreeMap::new();
        for ((set, key), elem) in &elems {
            let old = table
                .sets
                .get(*set)
                .filter(|_| !fresh.contains(set))
                .and_then(|s| s.elements.get(*key));
            if old == *elem {
                continue;
            }
            if old.is_some() {
                deletes.entry(set).or_default().push(key);
            }
            if let Some(e) = elem {
                adds.entry(set).or_default().push((key, e));
            }
        }
        for (set, keys) in deletes {
            steps.push(Step::DeleteElements(set, keys));
        }
        for (set, elems) in adds {
            steps.push(Step::AddElements(set, elems));
        }
        // Chains that go: all emptied first (dropping their jumps to each other), then deleted.
        let gone: Vec<&str> = chains
            .iter()
            .filter(|(n, c)| c.is_none() && table.chains.contains_key(**n))
            .map(|(n, _)| *n)
            .collect();
        for n in &gone {
            if !flushed.contains(n) {
                steps.push(Step::FlushChain(n));
            }
        }
        for n in gone {
            steps.push(Step::DeleteChain(n));
        }
        for (name, set) in &sets {
            if set.is_none() && table.sets.contains_key(*name) {
                steps.push(Step::DeleteSet(name));
            }
        }
        steps
    }

    /// The batch taking `table` (what is loaded) through these changes.
    pub(crate) fn batch(&self, table: &Table) -> Batch {
        let mut batch = Batch::new();
        let mut e = Encoder::new(&mut batch, table);
        for step in self.steps(table) {
            match step {
                Step::AddSet(s) => {
                    e.add_set(s);
                    e.elements(
                        MsgType::NewSetElem,
                        &s.name,
                        None,
                        s.elements.iter().map(|(k, v)| (k, Some(v))),
                    );
                }
                Step::DeleteSet(name) => e.delete_set(name),
                Step::AddChain(c) => e.add_chain(c),
                Step::FlushChain(name) => e.flush_chain(name),
                Step::AddRule(chain, r) => e.add_rule(chain, r),
                Step::DeleteChain(name) => e.delete_chain(name),
                Step::DeleteElements(set, keys) => e.elements(
                    MsgType::DelSetElem,
                    set,
                    None,
                    keys.into_iter().map(|k| (k, None)),
                ),
                Step::AddElements(set, elems) => e.elements(
                    MsgType::NewSetElem,
                    set,
                    None,
                    elems.into_iter().map(|(k, v)| (k, Some(v))),
                ),
            }
        }
        batch
    }

    /// What [`super::Applier::commit`] would send with `table` loaded, as nft commands (for
    /// plans, logs and snapshot tests).
    pub fn script(&self, table: &Table) -> String {
        let id = table.id();
        let mut s = String::new();
        let list = |items: Vec<String>| items.join(", ");
        for step in self.steps(table) {
            let _ = match step {
                Step::AddSet(set) => {
                    let decl = set.declaration();
                    let (kind, rest) = decl.split_once(' ').unwrap_or(("set", &decl));
                    let _ = writeln!(s, "add {kind} {id} {rest}");
                    if set.elements.is_empty() {
                        Ok(())
                    } else {
                        let all = set.elements.iter().map(|(k, e)| element(k, e)).collect();
                        writeln!(s, "add element {id} {} {{ {} }}", set.name, list(all))
                    }
                }
                Step::DeleteSet(name) => writeln!(s, "delete set {id} {name}"),
                Step::AddChain(c) => match &c.base {
                    None => writeln!(s, "add chain {id} {}", c.name),
                    Some(_) => {
                        let decl = Chain {
                            rules: Vec::new(),
                            ..c.clone()
                        }
                        .declaration();
                        let body = decl.split_once(" {").map_or("", |(_, b)| b);
                        writeln!(s, "add chain {id} {} {{{body}", c.name)
                    }
                },
                Step::FlushChain(name) => writeln!(s, "flush chain {id} {name}"),
                Step::AddRule(chain, r) => writeln!(s, "add rule {id} {chain} {r}"),
                Step::DeleteChain(name) => writeln!(s, "delete chain {id} {name}"),
                Step::DeleteElements(set, keys) => {
                    let keys = keys.into_iter().map(|k| element(k, &Elem::default()));
                    writeln!(
                        s,
                        "delete element {id} {set} {{ {} }}",
                        list(keys.collect())
                    )
                }
                Step::AddElements(set, elems) => {
                    let elems = elems.into_iter().map(|(k, e)| element(k, e));
                    writeln!(s, "add element {id} {set} {{ {} }}", list(elems.collect()))
                }
            };
        }
        s
    }

    /// Applies the changes to the model, in order: the table [`super::Applier::commit`] keeps
    /// as loaded after sending them.
    pub fn apply_to(self, table: &mut Table) {
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
