//! nft script text of the model: what `nft -f` loads for a whole table, what `--plan` prints
//! and what snapshot tests review. Every `Display` here writes nft's input syntax; `nft list`
//! prints the same meaning back (in its own canonical spelling).

use std::fmt::{self, Write};

use super::model::{
    Chain, Elem, ElemData, Family, Field, Key, MapData, Policy, Set, Table, Value, Verdict,
};
use super::rule::{ct_state, CmpOp, Dnat, MarkOp, Match, Rule, Selector, Stmt};

/// Elements per `add element` statement: keeps each statement (and nft's parse of it) bounded.
const ELEMENTS_PER_STATEMENT: usize = 1000;

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Ipv4(a) => write!(f, "{a}"),
            Value::Proto(p) => f.write_str(p.as_str()),
            Value::Port(p) => write!(f, "{p}"),
            Value::Int(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::IpSaddr => f.write_str("ip saddr"),
            Selector::IpDaddr => f.write_str("ip daddr"),
            Selector::ThDport => f.write_str("th dport"),
            Selector::TcpDport => f.write_str("tcp dport"),
            Selector::UdpDport => f.write_str("udp dport"),
            Selector::MetaL4proto => f.write_str("meta l4proto"),
            Selector::MetaMark => f.write_str("meta mark"),
            Selector::CtMark => f.write_str("ct mark"),
            Selector::CtState => f.write_str("ct state"),
            Selector::Numgen { modulus, offset } => {
                write!(f, "numgen random mod {modulus}")?;
                if *offset != 0 {
                    write!(f, " offset {offset}")?;
                }
                Ok(())
            }
        }
    }
}

/// `a . b . c`.
fn concat<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" . ")?;
        }
        write!(f, "{x}")?;
    }
    Ok(())
}

struct Concat<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for Concat<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        concat(f, self.0)
    }
}

fn op(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "",
        CmpOp::Ne => "!= ",
    }
}

fn ct_states(f: &mut fmt::Formatter<'_>, bits: u32) -> fmt::Result {
    let names = [
        (ct_state::INVALID, "invalid"),
        (ct_state::ESTABLISHED, "established"),
        (ct_state::RELATED, "related"),
        (ct_state::NEW, "new"),
        (ct_state::UNTRACKED, "untracked"),
    ];
    let mut first = true;
    for (bit, name) in names {
        if bits & bit != 0 {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
    }
    Ok(())
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Prefix {
                field,
                op: o,
                prefix,
            } => write!(f, "{field} {}{prefix}", op(*o)),
            Match::Value {
                field,
                op: o,
                value,
            } => write!(f, "{field} {}{value}", op(*o)),
            Match::Bits {
                field,
                mask,
                op: o,
                value,
            } => {
                let o = if *o == CmpOp::Eq { "==" } else { "!=" };
                write!(f, "{field} & {mask:#x} {o} {value:#x}")
            }
            Match::CtState(bits) => {
                f.write_str("ct state ")?;
                ct_states(f, *bits)
            }
            Match::FibSaddrLocal => f.write_str("fib saddr type local"),
            Match::FibSaddrIifOifMissing => f.write_str("fib saddr . iif oif missing"),
            Match::IfName {
                out,
                name,
                prefix,
                op: o,
            } => {
                let which = if *out { "oifname" } else { "iifname" };
                let star = if *prefix { "*" } else { "" };
                write!(f, "{which} {}\"{name}{star}\"", op(*o))
            }
            // One value is a plain comparison, as the kernel gets it (see `linearize`).
            Match::Range {
                field,
                from,
                to,
                op: o,
            } if from == to => write!(f, "{field} {}{from}", op(*o)),
            Match::Range {
                field,
                from,
                to,
                op: o,
            } => write!(f, "{field} {}{from}-{to}", op(*o)),
            Match::InSet { key, set, negate } => {
                concat(f, key)?;
                write!(f, " {}@{set}", if *negate { "!= " } else { "" })
            }
        }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Match(m) => write!(f, "{m}"),
            Stmt::Vmap { key, map } => write!(f, "{} vmap @{map}", Concat(key)),
            Stmt::BitsVmap { field, mask, map } => write!(f, "{field} & {mask:#x} vmap @{map}"),
            Stmt::AnonVmap { key, arms } => {
                write!(f, "{key} vmap {{ ")?;
                for (i, (v, verdict)) in arms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v} : {verdict}")?;
                }
                f.write_str(" }")
            }
            Stmt::MetaMarkSet(m) => {
                let (o, v) = match m {
                    MarkOp::Or(v) => ("|", v),
                    MarkOp::Xor(v) => ("^", v),
                    MarkOp::And(v) => ("&", v),
                };
                write!(f, "meta mark set meta mark {o} {v:#x}")
            }
            Stmt::CtMarkSet(s) => write!(f, "ct mark set {s}"),
            Stmt::CtMarkSetMap { key, map } => {
                write!(f, "ct mark set {} map @{map}", Concat(key))
            }
            Stmt::Dnat(Dnat::To { addr, port }) => match port {
                Some(p) => write!(f, "dnat ip to {addr}:{p}"),
                None => write!(f, "dnat ip to {addr}"),
            },
            Stmt::Dnat(Dnat::Map { key, map }) => {
                write!(f, "dnat ip to {} map @{map}", Concat(key))
            }
            Stmt::Masquerade { fully_random } => {
                f.write_str("masquerade")?;
                if *fully_random {
                    f.write_str(" fully-random")?;
                }
                Ok(())
            }
            Stmt::Reject {
                net_unreachable: false,
            } => f.write_str("reject"),
            Stmt::Reject {
                net_unreachable: true,
            } => f.write_str("reject with icmp net-unreachable"),
            Stmt::Update { set, key } => write!(f, "update @{set} {{ {} }}", Concat(key)),
            Stmt::Counter => f.write_str("counter"),
            Stmt::Log { group, prefix } if prefix.is_empty() => write!(f, "log group {group}"),
            Stmt::Log { group, prefix } => write!(f, "log prefix \"{prefix}\" group {group}"),
            Stmt::Limit { rate, burst } => {
                write!(f, "limit rate {rate}/second burst {burst} packets")
            }
            Stmt::Verdict(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stmts.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Type(t) => f.write_str(t.as_str()),
            Field::Typeof(s) => write!(f, "{s}"),
        }
    }
}

