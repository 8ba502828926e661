//! The applier: makes the kernel's table match a wanted [`Table`]. The first load (and any
//! after a refusal, or when the kernel's table is not the one we loaded) replaces the whole
//! table in one transaction; later ones send only the difference from what was loaded, as one
//! nf_tables batch of weft's own (no libnftables, no `nft` process, no cache refresh). The
//! whole load writes a digest of the table into its comment, so a restarted agent finds a
//! table it already loaded and leaves it alone, and an update checks first that the kernel's
//! table is still the one it loaded (same handle, same comment), and so does
//! [`Applier::apply`] when it finds nothing to change (the periodic resync): a table deleted or
//! replaced behind its back is loaded again. With [`Applier::check_rules`] it also notices a
//! rule edited in place (same table, same comment): it keeps a digest of the kernel's own dump
//! of the table's rules, taken after each load, and compares it at every apply. With
//! [`Applier::check_contents`] the check at an apply that finds nothing to change (and at the
//! adoption of a table an earlier run loaded) compares the kernel's table with the wanted one
//! itself: each chain's number of rules, and each set's elements, key and data: a rule or an
//! element deleted or added by hand is repaired, at no cost to the updates in between.

use std::collections::{BTreeMap, BTreeSet};

use super::dump::{DumpedData, DumpedElem};
use super::encode::{value_bytes, verdict_code, Encoder};
use super::model::{DataType, Elem, ElemData, Field, Key, Set, Table, Value};
use super::tx::{set_decl_differs, Tx};
use super::wire::{Batch, MsgType, Socket, TableInfo};
use crate::error::{Error, Result};
use std::net::Ipv4Addr;

/// How whole loads are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WholeLoad {
    /// One nf_tables batch of our own.
    #[default]
    Netlink,
    /// `nft -f -` of the rendered text.
    Tool,
}

/// What one [`Applier::apply`] did.
#[derive(Debug)]
pub enum Applied {
    /// The kernel already held the wanted table.
    Unchanged,
    /// An incremental batch of this many messages.
    Incremental(usize),
    /// The whole table was (re)loaded.
    Whole,
    /// The incremental batch was refused (or the kernel's table was not ours); the whole table
    /// was reloaded. Carries the refusal.
    WholeAfterRefusal(Error),
}

/// Loads tables into the network namespace of the thread that first uses it (one applier per
/// table and namespace).
#[derive(Default)]
pub struct Applier {
    socket: Option<Socket>,
    loaded: Option<(Table, TableInfo)>,
    whole: WholeLoad,
    check_rules: bool,
    check_contents: bool,
    /// With `check_rules`: the kernel's rules as dumped right after our last change.
    rules: Option<u64>,
    /// The digest the kernel's [`DIGEST_SET`] holds, that of what is loaded (None after an
    /// incremental change, until [`Applier::apply`] or [`Applier::check`] finds nothing to
    /// change and writes it): every incremental batch takes it out in the same transaction, so
    /// that a digest is never there for a table that has changed since (a restarted process
    /// then loads the table whole rather than keep it).
    kernel_digest: Option<u64>,
}

/// The set holding the digest of the table as it is now, one element: a whole load writes it,
/// and an apply that finds nothing to change after incremental ones writes it again, so that a
/// restarted process finds the table it left and keeps it. (The table's comment holds the
/// digest of the last whole load: the kernel cannot change a table's comment.)
pub const DIGEST_SET: &str = "weft_digest";

/// The digest set with `digest` in it, as an address pair (64 bits).
fn digest_set(digest: u64) -> Set {
    let mut set = Set::new(
        DIGEST_SET,
        vec![
            Field::Type(DataType::Ipv4Addr),
            Field::Type(DataType::Ipv4Addr),
        ],
    );
    set.elements.insert(digest_key(digest), Elem::default());
    set
}

fn digest_key(digest: u64) -> Key {
    vec![
        Value::Ipv4(Ipv4Addr::from((digest >> 32) as u32)),
        Value::Ipv4(Ipv4Addr::from(digest as u32)),
    ]
}

/// The 64 bits of a `weft:<hex>` digest.
fn digest_bits(digest: &str) -> u64 {
    u64::from_str_radix(digest.trim_start_matches("weft:"), 16).unwrap_or(0)
}

