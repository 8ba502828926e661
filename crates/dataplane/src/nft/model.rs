//! The typed nftables model: a table with its chains, sets and maps, their elements, and the
//! values and verdicts they hold. These are plain values (comparable, clonable) that say what a
//! table should contain; `render` turns them into nft script text, `encode` into nf_tables
//! netlink messages, and the applier diffs two of them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use super::rule::{Rule, Selector};
use crate::error::Error;

/// The address family of a table (`nft add table <family> <name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
}

impl Family {
    /// The NFPROTO_* number the kernel uses.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,
            Family::Ip6 => 10,
            Family::Inet => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }
}

/// A whole table: what the applier makes the kernel hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// Free text; the applier keeps its own digest here (see `applier`), so callers should leave
    /// it to the applier when they use one.
    pub comment: Option<String>,
    pub sets: BTreeMap<String, Set>,
    pub chains: BTreeMap<String, Chain>,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Table {
        Table {
            family,
            name: name.into(),
            comment: None,
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
        }
    }

    pub fn comment(mut self, comment: impl Into<String>) -> Table {
        self.comment = Some(comment.into());
        self
    }

    /// Adds (or replaces) a chain.
    pub fn add_chain(&mut self, chain: Chain) -> &mut Chain {
        match self.chains.entry(chain.name.clone()) {
            Entry::Occupied(mut e) => {
                e.insert(chain);
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(chain),
        }
    }

    /// Adds (or replaces) a set or map.
    pub fn add_set(&mut self, set: Set) -> &mut Set {
        match self.sets.entry(set.name.clone()) {
            Entry::Occupied(mut e) => {
                e.insert(set);
                e.into_mut()
            }
            Entry::Vacant(e) => e.insert(set),
        }
    }
}

/// A chain: a regular one (a jump target) or a base chain attached to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn new(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            rules: Vec::new(),
        }
    }

    /// A base chain: `type <kind> hook <hook> priority <priority>; policy <policy>;`.
    pub fn base(
        name: impl Into<String>,
        kind: ChainType,
        hook: Hook,
        priority: i32,
        policy: Policy,
    ) -> Chain {
        Chain {
            base: Some(BaseChain {
                kind,
                hook,
                priority,
                policy,
            }),
            ..Chain::new(name)
        }
    }

    pub fn rule(mut self, rule: Rule) -> Chain {
        self.rules.push(rule);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// The netfilter hooks of the ip/ip6/inet families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// NF_INET_* hook number.
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Standard priorities, as nft names them.
pub mod priority {
    pub const RAW: i32 = -300;
    pub const MANGLE: i32 = -150;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SRCNAT: i32 = 100;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// A set (`elements` are keys) or a map (`elements` map keys to data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: Vec<Field>,
    /// None for a set; the data type of a map.
    pub data: Option<MapData>,
    /// `flags dynamic` (the packet path adds elements: `update @set { ... }`).
    pub dynamic: bool,
    /// `flags timeout; timeout <secs>s`: elements expire after this many seconds by default.
    pub timeout: Option<u32>,
    pub elements: BTreeMap<Key, Elem>,
}

impl Set {
    /// A set of keys of the given (concatenated) fields.
    pub fn new(name: impl Into<String>, key: Vec<Field>) -> Set {
        Set {
            name: name.into(),
            key,
            data: None,
            dynamic: false,
            timeout: None,
            elements: BTreeMap::new(),
        }
    }

    /// A verdict map: `type <key> : verdict`.
    pub fn verdict_map(name: impl Into<String>, key: Vec<Field>) -> Set {
        Set {
            data: Some(MapData::Verdict),
            ..Set::new(name, key)
        }
    }

    /// A data map: `type <key> : <data>` (or `typeof`, per field).
    pub fn data_map(name: impl Into<String>, key: Vec<Field>, data: Vec<Field>) -> Set {
        Set {
            data: Some(MapData::Fields(data)),
            ..Set::new(name, key)
        }
    }

    /// `flags dynamic,timeout; timeout <secs>s`.
    pub fn dynamic_with_timeout(mut self, secs: u32) -> Set {
        self.dynamic = true;
        self.timeout = Some(secs);
        self
    }

    /// Adds a set element.
    pub fn element(mut self, key: Key) -> Set {
        self.elements.insert(key, Elem::default());
        self
    }

    /// Adds a map element.
    pub fn map_element(mut self, key: Key, data: ElemData) -> Set {
        self.elements.insert(key, Elem::data(data));
        self
    }

    pub fn is_map(&self) -> bool {
        self.data.is_some()
    }
}

/// The data side of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapData {
    Verdict,
    Fields(Vec<Field>),
}

