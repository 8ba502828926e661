//! A packet simulator over the typed model: which verdict a table's base chain gives a packet,
//! and through which rules, evaluated as the kernel's `nft_do_chain` does. Statements run left
//! to right and a failed match (or a failed load: a port of a packet without one, a lookup
//! that finds nothing) ends the rule; `jump` comes back to the rule after it when the target
//! chain ends or returns, `goto` does not; accept, drop and reject end the evaluation; falling
//! off (or returning from) the base chain gives its policy. Pure: compilers' tests use it to
//! ask "is this packet allowed" of a compiled table without a kernel.
//!
//! What the simulator cannot know it refuses with a typed [`SimError`], never a silent pass:
//! random numbers (`numgen`), NAT (the policy table has none).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{ElemData, Key, L4Proto, Table, Value, Verdict};
use super::rule::{CmpOp, MarkOp, Match, Rule, Selector, Stmt};

/// How deep jumps nest in the kernel (NFT_JUMP_STACK_SIZE); it refuses deeper tables.
const JUMP_STACK: usize = 16;

/// The packet as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    /// None: another protocol (ICMP...): `meta l4proto` matches no [`L4Proto`], and
    /// `meta l4proto != tcp` matches.
    pub l4proto: Option<L4Proto>,
    /// None: no ports; a rule that reads one (`th dport`, in a key too) does not match.
    pub dport: Option<u16>,
    /// None: no such interface; `iifname` reads an empty name then, as in the kernel.
    pub iifname: Option<String>,
    pub oifname: Option<String>,
    pub mark: u32,
    pub ct_mark: u32,
    /// The `ct state` bits ([`super::ct_state`]) the kernel would load.
    pub ct_state: u32,
    /// What `fib saddr . iif oif missing` answers (true: no route back through iif).
    pub rpf_missing: bool,
    /// What `fib saddr type local` answers.
    pub saddr_local: bool,
}

impl Packet {
    /// A new connection's first packet (`ct state new`) from `saddr` to `daddr`, of another
    /// protocol than TCP/UDP/SCTP, with no interfaces and zero marks.
    pub fn new(saddr: Ipv4Addr, daddr: Ipv4Addr) -> Packet {
        Packet {
            saddr,
            daddr,
            l4proto: None,
            dport: None,
            iifname: None,
            oifname: None,
            mark: 0,
            ct_mark: 0,
            ct_state: super::ct_state::NEW,
            rpf_missing: false,
            saddr_local: false,
        }
    }

    pub fn tcp(self, dport: u16) -> Packet {
        self.proto(L4Proto::Tcp, dport)
    }

    pub fn udp(self, dport: u16) -> Packet {
        self.proto(L4Proto::Udp, dport)
    }

    pub fn proto(mut self, proto: L4Proto, dport: u16) -> Packet {
        self.l4proto = Some(proto);
        self.dport = Some(dport);
        self
    }

    pub fn iif(mut self, name: &str) -> Packet {
        self.iifname = Some(name.to_string());
        self
    }

    pub fn oif(mut self, name: &str) -> Packet {
        self.oifname = Some(name.to_string());
        self
    }
}

/// A rule that matched fully: `chain`'s rule at `rule` (from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub chain: String,
    pub rule: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Drop,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub outcome: Outcome,
    /// The rules that matched fully, in order (jumps included); the last one gave the
    /// verdict, unless the base chain's policy did.
    pub steps: Vec<Step>,
    pub by_policy: bool,
}

/// What the simulator cannot evaluate; `chain` and `rule` say where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("chain {0} is not in the table")]
    NoSuchChain(String),
    #[error("chain {0} is not a base chain: it has no policy to end with")]
    NotABaseChain(String),
    #[error("chain {chain}, rule {rule}: set or map {set} is not in the table")]
    NoSuchSet {
        chain: String,
        rule: usize,
        set: String,
    },
    /// A statement whose effect the simulator does not model (NAT, random numbers).
    #[error("chain {chain}, rule {rule}: cannot simulate `{stmt}`")]
    Unsupported {
        chain: String,
        rule: usize,
        stmt: String,
    },
    /// A statement that would not work on its values (a map's data of the wrong kind, a
    /// mask on an address, a range across types).
    #[error("chain {chain}, rule {rule}: `{stmt}`: {reason}")]
    Invalid {
        chain: String,
        rule: usize,
        stmt: String,
        reason: &'static str,
    },
    #[error("jumps nest deeper than the kernel allows ({JUMP_STACK}) at chain {0}")]
    TooDeep(String),
    #[error("evaluation does not end: it loops through chain {0}")]
    Loop(String),
}

