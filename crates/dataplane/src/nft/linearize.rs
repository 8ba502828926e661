//! Rules as kernel expressions: each statement becomes the payload/meta/ct loads, cmp,
//! bitwise, lookup, immediate, nat... expressions nft generates for it, with the same
//! registers (nft's 32-bit register slots, reported as the 16-byte registers where aligned),
//! so `nft list` reads our rules back as the text they were rendered from.

use super::encode::{verdict, NFTA_DATA_VALUE, NFTA_LIST_ELEM};
use super::model::{DataType, L4Proto, Value, Verdict};
use super::rule::{CmpOp, Dnat, MarkOp, Match, Rule, Selector, Stmt};
use super::wire::Batch;

/// The verdict register.
const REG_VERDICT: u32 = 0;

/// A register slot (nft's 32-bit register numbering from 1) as the kernel attribute value:
/// slots at the start of a 16-byte register use NFT_REG_1..4, others NFT_REG32_xx.
fn wire(slot: u32) -> u32 {
    let r = slot - 1;
    if r.is_multiple_of(4) {
        1 + r / 4
    } else {
        8 + r
    }
}

/// Slots a value of this many bytes takes.
fn space(bytes: usize) -> u32 {
    bytes.div_ceil(4) as u32
}

/// One kernel expression (`NFTA_EXPR_NAME` + `NFTA_EXPR_DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Payload {
        dreg: u32,
        base: u32,
        offset: u32,
        len: u32,
    },
    Meta {
        dreg: u32,
        key: u32,
    },
    MetaSet {
        sreg: u32,
        key: u32,
    },
    Ct {
        dreg: u32,
        key: u32,
    },
    CtSet {
        sreg: u32,
        key: u32,
    },
    Numgen {
        dreg: u32,
        modulus: u32,
        offset: u32,
    },
    Fib {
        dreg: u32,
        result: u32,
        flags: u32,
    },
    Cmp {
        sreg: u32,
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    /// `set` by name, or the `anon`-th anonymous set of the rule (found by its batch ID).
    Lookup {
        sreg: u32,
        dreg: Option<u32>,
        set: String,
        anon: Option<usize>,
        invert: bool,
    },
    Dynset {
        set: String,
        sreg: u32,
    },
    Nat {
        addr: u32,
        proto: Option<u32>,
    },
    Masq {
        flags: u32,
    },
    Reject,
}

/// An anonymous verdict map a rule needs created before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnonVmap {
    pub(crate) key_type: DataType,
    pub(crate) arms: Vec<(Value, Verdict)>,
}

#[derive(Debug, Default)]
pub(crate) struct Linearized {
    pub(crate) exprs: Vec<Expr>,
    pub(crate) anon: Vec<AnonVmap>,
}

fn load(out: &mut Vec<Expr>, sel: Selector, slot: u32) {
    let dreg = wire(slot);
    out.push(match sel {
        Selector::IpSaddr | Selector::IpDaddr => Expr::Payload {
            dreg,
            base: 1,
            offset: if sel == Selector::IpSaddr { 12 } else { 16 },
            len: 4,
        },
        Selector::ThDport | Selector::TcpDport | Selector::UdpDport => Expr::Payload {
            dreg,
            base: 2,
            offset: 2,
            len: 2,
        },
        Selector::MetaL4proto => Expr::Meta { dreg, key: 16 },
        Selector::MetaMark => Expr::Meta { dreg, key: 3 },
        Selector::CtMark => Expr::Ct { dreg, key: 3 },
        Selector::CtState => Expr::Ct { dreg, key: 0 },
        Selector::Numgen { modulus, offset } => Expr::Numgen {
            dreg,
            modulus,
            offset,
        },
    });
}

/// `tcp dport` in an ip table implies `meta l4proto tcp`, which nft adds (and hides again
/// when listing).
fn dependencies(out: &mut Vec<Expr>, key: &[Selector]) {
    for s in key {
        let proto = match s {
            Selector::TcpDport => L4Proto::Tcp,
            Selector::UdpDport => L4Proto::Udp,
            _ => continue,
        };
        load(out, Selector::MetaL4proto, 1);
        out.push(Expr::Cmp {
            sreg: wire(1),
            op: 0,
            data: vec![proto.number()],
        });
    }
}

/// Loads a (concatenated) key from slot 1 on; returns the register holding its start.
fn load_key(out: &mut Vec<Expr>, key: &[Selector]) -> u32 {
    dependencies(out, key);
    let mut slot = 1;
    for s in key {
        load(out, *s, slot);
        slot += space(s.data_type().size());
    }
    wire(1)
}

fn cmp_op(op: CmpOp) -> u32 {
    match op {
        CmpOp::Eq => 0,
        CmpOp::Ne => 1,
    }
}

fn bits(reg: u32, mask: u32, xor: u32) -> Expr {
    Expr::Bitwise {
        reg,
        mask: mask.to_ne_bytes().to_vec(),
        xor: xor.to_ne_bytes().to_vec(),
    }
}

