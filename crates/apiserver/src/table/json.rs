//! A read-only view of an object's JSON with Go's zero values: a missing or mistyped field reads
//! as `""`, `0`, `false` or an empty list, exactly as kube-apiserver's printers see an unset field
//! of a Go struct. Reading the stored JSON this way (instead of deserializing into k8s-openapi
//! types) means one object lacking a field that k8s-openapi calls required still gets its row, with
//! the same cells kube-apiserver would print for it.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
pub(super) struct Json<'a>(Option<&'a Value>);

impl<'a> Json<'a> {
    pub(super) fn new(value: &'a Value) -> Self {
        Json(Some(value))
    }

    /// The member `key` of an object (absent for anything else).
    pub(super) fn at(self, key: &str) -> Json<'a> {
        Json(self.0.and_then(|v| v.get(key)).filter(|v| !v.is_null()))
    }

    /// The member at a path of keys.
    pub(super) fn path(self, keys: &[&str]) -> Json<'a> {
        keys.iter().fold(self, |json, key| json.at(key))
    }

    /// Whether the field is set (present and not null), like a non-nil Go pointer.
    pub(super) fn is_set(self) -> bool {
        self.0.is_some()
    }

    pub(super) fn str(self) -> &'a str {
        self.0.and_then(Value::as_str).unwrap_or("")
    }

    /// The string, or `None` when unset or empty (Go's `len(s) == 0` checks).
    pub(super) fn non_empty(self) -> Option<&'a str> {
        Some(self.str()).filter(|s| !s.is_empty())
    }

    pub(super) fn int(self) -> i64 {
        self.0.and_then(Value::as_i64).unwrap_or(0)
    }

    pub(super) fn opt_int(self) -> Option<i64> {
        self.0.and_then(Value::as_i64)
    }

    pub(super) fn bool(self) -> bool {
        self.0.and_then(Value::as_bool).unwrap_or(false)
    }

    /// The elements of an array (none for anything else).
    pub(super) fn items(self) -> impl DoubleEndedIterator<Item = Json<'a>> + ExactSizeIterator {
        self.0
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(Json::new)
    }

    /// The members of an object, in the order the JSON map keeps them.
    pub(super) fn entries(self) -> impl Iterator<Item = (&'a str, Json<'a>)> {
        self.0
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), Json::new(v)))
    }

    /// How many elements an array, or members an object, has (Go's `len` of a slice or map).
    pub(super) fn len(self) -> usize {
        match self.0 {
            Some(Value::Array(items)) => items.len(),
            Some(Value::Object(members)) => members.len(),
            _ => 0,
        }
    }

    /// An RFC 3339 timestamp (`metav1.Time`, `metav1.MicroTime`); `None` when unset or unreadable,
    /// which the printers treat as Go's zero time.
    pub(super) fn time(self) -> Option<Timestamp> {
        self.non_empty()?.parse().ok()
    }

    /// The underlying value, if set.
    pub(super) fn value(self) -> Option<&'a Value> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_read_as_go_zero_values() {
        let v = json!({"a": {"b": "x", "n": 3, "t": true, "l": [1, 2], "z": null}});
        let j = Json::new(&v);
        assert_eq!(j.path(&["a", "b"]).str(), "x");
        assert_eq!(j.path(&["a", "n"]).int(), 3);
        assert!(j.path(&["a", "t"]).bool());
        assert_eq!(j.path(&["a", "l"]).items().count(), 2);
        assert_eq!(j.path(&["a", "l"]).len(), 2);
        assert!(!j.path(&["a", "z"]).is_set());
        assert_eq!(j.path(&["a", "missing", "deeper"]).str(), "");
        assert_eq!(j.path(&["a", "b"]).int(), 0);
        assert_eq!(j.path(&["a", "n"]).items().count(), 0);
        assert_eq!(j.at("a").non_empty(), None);
    }

    #[test]
    fn times_parse_rfc3339_and_unreadable_ones_are_zero() {
        let v = json!({"t": "2025-06-01T12:00:00Z", "m": "2025-06-01T12:00:00.123456Z", "bad": "yesterday"});
        let j = Json::new(&v);
        assert_eq!(j.at("t").time().map(|t| t.as_second()), Some(1_748_779_200));
        assert!(j.at("m").time().is_some());
        assert_eq!(j.at("bad").time(), None);
        assert_eq!(j.at("missing").time(), None);
    }
}
