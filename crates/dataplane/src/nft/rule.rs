//! Rules as typed values: a [`Rule`] is a list of statements ([`Stmt`]) that match packet
//! fields ([`Selector`]) against values, look them up in sets and maps, change marks, NAT, and
//! end in a verdict. Call sites read like the rule they build:
//! `Rule::new().ip_saddr_ne(cluster).jump("mark_for_masquerade")` is
//! `ip saddr != 10.244.0.0/16 jump mark_for_masquerade`.

use std::net::Ipv4Addr;

use super::model::{DataType, Ipv4Prefix, L4Proto, Value, Verdict};

/// A packet or connection field a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    IpSaddr,
    IpDaddr,
    /// The destination port of any transport header (`th dport`).
    ThDport,
    TcpDport,
    UdpDport,
    MetaL4proto,
    MetaMark,
    CtMark,
    CtState,
    /// `numgen random mod <modulus> offset <offset>`.
    Numgen {
        modulus: u32,
        offset: u32,
    },
}

impl Selector {
    pub fn data_type(self) -> DataType {
        match self {
            Selector::IpSaddr | Selector::IpDaddr => DataType::Ipv4Addr,
            Selector::ThDport | Selector::TcpDport | Selector::UdpDport => DataType::InetService,
            Selector::MetaL4proto => DataType::InetProto,
            Selector::MetaMark | Selector::CtMark => DataType::Mark,
            Selector::CtState => DataType::CtState,
            Selector::Numgen { .. } => DataType::Integer,
        }
    }
}

/// How a match compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
}

/// The `ct state` bits.
pub mod ct_state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
}

/// A condition on the packet; a rule's statements after a failed match are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `ip saddr [!=] 10.0.0.0/8` (a /32 is a single address).
    Prefix {
        field: Selector,
        op: CmpOp,
        prefix: Ipv4Prefix,
    },
    /// `meta l4proto tcp`, `th dport != 80`.
    Value {
        field: Selector,
        op: CmpOp,
        value: Value,
    },
    /// `meta mark & 0x4000 == 0`.
    Bits {
        field: Selector,
        mask: u32,
        op: CmpOp,
        value: u32,
    },
    /// `ct state new,established`: any of the bits in [`ct_state`].
    CtState(u32),
    /// `fib saddr type local`: the source address is one of this host's.
    FibSaddrLocal,
    /// `ip saddr . ip daddr [!=] @set`.
    InSet {
        key: Vec<Selector>,
        set: String,
        negate: bool,
    },
    /// `iifname [!=] "weft0"` (`out`: `oifname`), or with `prefix` `iifname "weft*"`: the
    /// interface name starts with `name`.
    IfName {
        out: bool,
        name: String,
        prefix: bool,
        op: CmpOp,
    },
    /// `fib saddr . iif oif missing`: no route back to the source through the interface the
    /// packet came in on (strict reverse-path filtering: the source is spoofed).
    FibSaddrIifOifMissing,
    /// `th dport [!=] 80-90`: the field between `from` and `to`, both included. Only fields
    /// in network byte order (addresses, ports): nft compares them as bytes.
    Range {
        field: Selector,
        from: Value,
        to: Value,
        op: CmpOp,
    },
}

/// How `meta mark set meta mark <op>` changes the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOp {
    Or(u32),
    Xor(u32),
    And(u32),
}