fn matching(out: &mut Vec<Expr>, m: &Match) {
    let reg = wire(1);
    match m {
        Match::Prefix { field, op, prefix } => {
            // Whole bytes: load and compare only those; otherwise all four, masked.
            let aligned = prefix.len % 8 == 0;
            let bytes = if aligned {
                usize::from(prefix.len) / 8
            } else {
                4
            };
            if bytes == 0 {
                return;
            }
            out.push(Expr::Payload {
                dreg: reg,
                base: 1,
                offset: if *field == Selector::IpDaddr { 16 } else { 12 },
                len: bytes as u32,
            });
            if !aligned {
                let mask = u32::MAX << (32 - u32::from(prefix.len));
                out.push(Expr::Bitwise {
                    reg,
                    mask: mask.to_be_bytes().to_vec(),
                    xor: vec![0; 4],
                });
            }
            out.push(Expr::Cmp {
                sreg: reg,
                op: cmp_op(*op),
                data: prefix.addr.octets()[..bytes].to_vec(),
            });
        }
        Match::Value { field, op, value } => {
            load_key(out, &[*field]);
            out.push(Expr::Cmp {
                sreg: reg,
                op: cmp_op(*op),
                data: value.bytes(),
            });
        }
        Match::Bits {
            field,
            mask,
            op,
            value,
        } => {
            load_key(out, &[*field]);
            out.push(bits(reg, *mask, 0));
            out.push(Expr::Cmp {
                sreg: reg,
                op: cmp_op(*op),
                data: value.to_ne_bytes().to_vec(),
            });
        }
        Match::CtState(states) => {
            load(out, Selector::CtState, 1);
            out.push(bits(reg, *states, 0));
            out.push(Expr::Cmp {
                sreg: reg,
                op: 1,
                data: vec![0; 4],
            });
        }
        Match::FibSaddrLocal => {
            // NFT_FIB_RESULT_ADDRTYPE of NFTA_FIB_F_SADDR, compared with RTN_LOCAL.
            out.push(Expr::Fib {
                dreg: reg,
                result: 3,
                flags: 1,
            });
            out.push(Expr::Cmp {
                sreg: reg,
                op: 0,
                data: 2u32.to_ne_bytes().to_vec(),
            });
        }
        Match::InSet { key, set, negate } => {
            let sreg = load_key(out, key);
            out.push(Expr::Lookup {
                sreg,
                dreg: None,
                set: set.clone(),
                anon: None,
                invert: *negate,
            });
        }
    }
}

