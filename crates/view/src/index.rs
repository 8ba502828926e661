//! An index from label pairs to the objects carrying them, so a selector's `matchLabels` is a
//! set intersection instead of a scan of every object.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Objects (by key `K`) per `(label, value)` pair, and each object's labels as indexed.
#[derive(Debug, Clone)]
pub struct LabelIndex<K: Ord + Clone> {
    by_pair: BTreeMap<(String, String), BTreeSet<K>>,
    labels: BTreeMap<K, BTreeMap<String, String>>,
}

impl<K: Ord + Clone> Default for LabelIndex<K> {
    fn default() -> Self {
        LabelIndex {
            by_pair: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> LabelIndex<K> {
    /// Records `key`'s labels (replacing what was indexed for it); None removes it.
    pub fn set(&mut self, key: &K, labels: Option<&BTreeMap<String, String>>) {
        if let Some(old) = self.labels.remove(key) {
            for pair in old {
                if let Some(set) = self.by_pair.get_mut(&pair) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_pair.remove(&pair);
                    }
                }
            }
        }
        if let Some(labels) = labels {
            for (k, v) in labels {
                self.by_pair
                    .entry((k.clone(), v.clone()))
                    .or_default()
                    .insert(key.clone());
            }
            self.labels.insert(key.clone(), labels.clone());
        }
    }

    /// Every indexed key whose labels `selector` matches, with `within` narrowing the
    /// candidates (e.g. one namespace's pods). `matchLabels` is answered from the index; only
    /// `matchExpressions` look at each remaining candidate's labels.
    pub fn select(&self, selector: &LabelSelector, within: impl Fn(&K) -> bool) -> Vec<K> {
        let empty = BTreeMap::new();
        let match_labels = selector.match_labels.as_ref().unwrap_or(&empty);
        let candidates: Box<dyn Iterator<Item = &K>> = match self.smallest(match_labels) {
            Some(set) => Box::new(set.iter()),
            None if match_labels.is_empty() => Box::new(self.labels.keys()),
            // A pair nobody carries: nothing can match.
            None => return Vec::new(),
        };
        candidates
            .filter(|k| within(k))
            .filter(|k| {
                let labels = self.labels.get(k).unwrap_or(&empty);
                weft_model::selector::matches(selector, labels)
            })
            .cloned()
            .collect()
    }

    /// The smallest key set among the selector's required pairs (None if there are none, or
    /// one of them has no key at all: then `select` answers without looking further).
    fn smallest(&self, match_labels: &BTreeMap<String, String>) -> Option<&BTreeSet<K>> {
        let mut best: Option<&BTreeSet<K>> = None;
        for pair in match_labels {
            let set = self.by_pair.get(&(pair.0.clone(), pair.1.clone()))?;
            if best.is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
    }

    /// The labels indexed for `key`.
    pub fn labels(&self, key: &K) -> Option<&BTreeMap<String, String>> {
        self.labels.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn selects_by_pairs_and_expressions() {
        let mut idx = LabelIndex::default();
        idx.set(&"a", Some(&labels(&[("app", "web"), ("tier", "front")])));
        idx.set(&"b", Some(&labels(&[("app", "web")])));
        idx.set(&"c", Some(&labels(&[("app", "db")])));
        idx.set(&"d", None);
        let s = selector(serde_json::json!({"matchLabels": {"app": "web"}}));
        assert_eq!(idx.select(&s, |_| true), ["a", "b"]);
        let s = selector(serde_json::json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}));
        assert_eq!(idx.select(&s, |_| true), ["b"]);
        let s = selector(serde_json::json!({"matchLabels": {"app": "nope"}}));
        assert!(idx.select(&s, |_| true).is_empty());
        // The empty selector selects everything indexed (d has no labels, so is not indexed).
        assert_eq!(
            idx.select(&LabelSelector::default(), |k| *k != "c"),
            ["a", "b"]
        );
        // Relabelled and removed objects leave the index.
        idx.set(&"a", Some(&labels(&[("app", "db")])));
        idx.set(&"b", None);
        let s = selector(serde_json::json!({"matchLabels": {"app": "web"}}));
        assert!(idx.select(&s, |_| true).is_empty());
        assert_eq!(idx.by_pair.len(), 1, "no empty sets are kept");
    }

    proptest! {
        /// The index answers every selector exactly as matching each object's labels would.
        #[test]
        fn index_agrees_with_a_scan(
            objects in proptest::collection::btree_map(0u8..20, proptest::collection::btree_map("[ab]", "[xy]", 0..3), 0..20),
            want in proptest::collection::btree_map("[ab]", "[xy]", 0..3),
            exists in proptest::option::of("[ab]"),
        ) {
            let mut idx = LabelIndex::default();
            for (k, l) in &objects {
                idx.set(k, Some(l));
            }
            let mut s = LabelSelector { match_labels: Some(want), ..Default::default() };
            if let Some(key) = exists {
                s.match_expressions = Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key, operator: "Exists".into(), values: None,
                    },
                ]);
            }
            let scan: Vec<u8> = objects
                .iter()
                .filter(|(_, l)| weft_model::selector::matches(&s, l))
                .map(|(k, _)| *k)
                .collect();
            prop_assert_eq!(idx.select(&s, |_| true), scan);
        }
    }
}
