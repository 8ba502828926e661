//! Each rule and directive on its own; several cases are apimachinery's own test cases
//! (`patch_test.go`), on a schema shaped like its `MergeItem`.

use super::*;
use serde_json::json;

/// apimachinery's test struct: `mergingList` by `name`, `mergingIntList` as a set,
/// `replacingItem` replaced, `retainKeysMap`, the rest without strategy.
fn schema() -> Schema {
    let mut schema = Schema::empty();
    for prefix in [
        "",
        "mergingList.",
        "retainKeysMap.",
        "retainKeysMergingList.",
    ] {
        schema = schema
            .with(
                &format!("{prefix}mergingList"),
                FieldStrategy::merge_by("name"),
            )
            .with(&format!("{prefix}mergingIntList"), FieldStrategy::MergeSet);
    }
    schema
        .with("replacingItem", FieldStrategy::Replace)
        .with("retainKeysMap", FieldStrategy::RetainKeys)
        .with(
            "retainKeysMergingList",
            FieldStrategy::MergeByKey {
                key: "name".into(),
                retain_keys: true,
            },
        )
}

fn apply(doc: Value, patch: Value) -> Value {
    match strategic_merge_patch(&doc, &patch, &schema()) {
        Ok(result) => result,
        Err(e) => panic!("{patch} on {doc}: {e}"),
    }
}

fn problem(doc: Value, patch: Value) -> (String, StrategicProblem) {
    match strategic_merge_patch(&doc, &patch, &schema()) {
        Err(PatchError::Strategic { path, problem }) => (path, problem),
        other => panic!("expected a strategic merge error, got {other:?}"),
    }
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let doc = json!({"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": "g"});
    let patch = json!({"a": {"b": 5, "c": {"e": null, "x": true}}, "f": null, "h": [1]});
    assert_eq!(
        apply(doc, patch),
        json!({"a": {"b": 5, "c": {"d": 2, "x": true}}, "h": [1]})
    );
}

#[test]
fn nulls_where_nothing_was_are_dropped_not_stored() {
    let patch = json!({"gone": null, "new": {"a": 1, "b": null, "c": {"d": null}}});
    assert_eq!(
        apply(json!({"x": 1}), patch),
        json!({"x": 1, "new": {"a": 1, "c": {}}})
    );
}

#[test]
fn lists_without_a_strategy_are_replaced_whole() {
    let doc = json!({"nonMergingList": [{"name": "a", "value": 1}, {"name": "b"}], "nonMergingIntList": [1, 2]});
    let patch = json!({"nonMergingList": [{"name": "b", "other": null}], "nonMergingIntList": [3]});
    assert_eq!(
        apply(doc, patch),
        json!({"nonMergingList": [{"name": "b"}], "nonMergingIntList": [3]})
    );
}

#[test]
fn a_value_of_another_type_replaces() {
    let doc = json!({"mergingList": [{"name": "a"}], "simpleMap": {"k": "v"}, "s": "x"});
    let patch =
        json!({"mergingList": {"name": "a"}, "simpleMap": "flat", "s": {"k": null, "v": 1}});
    assert_eq!(
        apply(doc, patch),
        json!({"mergingList": {"name": "a"}, "simpleMap": "flat", "s": {"v": 1}})
    );
}

#[test]
fn merging_lists_merge_matched_elements_and_put_new_ones_by_the_patch() {
    let doc = json!({"mergingList": [{"name": "a", "value": 1}, {"name": "b", "value": 2}]});
    let patch = json!({"mergingList": [{"name": "b", "value": null, "other": "x"}, {"name": "c"}]});
    // apimachinery places patch elements the object lacked before the untouched ones.
    assert_eq!(
        apply(doc.clone(), patch),
        json!({"mergingList": [{"name": "a", "value": 1}, {"name": "b", "other": "x"}, {"name": "c"}]})
    );
    assert_eq!(
        apply(doc, json!({"mergingList": [{"name": "c"}]})),
        json!({"mergingList": [{"name": "c"}, {"name": "a", "value": 1}, {"name": "b", "value": 2}]})
    );
}

#[test]
fn merging_lists_keep_the_patch_order_among_the_elements_it_names() {
    let doc = json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]});
    let all = json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]});
    assert_eq!(
        apply(doc.clone(), all),
        json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}]})
    );
    let some = json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]});
    assert_eq!(
        apply(doc, some),
        json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]})
    );
}

