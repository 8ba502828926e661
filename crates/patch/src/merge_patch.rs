//! JSON merge patch (RFC 7386): objects merge member by member, `null` deletes, anything else
//! (lists included) replaces.

use crate::error::PatchError;
use crate::value::remove_member;
use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch to `doc`. A `null` patch is refused as kube-apiserver
/// refuses it (400); any other non-object patch replaces the document.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if patch.is_null() {
        return Err(PatchError::NullMergePatch);
    }
    Ok(merge(doc.clone(), patch))
}

fn merge(target: Value, patch: &Value) -> Value {
    let Value::Object(members) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (key, value) in members {
        if value.is_null() {
            remove_member(&mut target, key);
        } else if let Some(slot) = target.get_mut(key) {
            // In place, so the member keeps its position when serde_json preserves order.
            *slot = merge(slot.take(), value);
        } else {
            target.insert(key.clone(), merge(Value::Null, value));
        }
    }
    Value::Object(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7386, appendix A.
    #[test]
    fn rfc_7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, expected) in cases {
            assert_eq!(
                merge_patch(&doc, &patch).unwrap(),
                expected,
                "{doc} + {patch}"
            );
        }
    }

    #[test]
    fn kubectl_scale_and_label_patches() {
        let doc = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}}, "spec": {"replicas": 1}});
        let scaled = merge_patch(&doc, &json!({"spec": {"replicas": 3}})).unwrap();
        assert_eq!(scaled["spec"]["replicas"], json!(3));
        let relabeled = merge_patch(
            &doc,
            &json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
        )
        .unwrap();
        assert_eq!(
            relabeled["metadata"]["labels"],
            json!({"app": "web", "env": "prod"})
        );
        assert_eq!(relabeled["metadata"]["name"], json!("web"));
    }

    #[test]
    fn a_null_patch_is_a_bad_request() {
        let err = merge_patch(&json!({}), &Value::Null).unwrap_err();
        assert_eq!(err, PatchError::NullMergePatch);
        assert_eq!(err.status_code(), 400);
    }
}