/// The digest a whole load's comment ends with ([`loaded_comment`]), if it has one.
fn comment_digest(comment: &str) -> Option<u64> {
    comment
        .rsplit(' ')
        .next()
        .filter(|d| d.starts_with("weft:"))
        .map(digest_bits)
}

/// FNV-1a over the rendered table: a digest of what a whole load loads.
fn digest(table: &Table) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.render().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("weft:{h:016x}")
}

/// The comment a whole load gives the table: the caller's, then the digest.
fn loaded_comment(table: &Table) -> String {
    match &table.comment {
        Some(c) => format!("{c} {}", digest(table)),
        None => digest(table),
    }
}

impl Applier {
    pub fn new() -> Applier {
        Applier::default()
    }

    /// Checks the kernel's rules, not only the table's handle and comment, when
    /// [`Applier::apply`] finds nothing to change: a rule edited in place is repaired by a whole
    /// load. Costs a dump of the table's rules after every change and at every apply, so it
    /// suits small tables (the egress table), not 10k Services. A table adopted at the first
    /// apply (loaded by an earlier run, same digest) is trusted as it is: an edit made before
    /// that goes unnoticed until the table changes.
    pub fn check_rules(mut self, on: bool) -> Applier {
        self.check_rules = on;
        self
    }

    /// Compares the kernel's table with the wanted one when [`Applier::apply`] finds nothing
    /// to change (the periodic resync) and when it adopts a table loaded by an earlier run:
    /// rules per chain and every element (key and data) of every set that only the applier
    /// fills (not `dynamic` or `timeout` sets). A difference is repaired by a whole load. Costs
    /// one dump of the rules and one per set at those checks only, nothing per update. An edit
    /// that keeps a chain's rule count (a rule replaced in place) is [`Applier::check_rules`]'s.
    pub fn check_contents(mut self, on: bool) -> Applier {
        self.check_contents = on;
        self
    }

    /// Sends whole loads through `nft -f` instead of our own batch.
    pub fn whole_loads(mut self, how: WholeLoad) -> Applier {
        self.whole = how;
        self
    }

    fn socket(&mut self) -> Result<&mut Socket> {
        if self.socket.is_none() {
            self.socket = Some(Socket::open()?);
        }
        self.socket
            .as_mut()
            .ok_or_else(|| Error::protocol("opening NETLINK_NETFILTER socket", "no socket"))
    }

    /// The table as last loaded (None before the first load or after a failure).
    pub fn loaded(&self) -> Option<&Table> {
        self.loaded.as_ref().map(|(t, _)| t)
    }

    /// Forgets what was loaded: the next [`Applier::apply`] reloads the whole table.
    pub fn forget(&mut self) {
        self.loaded = None;
    }

