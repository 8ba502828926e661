//! What nft or the kernel would refuse in a rule, or what could not be written as nft text,
//! found before anything is sent: the applier, [`super::load`] and [`super::Tx`] commits check
//! every rule they send, so a bad value (a log prefix from a policy's name, an interface
//! name) is a typed error naming its table, chain and rule, not a refused batch or, through
//! `nft -f`, text that says something else than the model.

use super::model::{Table, Value};
use super::rule::{Match, Rule, Selector, Stmt};
use crate::error::{Error, Result};

/// NF_LOG_PREFIXLEN (128) less the terminating NUL.
pub const LOG_PREFIX_MAX: usize = 127;
/// IFNAMSIZ (16) less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

fn invalid(what: &'static str, value: &str, reason: &'static str) -> Error {
    Error::Invalid {
        what,
        value: value.to_string(),
        reason,
    }
}

/// Whether `c` cannot go inside nft's quotes as itself: `"` ends the string, `$` starts a
/// variable (nft 1.0.6 expands it even when quoted), control characters break the line.
fn unquotable(c: char) -> bool {
    c == '"' || c == '$' || c.is_control()
}

fn check_ifname(name: &str, prefix: bool) -> Result<()> {
    let what = if prefix {
        "interface name prefix"
    } else {
        "interface name"
    };
    if name.is_empty() {
        // nft refuses `""` and the all-wildcard `"*"`: no such rule can be written.
        return Err(invalid(what, name, "empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(invalid(what, name, "longer than 15 bytes (IFNAMSIZ)"));
    }
    // `*` and `\` would change what nft's wildcard means; whitespace is in no kernel name.
    if name
        .chars()
        .any(|c| unquotable(c) || c == '*' || c == '\\' || c.is_whitespace())
    {
        return Err(invalid(
            what,
            name,
            "contains a quote, `$`, `*`, `\\`, whitespace or a control character",
        ));
    }
    Ok(())
}

fn check_range(field: Selector, from: Value, to: Value) -> Result<()> {
    let value = || format!("{field} {from}-{to}");
    let fits = match field {
        Selector::IpSaddr | Selector::IpDaddr => {
            matches!((from, to), (Value::Ipv4(_), Value::Ipv4(_)))
        }
        Selector::ThDport | Selector::TcpDport | Selector::UdpDport => {
            matches!((from, to), (Value::Port(_), Value::Port(_)))
        }
        // Host byte order fields need a byteorder expression first, which the model lacks.
        _ => {
            return Err(Error::Invalid {
                what: "range match",
                value: value(),
                reason: "only addresses and ports (network byte order) take ranges",
            })
        }
    };
    if !fits {
        return Err(Error::Invalid {
            what: "range match",
            value: value(),
            reason: "the values are not of the field's type",
        });
    }
    if from > to {
        return Err(Error::Invalid {
            what: "range match",
            value: value(),
            reason: "the range is empty (from > to)",
        });
    }
    Ok(())
}

fn check_stmt(s: &Stmt) -> Result<()> {
    match s {
        Stmt::Match(Match::IfName { name, prefix, .. }) => check_ifname(name, *prefix),
        Stmt::Match(Match::Range {
            field, from, to, ..
        }) => check_range(*field, *from, *to),
        Stmt::Log { prefix, .. } => {
            if prefix.len() > LOG_PREFIX_MAX {
                return Err(invalid(
                    "log prefix",
                    prefix,
                    "longer than 127 bytes (NF_LOG_PREFIXLEN)",
                ));
            }
            if prefix.chars().any(unquotable) {
                return Err(invalid(
                    "log prefix",
                    prefix,
                    "contains a quote, `$` or a control character",
                ));
            }
            Ok(())
        }
        Stmt::Limit { rate, burst } => {
            // The kernel refuses a zero rate (EINVAL), nft a zero burst.
            if *rate == 0 || *burst == 0 {
                return Err(Error::Invalid {
                    what: "limit",
                    value: s.to_string(),
                    reason: "rate and burst must be above 0",
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl Rule {
    /// Checks what nft or the kernel would refuse in this rule's statements, or what could not
    /// be written as nft text: interface names (1 to 15 bytes, no quote, `$`, `*`, `\`,
    /// whitespace or control character), ranges (addresses or ports, from <= to), log
    /// prefixes (at most 127 bytes, no quote, `$` or control character), limits (above 0).
    pub fn check(&self) -> Result<()> {
        self.stmts.iter().try_for_each(check_stmt)
    }
}

/// [`Rule::check`] of the rule at `index` of `chain`, the error naming where it is.
pub(crate) fn check_rule(table: &Table, chain: &str, index: usize, rule: &Rule) -> Result<()> {
    rule.check().map_err(|e| Error::NftRule {
        table: table.id(),
        chain: chain.to_string(),
        index,
        source: Box::new(e),
    })
}

impl Table {
    /// [`Rule::check`] of every rule; the error names the table, chain and rule. The applier
    /// and [`super::load`] call it before sending anything, so callers need not; the policy
    /// compiler can call it to fail early.
    pub fn check(&self) -> Result<()> {
        for chain in self.chains.values() {
            for (i, r) in chain.rules.iter().enumerate() {
                check_rule(self, &chain.name, i, r)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{Chain, Family};

    fn refused(r: Rule) -> String {
        r.check().expect_err("refused").to_string()
    }

    #[test]
    fn good_values_pass() {
        Rule::new()
            .iifname("weft0")
            .oifname_prefix("weft")
            .iifname("abcdefghijklmno")
            .th_dport_range(80, 90)
            .log_group(3, &"x".repeat(127))
            .log_group(0, "")
            .limit_per_second(1, 1)
            .counter()
            .check()
            .unwrap();
    }

    #[test]
    fn interface_names_nft_cannot_write_are_refused() {
        assert!(refused(Rule::new().iifname("")).contains("empty"));
        assert!(refused(Rule::new().oifname_prefix("")).contains("empty"));
        assert!(refused(Rule::new().iifname("abcdefghijklmnop")).contains("15 bytes"));
        for bad in ["we\"ft", "a$b", "a*", "a\\b", "a b", "a\nb"] {
            assert!(
                refused(Rule::new().iifname(bad)).contains("contains"),
                "{bad}"
            );
        }
    }

    #[test]
    fn log_prefixes_limits_and_ranges_are_checked() {
        let long = "x".repeat(128);
        assert!(refused(Rule::new().log_group(1, &long)).contains("127 bytes"));
        for bad in ["a\"b", "a$b", "a\nb"] {
            assert!(refused(Rule::new().log_group(1, bad)).contains("contains"));
        }
        assert!(refused(Rule::new().limit_per_second(0, 5)).contains("above 0"));
        assert!(refused(Rule::new().limit_per_second(5, 0)).contains("above 0"));
        assert!(refused(Rule::new().th_dport_range(90, 80)).contains("empty"));
        let mark_range = Rule::new().stmt(Stmt::Match(Match::Range {
            field: Selector::MetaMark,
            from: Value::Int(1),
            to: Value::Int(2),
            op: crate::nft::CmpOp::Eq,
        }));
        assert!(refused(mark_range).contains("network byte order"));
        let mixed = Rule::new().stmt(Stmt::Match(Match::Range {
            field: Selector::ThDport,
            from: Value::Port(1),
            to: Value::Int(2),
            op: crate::nft::CmpOp::Eq,
        }));
        assert!(refused(mixed).contains("type"));
    }

    #[test]
    fn a_table_names_the_bad_rule() {
        let mut t = Table::new(Family::Ip, "t");
        t.add_chain(
            Chain::new("c")
                .rule(Rule::new().accept())
                .rule(Rule::new().log_group(1, "a\"b").drop()),
        );
        let e = t.check().unwrap_err().to_string();
        assert!(e.starts_with("table ip t, chain c, rule 1"), "{e}");
    }
}