/// Whether a set is declared with `typeof` (every key and data field is an expression) rather
/// than `type`. nft does not mix the two in one declaration; the encoder follows the same rule.
pub(crate) fn uses_typeof(set: &Set) -> bool {
    let all = |fields: &[Field]| {
        !fields.is_empty() && fields.iter().all(|f| matches!(f, Field::Typeof(_)))
    };
    all(&set.key)
        && match &set.data {
            None | Some(MapData::Verdict) => true,
            Some(MapData::Fields(d)) => all(d),
        }
}

/// Writes the fields as `type` (data types) or as `typeof` expressions.
fn fields(out: &mut String, fields: &[Field], typeof_: bool) {
    for (i, fld) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(" . ");
        }
        if typeof_ {
            let _ = write!(out, "{fld}");
        } else {
            out.push_str(fld.data_type().as_str());
        }
    }
}

impl Set {
    /// The declaration inside a table block: `set s { type ipv4_addr; }`.
    pub fn declaration(&self) -> String {
        let typeof_ = uses_typeof(self);
        let mut s = format!(
            "{} {} {{ {} ",
            if self.is_map() { "map" } else { "set" },
            self.name,
            if typeof_ { "typeof" } else { "type" }
        );
        fields(&mut s, &self.key, typeof_);
        match &self.data {
            None => {}
            Some(MapData::Verdict) => s.push_str(" : verdict"),
            Some(MapData::Fields(d)) => {
                s.push_str(" : ");
                fields(&mut s, d, typeof_);
            }
        }
        s.push_str("; ");
        match (self.dynamic, self.timeout.is_some()) {
            (true, true) => s.push_str("flags dynamic,timeout; "),
            (true, false) => s.push_str("flags dynamic; "),
            (false, true) => s.push_str("flags timeout; "),
            (false, false) => {}
        }
        if let Some(t) = self.timeout {
            let _ = write!(s, "timeout {t}s; ");
        }
        s.push('}');
        s
    }
}

/// One element as nft writes it in `{ ... }`.
pub(crate) fn element(key: &Key, elem: &Elem) -> String {
    let mut s = Concat(key).to_string();
    if let Some(t) = elem.timeout {
        let _ = write!(s, " timeout {t}s");
    }
    match &elem.data {
        None => {}
        Some(ElemData::Verdict(v)) => {
            let _ = write!(s, " : {v}");
        }
        Some(ElemData::Values(v)) => {
            let _ = write!(s, " : {}", Concat(v));
        }
    }
    s
}