    /// Makes the kernel's table match `wanted`: nothing, an incremental batch, or a whole load.
    pub fn apply(&mut self, wanted: &Table) -> Result<Applied> {
        wanted.check()?;
        let family = wanted.family.nfproto();
        let Some((old, info)) = self.loaded.take() else {
            // A table loaded with this very content (by an earlier run) is kept: its comment
            // says so (loaded whole), or its digest set does (changed since).
            let comment = loaded_comment(wanted);
            if let Some(k) = self.socket()?.get_table(family, &wanted.name)? {
                // The digest set when there is one (the comment is the last whole load's, and
                // the table may have changed since); the comment for a table loaded without it.
                let bits = comment_digest(&comment).unwrap_or(0);
                let same = match self
                    .socket()?
                    .set_elements(family, &wanted.name, DIGEST_SET)?
                {
                    Some(have) => have == expected_elements(&digest_set(bits)),
                    None => k.comment.as_deref() == Some(comment.as_str()),
                };
                if same {
                    let edited = if self.check_contents {
                        self.contents_drift(wanted)?
                    } else {
                        None
                    };
                    if let Some(why) = edited {
                        self.load_whole_as(wanted, &comment)?;
                        return Ok(Applied::WholeAfterRefusal(why));
                    }
                    self.loaded = Some((wanted.clone(), k));
                    // Written now (an older weft's table gets its set), found current or not.
                    self.kernel_digest = None;
                    self.put_digest(wanted, bits)?;
                    self.remember_rules(wanted)?;
                    return Ok(Applied::Unchanged);
                }
            }
            // The digest renders the whole table (tens of ms at 10k Services): once.
            self.load_whole_as(wanted, &comment)?;
            return Ok(Applied::Whole);
        };
        if old == *wanted {
            return match self.drift(&old, &info)? {
                None => {
                    self.write_digest(&old)?;
                    self.loaded = Some((old, info));
                    Ok(Applied::Unchanged)
                }
                Some(why) => {
                    self.load_whole(wanted)?;
                    Ok(Applied::WholeAfterRefusal(why))
                }
            };
        }
        let Some(mut batch) = diff(&old, wanted) else {
            self.load_whole(wanted)?;
            return Ok(Applied::Whole);
        };
        let n = batch.len();
        if batch.is_empty() {
            self.loaded = Some((wanted.clone(), info));
            return Ok(Applied::Unchanged);
        }
        self.drop_digest(&mut batch, wanted);
        // The kernel's table must still be the one we loaded: one small GET round trip.
        let sock = self.socket()?;
        let now = sock.get_table(family, &wanted.name)?;
        let refused = if now.as_ref() != Some(&info) {
            Error::protocol(
                format!("updating table {}", wanted.id()),
                "the kernel's table is not the one loaded (deleted or replaced)",
            )
        } else {
            let sent = sock.send(batch, &format!("updating table {}", wanted.id()));
            super::stats::batch(wanted, "incremental", sent.is_ok(), n);
            match sent {
                Ok(()) => {
                    super::stats::loaded(wanted);
                    self.kernel_digest = None;
                    self.loaded = Some((wanted.clone(), info));
                    self.remember_rules(wanted)?;
                    return Ok(Applied::Incremental(n));
                }
                Err(e) => e,
            }
        };
        self.load_whole(wanted)?;
        Ok(Applied::WholeAfterRefusal(refused))
    }

    /// Sends `tx` (changes to what was loaded) as one batch and applies it to the loaded
    /// copy. Nothing loaded yet: an error (load the whole table first). A refused batch (the
    /// kernel's table is not what we loaded): the whole table, with the changes, is reloaded.
    pub fn commit(&mut self, tx: Tx) -> Result<Applied> {
        let Some((mut table, info)) = self.loaded.take() else {
            return Err(Error::Invalid {
                what: "nftables transaction",
                value: format!("{} changes", tx.len()),
                reason: "nothing loaded yet: load the whole table first",
            });
        };
        if let Err(e) = tx.check(&table) {
            // Nothing was sent: what is loaded stays loaded.
            self.loaded = Some((table, info));
            return Err(e);
        }
        let mut batch = tx.batch(&table);
        tx.apply_to(&mut table);
        let n = batch.len();
        if batch.is_empty() {
            self.loaded = Some((table, info));
            return Ok(Applied::Unchanged);
        }
        self.drop_digest(&mut batch, &table);
        let op = format!("updating table {}", table.id());
        let sock = self.socket()?;
        let refused = if sock
            .get_table(table.family.nfproto(), &table.name)?
            .as_ref()
            != Some(&info)
        {
            Error::protocol(
                op,
                "the kernel's table is not the one loaded (deleted or replaced)",
            )
        } else {
            let sent = sock.send(batch, &op);
            super::stats::batch(&table, "incremental", sent.is_ok(), n);
            match sent {
                Ok(()) => {
                    super::stats::loaded(&table);
                    self.kernel_digest = None;
                    self.remember_rules(&table)?;
                    self.loaded = Some((table, info));
                    return Ok(Applied::Incremental(n));
                }
                Err(e) => e,
            }
        };
        self.load_whole(&table)?;
        Ok(Applied::WholeAfterRefusal(refused))
    }

    /// Replaces the whole table in one transaction, with the digest in its comment.
    pub fn load_whole(&mut self, wanted: &Table) -> Result<()> {
        wanted.check()?;
        self.load_whole_as(wanted, &loaded_comment(wanted))
    }

