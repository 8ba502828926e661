//! The kernel expressions a rule is made of (payload, meta, ct, cmp, lookup, nat, log...)
//! and their nf_tables attributes (`NFTA_EXPR_NAME` + `NFTA_EXPR_DATA`), as nft 1.0.6 sends
//! them. `linearize` decides which expressions a statement becomes; this file only writes
//! them.

use super::encode::{verdict, NFTA_DATA_VALUE, NFTA_LIST_ELEM};
use super::model::Verdict;
use super::wire::Batch;

/// The verdict register.
pub(crate) const REG_VERDICT: u32 = 0;

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
    /// NFT_REJECT_ICMP_UNREACH with this ICMP code.
    Reject {
        code: u8,
    },
    /// `range neq` (nft writes `==` ranges as two cmps).
    Range {
        sreg: u32,
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Counter,
    Log {
        group: u16,
        prefix: String,
    },
    /// Packets per second.
    Limit {
        rate: u32,
        burst: u32,
    },
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
            Expr::Reject { .. } => "reject",
            Expr::Range { .. } => "range",
            Expr::Counter => "counter",
            Expr::Log { .. } => "log",
            Expr::Limit { .. } => "limit",
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
            Expr::Reject { code } => {
                // NFTA_REJECT_TYPE NFT_REJECT_ICMP_UNREACH, NFTA_REJECT_ICMP_CODE.
                b.be32(1, 0).attr(2, &[*code]);
            }
            Expr::Range { sreg, op, from, to } => {
                b.be32(1, *sreg).be32(2, *op);
                b.nest(3).attr(NFTA_DATA_VALUE, from).end();
                b.nest(4).attr(NFTA_DATA_VALUE, to).end();
            }
            // nft sends no values: the kernel starts the counter at zero.
            Expr::Counter => {}
            Expr::Log { group, prefix } => {
                // NFTA_LOG_PREFIX (only when there is one), NFTA_LOG_GROUP (be16).
                if !prefix.is_empty() {
                    b.str(2, prefix);
                }
                b.attr(1, &group.to_be_bytes());
            }
            Expr::Limit { rate, burst } => {
                // RATE and UNIT (seconds) as be64, BURST, TYPE NFT_LIMIT_PKTS, FLAGS 0.
                b.be64(1, u64::from(*rate))
                    .be64(2, 1)
                    .be32(3, *burst)
                    .be32(4, 0)
                    .be32(5, 0);
            }
        }
        b.end().end();
    }
}
