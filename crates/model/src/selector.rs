//! Label selectors: the one matcher of the project (Deployments, Services, NetworkPolicies and the
//! cluster view all select through here).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::names;

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        // Kubernetes: NotIn also matches objects without the key.
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // An unknown operator selects nothing rather than everything: failing closed is the safe
        // reading for policies. validate() reports it.
        _ => false,
    }
}

/// Whether `labels` satisfy a full label selector: every matchLabels pair AND every matchExpression.
/// An empty selector matches everything.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .as_ref()
        .is_none_or(|wanted| map_matches(wanted, labels));
    labels_ok
        && selector
            .match_expressions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|req| requirement_matches(req, labels))
}

/// Whether `labels` contain every pair of an equality selector (a Service's `spec.selector`). An empty
/// map matches everything; whether an absent selector selects anything is the caller's decision.
pub fn map_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Checks keys, values and operators the way the API server does.
pub fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        names::check_label_key(key)?;
        names::check_label_value(value)?;
    }
    for req in selector.match_expressions.iter().flatten() {
        names::check_label_key(&req.key)?;
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(format!(
                        "matchExpressions key {:?}: operator {} needs at least one value",
                        req.key, req.operator
                    ));
                }
                for value in values {
                    names::check_label_value(value)?;
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(format!(
                        "matchExpressions key {:?}: operator {} takes no values",
                        req.key, req.operator
                    ));
                }
            }
            other => {
                return Err(format!(
                    "matchExpressions key {:?}: unknown operator {other:?} (want In, NotIn, Exists \
                     or DoesNotExist)",
                    req.key
                ))
            }
        }
    }
    Ok(())
}

/// kubectl's selector syntax: `app=web,tier in (a,b),!debug`. Empty for the match-all selector.
pub fn format(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default().join(",");
        parts.push(match req.operator.as_str() {
            "In" => format!("{} in ({values})", req.key),
            "NotIn" => format!("{} notin ({values})", req.key),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!("{} {other} ({values})", req.key),
        });
    }
    parts.join(",")
}

/// kubectl's equality-selector syntax: `app=web,tier=db`.
pub fn format_map(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses kubectl's selector syntax (`app=web,tier in (a,b),!debug,env!=prod`), the form of the
/// `labelSelector` query parameter, into a selector that [`matches`] evaluates. Values are checked
/// the way the API server checks them; the error names the offending part.
pub fn parse(text: &str) -> Result<LabelSelector, String> {
    let mut expressions = Vec::new();
    for part in split_requirements(text)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let requirement = |key: &str, operator: &str, values: Option<Vec<String>>| {
            let key = key.trim();
            names::check_label_key(key).map_err(|e| format!("{part:?}: {e}"))?;
            for value in values.iter().flatten() {
                names::check_label_value(value).map_err(|e| format!("{part:?}: {e}"))?;
            }
            Ok::<_, String>(LabelSelectorRequirement {
                key: key.to_string(),
                operator: operator.to_string(),
                values,
            })
        };
        let lower = part.to_ascii_lowercase();
        let expression = if let Some(key) = part.strip_prefix('!') {
            requirement(key, "DoesNotExist", None)?
        } else if let Some((key, value)) = part.split_once("!=") {
            requirement(key, "NotIn", Some(vec![value.trim().to_string()]))?
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            requirement(key, "In", Some(vec![value.trim().to_string()]))?
        } else if let Some(at) = lower.find(" notin ").or_else(|| lower.find(" in ")) {
            let notin = lower[at..].starts_with(" notin ");
            let rest = part[at..].trim_start();
            let rest = rest[if notin { 5 } else { 2 }..].trim();
            let values = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("{part:?}: values must be a list in parentheses"))?;
            let values: Vec<String> = values
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() {
                return Err(format!(
                    "{part:?}: for 'in', 'notin' operators, values set can't be empty"
                ));
            }
            requirement(
                &part[..at],
                if notin { "NotIn" } else { "In" },
                Some(values),
            )?
        } else if part.contains(['<', '>', '(', ')', ' ']) {
            return Err(format!("{part:?}: unsupported selector requirement"));
        } else {
            requirement(part, "Exists", None)?
        };
        expressions.push(expression);
    }
    Ok(LabelSelector {
        match_labels: None,
        match_expressions: Some(expressions),
    })
}