    /// [`Applier::load_whole`] with the comment already computed.
    fn load_whole_as(&mut self, wanted: &Table, comment: &str) -> Result<()> {
        self.loaded = None;
        match self.whole {
            WholeLoad::Tool => {
                let id = wanted.id();
                let mut with_digest = wanted.clone();
                if let Some(d) = comment_digest(comment) {
                    with_digest
                        .sets
                        .insert(DIGEST_SET.to_string(), digest_set(d));
                }
                let text = format!(
                    "table {id}\ndelete table {id}\n{}",
                    with_digest.render_with_comment(Some(comment))
                );
                let sent = super::apply(&text);
                super::stats::batch(wanted, "whole", sent.is_ok(), 0);
                sent?;
            }
            WholeLoad::Netlink => {
                let batch = whole_batch(wanted, comment);
                let n = batch.len();
                let sent = self
                    .socket()?
                    .send(batch, &format!("loading table {}", wanted.id()));
                super::stats::batch(wanted, "whole", sent.is_ok(), n);
                sent?;
            }
        }
        super::stats::loaded(wanted);
        self.kernel_digest = comment_digest(comment);
        let info = self
            .socket()?
            .get_table(wanted.family.nfproto(), &wanted.name)?
            .ok_or_else(|| {
                Error::protocol(
                    format!("loading table {}", wanted.id()),
                    "the table is missing right after loading it",
                )
            })?;
        self.loaded = Some((wanted.clone(), info));
        self.remember_rules(wanted)?;
        Ok(())
    }

    /// The periodic check when the caller knows its table did not change: if the kernel's
    /// table is no longer the one loaded ([`Applier::apply`]'s check), the loaded table is
    /// loaded again whole. Nothing loaded yet: an error.
    pub fn check(&mut self) -> Result<Applied> {
        let Some((table, info)) = self.loaded.take() else {
            return Err(Error::Invalid {
                what: "nftables check",
                value: String::new(),
                reason: "nothing loaded yet: load the whole table first",
            });
        };
        match self.drift(&table, &info)? {
            None => {
                self.write_digest(&table)?;
                self.loaded = Some((table, info));
                Ok(Applied::Unchanged)
            }
            Some(why) => {
                self.load_whole(&table)?;
                Ok(Applied::WholeAfterRefusal(why))
            }
        }
    }

    /// Whether the kernel's table is still what we loaded: None if so, else why not. One GET
    /// of the table (its handle is new for every re-creation; the comment carries our digest),
    /// and with `check_rules` a dump of its rules.
    fn drift(&mut self, table: &Table, info: &TableInfo) -> Result<Option<Error>> {
        let op = || format!("checking table {}", table.id());
        let family = table.family.nfproto();
        let (check_rules, loaded_rules) = (self.check_rules, self.rules);
        let sock = self.socket()?;
        if sock.get_table(family, &table.name)?.as_ref() != Some(info) {
            return Ok(Some(Error::protocol(
                op(),
                "the kernel's table is not the one loaded (deleted or replaced)",
            )));
        }
        if check_rules {
            let now = sock.rules_digest(family, &table.name)?;
            if now != loaded_rules {
                return Ok(Some(Error::protocol(
                    op(),
                    "the kernel's rules are not the ones loaded (edited in place)",
                )));
            }
        }
        if self.check_contents {
            return self.contents_drift(table);
        }
        Ok(None)
    }

    /// Writes the digest of `table` (what is loaded, checked unchanged) into [`DIGEST_SET`]
    /// if it is not there yet (the digest renders the whole table: only after a change).
    fn write_digest(&mut self, table: &Table) -> Result<()> {
        if self.kernel_digest.is_some() {
            return Ok(());
        }
        self.put_digest(table, digest_bits(&digest(table)))
    }

    /// Puts `bits` into [`DIGEST_SET`] unless it holds them: the old element out, the new one
    /// in, in one batch (the set created if an older weft loaded the table without it).
    fn put_digest(&mut self, table: &Table, bits: u64) -> Result<()> {
        let family = table.family.nfproto();
        let have = self
            .socket()?
            .set_elements(family, &table.name, DIGEST_SET)?;
        let set = digest_set(bits);
        if have.as_ref() == Some(&expected_elements(&set)) {
            self.kernel_digest = Some(bits);
            return Ok(());
        }
        let mut batch = Batch::new();
        let mut e = Encoder::new(&mut batch, table);
        match &have {
            None => {
                e.add_set(&set);
                e.elements(
                    MsgType::NewSetElem,
                    DIGEST_SET,
                    None,
                    set.elements.iter().map(|(k, v)| (k, Some(v))),
                );
            }
            Some(old) => {
                let old_keys: Vec<Key> = old
                    .iter()
                    .filter_map(|d| {
                        let b: [u8; 8] = d.key.get(..8)?.try_into().ok()?;
                        Some(digest_key(u64::from_be_bytes(b)))
                    })
                    .collect();
                if !old_keys.is_empty() {
                    e.elements(
                        MsgType::DelSetElem,
                        DIGEST_SET,
                        None,
                        old_keys.iter().map(|k| (k, None)),
                    );
                }
                e.elements(
                    MsgType::NewSetElem,
                    DIGEST_SET,
                    None,
                    set.elements.iter().map(|(k, v)| (k, Some(v))),
                );
            }
        }
        let n = batch.len();
        let sent = self.socket()?.send(
            batch,
            &format!("writing the digest of table {}", table.id()),
        );
        super::stats::batch(table, "digest", sent.is_ok(), n);
        sent?;
        self.kernel_digest = Some(bits);
        Ok(())
    }