#[test]
fn merge_keys_match_numerically() {
    let doc = json!({"mergingList": [{"name": 80, "value": "a"}]});
    assert_eq!(
        apply(doc, json!({"mergingList": [{"name": 80.0, "value": "b"}]})),
        json!({"mergingList": [{"name": 80.0, "value": "b"}]})
    );
}

#[test]
fn primitive_merge_lists_are_sets_in_patch_order() {
    let doc = json!({"mergingIntList": [1, 2]});
    assert_eq!(
        apply(doc, json!({"mergingIntList": [2, 3]})),
        json!({"mergingIntList": [1, 2, 3]})
    );
    let doc = json!({"mergingIntList": [1, 2, 3]});
    assert_eq!(
        apply(doc.clone(), json!({"mergingIntList": [3, 1, 2]})),
        json!({"mergingIntList": [3, 1, 2]})
    );
    assert_eq!(
        apply(doc, json!({"mergingIntList": [3, 1]})),
        json!({"mergingIntList": [2, 3, 1]})
    );
}

#[test]
fn an_empty_patch_list_leaves_a_merging_list_alone() {
    let doc = json!({"mergingList": [{"name": "a"}], "mergingIntList": [1]});
    assert_eq!(
        apply(
            doc.clone(),
            json!({"mergingList": [], "mergingIntList": []})
        ),
        doc
    );
    assert_eq!(
        apply(json!({"mergingList": []}), json!({"mergingList": []})),
        json!({"mergingList": []})
    );
}

#[test]
fn replace_strategy_replaces_the_object() {
    let doc = json!({"replacingItem": {"a": 1, "b": 2}});
    assert_eq!(
        apply(doc, json!({"replacingItem": {"c": 3, "d": null}})),
        json!({"replacingItem": {"c": 3}})
    );
}

#[test]
fn patch_replace_in_a_map_replaces_it() {
    let doc = json!({"name": 1, "value": 1, "simpleMap": {"a": "b"}});
    assert_eq!(apply(doc.clone(), json!({"$patch": "replace"})), json!({}));
    assert_eq!(
        apply(doc.clone(), json!({"other": "a", "$patch": "replace"})),
        json!({"other": "a"})
    );
    assert_eq!(
        apply(doc, json!({"simpleMap": {"$patch": "replace", "c": "d"}})),
        json!({"name": 1, "value": 1, "simpleMap": {"c": "d"}})
    );
}

#[test]
fn patch_delete_in_a_map_empties_it() {
    let doc = json!({"simpleMap": {"key1": 1, "key2": 1}, "x": 1});
    assert_eq!(
        apply(doc, json!({"simpleMap": {"$patch": "delete"}})),
        json!({"simpleMap": {}, "x": 1})
    );
}

#[test]
fn patch_merge_is_the_explicit_default() {
    let doc = json!({"simpleMap": {"a": 1}, "mergingList": [{"name": "a", "value": 1}]});
    let patch = json!({"$patch": "merge", "simpleMap": {"$patch": "merge", "b": 2},
                       "mergingList": [{"$patch": "merge", "name": "a", "other": 2}]});
    assert_eq!(
        apply(doc, patch),
        json!({"simpleMap": {"a": 1, "b": 2}, "mergingList": [{"name": "a", "value": 1, "other": 2}]})
    );
}

#[test]
fn patch_replace_as_a_list_element_replaces_the_list() {
    let doc = json!({"mergingList": [{"name": 1}, {"name": 2}]});
    assert_eq!(
        apply(doc.clone(), json!({"mergingList": [{"$patch": "replace"}]})),
        json!({"mergingList": []})
    );
    assert_eq!(
        apply(
            doc,
            json!({"mergingList": [{"name": 3, "value": null}, {"$patch": "replace"}]})
        ),
        json!({"mergingList": [{"name": 3}]})
    );
}

#[test]
fn patch_delete_as_a_list_element_deletes_every_element_with_that_key() {
    let doc = json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]});
    let patch = json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}, {"name": 4, "$patch": "delete"}]});
    assert_eq!(
        apply(doc, patch),
        json!({"mergingList": [{"name": 2, "value": "a"}]})
    );
}