/// One field of a (possibly concatenated) key or data: declared by type (`type ipv4_addr`) or
/// by the expression it is matched with (`typeof ip daddr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Type(DataType),
    Typeof(Selector),
}

impl Field {
    pub fn data_type(self) -> DataType {
        match self {
            Field::Type(t) => t,
            Field::Typeof(s) => s.data_type(),
        }
    }
}

/// The nft data types a field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataType {
    Ipv4Addr,
    InetProto,
    InetService,
    Mark,
    Integer,
    CtState,
}

impl DataType {
    /// nft's datatype number (the kernel stores it for listings).
    pub fn id(self) -> u32 {
        match self {
            DataType::Integer => 4,
            DataType::Ipv4Addr => 7,
            DataType::InetProto => 12,
            DataType::InetService => 13,
            DataType::Mark => 19,
            DataType::CtState => 26,
        }
    }

    /// Bytes of a value in a register (before padding to 4).
    pub fn size(self) -> usize {
        match self {
            DataType::InetProto => 1,
            DataType::InetService => 2,
            _ => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::InetProto => "inet_proto",
            DataType::InetService => "inet_service",
            DataType::Mark => "mark",
            DataType::Integer => "integer",
            DataType::CtState => "ct_state",
        }
    }

    /// Host byte order types (marks, integers, ct state) against network order ones.
    pub fn host_order(self) -> bool {
        matches!(self, DataType::Mark | DataType::Integer | DataType::CtState)
    }
}

/// A layer 4 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
}

impl L4Proto {
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        }
    }
}

/// One value of an element key or data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Ipv4(Ipv4Addr),
    Proto(L4Proto),
    Port(u16),
    /// A mark or integer (host byte order in the kernel).
    Int(u32),
}

impl Value {
    /// The value's bytes in a register, unpadded.
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Value::Ipv4(a) => a.octets().to_vec(),
            Value::Proto(p) => vec![p.number()],
            Value::Port(p) => p.to_be_bytes().to_vec(),
            Value::Int(i) => i.to_ne_bytes().to_vec(),
        }
    }
}

/// A (possibly concatenated) element key or element data.
pub type Key = Vec<Value>;

/// An element's data (maps only) and own timeout (sets with timeouts only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Elem {
    pub data: Option<ElemData>,
    /// Seconds; None takes the set's timeout.
    pub timeout: Option<u32>,
}

impl Elem {
    pub fn data(data: ElemData) -> Elem {
        Elem {
            data: Some(data),
            timeout: None,
        }
    }

    pub fn timeout(mut self, secs: u32) -> Elem {
        self.timeout = Some(secs);
        self
    }
}

/// What a map element maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemData {
    Verdict(Verdict),
    Values(Vec<Value>),
}

/// A verdict: the end of a rule or the data of a verdict map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    /// The chain this verdict sends packets to, if any.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// An IPv4 prefix as a rule matches it (`10.244.0.0/16`; `/32` is a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    /// The prefix with its host bits cleared (nft refuses nothing, but lists the network).
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Prefix, Error> {
        if len > 32 {
            return Err(Error::Invalid {
                what: "IPv4 prefix length",
                value: format!("{addr}/{len}"),
                reason: "longer than 32",
            });
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ok(Ipv4Prefix {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    pub fn host(addr: Ipv4Addr) -> Ipv4Prefix {
        Ipv4Prefix { addr, len: 32 }
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 32 {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl FromStr for Ipv4Prefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::Invalid {
            what: "IPv4 prefix",
            value: s.to_string(),
            reason,
        };
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let len: u8 = l.parse().map_err(|_| invalid("prefix is not a number"))?;
        Ipv4Prefix::new(addr, len)
    }
}
