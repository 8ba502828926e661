//! Truth tables: which pod reaches which, as upstream's `Reachability`, printed as upstream
//! prints them.

use std::collections::BTreeMap;

/// Which source reaches which destination: a truth table over pods named `ns/pod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
    pods: Vec<String>,
    cells: BTreeMap<(String, String), bool>,
}

/// Whether `key` (`ns/pod`) matches `pattern`: `*`, `ns/*`, `*/pod` or `ns/pod`.
fn matches(pattern: &str, key: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pns, ppod) = pattern.split_once('/').unwrap_or((pattern, "*"));
    let (kns, kpod) = key.split_once('/').unwrap_or((key, ""));
    (pns == "*" || pns == kns) && (ppod == "*" || ppod == kpod)
}

impl Reachability {
    /// Every pair of `pods` set to `allowed`.
    pub fn new(pods: &[String], allowed: bool) -> Reachability {
        let mut cells = BTreeMap::new();
        for from in pods {
            for to in pods {
                cells.insert((from.clone(), to.clone()), allowed);
            }
        }
        Reachability {
            pods: pods.to_vec(),
            cells,
        }
    }

    /// Every pair from a pod matching `from` to one matching `to` (`*`, `ns/*`, `*/pod`,
    /// `ns/pod`), as upstream's `ExpectPeer`.
    pub fn expect(&mut self, from: &str, to: &str, allowed: bool) -> &mut Reachability {
        let mut hit = false;
        for ((f, t), cell) in self.cells.iter_mut() {
            if matches(from, f) && matches(to, t) {
                *cell = allowed;
                hit = true;
            }
        }
        assert!(hit, "no pair matches {from} -> {to} in {:?}", self.pods);
        self
    }

    /// Whether `from` reaches `to`.
    pub fn get(&self, from: &str, to: &str) -> bool {
        self.cells[&(from.to_string(), to.to_string())]
    }

    pub(super) fn set(&mut self, from: &str, to: &str, allowed: bool) {
        self.cells
            .insert((from.to_string(), to.to_string()), allowed);
    }

    /// The pairs where `self` and `other` differ; a pod reaching itself is left out, as upstream
    /// does (it never leaves the pod's namespace).
    pub fn differences(&self, other: &Reachability) -> Vec<(String, String)> {
        self.cells
            .iter()
            .filter(|((f, t), v)| f != t && other.cells.get(&(f.clone(), t.clone())) != Some(v))
            .map(|((f, t), _)| (f.clone(), t.clone()))
            .collect()
    }

    /// The table as upstream prints it: `.` reaches, `X` does not; rows are sources.
    pub fn table(&self) -> String {
        self.render(|f, t| if self.get(f, t) { "." } else { "X" })
    }

    /// The comparison with `observed`: `.` agrees, `X` differs (the diagonal is `-`).
    pub fn comparison(&self, observed: &Reachability) -> String {
        self.render(|f, t| {
            if f == t {
                "-"
            } else if self.get(f, t) == observed.get(f, t) {
                "."
            } else {
                "X"
            }
        })
    }

    fn render(&self, cell: impl Fn(&str, &str) -> &'static str) -> String {
        let mut out = String::from("-\t");
        out.push_str(&self.pods.join("\t"));
        out.push('\n');
        for f in &self.pods {
            out.push_str(f);
            for t in &self.pods {
                out.push('\t');
                out.push_str(cell(f, t));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpol::matrix_keys;

    #[test]
    fn patterns_pick_namespaces_and_pods() {
        let keys = matrix_keys();
        let mut r = Reachability::new(&keys, true);
        r.expect("*", "x/*", false).expect("x/b", "x/a", true);
        assert!(!r.get("y/a", "x/c"));
        assert!(r.get("x/b", "x/a"));
        assert!(!r.get("x/c", "x/a"));
        assert!(r.get("x/a", "y/a"));
        let all = Reachability::new(&keys, true);
        // Loopback is left out: x/a -> x/a differs but does not count.
        assert_eq!(r.differences(&all).len(), 9 * 3 - 3 - 1);
        let table = r.table();
        assert!(table.starts_with("-\tx/a\tx/b"), "{table}");
        assert!(table.contains("\nx/b\t.\tX\tX\t."), "{table}");
    }
}