#[test]
fn bad_patch_directives_say_where() {
    assert_eq!(
        problem(json!({}), json!({"simpleMap": {"$patch": "frob"}})),
        (
            "simpleMap.$patch".into(),
            StrategicProblem::BadPatchValue("\"frob\"".into())
        )
    );
    assert_eq!(
        problem(
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 1}, {"name": 2, "$patch": 7}]})
        ),
        (
            "mergingList[1].$patch".into(),
            StrategicProblem::BadPatchValue("7".into())
        )
    );
    assert_eq!(
        problem(
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "delete"}]})
        ),
        (
            "mergingList[0]".into(),
            StrategicProblem::MissingMergeKey("name".into())
        )
    );
}

#[test]
fn delete_from_primitive_list_removes_those_values() {
    let doc = json!({"mergingIntList": [1, 2, 3, 2], "other": 1});
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [2, 5]});
    assert_eq!(
        apply(doc.clone(), patch),
        json!({"mergingIntList": [1, 3], "other": 1})
    );
    // Deleting from a list the object lacks leaves it lacking it.
    assert_eq!(
        apply(
            json!({}),
            json!({"$deleteFromPrimitiveList/finalizers": ["a"]})
        ),
        json!({})
    );
    assert_eq!(
        problem(doc, json!({"$deleteFromPrimitiveList/mergingIntList": 2})),
        (
            "$deleteFromPrimitiveList/mergingIntList".into(),
            StrategicProblem::BadDirectiveValue {
                directive: "$deleteFromPrimitiveList/mergingIntList".into(),
                expected: "a list",
                found: "a number",
            }
        )
    );
}

#[test]
fn set_element_order_orders_named_elements_and_keeps_the_others_in_place() {
    let doc = json!({"mergingList": [{"name": 1}, {"name": 3}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
        "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
    });
    assert_eq!(
        apply(doc, patch),
        json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]})
    );

    let doc = json!({"mergingIntList": [1, 3]});
    assert_eq!(
        apply(doc, json!({"$setElementOrder/mergingIntList": [3, 2, 1]})),
        json!({"mergingIntList": [3, 1]})
    );

    // An element the order does not name goes before the first named element that stood
    // after it (apimachinery's best effort at "where it was").
    let doc = json!({"mergingList": [{"name": "a"}, {"name": "server"}, {"name": "b"}]});
    let patch = json!({"$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
                       "mergingList": [{"name": "c"}]});
    assert_eq!(
        apply(doc, patch),
        json!({"mergingList": [{"name": "server"}, {"name": "b"}, {"name": "a"}, {"name": "c"}]})
    );
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let doc = json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
        "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}],
    });
    let (path, found) = problem(doc.clone(), patch);
    assert_eq!(path, "mergingList");
    assert_eq!(found, StrategicProblem::OrderMismatch("mergingList".into()));
    assert!(found
        .to_string()
        .contains("does not follow $setElementOrder/mergingList"));

    let no_key = json!({"$setElementOrder/mergingList": [{"name": 1}, {"value": 2}]});
    assert_eq!(
        problem(doc.clone(), no_key),
        (
            "$setElementOrder/mergingList[1]".into(),
            StrategicProblem::MissingMergeKey("name".into())
        )
    );
    let not_a_list =
        json!({"$setElementOrder/mergingList": [{"name": 1}], "mergingList": {"name": 1}});
    assert_eq!(
        problem(doc, not_a_list),
        (
            "mergingList".into(),
            StrategicProblem::WrongType {
                expected: "a list",
                found: "an object"
            }
        )
    );
}

#[test]
fn retain_keys_clears_unlisted_members() {
    let doc = json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "b"}});
    let patch =
        json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "c", "other": null}});
    assert_eq!(
        apply(doc.clone(), patch),
        json!({"retainKeysMap": {"name": "foo", "value": "c"}})
    );
    // Without the directive a retainKeys field merges like any object.
    assert_eq!(
        apply(doc.clone(), json!({"retainKeysMap": {"value": null}})),
        json!({"retainKeysMap": {"name": "foo", "other": "b"}})
    );
    assert_eq!(apply(doc.clone(), json!({"retainKeysMap": {}})), doc);
    // In the elements of a merging list too.
    let doc = json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]});
    let patch = json!({"retainKeysMergingList": [{"$retainKeys": ["name", "other"], "name": "foo", "other": "y"}]});
    assert_eq!(
        apply(doc, patch),
        json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "other": "y"}]})
    );
}