/// Where `dnat` sends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dnat {
    /// `dnat ip to 10.0.0.1` or `dnat ip to 10.0.0.1:80`.
    To { addr: Ipv4Addr, port: Option<u16> },
    /// `dnat ip to <key> map @map`: address and port looked up in a data map of
    /// `ipv4_addr . inet_service` by a (concatenated) key, e.g. `ct mark . numgen random mod 3`.
    Map { key: Vec<Selector>, map: String },
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    Match(Match),
    /// `<key> vmap @map`.
    Vmap {
        key: Vec<Selector>,
        map: String,
    },
    /// `<field> & <mask> vmap @map`: the masked field looked up in a verdict map.
    BitsVmap {
        field: Selector,
        mask: u32,
        map: String,
    },
    /// `<key> vmap { v : verdict, ... }` with the map inline (an anonymous set).
    AnonVmap {
        key: Selector,
        arms: Vec<(Value, Verdict)>,
    },
    /// `meta mark set meta mark <op>`.
    MetaMarkSet(MarkOp),
    /// `ct mark set <selector>` (e.g. `numgen random mod 2 offset 7`).
    CtMarkSet(Selector),
    /// `ct mark set <key> map @map`: the mark looked up in a data map (a failed lookup ends
    /// the rule).
    CtMarkSetMap {
        key: Vec<Selector>,
        map: String,
    },
    Dnat(Dnat),
    Masquerade {
        fully_random: bool,
    },
    /// `reject` (ICMP port unreachable), or `reject with icmp net-unreachable`.
    Reject {
        net_unreachable: bool,
    },
    /// `update @set { <key> }`: add or refresh the packet's key in a dynamic set.
    Update {
        set: String,
        key: Vec<Selector>,
    },
    /// `counter`: the kernel counts packets and bytes (read back with [`super::counters`]);
    /// the model holds no values, so two tables with counters still compare equal.
    Counter,
    /// `log prefix "<prefix>" group <group>`: a copy of the packet to NFLOG group `group`.
    /// The prefix is at most 127 bytes without `"`, `$` or control characters (see
    /// [`Rule::check`]).
    Log {
        group: u16,
        prefix: String,
    },
    /// `limit rate <rate>/second burst <burst> packets`: a match; over the limit the rest
    /// of the rule is skipped. Both must be above 0.
    Limit {
        rate: u32,
        burst: u32,
    },
    Verdict(Verdict),
}

/// A rule: statements evaluated left to right.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
}

impl Rule {
    pub fn new() -> Rule {
        Rule::default()
    }

    pub fn stmt(mut self, stmt: Stmt) -> Rule {
        self.stmts.push(stmt);
        self
    }

    fn matching(self, m: Match) -> Rule {
        self.stmt(Stmt::Match(m))
    }

    fn prefix(self, field: Selector, op: CmpOp, prefix: Ipv4Prefix) -> Rule {
        self.matching(Match::Prefix { field, op, prefix })
    }

    /// `ip saddr <prefix>`.
    pub fn ip_saddr(self, prefix: Ipv4Prefix) -> Rule {
        self.prefix(Selector::IpSaddr, CmpOp::Eq, prefix)
    }

    /// `ip saddr != <prefix>`.
    pub fn ip_saddr_ne(self, prefix: Ipv4Prefix) -> Rule {
        self.prefix(Selector::IpSaddr, CmpOp::Ne, prefix)
    }

    /// `ip daddr <prefix>`.
    pub fn ip_daddr(self, prefix: Ipv4Prefix) -> Rule {
        self.prefix(Selector::IpDaddr, CmpOp::Eq, prefix)
    }

    /// `ip daddr != <prefix>`.
    pub fn ip_daddr_ne(self, prefix: Ipv4Prefix) -> Rule {
        self.prefix(Selector::IpDaddr, CmpOp::Ne, prefix)
    }

    /// `meta l4proto <proto>`.
    pub fn l4proto(self, proto: L4Proto) -> Rule {
        self.matching(Match::Value {
            field: Selector::MetaL4proto,
            op: CmpOp::Eq,
            value: Value::Proto(proto),
        })
    }

    /// `th dport <port>`.
    pub fn th_dport(self, port: u16) -> Rule {
        self.matching(Match::Value {
            field: Selector::ThDport,
            op: CmpOp::Eq,
            value: Value::Port(port),
        })
    }

    /// `meta mark & <mask> == <value>` (or `!=`).
    pub fn mark_bits(self, mask: u32, op: CmpOp, value: u32) -> Rule {
        self.matching(Match::Bits {
            field: Selector::MetaMark,
            mask,
            op,
            value,
        })
    }

