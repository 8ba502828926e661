//! Comparing and naming JSON values the way the patch formats need.

use serde_json::{Map, Number, Value};

/// JSON equality in which `1` and `1.0` are the same number, as they are for Go's decoder
/// (everything a number, compared as such) that kube-apiserver's patch code relies on.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn numbers_eq(x: &Number, y: &Number) -> bool {
    match (integer(x), integer(y)) {
        (Some(x), Some(y)) => x == y,
        _ => x.as_f64() == y.as_f64(),
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Removes a member keeping the others in order. `Map::remove` swaps the last member into
/// the hole when a crate in the build turns on serde_json's `preserve_order`, and
/// `shift_remove` exists only with that feature; objects should keep the order clients sent.
pub(crate) fn remove_member(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    if !map.contains_key(key) {
        return None;
    }
    let mut removed = None;
    map.retain(|name, value| {
        if name == key {
            removed = Some(value.take());
            false
        } else {
            true
        }
    });
    removed
}

/// "an object", "a list"…: for messages saying what was found where something else was due.
pub(crate) fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_floats_of_one_value_are_equal() {
        assert!(json_eq(&json!(80), &json!(80.0)));
        assert!(json_eq(&json!({"a": [1, 2.5]}), &json!({"a": [1.0, 2.5]})));
        assert!(!json_eq(&json!(80), &json!(81)));
        assert!(!json_eq(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn removing_a_member_returns_it_and_keeps_the_rest() {
        let mut map = json!({"a": 1, "b": 2, "c": 3})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(remove_member(&mut map, "a"), Some(json!(1)));
        assert_eq!(remove_member(&mut map, "zz"), None);
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn objects_compare_by_members_not_order() {
        assert!(json_eq(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!({"a": 1, "c": 2}), &json!({"a": 1, "b": 2})));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }
}