    /// Adds to an incremental `batch` the removal of the digest the kernel's set holds: the
    /// table is about to change, and the digest would no longer say what it holds.
    fn drop_digest(&self, batch: &mut Batch, table: &Table) {
        if let Some(d) = self.kernel_digest {
            let key = digest_key(d);
            Encoder::new(batch, table).elements(
                MsgType::DelSetElem,
                DIGEST_SET,
                None,
                [(&key, None)].into_iter(),
            );
        }
    }

    /// Whether the kernel's rules per chain and set elements are `table`'s: None if so, else
    /// the first difference.
    fn contents_drift(&mut self, table: &Table) -> Result<Option<Error>> {
        let op = || format!("checking the contents of table {}", table.id());
        let family = table.family.nfproto();
        let sock = self.socket()?;
        let wanted: BTreeMap<&str, usize> = table
            .chains
            .values()
            .filter(|c| !c.rules.is_empty())
            .map(|c| (c.name.as_str(), c.rules.len()))
            .collect();
        let Some(rules) = sock.rule_counts(family, &table.name)? else {
            return Ok(Some(Error::protocol(op(), "the table is gone")));
        };
        let names: BTreeSet<&str> = wanted
            .keys()
            .copied()
            .chain(rules.keys().map(String::as_str))
            .collect();
        for name in names {
            let (want, have) = (
                wanted.get(name).copied().unwrap_or(0),
                rules.get(name).copied().unwrap_or(0),
            );
            if want != have {
                return Ok(Some(Error::protocol(
                    op(),
                    format!("chain {name} has {have} rules, not {want} (edited by hand)"),
                )));
            }
        }
        for set in table
            .sets
            .values()
            .filter(|s| !s.dynamic && s.timeout.is_none())
        {
            let Some(have) = sock.set_elements(family, &table.name, &set.name)? else {
                return Ok(Some(Error::protocol(
                    op(),
                    format!("set {} is missing (deleted by hand)", set.name),
                )));
            };
            let want = expected_elements(set);
            if have != want {
                let missing = want.difference(&have).count();
                let extra = have.difference(&want).count();
                return Ok(Some(Error::protocol(
                    op(),
                    format!(
                        "set {} lacks {missing} of its elements and has {extra} others (edited by hand)",
                        set.name
                    ),
                )));
            }
        }
        Ok(None)
    }

    /// With `check_rules`, records the kernel's rules as they are after our change.
    fn remember_rules(&mut self, table: &Table) -> Result<()> {
        if self.check_rules {
            let family = table.family.nfproto();
            self.rules = self.socket()?.rules_digest(family, &table.name)?;
        }
        Ok(())
    }
}

/// A set's elements as the kernel would dump them.
fn expected_elements(set: &Set) -> BTreeSet<DumpedElem> {
    set.elements
        .iter()
        .map(|(key, elem)| DumpedElem {
            key: value_bytes(key),
            data: match &elem.data {
                None => DumpedData::None,
                Some(ElemData::Values(v)) => DumpedData::Value(value_bytes(v)),
                Some(ElemData::Verdict(v)) => {
                    DumpedData::Verdict(verdict_code(v), v.chain().map(str::to_string))
                }
            },
        })
        .collect()
}

/// Sends `table` as one batch, replacing any table of its name (for tests and tools that load
/// a model without keeping an applier).
pub fn load(table: &Table) -> Result<()> {
    table.check()?;
    let comment = table.comment.clone().unwrap_or_default();
    let batch = whole_batch(table, &comment);
    Socket::open()?.send(batch, &format!("loading table {}", table.id()))
}

