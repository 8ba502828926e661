//! JSON patch (RFC 6902): a list of operations applied in order, all or nothing.

use crate::error::{JsonPatchFailure, PatchError};
use crate::pointer::Pointer;
use crate::value::{json_eq, kind_name, remove_member};
use serde_json::{Map, Value};

/// kube-apiserver refuses longer JSON patches (with 413) rather than spend its time on them.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON patch to `doc`. Errors name the operation's index and path.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = patch.as_array().ok_or(PatchError::JsonPatchNotAList {
        found: kind_name(patch),
    })?;
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: operations.len(),
            max: MAX_JSON_PATCH_OPERATIONS,
        });
    }
    let mut doc = doc.clone();
    for (index, raw) in operations.iter().enumerate() {
        let operation = Operation::parse(raw)
            .map_err(|problem| PatchError::MalformedOperation { index, problem })?;
        operation
            .apply(&mut doc)
            .map_err(|failure| PatchError::OperationFailed {
                index,
                op: operation.name(),
                path: operation.path().text(),
                failure,
            })?;
    }
    Ok(doc)
}

enum Operation<'p> {
    Add { path: Pointer, value: &'p Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: &'p Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: &'p Value },
}

impl<'p> Operation<'p> {
    fn parse(raw: &'p Value) -> Result<Operation<'p>, String> {
        let Value::Object(fields) = raw else {
            return Err(format!("must be an object, not {}", kind_name(raw)));
        };
        let op = match fields.get("op") {
            Some(Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err(format!("\"op\" must be a string, not {}", kind_name(other)))
            }
            None => return Err("has no \"op\"".into()),
        };
        let path = pointer(fields, "path")?;
        Ok(match op {
            "add" => Operation::Add {
                path,
                value: member(fields, "value")?,
            },
            "remove" => Operation::Remove { path },
            "replace" => Operation::Replace {
                path,
                value: member(fields, "value")?,
            },
            "move" => Operation::Move {
                from: pointer(fields, "from")?,
                path,
            },
            "copy" => Operation::Copy {
                from: pointer(fields, "from")?,
                path,
            },
            "test" => Operation::Test {
                path,
                value: member(fields, "value")?,
            },
            other => {
                return Err(format!(
                    "unknown op {other:?} (expected add, remove, replace, move, copy or test)"
                ))
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Operation::Add { .. } => "add",
            Operation::Remove { .. } => "remove",
            Operation::Replace { .. } => "replace",
            Operation::Move { .. } => "move",
            Operation::Copy { .. } => "copy",
            Operation::Test { .. } => "test",
        }
    }

    fn path(&self) -> &Pointer {
        match self {
            Operation::Add { path, .. }
            | Operation::Remove { path }
            | Operation::Replace { path, .. }
            | Operation::Move { path, .. }
            | Operation::Copy { path, .. }
            | Operation::Test { path, .. } => path,
        }
    }

    fn apply(&self, doc: &mut Value) -> Result<(), JsonPatchFailure> {
        match self {
            Operation::Add { path, value } => add(doc, path, (*value).clone()),
            Operation::Remove { path } => remove(doc, path).map(drop),
            Operation::Replace { path, value } => {
                *path.resolve_mut(doc, path.tokens().len())? = (*value).clone();
                Ok(())
            }
            Operation::Move { from, path } => {
                if from == path {
                    return from.resolve(doc).map(drop);
                }
                if path.is_inside(from) {
                    return Err(JsonPatchFailure::MoveIntoItself { from: from.text() });
                }
                let value = remove(doc, from)?;
                add(doc, path, value)
            }
            Operation::Copy { from, path } => {
                let value = from.resolve(doc)?.clone();
                add(doc, path, value)
            }
            Operation::Test { path, value } => {
                if json_eq(path.resolve(doc)?, value) {
                    Ok(())
                } else {
                    Err(JsonPatchFailure::TestMismatch)
                }
            }
        }
    }
}

fn pointer(fields: &Map<String, Value>, name: &str) -> Result<Pointer, String> {
    match fields.get(name) {
        Some(Value::String(text)) => Pointer::parse(text).map_err(|e| format!("\"{name}\": {e}")),
        Some(other) => Err(format!(
            "\"{name}\" must be a string, not {}",
            kind_name(other)
        )),
        None => Err(format!("has no \"{name}\"")),
    }
}

fn member<'p>(fields: &'p Map<String, Value>, name: &str) -> Result<&'p Value, String> {
    fields.get(name).ok_or_else(|| format!("has no \"{name}\""))
}

/// RFC 6902 add: sets an object member (replacing it if present), or inserts into a list at
/// an index up to its length, or appends with `-`; the root is replaced.
fn add(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), JsonPatchFailure> {
    let Some((last, parent_len)) = path.tokens().split_last().map(|(l, p)| (l, p.len())) else {
        *doc = value;
        return Ok(());
    };
    match path.resolve_mut(doc, parent_len)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(list) if last == "-" => list.push(value),
        Value::Array(list) => {
            let index = path.index_token(parent_len)?;
            if index > list.len() {
                return Err(JsonPatchFailure::OutOfRange {
                    at: path.prefix(parent_len),
                    index,
                    len: list.len(),
                });
            }
            list.insert(index, value);
        }
        other => return Err(path.not_a_container(parent_len, other)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &Pointer) -> Result<Value, JsonPatchFailure> {
    let Some((last, parent_len)) = path.tokens().split_last().map(|(l, p)| (l, p.len())) else {
        return Err(JsonPatchFailure::RemoveRoot);
    };
    match path.resolve_mut(doc, parent_len)? {
        Value::Object(map) => {
            remove_member(map, last).ok_or_else(|| JsonPatchFailure::Missing(path.text()))
        }
        Value::Array(list) => {
            let index = path.element_index(parent_len, list.len())?;
            Ok(list.remove(index))
        }
        other => Err(path.not_a_container(parent_len, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: Value, patch: Value) -> Result<Value, PatchError> {
        json_patch(&doc, &patch)
    }

    fn failure(doc: Value, patch: Value) -> (usize, JsonPatchFailure) {
        match apply(doc, patch) {
            Err(PatchError::OperationFailed { index, failure, .. }) => (index, failure),
            other => panic!("expected an operation failure, got {other:?}"),
        }
    }

    #[test]
    fn add_sets_members_inserts_and_appends() {
        let doc = json!({"spec": {"replicas": 1, "ports": [80, 443]}});
        let patch = json!([
            {"op": "add", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/paused", "value": false},
            {"op": "add", "path": "/spec/ports/1", "value": 8080},
            {"op": "add", "path": "/spec/ports/-", "value": 9090},
            {"op": "add", "path": "/spec/ports/4", "value": 1},
            {"op": "add", "path": "/metadata", "value": {"labels": {"a/b": "c"}}},
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
        ]);
        assert_eq!(
            apply(doc, patch).unwrap(),
            json!({
                "spec": {"replicas": 3, "paused": false, "ports": [80, 8080, 443, 9090, 1]},
                "metadata": {"labels": {"a/b": "c", "x/y": "z"}},
            })
        );
    }

    #[test]
    fn add_at_the_root_replaces_the_document() {
        assert_eq!(
            apply(
                json!({"a": 1}),
                json!([{"op": "add", "path": "", "value": [1]}])
            )
            .unwrap(),
            json!([1])
        );
    }

    #[test]
    fn add_needs_an_existing_parent_and_an_index_up_to_the_length() {
        let doc = json!({"spec": {"ports": [80]}});
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "add", "path": "/spec/x/y", "value": 1}])
            ),
            (0, JsonPatchFailure::Missing("/spec/x".into()))
        );
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "add", "path": "/spec/ports/2", "value": 1}])
            ),
            (
                0,
                JsonPatchFailure::OutOfRange {
                    at: "/spec/ports".into(),
                    index: 2,
                    len: 1
                }
            )
        );
        assert_eq!(
            failure(
                doc,
                json!([{"op": "add", "path": "/spec/ports/0/name", "value": 1}])
            ),
            (
                0,
                JsonPatchFailure::NotAContainer {
                    at: "/spec/ports/0".into(),
                    found: "a number"
                }
            )
        );
    }

    #[test]
    fn remove_deletes_members_and_elements_that_exist() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "l": [1, 2, 3]});
        let patch = json!([
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "remove", "path": "/l/1"},
        ]);
        assert_eq!(
            apply(doc.clone(), patch).unwrap(),
            json!({"metadata": {"labels": {"b": "2"}}, "l": [1, 3]})
        );
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "remove", "path": "/metadata/labels/zz"}])
            ),
            (0, JsonPatchFailure::Missing("/metadata/labels/zz".into()))
        );
        assert_eq!(
            failure(doc.clone(), json!([{"op": "remove", "path": "/l/-"}])),
            (
                0,
                JsonPatchFailure::BadIndex {
                    at: "/l".into(),
                    token: "-".into()
                }
            )
        );
        assert_eq!(
            failure(doc, json!([{"op": "remove", "path": ""}])),
            (0, JsonPatchFailure::RemoveRoot)
        );
    }

    #[test]
    fn replace_needs_the_target_to_exist() {
        let doc = json!({"spec": {"replicas": 1}, "l": [1]});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 5},
            {"op": "replace", "path": "/l/0", "value": "x"},
        ]);
        assert_eq!(
            apply(doc.clone(), patch).unwrap(),
            json!({"spec": {"replicas": 5}, "l": ["x"]})
        );
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "replace", "path": "/spec/paused", "value": true}])
            ),
            (0, JsonPatchFailure::Missing("/spec/paused".into()))
        );
        assert_eq!(
            apply(doc, json!([{"op": "replace", "path": "", "value": 7}])).unwrap(),
            json!(7)
        );
    }

    #[test]
    fn move_and_copy_take_from_one_place_to_another() {
        let doc = json!({"a": {"x": 1}, "b": {}, "l": [1, 2, 3]});
        let patch = json!([
            {"op": "move", "from": "/a/x", "path": "/b/y"},
            {"op": "copy", "from": "/b", "path": "/c"},
            {"op": "move", "from": "/l/0", "path": "/l/-"},
            {"op": "move", "from": "/a", "path": "/a"},
        ]);
        assert_eq!(
            apply(doc.clone(), patch).unwrap(),
            json!({"a": {}, "b": {"y": 1}, "c": {"y": 1}, "l": [2, 3, 1]})
        );
        assert_eq!(
            failure(
                doc.clone(),
                json!([{"op": "move", "from": "/a", "path": "/a/x/deeper"}])
            ),
            (0, JsonPatchFailure::MoveIntoItself { from: "/a".into() })
        );
        assert_eq!(
            failure(doc, json!([{"op": "copy", "from": "/nope", "path": "/c"}])),
            (0, JsonPatchFailure::Missing("/nope".into()))
        );
    }

    #[test]
    fn test_compares_values_numerically_and_fails_the_whole_patch() {
        let doc = json!({"spec": {"replicas": 2}});
        let ok = json!([
            {"op": "test", "path": "/spec/replicas", "value": 2.0},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
        ]);
        assert_eq!(
            apply(doc.clone(), ok).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        let stale = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "test", "path": "/spec/replicas", "value": 2},
        ]);
        let err = apply(doc.clone(), stale).unwrap_err();
        assert_eq!(
            err.to_string(),
            "JSON patch operation 1 (test /spec/replicas): the value there differs from the one the test expects"
        );
        assert_eq!(err.status_code(), 422);
        assert_eq!(
            failure(
                doc,
                json!([{"op": "test", "path": "/spec/paused", "value": null}])
            ),
            (0, JsonPatchFailure::Missing("/spec/paused".into()))
        );
    }

    #[test]
    fn malformed_operations_name_their_index() {
        let doc = json!({});
        let cases = [
            (json!([{"path": "/a"}]), "JSON patch operation 0: has no \"op\""),
            (json!([{"op": "add", "path": "/a", "value": 1}, {"op": "frob", "path": "/a"}]), "JSON patch operation 1: unknown op \"frob\" (expected add, remove, replace, move, copy or test)"),
            (json!([{"op": "add", "path": "a", "value": 1}]), "JSON patch operation 0: \"path\": \"a\" is not a JSON pointer: it must be empty or start with \"/\""),
            (json!([{"op": "add", "path": "/a"}]), "JSON patch operation 0: has no \"value\""),
            (json!([{"op": "move", "path": "/a"}]), "JSON patch operation 0: has no \"from\""),
            (json!([{"op": 1, "path": "/a"}]), "JSON patch operation 0: \"op\" must be a string, not a number"),
            (json!(["add"]), "JSON patch operation 0: must be an object, not a string"),
        ];
        for (patch, message) in cases {
            assert_eq!(apply(doc.clone(), patch).unwrap_err().to_string(), message);
        }
        let err = apply(doc, json!({"op": "add"})).unwrap_err();
        assert_eq!(err, PatchError::JsonPatchNotAList { found: "an object" });
        assert_eq!(err.status_code(), 400);
    }

    #[test]
    fn a_failed_operation_leaves_the_caller_document_untouched() {
        let doc = json!({"a": 1});
        let patch =
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zz"}]);
        assert!(apply(doc.clone(), patch).is_err());
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn too_many_operations_are_refused_before_any_runs() {
        let op = json!({"op": "test", "path": "", "value": {}});
        let patch = Value::Array(vec![op; MAX_JSON_PATCH_OPERATIONS + 1]);
        let err = apply(json!({}), patch).unwrap_err();
        assert_eq!(
            err,
            PatchError::TooManyOperations {
                count: 10_001,
                max: 10_000
            }
        );
        assert_eq!(err.status_code(), 413);
    }
}
