//! Reading a table's rules back from the kernel: one dump of its rules (NFT_MSG_GETRULE with
//! NLM_F_DUMP, read again when the ruleset changes under it), the digest the applier's rule
//! check compares, and the values of the rules' `counter` statements ([`counters`]).

use std::collections::{BTreeMap, BTreeSet};

use super::model::Family;
use super::wire::{Socket, NFNL_SUBSYS_NFTABLES, NLMSG_HDRLEN};
use crate::error::{Error, Result};
use crate::netlink::{align, attr_string, error_code, recv_from_kernel, send_to_kernel};
use crate::netlink::{u16_at, u32_at, Attrs, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};

const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETSETELEM: u16 = 13;

/// A dump request (NLM_F_DUMP) of message type `ty` with string attributes.
fn dump_request(ty: u16, family: u8, attrs: &[(u16, &str)]) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | ty).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&DUMP_SEQ.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    for (ty, value) in attrs {
        let alen = (5 + value.len()) as u16;
        m.extend_from_slice(&alen.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(value.as_bytes());
        m.push(0);
        m.resize(align(m.len()), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}
const DUMP_SEQ: u32 = 0x7fff_fff1;
/// The kernel marks a dump's messages when the ruleset changed while it was being dumped.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Dumps tried before giving up on a ruleset that keeps changing under them.
const DUMP_TRIES: usize = 5;

/// How one dump ended.
enum Dumped {
    Done,
    NoTable,
    /// The ruleset changed during the dump (NLM_F_DUMP_INTR): what was read may mix two
    /// states; the caller starts over.
    Interrupted,
}

impl Socket {
    /// Calls `rule` with every rule message of table `table` as the kernel dumps them
    /// (NFT_MSG_GETRULE: table, chain, handle, expressions, user data; chains in creation
    /// order, each chain's rules in order), past the nfgenmsg. A dump the ruleset changed
    /// under is read again, `reset` first telling the caller to forget what it got (at most
    /// [`DUMP_TRIES`] times). Ok(false) when the table does not exist.
    pub(crate) fn dump_rules(
        &mut self,
        family: u8,
        table: &str,
        op: &str,
        rule: &mut dyn FnMut(&[u8]) -> Result<()>,
        reset: &mut dyn FnMut(),
    ) -> Result<bool> {
        let request = dump_request(NFT_MSG_GETRULE, family, &[(NFTA_RULE_TABLE, table)]);
        self.dump(&request, op, rule, reset)
    }

    /// Calls `each` with every message of the dump `request` asks for, past the nfgenmsg; a
    /// dump the ruleset changed under is read again, `reset` first (at most [`DUMP_TRIES`]
    /// times). Ok(false) when what it names does not exist (ENOENT).
    fn dump(
        &mut self,
        request: &[u8],
        op: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
        reset: &mut dyn FnMut(),
    ) -> Result<bool> {
        for _ in 0..DUMP_TRIES {
            match self.dump_once(request, op, each)? {
                Dumped::Done => return Ok(true),
                Dumped::NoTable => return Ok(false),
                Dumped::Interrupted => reset(),
            }
        }
        Err(Error::protocol(
            op,
            format!("the ruleset changed during each of {DUMP_TRIES} dumps"),
        ))
    }

    fn dump_once(
        &mut self,
        request: &[u8],
        op: &str,
        rule: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Dumped> {
        send_to_kernel(&self.fd, request).map_err(|e| Error::os(op, e))?;
        let mut interrupted = false;
        loop {
            let n = recv_from_kernel(&self.fd, &mut self.buf).map_err(|e| Error::os(op, e))?;
            let mut at = 0;
            // Walked by hand rather than with `messages` for the flags (NLM_F_DUMP_INTR).
            while n - at >= NLMSG_HDRLEN {
                let datagram = &self.buf[at..n];
                let len = u32_at(datagram, 0) as usize;
                if len < NLMSG_HDRLEN || len > datagram.len() {
                    return Err(Error::protocol(op, format!("bad message length {len}")));
                }
                let (ty, flags, seq) = (
                    u16_at(datagram, 4),
                    u16_at(datagram, 6),
                    u32_at(datagram, 8),
                );
                let payload = &datagram[NLMSG_HDRLEN..len];
                at += align(len).min(datagram.len());
                if seq != DUMP_SEQ {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                let end = match ty {
                    NLMSG_DONE => Some(0),
                    NLMSG_ERROR => Some(error_code(payload).unwrap_or(0)),
                    _ => None,
                };
                match end {
                    Some(_) if interrupted => return Ok(Dumped::Interrupted),
                    Some(0) => return Ok(Dumped::Done),
                    Some(c) if -c == libc::ENOENT => return Ok(Dumped::NoTable),
                    Some(c) => return Err(Error::errno(op, -c)),
                    // After an interruption the rest is only drained, so that none of it is
                    // taken for the answer to the next dump (same sequence number).
                    None if interrupted => {}
                    None => rule(payload.get(4..).unwrap_or_default())?,
                }
            }
        }
    }

    /// A digest of every rule of a table as the kernel dumps them, or None when the table does
    /// not exist. The dump carries each rule's chain, handle, expressions and user data;
    /// the digest leaves out what changes while nobody edits the table (the nfgenmsg's res_id,
    /// the ruleset generation, and the values of `counter` expressions): equal digests mean
    /// the same rules, a rule edited in place (same handle, new expressions) changes it. Set
    /// elements are not part of it.
    pub(crate) fn rules_digest(&mut self, family: u8, table: &str) -> Result<Option<u64>> {
        const START: u64 = 0xcbf2_9ce4_8422_2325;
        let op = format!("listing the rules of table {table}");
        // Both closures need the state: a Cell lets the reset clear what `each` hashed.
        let state = std::cell::Cell::new((START, 0u64));
        let mut each = |payload: &[u8]| {
            let (mut h, rules) = state.get();
            stable_rule_bytes(payload, &mut |bytes| {
                for b in bytes {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            });
            state.set((h, rules + 1));
            Ok(())
        };
        let mut reset = || state.set((START, 0));
        let found = self.dump_rules(family, table, &op, &mut each, &mut reset)?;
        let (h, rules) = state.get();
        Ok(found.then_some(h ^ rules))
    }
}

impl Socket {
    /// How many rules each chain of a table has, as the kernel dumps them (chains without
    /// rules are not in the map), or None when the table does not exist.
    pub(crate) fn rule_counts(
        &mut self,
        family: u8,
        table: &str,
    ) -> Result<Option<BTreeMap<String, usize>>> {
        let op = format!("listing the rules of table {table}");
        let counts = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
        let mut each = |payload: &[u8]| {
            for (ty, data) in Attrs::new(payload) {
                if ty == NFTA_RULE_CHAIN {
                    *counts.borrow_mut().entry(attr_string(data)).or_default() += 1;
                }
            }
            Ok(())
        };
        let mut reset = || counts.borrow_mut().clear();
        let found = self.dump_rules(family, table, &op, &mut each, &mut reset)?;
        Ok(found.then(|| counts.into_inner()))
    }

    /// The elements of set `set` of a table as the kernel dumps them (NFT_MSG_GETSETELEM):
    /// each key's bytes and its data; None when the set (or table) does not exist.
    pub(crate) fn set_elements(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
    ) -> Result<Option<BTreeSet<DumpedElem>>> {
        let op = format!("listing the elements of set {set} of table {table}");
        let request = dump_request(
            NFT_MSG_GETSETELEM,
            family,
            &[
                (NFTA_SET_ELEM_LIST_TABLE, table),
                (NFTA_SET_ELEM_LIST_SET, set),
            ],
        );
        let elems = std::cell::RefCell::new(BTreeSet::new());
        let mut each = |payload: &[u8]| {
            for (ty, list) in Attrs::new(payload) {
                if ty != NFTA_SET_ELEM_LIST_ELEMENTS {
                    continue;
                }
                for (_, elem) in Attrs::new(list) {
                    elems.borrow_mut().insert(dumped_elem(elem));
                }
            }
            Ok(())
        };
        let mut reset = || elems.borrow_mut().clear();
        let found = self.dump(&request, &op, &mut each, &mut reset)?;
        Ok(found.then(|| elems.into_inner()))
    }
}

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// One set element as the kernel holds it: the key's bytes and the element's data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DumpedElem {
    pub(crate) key: Vec<u8>,
    pub(crate) data: DumpedData,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DumpedData {
    None,
    Value(Vec<u8>),
    /// The verdict's code and chain.
    Verdict(i32, Option<String>),
}

fn dumped_elem(elem: &[u8]) -> DumpedElem {
    let mut out = DumpedElem {
        key: Vec::new(),
        data: DumpedData::None,
    };
    for (ty, data) in Attrs::new(elem) {
        match ty {
            NFTA_SET_ELEM_KEY => {
                for (a, v) in Attrs::new(data) {
                    if a == NFTA_DATA_VALUE {
                        out.key = v.to_vec();
                    }
                }
            }
            NFTA_SET_ELEM_DATA => {
                for (a, v) in Attrs::new(data) {
                    match a {
                        NFTA_DATA_VALUE => out.data = DumpedData::Value(v.to_vec()),
                        NFTA_DATA_VERDICT => {
                            let (mut code, mut chain) = (0i32, None);
                            for (b, w) in Attrs::new(v) {
                                match b {
                                    NFTA_VERDICT_CODE => {
                                        code = w
                                            .get(..4)
                                            .and_then(|x| x.try_into().ok())
                                            .map(i32::from_be_bytes)
                                            .unwrap_or(0)
                                    }
                                    NFTA_VERDICT_CHAIN => chain = Some(attr_string(w)),
                                    _ => {}
                                }
                            }
                            out.data = DumpedData::Verdict(code, chain);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// NFTA_RULE_EXPRESSIONS, and NFTA_EXPR_NAME / NFTA_EXPR_DATA inside each of its elements.
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(crate) const NFTA_EXPR_NAME: u16 = 1;
pub(crate) const NFTA_EXPR_DATA: u16 = 2;

/// Feeds `out` a dumped rule's attributes (types and contents), without the data of its
/// `counter` expressions, which traffic changes.
fn stable_rule_bytes(payload: &[u8], out: &mut dyn FnMut(&[u8])) {
    for (ty, data) in Attrs::new(payload) {
        out(&ty.to_ne_bytes());
        if ty != NFTA_RULE_EXPRESSIONS {
            out(data);
            continue;
        }
        for (_, expr) in Attrs::new(data) {
            let mut counter = false;
            for (a, d) in Attrs::new(expr) {
                if a == NFTA_EXPR_NAME {
                    counter = attr_string(d) == "counter";
                }
                out(&a.to_ne_bytes());
                if !(a == NFTA_EXPR_DATA && counter) {
                    out(d);
                }
            }
        }
    }
}

/// NFTA_RULE_TABLE, NFTA_RULE_CHAIN; NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS.
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

/// What a rule's `counter` statement has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

fn be64(data: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?))
}

/// A dumped rule's table, chain and first counter (None: the rule has no `counter`).
fn rule_counter(payload: &[u8]) -> std::result::Result<(String, String, Option<Counter>), String> {
    let (mut table, mut chain, mut counter) = (None, None, None);
    for (ty, data) in Attrs::new(payload) {
        match ty {
            NFTA_RULE_TABLE => table = Some(attr_string(data)),
            NFTA_RULE_CHAIN => chain = Some(attr_string(data)),
            NFTA_RULE_EXPRESSIONS if counter.is_none() => {
                for (_, expr) in Attrs::new(data) {
                    let mut name = String::new();
                    for (a, d) in Attrs::new(expr) {
                        match a {
                            NFTA_EXPR_NAME => name = attr_string(d),
                            NFTA_EXPR_DATA if name == "counter" => {
                                let mut c = Counter::default();
                                for (k, v) in Attrs::new(d) {
                                    let v = be64(v).ok_or("a counter value of under 8 bytes")?;
                                    match k {
                                        NFTA_COUNTER_BYTES => c.bytes = v,
                                        NFTA_COUNTER_PACKETS => c.packets = v,
                                        _ => {}
                                    }
                                }
                                counter = counter.or(Some(c));
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let table = table.ok_or("a rule without its table")?;
    let chain = chain.ok_or("a rule without its chain")?;
    Ok((table, chain, counter))
}

/// The counters of table `family table`, read with one dump of its rules in the caller's
/// network namespace (like the applier): chain name -> one entry per rule of the chain, in
/// rule order, `Some` for the rules with a `counter` statement (the first, should a rule have
/// several). Chains without rules are not in the map (the dump is of rules). A table that does
/// not exist is an error ([`Error::is_not_found`] says so).
pub fn counters(family: Family, table: &str) -> Result<BTreeMap<String, Vec<Option<Counter>>>> {
    let op = format!("reading the counters of table {family} {table}");
    let mut out: BTreeMap<String, Vec<Option<Counter>>> = BTreeMap::new();
    let mut sock = Socket::open()?;
    // A rule dump filtered by a table that does not exist is empty, not an error: ask first.
    if sock.get_table(family.nfproto(), table)?.is_none() {
        return Err(Error::errno(op, libc::ENOENT));
    }
    // Both closures need the map: a RefCell lets the reset clear what `each` filled.
    let map = std::cell::RefCell::new(&mut out);
    let mut each = |payload: &[u8]| {
        let (t, chain, counter) = rule_counter(payload).map_err(|e| Error::protocol(&op, e))?;
        if t == table {
            map.borrow_mut().entry(chain).or_default().push(counter);
        }
        Ok(())
    };
    let mut reset = || map.borrow_mut().clear();
    let found = sock.dump_rules(family.nfproto(), table, &op, &mut each, &mut reset)?;
    if !found {
        // Deleted between the two requests.
        return Err(Error::errno(op, libc::ENOENT));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::wire::{Batch, MsgType};

    /// A rule message as the kernel dumps it: table, chain, handle, then its expressions.
    fn dumped(chain: &str, counter: Option<(u64, u64)>) -> Vec<u8> {
        let mut b = Batch::new();
        let m = b.msg(MsgType::NewRule, 2);
        m.str(NFTA_RULE_TABLE, "t")
            .str(NFTA_RULE_CHAIN, chain)
            .be64(3, 42);
        m.nest(NFTA_RULE_EXPRESSIONS);
        m.nest(1).str(NFTA_EXPR_NAME, "meta").nest(NFTA_EXPR_DATA);
        m.be32(2, 6).be32(1, 1).end().end();
        if let Some((packets, bytes)) = counter {
            m.nest(1)
                .str(NFTA_EXPR_NAME, "counter")
                .nest(NFTA_EXPR_DATA);
            m.be64(NFTA_COUNTER_BYTES, bytes)
                .be64(NFTA_COUNTER_PACKETS, packets)
                .end()
                .end();
        }
        m.end();
        let bytes = b.finish();
        // Past BATCH_BEGIN (header + nfgenmsg) and the rule's own header and nfgenmsg.
        let at = NLMSG_HDRLEN + 4;
        let len = u32_at(&bytes, at) as usize;
        bytes[at + NLMSG_HDRLEN + 4..at + len].to_vec()
    }

    #[test]
    fn a_rules_counter_is_read_from_its_expressions() {
        let (t, c, counter) = rule_counter(&dumped("ingress", Some((3, 180)))).unwrap();
        assert_eq!((t.as_str(), c.as_str()), ("t", "ingress"));
        assert_eq!(
            counter,
            Some(Counter {
                packets: 3,
                bytes: 180
            })
        );
        assert_eq!(rule_counter(&dumped("x", None)).unwrap().2, None);
        assert!(rule_counter(&[]).is_err());
    }

    #[test]
    fn the_digest_ignores_counter_values_only() {
        let digest = |payload: &[u8]| {
            let mut all = Vec::new();
            stable_rule_bytes(payload, &mut |b| all.extend_from_slice(b));
            all
        };
        let a = digest(&dumped("c", Some((1, 60))));
        assert_eq!(a, digest(&dumped("c", Some((9, 900)))));
        assert_ne!(a, digest(&dumped("c", None)));
        assert_ne!(a, digest(&dumped("d", Some((1, 60)))));
    }
}