    /// `ct state <states>` (bits from [`ct_state`]).
    pub fn ct_state(self, states: u32) -> Rule {
        self.matching(Match::CtState(states))
    }

    /// `fib saddr type local`.
    pub fn fib_saddr_local(self) -> Rule {
        self.matching(Match::FibSaddrLocal)
    }

    fn ifname(self, out: bool, name: &str, prefix: bool) -> Rule {
        self.matching(Match::IfName {
            out,
            name: name.to_string(),
            prefix,
            op: CmpOp::Eq,
        })
    }

    /// `iifname "<name>"`.
    pub fn iifname(self, name: &str) -> Rule {
        self.ifname(false, name, false)
    }

    /// `oifname "<name>"`.
    pub fn oifname(self, name: &str) -> Rule {
        self.ifname(true, name, false)
    }

    /// `iifname "<prefix>*"`: the input interface's name starts with `prefix`.
    pub fn iifname_prefix(self, prefix: &str) -> Rule {
        self.ifname(false, prefix, true)
    }

    /// `oifname "<prefix>*"`: the output interface's name starts with `prefix`.
    pub fn oifname_prefix(self, prefix: &str) -> Rule {
        self.ifname(true, prefix, true)
    }

    /// `fib saddr . iif oif missing`: no route back to the source through the input
    /// interface (anti-spoofing).
    pub fn fib_saddr_iif_oif_missing(self) -> Rule {
        self.matching(Match::FibSaddrIifOifMissing)
    }

    /// `th dport <from>-<to>`; a range of one port is `th dport <from>`, as nft writes it.
    pub fn th_dport_range(self, from: u16, to: u16) -> Rule {
        if from == to {
            return self.th_dport(from);
        }
        self.matching(Match::Range {
            field: Selector::ThDport,
            from: Value::Port(from),
            to: Value::Port(to),
            op: CmpOp::Eq,
        })
    }

    /// `counter`.
    pub fn counter(self) -> Rule {
        self.stmt(Stmt::Counter)
    }

    /// `log prefix "<prefix>" group <group>` (NFLOG).
    pub fn log_group(self, group: u16, prefix: &str) -> Rule {
        self.stmt(Stmt::Log {
            group,
            prefix: prefix.to_string(),
        })
    }

    /// `limit rate <rate>/second burst <burst> packets`.
    pub fn limit_per_second(self, rate: u32, burst: u32) -> Rule {
        self.stmt(Stmt::Limit { rate, burst })
    }

    /// `<key> @set`.
    pub fn in_set(self, key: &[Selector], set: impl Into<String>) -> Rule {
        self.matching(Match::InSet {
            key: key.to_vec(),
            set: set.into(),
            negate: false,
        })
    }

    /// `<key> != @set`.
    pub fn not_in_set(self, key: &[Selector], set: impl Into<String>) -> Rule {
        self.matching(Match::InSet {
            key: key.to_vec(),
            set: set.into(),
            negate: true,
        })
    }

    /// `<key> vmap @map`.
    pub fn vmap(self, key: &[Selector], map: impl Into<String>) -> Rule {
        self.stmt(Stmt::Vmap {
            key: key.to_vec(),
            map: map.into(),
        })
    }

    /// `<field> & <mask> vmap @map`.
    pub fn vmap_bits(self, field: Selector, mask: u32, map: impl Into<String>) -> Rule {
        self.stmt(Stmt::BitsVmap {
            field,
            mask,
            map: map.into(),
        })
    }

    /// `<field> & <mask> == <value>` (or `!=`).
    pub fn bits(self, field: Selector, mask: u32, op: CmpOp, value: u32) -> Rule {
        self.matching(Match::Bits {
            field,
            mask,
            op,
            value,
        })
    }