/// The expressions of `rule`, and the anonymous sets they refer to.
pub(crate) fn linearize(rule: &Rule) -> Linearized {
    let mut lin = Linearized::default();
    let out = &mut lin.exprs;
    for stmt in &rule.stmts {
        match stmt {
            Stmt::Match(m) => matching(out, m),
            Stmt::Vmap { key, map } => {
                let sreg = load_key(out, key);
                out.push(Expr::Lookup {
                    sreg,
                    dreg: Some(REG_VERDICT),
                    set: map.clone(),
                    anon: None,
                    invert: false,
                });
            }
            Stmt::BitsVmap { field, mask, map } => {
                let reg = load_key(out, &[*field]);
                out.push(bits(reg, *mask, 0));
                out.push(Expr::Lookup {
                    sreg: reg,
                    dreg: Some(REG_VERDICT),
                    set: map.clone(),
                    anon: None,
                    invert: false,
                });
            }
            Stmt::AnonVmap { key, arms } => {
                let sreg = load_key(out, &[*key]);
                out.push(Expr::Lookup {
                    sreg,
                    dreg: Some(REG_VERDICT),
                    set: "__map%d".into(),
                    anon: Some(lin.anon.len()),
                    invert: false,
                });
                lin.anon.push(AnonVmap {
                    key_type: key.data_type(),
                    arms: arms.clone(),
                });
            }
            Stmt::MetaMarkSet(op) => {
                let reg = load_key(out, &[Selector::MetaMark]);
                out.push(match op {
                    MarkOp::Or(v) => bits(reg, !v, *v),
                    MarkOp::Xor(v) => bits(reg, u32::MAX, *v),
                    MarkOp::And(v) => bits(reg, *v, 0),
                });
                out.push(Expr::MetaSet { sreg: reg, key: 3 });
            }
            Stmt::CtMarkSet(sel) => {
                let reg = load_key(out, &[*sel]);
                out.push(Expr::CtSet { sreg: reg, key: 3 });
            }
            Stmt::CtMarkSetMap { key, map } => {
                let reg = load_key(out, key);
                out.push(Expr::Lookup {
                    sreg: reg,
                    dreg: Some(reg),
                    set: map.clone(),
                    anon: None,
                    invert: false,
                });
                out.push(Expr::CtSet { sreg: reg, key: 3 });
            }
            Stmt::Dnat(Dnat::To { addr, port }) => {
                out.push(Expr::Immediate {
                    dreg: wire(1),
                    data: addr.octets().to_vec(),
                });
                let proto = port.map(|p| {
                    out.push(Expr::Immediate {
                        dreg: wire(5),
                        data: p.to_be_bytes().to_vec(),
                    });
                    wire(5)
                });
                out.push(Expr::Nat {
                    addr: wire(1),
                    proto,
                });
            }
            Stmt::Dnat(Dnat::Map { key, map }) => {
                // The map's data (address . port) lands where the key was loaded.
                let reg = load_key(out, key);
                out.push(Expr::Lookup {
                    sreg: reg,
                    dreg: Some(reg),
                    set: map.clone(),
                    anon: None,
                    invert: false,
                });
                out.push(Expr::Nat {
                    addr: reg,
                    proto: Some(wire(2)),
                });
            }
            Stmt::Masquerade { fully_random } => out.push(Expr::Masq {
                flags: if *fully_random { 0x10 } else { 0 },
            }),
            Stmt::Reject => out.push(Expr::Reject),
            Stmt::Update { set, key } => {
                let sreg = load_key(out, key);
                out.push(Expr::Dynset {
                    set: set.clone(),
                    sreg,
                });
            }
            Stmt::Verdict(v) => out.push(Expr::Verdict(v.clone())),
        }
    }
    lin
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Ct { .. } | Expr::CtSet { .. } => "ct",
            Expr::Numgen { .. } => "numgen",
            Expr::Fib { .. } => "fib",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::Dynset { .. } => "dynset",
            Expr::Nat { .. } => "nat",
            Expr::Masq { .. } => "masq",
            Expr::Reject => "reject",
        }
    }

    /// Appends this expression as one element of NFTA_RULE_EXPRESSIONS; `anon_ids` are the
    /// batch IDs of the rule's anonymous sets.
    pub(crate) fn encode(&self, b: &mut Batch, anon_ids: &[u32]) {
        b.nest(NFTA_LIST_ELEM).str(1, self.name()).nest(2);
        match self {
            Expr::Payload {
                dreg,
                base,
                offset,
                len,
            } => {
                b.be32(1, *dreg)
                    .be32(2, *base)
                    .be32(3, *offset)
                    .be32(4, *len);
            }
            Expr::Meta { dreg, key } => {
                b.be32(2, *key).be32(1, *dreg);
            }
            Expr::MetaSet { sreg, key } => {
                b.be32(2, *key).be32(3, *sreg);
            }
            Expr::Ct { dreg, key } => {
                b.be32(2, *key).be32(1, *dreg);
            }
            Expr::CtSet { sreg, key } => {
                b.be32(2, *key).be32(4, *sreg);
            }
            Expr::Numgen {
                dreg,
                modulus,
                offset,
            } => {
                b.be32(1, *dreg)
                    .be32(2, *modulus)
                    .be32(3, 1)
                    .be32(4, *offset);
            }
            Expr::Fib {
                dreg,
                result,
                flags,
            } => {
                b.be32(1, *dreg).be32(2, *result).be32(3, *flags);
            }
            Expr::Cmp { sreg, op, data } => {
                b.be32(1, *sreg).be32(2, *op);
                b.nest(3).attr(NFTA_DATA_VALUE, data).end();
            }
            Expr::Bitwise { reg, mask, xor } => {
                b.be32(1, *reg).be32(2, *reg).be32(3, mask.len() as u32);
                b.nest(4).attr(NFTA_DATA_VALUE, mask).end();
                b.nest(5).attr(NFTA_DATA_VALUE, xor).end();
            }
            Expr::Immediate { dreg, data } => {
                b.be32(1, *dreg);
                b.nest(2).attr(NFTA_DATA_VALUE, data).end();
            }
            Expr::Verdict(v) => {
                b.be32(1, REG_VERDICT);
                b.nest(2);
                verdict(b, v);
                b.end();
            }
            Expr::Lookup {
                sreg,
                dreg,
                set,
                anon,
                invert,
            } => {
                b.be32(2, *sreg);
                if let Some(d) = dreg {
                    b.be32(3, *d);
                }
                b.str(1, set);
                if let Some(id) = anon.and_then(|i| anon_ids.get(i)) {
                    b.be32(4, *id);
                }
                if *invert {
                    b.be32(5, 1);
                }
            }
            Expr::Dynset { set, sreg } => {
                // NFT_DYNSET_OP_UPDATE.
                b.str(1, set).be32(3, 1).be32(4, *sreg);
            }
            Expr::Nat { addr, proto } => {
                // NFT_NAT_DNAT, NFPROTO_IPV4; flags NF_NAT_RANGE_MAP_IPS (| PROTO_SPECIFIED).
                b.be32(1, 1).be32(2, 2).be32(3, *addr).be32(4, *addr);
                let mut flags = 1;
                if let Some(p) = proto {
                    b.be32(5, *p).be32(6, *p);
                    flags |= 2;
                }
                b.be32(7, flags);
            }
            Expr::Masq { flags } => {
                if *flags != 0 {
                    b.be32(1, *flags);
                }
            }
            Expr::Reject => {
                // NFT_REJECT_ICMP_UNREACH, ICMP_PORT_UNREACH.
                b.be32(1, 0).attr(2, &[3]);
            }
        }
        b.end().end();
    }
}
