//! Cell formats shared by kube-apiserver's printers: ages (`duration.HumanDuration`), label maps
//! and selectors as kubectl writes them, `a,b,c + N more...` lists and container summaries.

use k8s_openapi::jiff::Timestamp;
use weft_model::names::{check_label_key, check_label_value};

use super::json::Json;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// `duration.HumanDuration`: about two significant units (`45s`, `5m12s`, `3h4m`, `3d4h`, `2y5d`).
/// Up to a second in the future reads `0s` (clock skew between writers); further is `<invalid>`.
pub(super) fn human_duration(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// The printers' `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is unset.
pub(super) fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    match time {
        Some(time) => human_duration(now.as_nanosecond() - time.as_nanosecond()),
        None => "<unknown>".to_string(),
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted as whole strings (so `a.b=1` sorts before `a=2`, as
/// in Go), or `<none>`.
pub(super) fn label_map(map: Json) -> String {
    let mut pairs: Vec<String> = map
        .entries()
        .map(|(k, v)| format!("{k}={}", v.str()))
        .collect();
    pairs.sort();
    or_none(pairs.join(","))
}

/// Why `metav1.LabelSelectorAsSelector` refuses a selector.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InvalidSelector;

/// `metav1.LabelSelectorAsSelector(s).String()`: requirements sorted by key, values of `in` and
/// `notin` sorted; empty for an unset or match-everything selector.
pub(super) fn label_selector(selector: Json) -> Result<String, InvalidSelector> {
    let mut requirements: Vec<(&str, String)> = Vec::new();
    for (key, value) in selector.at("matchLabels").entries() {
        let value = value.str();
        if check_label_key(key).is_err() || check_label_value(value).is_err() {
            return Err(InvalidSelector);
        }
        requirements.push((key, format!("{key}={value}")));
    }
    for expression in selector.at("matchExpressions").items() {
        let key = expression.at("key").str();
        let mut values: Vec<&str> = expression.at("values").items().map(Json::str).collect();
        if check_label_key(key).is_err() || values.iter().any(|v| check_label_value(v).is_err()) {
            return Err(InvalidSelector);
        }
        values.sort_unstable();
        let text = match (expression.at("operator").str(), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        requirements.push((key, text));
    }
    // Stable, so a key named both in matchLabels and in an expression keeps the order Go's
    // (unstable, but in practice insertion-ordered for two elements) sort gives.
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`: the selector, `<none>` when it selects everything or nothing,
/// `<error>` when it is invalid.
pub(super) fn format_label_selector(selector: Json) -> String {
    match label_selector(selector) {
        Ok(text) => or_none(text),
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// The printers' `listWithMoreString`: the first `max` entries, then ` + N more...`, or
/// `<unset>` for none.
pub(super) fn list_with_more(entries: impl Iterator<Item = String>, max: usize) -> String {
    let mut shown = Vec::with_capacity(max);
    let mut count = 0;
    for entry in entries {
        if shown.len() < max {
            shown.push(entry);
        }
        count += 1;
    }
    let list = shown.join(",");
    if count > max {
        format!("{list} + {} more...", count - max)
    } else if list.is_empty() {
        "<unset>".to_string()
    } else {
        list
    }
}

/// `layoutContainerCells`: the containers' names and their images, each comma-separated.
pub(super) fn containers(pod_spec: Json) -> (String, String) {
    let containers = pod_spec.at("containers");
    let names: Vec<&str> = containers.items().map(|c| c.at("name").str()).collect();
    let images: Vec<&str> = containers.items().map(|c| c.at("image").str()).collect();
    (names.join(","), images.join(","))
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The text, or `<none>` when it is empty.
pub(super) fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ago(seconds: i128) -> String {
        human_duration(seconds * NANOS_PER_SECOND)
    }

    #[test]
    fn human_durations_like_kubectl() {
        let minute = 60;
        let hour = 60 * minute;
        let day = 24 * hour;
        let year = 365 * day;
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (2 * minute, "2m"),
            (5 * minute + 12, "5m12s"),
            (9 * minute + 59, "9m59s"),
            (10 * minute + 30, "10m"),
            (179 * minute, "179m"),
            (3 * hour, "3h"),
            (3 * hour + 4 * minute, "3h4m"),
            (7 * hour + 59 * minute, "7h59m"),
            (8 * hour + 30 * minute, "8h"),
            (47 * hour, "47h"),
            (2 * day, "2d"),
            (3 * day + 4 * hour, "3d4h"),
            (7 * day + 23 * hour, "7d23h"),
            (8 * day + 5 * hour, "8d"),
            (729 * day, "729d"),
            (2 * year, "2y"),
            (2 * year + 5 * day, "2y5d"),
            (8 * year + 5 * day, "8y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(ago(seconds), want, "{seconds}s");
        }
        // Sub-second precision truncates toward zero like Go's int(d.Seconds()).
        assert_eq!(human_duration(-1_500_000_000), "0s");
        assert_eq!(human_duration(1_999_999_999), "1s");
    }

    #[test]
    fn unset_times_are_unknown() {
        assert_eq!(since(None, Timestamp::UNIX_EPOCH), "<unknown>");
    }

    #[test]
    fn label_maps_sort_whole_pairs() {
        assert_eq!(label_map(Json::new(&json!({}))), "<none>");
        assert_eq!(
            label_map(Json::new(&json!({"a": "2", "a.b": "1", "app": "web"}))),
            "a.b=1,a=2,app=web"
        );
    }

    #[test]
    fn selectors_sort_by_key_and_values() {
        let selector = json!({
            "matchLabels": {"tier": "db", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "b", "operator": "Exists", "values": []}
            ]
        });
        assert_eq!(
            label_selector(Json::new(&selector)),
            Ok("app=web,b,!canary,env in (dev,prod),tier=db,zone notin (b)".to_string())
        );
        assert_eq!(format_label_selector(Json::new(&json!({}))), "<none>");
        assert_eq!(format_label_selector(Json::new(&Value::Null)), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Json::new(&bad)), "<error>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(format_label_selector(Json::new(&bad)), "<error>");
        let bad = json!({"matchLabels": {"Bad_Prefix/x": "1"}});
        assert_eq!(format_label_selector(Json::new(&bad)), "<error>");
        let good = json!({"matchLabels": {"app.kubernetes.io/name": ""}});
        assert_eq!(
            format_label_selector(Json::new(&good)),
            "app.kubernetes.io/name="
        );
    }

    #[test]
    fn lists_say_how_many_more() {
        let list = |n: usize| list_with_more((1..=n).map(|i| i.to_string()), 3);
        assert_eq!(list(0), "<unset>");
        assert_eq!(list(3), "1,2,3");
        assert_eq!(list(5), "1,2,3 + 2 more...");
    }

    #[test]
    fn host_ports_bracket_ipv6() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