/// `add table; delete table; add table ...`: the whole table, replacing any previous one.
fn whole_batch(t: &Table, comment: &str) -> Batch {
    let mut batch = Batch::new();
    let mut e = Encoder::new(&mut batch, t);
    e.add_table(None);
    e.delete_table();
    e.add_table((!comment.is_empty()).then_some(comment));
    // The applier's loads carry the digest (`weft:...` in the comment) in its set too.
    let digest = comment_digest(comment).map(digest_set);
    for set in t.sets.values().chain(digest.as_ref()) {
        e.add_set(set);
    }
    for chain in t.chains.values() {
        e.add_chain(chain);
    }
    for chain in t.chains.values() {
        for r in &chain.rules {
            e.add_rule(&chain.name, r);
        }
    }
    for set in t.sets.values().chain(digest.as_ref()) {
        add_all_elements(&mut e, set);
    }
    batch
}

fn add_all_elements(e: &mut Encoder<'_>, set: &Set) {
    e.elements(
        MsgType::NewSetElem,
        &set.name,
        None,
        set.elements.iter().map(|(k, v)| (k, Some(v))),
    );
}

/// The batch turning `old` into `new`, or None when only a whole load will do (the table's
/// own properties or a base chain changed).
pub(crate) fn diff(old: &Table, new: &Table) -> Option<Batch> {
    if old.family != new.family || old.name != new.name || old.comment != new.comment {
        return None;
    }
    for (name, c) in &new.chains {
        if old.chains.get(name).is_some_and(|o| o.base != c.base) {
            return None;
        }
    }
    let mut batch = Batch::new();
    let mut e = Encoder::new(&mut batch, new);
    let recreated: BTreeSet<&str> = new
        .sets
        .iter()
        .filter(|(n, s)| old.sets.get(*n).is_some_and(|o| set_decl_differs(o, s)))
        .map(|(n, _)| n.as_str())
        .collect();
    let uses = |t: &Table, chain: &str, sets: &BTreeSet<&str>| {
        t.chains[chain]
            .rules
            .iter()
            .any(|r| r.set_refs().any(|s| sets.contains(s)))
    };
    let mut flushed: BTreeSet<&str> = BTreeSet::new();
    // Sets to recreate: first empty the chains that use them.
    if !recreated.is_empty() {
        for name in old.chains.keys() {
            if uses(old, name, &recreated) {
                e.flush_chain(name);
                flushed.insert(name);
            }
        }
        for name in &recreated {
            e.delete_set(name);
        }
    }
    for (name, set) in &new.sets {
        if !old.sets.contains_key(name) || recreated.contains(name.as_str()) {
            e.add_set(set);
        }
    }
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            e.add_chain(chain);
        }
    }
    for (name, chain) in &new.chains {
        let before = old.chains.get(name);
        let rewrite = match before {
            None => true,
            Some(o) => o.rules != chain.rules || flushed.contains(name.as_str()),
        };
        if !rewrite {
            continue;
        }
        if before.is_some() && !flushed.contains(name.as_str()) {
            e.flush_chain(name);
        }
        for r in &chain.rules {
            e.add_rule(name, r);
        }
    }
    let empty = BTreeMap::new();
    for (name, set) in &new.sets {
        if recreated.contains(name.as_str()) || !old.sets.contains_key(name) {
            add_all_elements(&mut e, set);
            continue;
        }
        let before = old.sets.get(name).map(|s| &s.elements).unwrap_or(&empty);
        e.elements(
            MsgType::DelSetElem,
            name,
            None,
            before
                .iter()
                .filter(|(k, v)| set.elements.get(*k) != Some(v))
                .map(|(k, _)| (k, None)),
        );
        e.elements(
            MsgType::NewSetElem,
            name,
            None,
            set.elements
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, v)| (k, Some(v))),
        );
    }
    // Chains and sets nobody uses any more go last: chains emptied first (dropping their own
    // jumps and lookups), then deleted.
    let gone: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &gone {
        if !flushed.contains(name.as_str()) {
            e.flush_chain(name);
        }
    }
    for name in &gone {
        e.delete_chain(name);
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        e.delete_set(name);
    }
    Some(batch)
}