#[test]
fn retain_keys_must_list_what_the_patch_sets() {
    let doc = json!({"retainKeysMap": {"name": "foo"}});
    let err = strategic_merge_patch(
        &doc,
        &json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "x"}}),
        &schema(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Strategic {
            path: "retainKeysMap.$retainKeys".into(),
            problem: StrategicProblem::NotRetained("value".into()),
        }
    );
    assert_eq!(err.status_code(), 400);
    assert_eq!(
        problem(
            doc.clone(),
            json!({"retainKeysMap": {"$retainKeys": "name"}})
        )
        .1,
        StrategicProblem::BadDirectiveValue {
            directive: "$retainKeys".into(),
            expected: "a list of field names",
            found: "a string",
        }
    );
    assert_eq!(
        problem(doc, json!({"retainKeysMap": {"$retainKeys": ["name", 3]}})).0,
        "retainKeysMap.$retainKeys[1]"
    );
}

#[test]
fn unknown_directives_are_refused_with_their_path() {
    assert_eq!(
        problem(
            json!({}),
            json!({"mergingList": [{"name": "a", "$frob": 1}]})
        ),
        (
            "mergingList[0].$frob".into(),
            StrategicProblem::UnknownDirective("$frob".into())
        )
    );
    assert_eq!(
        problem(json!({}), json!({"$setElementOrder": []})),
        (
            "$setElementOrder".into(),
            StrategicProblem::DirectiveWithoutField("$setElementOrder".into())
        )
    );
    assert_eq!(
        problem(json!({}), json!({"$setElementOrderly/x": []})).1,
        StrategicProblem::UnknownDirective("$setElementOrderly/x".into())
    );
}

#[test]
fn merging_needs_merge_keys_and_alike_elements() {
    let doc = json!({"mergingList": [{"name": "a"}]});
    assert_eq!(
        problem(
            doc.clone(),
            json!({"mergingList": [{"name": "b"}, {"value": 1}]})
        ),
        (
            "mergingList[1]".into(),
            StrategicProblem::MissingMergeKey("name".into())
        )
    );
    assert_eq!(
        problem(doc.clone(), json!({"mergingList": ["a"]})),
        (
            "mergingList".into(),
            StrategicProblem::MixedElements {
                first: "an object",
                other: "a string"
            }
        )
    );
    assert_eq!(
        problem(
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": [[2]]})
        )
        .1,
        StrategicProblem::ListOfLists
    );
    assert_eq!(
        problem(
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": [{"a": 1}]})
        )
        .1,
        StrategicProblem::MixedElements {
            first: "a number",
            other: "an object"
        }
    );
    assert_eq!(
        problem(json!({}), json!({"mergingIntList": [{"a": 1}]})).1,
        StrategicProblem::ObjectsInPrimitiveSet
    );
    // Stored elements without the key never match; they stay where they were.
    let doc = json!({"mergingList": [{"value": "keyless"}, {"name": "a"}]});
    assert_eq!(
        apply(doc, json!({"mergingList": [{"name": "a", "value": 1}]})),
        json!({"mergingList": [{"value": "keyless"}, {"name": "a", "value": 1}]})
    );
}

#[test]
fn only_objects_take_a_strategic_merge_patch() {
    let err = strategic_merge_patch(&json!({}), &json!([1]), &schema()).unwrap_err();
    assert_eq!(
        err,
        PatchError::StrategicPatchNotAnObject { found: "a list" }
    );
    assert_eq!(err.status_code(), 400);
    let err = strategic_merge_patch(&json!("x"), &json!({}), &schema()).unwrap_err();
    assert_eq!(err, PatchError::DocumentNotAnObject { found: "a string" });
}

#[test]
fn directives_in_values_the_object_lacked_are_applied_not_stored() {
    let patch = json!({"simpleMap": {"$patch": "delete"},
                       "mergingList": [{"name": "x", "$patch": "delete"}, {"name": "y", "z": null}],
                       "nonMergingList": [{"a": null, "b": 1}]});
    assert_eq!(
        apply(json!({}), patch),
        json!({"simpleMap": {}, "mergingList": [{"name": "y"}], "nonMergingList": [{"b": 1}]})
    );
}