/// How one rule ended.
enum End {
    /// A match failed: on to the next rule.
    NoMatch,
    /// Every statement ran, none gave a verdict: on to the next rule.
    Done,
    Verdict(Verdict),
    Reject,
}

/// What a failed statement says, before it knows where it is.
enum Fault {
    Unsupported,
    Invalid(&'static str),
    NoSuchSet(String),
}

/// The evaluation of one packet: the table, the packet, and the keys `update` added to
/// dynamic sets on the way (the kernel's set changes at once; later lookups see them).
struct Sim<'a> {
    table: &'a Table,
    packet: &'a mut Packet,
    added: BTreeMap<&'a str, BTreeSet<Key>>,
}

/// Evaluates `packet` through `table`'s base chain `base_chain`. `packet`'s marks change as
/// the rules set them.
pub fn run(table: &Table, base_chain: &str, packet: &mut Packet) -> Result<Trace, SimError> {
    let chain_of = |name: &str| {
        table
            .chains
            .get(name)
            .ok_or_else(|| SimError::NoSuchChain(name.to_string()))
    };
    let policy = chain_of(base_chain)?
        .base
        .ok_or_else(|| SimError::NotABaseChain(base_chain.to_string()))?
        .policy;
    let mut sim = Sim {
        table,
        packet,
        added: BTreeMap::new(),
    };
    let mut steps = Vec::new();
    let by_policy = |steps| Trace {
        outcome: match policy {
            super::Policy::Accept => Outcome::Accept,
            super::Policy::Drop => Outcome::Drop,
        },
        steps,
        by_policy: true,
    };
    let verdict = |outcome, steps| Trace {
        outcome,
        steps,
        by_policy: false,
    };
    // Every rule once per level of jumps is as far as a loop-free table can go.
    let total: usize = table.chains.values().map(|c| c.rules.len() + 1).sum();
    let mut budget = total * (JUMP_STACK + 1);
    let mut stack: Vec<(&str, usize)> = Vec::new();
    let (mut chain, mut at) = (base_chain, 0);
    loop {
        let rules = &chain_of(chain)?.rules;
        let Some(rule) = rules.get(at) else {
            // Off the end of a chain: back to the rule after the jump, or the policy.
            match stack.pop() {
                Some((c, i)) => (chain, at) = (c, i),
                None => return Ok(by_policy(steps)),
            }
            continue;
        };
        budget = budget
            .checked_sub(1)
            .ok_or_else(|| SimError::Loop(chain.to_string()))?;
        let end = sim.rule(rule).map_err(|f| fault(f, chain, at))?;
        if !matches!(end, End::NoMatch) {
            steps.push(Step {
                chain: chain.to_string(),
                rule: at,
            });
        }
        match end {
            End::NoMatch | End::Done => at += 1,
            End::Reject => return Ok(verdict(Outcome::Reject, steps)),
            End::Verdict(Verdict::Accept) => return Ok(verdict(Outcome::Accept, steps)),
            End::Verdict(Verdict::Drop) => return Ok(verdict(Outcome::Drop, steps)),
            End::Verdict(Verdict::Return) => match stack.pop() {
                Some((c, i)) => (chain, at) = (c, i),
                None => return Ok(by_policy(steps)),
            },
            End::Verdict(Verdict::Jump(target)) => {
                if stack.len() == JUMP_STACK {
                    return Err(SimError::TooDeep(target));
                }
                stack.push((chain, at + 1));
                (chain, at) = (chain_name(table, &target)?, 0);
            }
            End::Verdict(Verdict::Goto(target)) => (chain, at) = (chain_name(table, &target)?, 0),
        }
    }
}

/// The table's own name of chain `name` (borrowed from the table, to live as long as it).
fn chain_name<'t>(table: &'t Table, name: &str) -> Result<&'t str, SimError> {
    table
        .chains
        .get_key_value(name)
        .map(|(k, _)| k.as_str())
        .ok_or_else(|| SimError::NoSuchChain(name.to_string()))
}

/// The error of a failed statement, placed at `chain`'s rule `at`.
fn fault(f: (Fault, &Stmt), chain: &str, at: usize) -> SimError {
    let (chain, stmt) = (chain.to_string(), f.1.to_string());
    match f.0 {
        Fault::Unsupported => SimError::Unsupported {
            chain,
            rule: at,
            stmt,
        },
        Fault::Invalid(reason) => SimError::Invalid {
            chain,
            rule: at,
            stmt,
            reason,
        },
        Fault::NoSuchSet(set) => SimError::NoSuchSet {
            chain,
            rule: at,
            set,
        },
    }
}