/// Splits on the commas between requirements, not those inside `in (a,b)`.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("{text:?}: unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: unbalanced parentheses"));
    }
    parts.push(&text[start..]);
    Ok(parts)
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

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(pairs: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!pairs.is_empty()).then(|| labels(pairs)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn operators() {
        let web = labels(&[("app", "web"), ("tier", "a")]);
        assert!(matches(&LabelSelector::default(), &web));
        assert!(matches(&LabelSelector::default(), &BTreeMap::new()));
        assert!(matches(&selector(&[("app", "web")], vec![]), &web));
        assert!(!matches(&selector(&[("app", "db")], vec![]), &web));
        let s = |r| selector(&[], vec![r]);
        assert!(matches(&s(req("tier", "In", &["a", "b"])), &web));
        assert!(!matches(&s(req("tier", "In", &["c"])), &web));
        assert!(!matches(&s(req("zone", "In", &["a"])), &web));
        assert!(matches(&s(req("tier", "NotIn", &["c"])), &web));
        assert!(matches(&s(req("zone", "NotIn", &["c"])), &web));
        assert!(!matches(&s(req("tier", "NotIn", &["a"])), &web));
        assert!(matches(&s(req("app", "Exists", &[])), &web));
        assert!(!matches(&s(req("debug", "Exists", &[])), &web));
        assert!(matches(&s(req("debug", "DoesNotExist", &[])), &web));
        assert!(!matches(&s(req("app", "DoesNotExist", &[])), &web));
        assert!(!matches(&s(req("app", "Like", &["web"])), &web));
        assert!(!matches(
            &selector(&[("app", "web")], vec![req("tier", "In", &["b"])]),
            &web
        ));
    }

    #[test]
    fn equality_maps() {
        let web = labels(&[("app", "web"), ("tier", "a")]);
        assert!(map_matches(&BTreeMap::new(), &web));
        assert!(map_matches(&labels(&[("app", "web")]), &web));
        assert!(!map_matches(&labels(&[("app", "web"), ("x", "y")]), &web));
        assert_eq!(format_map(&labels(&[("b", "2"), ("a", "1")])), "a=1,b=2");
    }

    #[test]
    fn formats_like_kubectl() {
        let s = selector(
            &[("app", "web")],
            vec![
                req("tier", "In", &["a", "b"]),
                req("env", "NotIn", &["prod"]),
                req("canary", "Exists", &[]),
                req("debug", "DoesNotExist", &[]),
            ],
        );
        assert_eq!(
            format(&s),
            "app=web,tier in (a,b),env notin (prod),canary,!debug"
        );
        assert_eq!(format(&LabelSelector::default()), "");
    }

    #[test]
    fn validation() {
        assert!(validate(&selector(&[("app", "web")], vec![req("t", "In", &["a"])])).is_ok());
        assert_eq!(
            validate(&selector(&[], vec![req("t", "In", &[])])).unwrap_err(),
            "matchExpressions key \"t\": operator In needs at least one value"
        );
        assert_eq!(
            validate(&selector(&[], vec![req("t", "Exists", &["a"])])).unwrap_err(),
            "matchExpressions key \"t\": operator Exists takes no values"
        );
        assert!(validate(&selector(&[], vec![req("t", "Like", &["a"])]))
            .unwrap_err()
            .contains("unknown operator \"Like\""));
        assert!(validate(&selector(&[("bad key", "x")], vec![])).is_err());
        assert!(validate(&selector(&[("app", "bad value")], vec![])).is_err());
    }

    /// A deliberately naive restatement of the Kubernetes semantics, to check the matcher against.
    fn reference(
        match_labels: &[(String, String)],
        exprs: &[(String, u8, Vec<String>)],
        labels: &BTreeMap<String, String>,
    ) -> bool {
        for (k, v) in match_labels {
            let mut found = false;
            for (lk, lv) in labels {
                if lk == k && lv == v {
                    found = true;
                }
            }
            if !found {
                return false;
            }
        }
        for (key, op, values) in exprs {
            let has_key = labels.keys().any(|k| k == key);
            let in_values = labels
                .iter()
                .any(|(k, v)| k == key && values.iter().any(|x| x == v));
            let ok = match op {
                0 => in_values,
                1 => !in_values,
                2 => has_key,
                _ => !has_key,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn small() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    }

    proptest! {
        #[test]
        fn matcher_equals_reference(
            match_labels in proptest::collection::vec((small(), small()), 0..3),
            exprs in proptest::collection::vec((small(), 0u8..4, proptest::collection::vec(small(), 1..3)), 0..3),
            pod_labels in proptest::collection::btree_map(small(), small(), 0..3),
        ) {
            let ops = ["In", "NotIn", "Exists", "DoesNotExist"];
            let sel = LabelSelector {
                match_labels: (!match_labels.is_empty())
                    .then(|| match_labels.iter().cloned().collect()),
                match_expressions: Some(exprs.iter().map(|(key, op, values)| LabelSelectorRequirement {
                    key: key.clone(),
                    operator: ops[usize::from(*op)].to_string(),
                    values: (*op < 2).then(|| values.clone()),
                }).collect()),
            };
            // matchLabels is a map: a later duplicate key wins, as in the reference's input.
            let dedup: Vec<(String, String)> = sel.match_labels.iter().flatten()
                .map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(matches(&sel, &pod_labels), reference(&dedup, &exprs, &pod_labels));
            prop_assert!(validate(&sel).is_ok());
        }
    }

    #[test]
    fn parses_the_query_syntax() {
        let sel = parse("app=web, tier in (a, b),!debug,env!=prod,track").unwrap();
        assert!(matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "b"), ("track", "x")])
        ));
        assert!(!matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "c"), ("track", "x")])
        ));
        assert!(!matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a"), ("track", "x"), ("debug", "")])
        ));
        assert!(!matches(
            &sel,
            &labels(&[
                ("app", "web"),
                ("tier", "a"),
                ("track", "x"),
                ("env", "prod")
            ])
        ));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "a")])));
        let notin = parse("tier notin (a)").unwrap();
        assert!(matches(&notin, &labels(&[])));
        assert!(matches(&parse("").unwrap(), &labels(&[("x", "y")])));
        assert!(parse("app in (a").is_err());
        assert!(parse("app in ()").is_err());
        assert!(parse("a b").is_err());
        assert!(parse("bad key!=x").is_err());
        assert_eq!(format(&parse("app==web").unwrap()), "app in (web)");
    }
}