    /// `numgen random mod <n> vmap { 0 : <v0>, 1 : <v1>, ... }`.
    pub fn numgen_vmap(self, arms: Vec<Verdict>) -> Rule {
        let modulus = arms.len() as u32;
        let arms = arms
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::Int(i as u32), v))
            .collect();
        self.stmt(Stmt::AnonVmap {
            key: Selector::Numgen { modulus, offset: 0 },
            arms,
        })
    }

    /// `meta mark set meta mark <op>`.
    pub fn mark_set(self, op: MarkOp) -> Rule {
        self.stmt(Stmt::MetaMarkSet(op))
    }

    /// `ct mark set numgen random mod <modulus> offset <offset>`.
    pub fn ct_mark_set_numgen(self, modulus: u32, offset: u32) -> Rule {
        self.stmt(Stmt::CtMarkSet(Selector::Numgen { modulus, offset }))
    }

    /// `ct mark set <key> map @map`.
    pub fn ct_mark_set_map(self, key: &[Selector], map: impl Into<String>) -> Rule {
        self.stmt(Stmt::CtMarkSetMap {
            key: key.to_vec(),
            map: map.into(),
        })
    }

    /// `dnat ip to <addr>[:<port>]`.
    pub fn dnat_to(self, addr: Ipv4Addr, port: Option<u16>) -> Rule {
        self.stmt(Stmt::Dnat(Dnat::To { addr, port }))
    }

    /// `dnat ip to <key> map @map` (a concatenated key: `ct mark . numgen random mod 3`).
    pub fn dnat_map(self, key: &[Selector], map: impl Into<String>) -> Rule {
        self.stmt(Stmt::Dnat(Dnat::Map {
            key: key.to_vec(),
            map: map.into(),
        }))
    }

    /// `masquerade [fully-random]`.
    pub fn masquerade(self, fully_random: bool) -> Rule {
        self.stmt(Stmt::Masquerade { fully_random })
    }

    /// `reject`: ICMP port unreachable (TCP clients see their connection refused).
    pub fn reject(self) -> Rule {
        self.stmt(Stmt::Reject {
            net_unreachable: false,
        })
    }

    /// `reject with icmp net-unreachable` (clients see "network is unreachable").
    pub fn reject_net_unreachable(self) -> Rule {
        self.stmt(Stmt::Reject {
            net_unreachable: true,
        })
    }

    /// `update @set { <key> }`.
    pub fn update(self, set: impl Into<String>, key: &[Selector]) -> Rule {
        self.stmt(Stmt::Update {
            set: set.into(),
            key: key.to_vec(),
        })
    }

    pub fn verdict(self, v: Verdict) -> Rule {
        self.stmt(Stmt::Verdict(v))
    }

    pub fn accept(self) -> Rule {
        self.verdict(Verdict::Accept)
    }

    pub fn drop(self) -> Rule {
        self.verdict(Verdict::Drop)
    }

    pub fn ret(self) -> Rule {
        self.verdict(Verdict::Return)
    }

    pub fn jump(self, chain: impl Into<String>) -> Rule {
        self.verdict(Verdict::Jump(chain.into()))
    }

    pub fn goto(self, chain: impl Into<String>) -> Rule {
        self.verdict(Verdict::Goto(chain.into()))
    }

    /// The chains this rule sends packets to (jumps, gotos, inline verdict maps).
    pub fn chain_refs(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().flat_map(|s| -> Vec<&str> {
            match s {
                Stmt::Verdict(v) => v.chain().into_iter().collect(),
                Stmt::AnonVmap { arms, .. } => arms.iter().filter_map(|(_, v)| v.chain()).collect(),
                _ => Vec::new(),
            }
        })
    }

    /// The named sets and maps this rule uses.
    pub fn set_refs(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().filter_map(|s| match s {
            Stmt::Match(Match::InSet { set, .. }) => Some(set.as_str()),
            Stmt::Vmap { map, .. } => Some(map.as_str()),
            Stmt::BitsVmap { map, .. } => Some(map.as_str()),
            Stmt::CtMarkSetMap { map, .. } => Some(map.as_str()),
            Stmt::Dnat(Dnat::Map { map, .. }) => Some(map.as_str()),
            Stmt::Update { set, .. } => Some(set.as_str()),
            _ => None,
        })
    }
}
