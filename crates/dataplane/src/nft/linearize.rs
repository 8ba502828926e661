//! Rules as kernel expressions: each statement becomes the payload/meta/ct loads, cmp,
//! bitwise, lookup, immediate, nat... expressions nft generates for it, with the same
//! registers (nft's 32-bit register slots, reported as the 16-byte registers where aligned),
//! so `nft list` reads our rules back as the text they were rendered from.

pub(crate) use super::expr::Expr;
use super::expr::REG_VERDICT;
use super::model::{DataType, L4Proto, Value, Verdict};
use super::rule::{CmpOp, Dnat, MarkOp, Match, Rule, Selector, Stmt};

/// nf_tables cmp operators (`enum nft_cmp_ops`).
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CMP_LTE: u32 = 3;
const CMP_GTE: u32 = 5;
/// The kernel's interface name size (IFNAMSIZ): `meta iifname` loads this many bytes.
const IFNAMSIZ: usize = 16;

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
        CmpOp::Eq => CMP_EQ,
        CmpOp::Ne => CMP_NEQ,
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
            // Whole bytes: load and compare only those; otherwise all four, masked. A /0
            // is masked too, as nft writes it (so `!= 0.0.0.0/0` never matches).
            let aligned = prefix.len % 8 == 0 && prefix.len > 0;
            let bytes = if aligned {
                usize::from(prefix.len) / 8
            } else {
                4
            };
            out.push(Expr::Payload {
                dreg: reg,
                base: 1,
                offset: if *field == Selector::IpDaddr { 16 } else { 12 },
                len: bytes as u32,
            });
            if !aligned {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix.len))
                    .unwrap_or(0);
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
                op: CMP_NEQ,
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
                op: CMP_EQ,
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
        Match::IfName {
            out: output,
            name,
            prefix,
            op,
        } => {
            // NFT_META_IIFNAME / OIFNAME load the whole IFNAMSIZ buffer: an exact name is
            // compared NUL-padded to 16 bytes, nft's `"weft*"` only on the prefix's bytes.
            out.push(Expr::Meta {
                dreg: reg,
                key: if *output { 7 } else { 6 },
            });
            let mut data = name.as_bytes().to_vec();
            if !prefix {
                data.resize(IFNAMSIZ, 0);
            }
            out.push(Expr::Cmp {
                sreg: reg,
                op: cmp_op(*op),
                data,
            });
        }
        Match::FibSaddrIifOifMissing => {
            // NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF | NFTA_FIB_F_PRESENT, result NFT_FIB_RESULT_OIF:
            // with PRESENT the register holds whether a route exists, compared with 0.
            out.push(Expr::Fib {
                dreg: reg,
                result: 1,
                flags: 0x1 | 0x8 | 0x20,
            });
            out.push(Expr::Cmp {
                sreg: reg,
                op: CMP_EQ,
                data: vec![0; 4],
            });
        }
        Match::Range {
            field,
            from,
            to,
            op,
        } => {
            load_key(out, &[*field]);
            if from == to {
                out.push(Expr::Cmp {
                    sreg: reg,
                    op: cmp_op(*op),
                    data: from.bytes(),
                });
            } else if *op == CmpOp::Eq {
                // nft 1.0.6 writes an inclusive range as two comparisons, and only `!=` as
                // a range expression.
                out.push(Expr::Cmp {
                    sreg: reg,
                    op: CMP_GTE,
                    data: from.bytes(),
                });
                out.push(Expr::Cmp {
                    sreg: reg,
                    op: CMP_LTE,
                    data: to.bytes(),
                });
            } else {
                out.push(Expr::Range {
                    sreg: reg,
                    op: CMP_NEQ,
                    from: from.bytes(),
                    to: to.bytes(),
                });
            }
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
            // ICMP_NET_UNREACH, ICMP_PORT_UNREACH.
            Stmt::Reject { net_unreachable } => out.push(Expr::Reject {
                code: if *net_unreachable { 0 } else { 3 },
            }),
            Stmt::Update { set, key } => {
                let sreg = load_key(out, key);
                out.push(Expr::Dynset {
                    set: set.clone(),
                    sreg,
                });
            }
            Stmt::Counter => out.push(Expr::Counter),
            Stmt::Log { group, prefix } => out.push(Expr::Log {
                group: *group,
                prefix: prefix.clone(),
            }),
            Stmt::Limit { rate, burst } => out.push(Expr::Limit {
                rate: *rate,
                burst: *burst,
            }),
            Stmt::Verdict(v) => out.push(Expr::Verdict(v.clone())),
        }
    }
    lin
}