/// A value no [`L4Proto`] equals: what `meta l4proto` loads for another protocol.
const OTHER_PROTO: Value = Value::Int(u32::MAX);

impl<'a> Sim<'a> {
    fn rule<'r>(&mut self, rule: &'r Rule) -> Result<End, (Fault, &'r Stmt)> {
        for stmt in &rule.stmts {
            match self.stmt(stmt).map_err(|f| (f, stmt))? {
                None => {}
                Some(end) => return Ok(end),
            }
        }
        Ok(End::Done)
    }

    /// One statement: None to go on with the rule, or how the rule ends.
    fn stmt(&mut self, stmt: &Stmt) -> Result<Option<End>, Fault> {
        match stmt {
            Stmt::Match(m) => Ok((!self.matches(m)?).then_some(End::NoMatch)),
            Stmt::Vmap { key, map } => self.vmap(key, None, map),
            Stmt::BitsVmap { field, mask, map } => self.vmap(&[*field], Some(*mask), map),
            Stmt::AnonVmap { key, arms } => {
                let Some(k) = self.load(*key)? else {
                    return Ok(Some(End::NoMatch));
                };
                Ok(Some(match arms.iter().find(|(v, _)| *v == k) {
                    Some((_, verdict)) => End::Verdict(verdict.clone()),
                    None => End::NoMatch,
                }))
            }
            Stmt::MetaMarkSet(op) => {
                let p = &mut *self.packet;
                p.mark = match op {
                    MarkOp::Or(v) => p.mark | v,
                    MarkOp::Xor(v) => p.mark ^ v,
                    MarkOp::And(v) => p.mark & v,
                };
                Ok(None)
            }
            Stmt::CtMarkSet(sel) => match self.load(*sel)? {
                Some(Value::Int(v)) => {
                    self.packet.ct_mark = v;
                    Ok(None)
                }
                Some(_) => Err(Fault::Invalid("the value is not a mark")),
                None => Ok(Some(End::NoMatch)),
            },
            Stmt::CtMarkSetMap { key, map } => {
                let Some(k) = self.key(key)? else {
                    return Ok(Some(End::NoMatch));
                };
                match self.lookup(map, &k)? {
                    Some(Some(ElemData::Values(v))) => match v.as_slice() {
                        [Value::Int(mark)] => {
                            self.packet.ct_mark = *mark;
                            Ok(None)
                        }
                        _ => Err(Fault::Invalid("the map's data is not a mark")),
                    },
                    Some(_) => Err(Fault::Invalid("the map's data is not a mark")),
                    None => Ok(Some(End::NoMatch)),
                }
            }
            Stmt::Dnat(_) | Stmt::Masquerade { .. } => Err(Fault::Unsupported),
            Stmt::Reject { .. } => Ok(Some(End::Reject)),
            Stmt::Update { set, key } => {
                let s = self.set(set)?;
                let Some(k) = self.key(key)? else {
                    return Ok(Some(End::NoMatch));
                };
                if !s.elements.contains_key(&k) {
                    self.added.entry(s.name.as_str()).or_default().insert(k);
                }
                Ok(None)
            }
            // No effect on the verdict; a limit is taken as never reached.
            Stmt::Counter | Stmt::Log { .. } | Stmt::Limit { .. } => Ok(None),
            Stmt::Verdict(v) => Ok(Some(End::Verdict(v.clone()))),
        }
    }

    /// `<key> [& mask] vmap @map`: the element's verdict, or the end of the rule.
    fn vmap(&self, key: &[Selector], mask: Option<u32>, map: &str) -> Result<Option<End>, Fault> {
        let Some(mut k) = self.key(key)? else {
            return Ok(Some(End::NoMatch));
        };
        if let Some(mask) = mask {
            match k.as_mut_slice() {
                [Value::Int(v)] => *v &= mask,
                _ => return Err(Fault::Invalid("a mask applies to marks and integers only")),
            }
        }
        Ok(Some(match self.lookup(map, &k)? {
            Some(Some(ElemData::Verdict(v))) => End::Verdict(v.clone()),
            Some(_) => return Err(Fault::Invalid("the map's data is not a verdict")),
            None => End::NoMatch,
        }))
    }

    fn set(&self, name: &str) -> Result<&'a super::Set, Fault> {
        self.table
            .sets
            .get(name)
            .ok_or_else(|| Fault::NoSuchSet(name.to_string()))
    }

    /// Looks `key` up: None when absent, else the element's data (None for a set's key).
    fn lookup(&self, set: &str, key: &Key) -> Result<Option<Option<&'a ElemData>>, Fault> {
        let s = self.set(set)?;
        if let Some(e) = s.elements.get(key) {
            return Ok(Some(e.data.as_ref()));
        }
        let added = self.added.get(set).is_some_and(|keys| keys.contains(key));
        Ok(added.then_some(None))
    }

    /// What the kernel loads for `sel`; None when the load fails (the rule ends).
    fn load(&self, sel: Selector) -> Result<Option<Value>, Fault> {
        let p = &*self.packet;
        let port = |proto: L4Proto| {
            (p.l4proto == Some(proto))
                .then_some(p.dport)
                .flatten()
                .map(Value::Port)
        };
        Ok(match sel {
            Selector::IpSaddr => Some(Value::Ipv4(p.saddr)),
            Selector::IpDaddr => Some(Value::Ipv4(p.daddr)),
            Selector::ThDport => p.dport.map(Value::Port),
            // `tcp dport` carries nft's `meta l4proto tcp` dependency.
            Selector::TcpDport => port(L4Proto::Tcp),
            Selector::UdpDport => port(L4Proto::Udp),
            Selector::MetaL4proto => Some(p.l4proto.map_or(OTHER_PROTO, Value::Proto)),
            Selector::MetaMark => Some(Value::Int(p.mark)),
            Selector::CtMark => Some(Value::Int(p.ct_mark)),
            Selector::CtState => Some(Value::Int(p.ct_state)),
            Selector::Numgen { .. } => return Err(Fault::Unsupported),
        })
    }

    /// A (concatenated) key; None when one of its loads fails.
    fn key(&self, key: &[Selector]) -> Result<Option<Key>, Fault> {
        let mut out = Vec::with_capacity(key.len());
        for s in key {
            match self.load(*s)? {
                Some(v) => out.push(v),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    fn matches(&self, m: &Match) -> Result<bool, Fault> {
        let op = |op: &CmpOp, yes: bool| if *op == CmpOp::Eq { yes } else { !yes };
        let p = &*self.packet;
        Ok(match m {
            Match::Prefix {
                field,
                op: o,
                prefix,
            } => match self.load(*field)? {
                Some(Value::Ipv4(a)) => {
                    let mask = u32::MAX
                        .checked_shl(32 - u32::from(prefix.len))
                        .unwrap_or(0);
                    op(o, u32::from(a) & mask == u32::from(prefix.addr) & mask)
                }
                Some(_) => return Err(Fault::Invalid("a prefix applies to addresses only")),
                None => false,
            },
            Match::Value {
                field,
                op: o,
                value,
            } => match self.load(*field)? {
                Some(v) => op(o, v == *value),
                None => false,
            },
            Match::Bits {
                field,
                mask,
                op: o,
                value,
            } => match self.load(*field)? {
                Some(Value::Int(v)) => op(o, v & mask == *value),
                Some(_) => return Err(Fault::Invalid("a mask applies to marks and integers only")),
                None => false,
            },
            Match::CtState(bits) => p.ct_state & bits != 0,
            Match::FibSaddrLocal => p.saddr_local,
            Match::FibSaddrIifOifMissing => p.rpf_missing,
            Match::InSet { key, set, negate } => match self.key(key)? {
                Some(k) => self.lookup(set, &k)?.is_some() != *negate,
                None => false,
            },
            Match::IfName {
                out,
                name,
                prefix,
                op: o,
            } => {
                let dev = if *out { &p.oifname } else { &p.iifname };
                let dev = dev.as_deref().unwrap_or("");
                op(
                    o,
                    if *prefix {
                        dev.starts_with(name.as_str())
                    } else {
                        dev == name
                    },
                )
            }
            Match::Range {
                field,
                from,
                to,
                op: o,
            } => match self.load(*field)? {
                Some(v) => {
                    let same = |a: &Value, b: &Value| {
                        std::mem::discriminant(a) == std::mem::discriminant(b)
                    };
                    if !same(&v, from) || !same(&v, to) {
                        return Err(Fault::Invalid(
                            "the range's values are not the field's type",
                        ));
                    }
                    op(o, *from <= v && v <= *to)
                }
                None => false,
            },
        })
    }
}

#[cfg(test)]
mod tests;