impl Chain {
    /// The chain inside a table block, with its rules.
    pub fn declaration(&self) -> String {
        let mut s = format!("chain {} {{", self.name);
        if let Some(b) = &self.base {
            let _ = write!(
                s,
                " type {} hook {} priority {}; policy {};",
                b.kind.as_str(),
                b.hook.as_str(),
                b.priority,
                match b.policy {
                    Policy::Accept => "accept",
                    Policy::Drop => "drop",
                }
            );
        }
        if self.rules.is_empty() {
            s.push_str(" }");
        } else {
            for r in &self.rules {
                let _ = write!(s, "\n    {r}");
            }
            s.push_str("\n  }");
        }
        s
    }
}

impl Table {
    /// `<family> <name>`, as nft commands name the table.
    pub fn id(&self) -> String {
        format!("{} {}", self.family, self.name)
    }

    /// The table block (declarations and rules) followed by its elements as `add element`
    /// statements, which `nft -f` loads into an existing or new table.
    pub fn render(&self) -> String {
        self.render_with_comment(self.comment.as_deref())
    }

    /// [`Table::render`] with another comment (the applier's digest).
    pub(crate) fn render_with_comment(&self, comment: Option<&str>) -> String {
        let mut s = String::with_capacity(256 + self.chains.len() * 160);
        let _ = writeln!(s, "table {} {{", self.id());
        if let Some(c) = comment {
            let _ = writeln!(s, "  comment \"{c}\";");
        }
        for set in self.sets.values() {
            let _ = writeln!(s, "  {}", set.declaration());
        }
        for chain in self.chains.values() {
            let _ = writeln!(s, "  {}", chain.declaration());
        }
        s.push_str("}\n");
        for set in self.sets.values() {
            let all: Vec<String> = set.elements.iter().map(|(k, e)| element(k, e)).collect();
            for chunk in all.chunks(ELEMENTS_PER_STATEMENT) {
                let _ = writeln!(
                    s,
                    "add element {} {} {{ {} }}",
                    self.id(),
                    set.name,
                    chunk.join(", ")
                );
            }
        }
        s
    }

    /// The whole table replacing any previous one, as one `nft -f` transaction.
    pub fn replace_script(&self) -> String {
        let id = self.id();
        format!("table {id}\ndelete table {id}\n{}", self.render())
    }
}

#[cfg(test)]
mod tests {
    use crate::nft::{priority, Chain, ChainType, CmpOp, Family, Hook, Match, Policy, Rule};
    use crate::nft::{Selector, Stmt, Table, Value};

    /// A table with every construct the policy table uses beyond the proxy's.
    pub(crate) fn policy_constructs() -> Table {
        let mut t = Table::new(Family::Ip, "weft_policy_constructs");
        t.add_chain(
            Chain::base(
                "prerouting",
                ChainType::Filter,
                Hook::Prerouting,
                priority::MANGLE,
                Policy::Accept,
            )
            .rule(
                Rule::new()
                    .iifname_prefix("weft")
                    .fib_saddr_iif_oif_missing()
                    .counter()
                    .log_group(2, "weft-spoof: ")
                    .drop(),
            ),
        );
        t.add_chain(
            Chain::new("ingress")
                .rule(Rule::new().iifname("weft0").th_dport_range(80, 90).accept())
                .rule(Rule::new().oifname("eth0").th_dport_range(53, 53).accept())
                .rule(
                    Rule::new()
                        .stmt(Stmt::Match(Match::IfName {
                            out: true,
                            name: "weft".into(),
                            prefix: true,
                            op: CmpOp::Ne,
                        }))
                        .stmt(Stmt::Match(Match::Range {
                            field: Selector::ThDport,
                            from: Value::Port(1000),
                            to: Value::Port(2000),
                            op: CmpOp::Ne,
                        }))
                        .accept(),
                )
                .rule(
                    Rule::new()
                        .limit_per_second(10, 5)
                        .log_group(0, "")
                        .counter()
                        .drop(),
                ),
        );
        t
    }

    #[test]
    fn policy_constructs_render() {
        insta::assert_snapshot!(policy_constructs().render());
    }
}
