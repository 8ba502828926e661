//! Properties of the three patch formats over generated documents and patches.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use weft_patch::{
    json_patch, merge_patch, strategic_merge_patch, FieldStrategy, JsonPatchFailure, PatchError,
    Schema,
};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..300).prop_map(Value::from),
        (-2.0f64..2.0).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ]
}

fn object_of<S: Strategy<Value = Value>>(
    keys: &'static str,
    values: S,
) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(keys, values, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Any JSON, nulls included.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            object_of("[a-d]{1,2}", inner)
        ]
    })
}

fn any_object() -> impl Strategy<Value = Value> {
    object_of("[a-d]{1,2}", any_json())
}

/// JSON without nulls anywhere: what a merge patch can produce.
fn null_free() -> impl Strategy<Value = Value> {
    leaf()
        .prop_filter("no null", |v| !v.is_null())
        .prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                object_of("[a-d]{1,2}", inner)
            ]
        })
}

/// The simplest merge patch turning `a` into `b` (`b` without nulls).
fn merge_diff(a: &Value, b: &Value) -> Value {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return b.clone();
    };
    let mut patch = Map::new();
    for key in a.keys().filter(|k| !b.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, new) in b {
        match a.get(key) {
            Some(old @ Value::Object(_)) if new.is_object() => {
                patch.insert(key.clone(), merge_diff(old, new));
            }
            Some(old) if old == new => {}
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    Value::Object(patch)
}

/// A schema with strategies at the top level, so generated documents reach the list logic.
fn list_schema() -> Schema {
    Schema::empty()
        .with("a", FieldStrategy::merge_by("name"))
        .with("a.b", FieldStrategy::MergeSet)
        .with("b", FieldStrategy::MergeSet)
        .with("c", FieldStrategy::Replace)
        .with(
            "d",
            FieldStrategy::MergeByKey {
                key: "name".into(),
                retain_keys: true,
            },
        )
}

fn schemas() -> Vec<Schema> {
    vec![
        Schema::empty(),
        list_schema(),
        Schema::for_kind("apps/v1", "Deployment").unwrap(),
        Schema::for_kind("v1", "Pod").unwrap(),
    ]
}

/// Patch-like JSON whose keys are often directives and fields with strategies.
fn hostile_patch() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("$patch".to_string()),
        Just("$retainKeys".to_string()),
        Just("$setElementOrder/a".to_string()),
        Just("$setElementOrder/b".to_string()),
        Just("$setElementOrder/".to_string()),
        Just("$deleteFromPrimitiveList/b".to_string()),
        Just("$deleteFromPrimitiveList/a".to_string()),
        Just("$other".to_string()),
        Just("name".to_string()),
        Just("spec".to_string()),
        Just("containers".to_string()),
        "[a-d]".prop_map(String::from),
    ];
    let leaves = prop_oneof![
        leaf(),
        Just(json!("delete")),
        Just(json!("replace")),
        Just(json!("merge")),
        Just(json!(["a", "name"])),
        Just(json!([{"name": "a"}, {"name": 1}])),
    ];
    leaves.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Step {
    AddKey(String, i64),
    RemoveKey(String),
    ReplaceKey(String, i64),
    TestKey(String, i64),
    Insert(usize, i64),
    Append(i64),
    RemoveAt(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let key = "[ab/~]{1,2}";
    prop_oneof![
        (key, 0i64..4).prop_map(|(k, v)| Step::AddKey(k, v)),
        key.prop_map(Step::RemoveKey),
        (key, 0i64..4).prop_map(|(k, v)| Step::ReplaceKey(k, v)),
        (key, 0i64..4).prop_map(|(k, v)| Step::TestKey(k, v)),
        (0usize..5, 0i64..4).prop_map(|(i, v)| Step::Insert(i, v)),
        (0i64..4).prop_map(Step::Append),
        (0usize..5).prop_map(Step::RemoveAt),
    ]
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The model: a map and a list. Returns the operation, or `None` when the model says it fails.
fn model_step(map: &mut Map<String, Value>, list: &mut Vec<Value>, step: &Step) -> (Value, bool) {
    match step {
        Step::AddKey(k, v) => {
            map.insert(k.clone(), json!(v));
            (
                json!({"op": "add", "path": format!("/m/{}", escape(k)), "value": v}),
                true,
            )
        }
        Step::RemoveKey(k) => {
            let ok = map.remove(k).is_some();
            (
                json!({"op": "remove", "path": format!("/m/{}", escape(k))}),
                ok,
            )
        }
        Step::ReplaceKey(k, v) => {
            let ok = map.contains_key(k);
            if ok {
                map.insert(k.clone(), json!(v));
            }
            (
                json!({"op": "replace", "path": format!("/m/{}", escape(k)), "value": v}),
                ok,
            )
        }
        Step::TestKey(k, v) => {
            let ok = map.get(k) == Some(&json!(v));
            (
                json!({"op": "test", "path": format!("/m/{}", escape(k)), "value": v}),
                ok,
            )
        }
        Step::Insert(i, v) => {
            let ok = *i <= list.len();
            if ok {
                list.insert(*i, json!(v));
            }
            (
                json!({"op": "add", "path": format!("/l/{i}"), "value": v}),
                ok,
            )
        }
        Step::Append(v) => {
            list.push(json!(v));
            (json!({"op": "add", "path": "/l/-", "value": v}), true)
        }
        Step::RemoveAt(i) => {
            let ok = *i < list.len();
            if ok {
                list.remove(*i);
            }
            (json!({"op": "remove", "path": format!("/l/{i}")}), ok)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_merge_diff_turns_a_into_b(a in any_json(), b in object_of("[a-d]{1,2}", null_free())) {
        let patch = merge_diff(&a, &b);
        prop_assert_eq!(merge_patch(&a, &patch).unwrap(), b);
    }

    #[test]
    fn json_patch_matches_a_map_and_list_model(
        keys in prop::collection::btree_map("[ab/~]{1,2}", 0i64..4, 0..4),
        items in prop::collection::vec(0i64..4, 0..4),
        steps in prop::collection::vec(step(), 0..12),
    ) {
        let mut map: Map<String, Value> = keys.into_iter().map(|(k, v)| (k, json!(v))).collect();
        let mut list: Vec<Value> = items.into_iter().map(Value::from).collect();
        let doc = json!({"m": map.clone(), "l": list.clone()});
        let mut ops = Vec::new();
        let mut failing = None;
        for step in &steps {
            let (op, ok) = model_step(&mut map, &mut list, step);
            ops.push(op);
            if !ok {
                failing = Some(ops.len() - 1);
                break;
            }
        }
        let result = json_patch(&doc, &Value::Array(ops));
        match failing {
            None => prop_assert_eq!(result.unwrap(), json!({"m": map, "l": list})),
            Some(at) => match result {
                Err(PatchError::OperationFailed { index, failure, .. }) => {
                    prop_assert_eq!(index, at);
                    let expected = matches!(
                        failure,
                        JsonPatchFailure::Missing(_) | JsonPatchFailure::OutOfRange { .. } | JsonPatchFailure::TestMismatch
                    );
                    prop_assert!(expected, "unexpected failure {:?}", failure);
                }
                other => prop_assert!(false, "expected operation {} to fail, got {:?}", at, other),
            },
        }
    }

    #[test]
    fn an_empty_strategic_patch_is_the_identity(doc in any_object()) {
        for schema in schemas() {
            prop_assert_eq!(strategic_merge_patch(&doc, &json!({}), &schema).unwrap(), doc.clone());
        }
    }

    #[test]
    fn without_directives_or_strategies_strategic_is_a_merge_patch(
        doc in any_object(),
        patch in object_of("[a-d]{1,2}", leaf().prop_recursive(3, 32, 4, |inner| prop_oneof![
            prop::collection::vec(leaf(), 0..4).prop_map(Value::Array),
            object_of("[a-d]{1,2}", inner),
        ])),
    ) {
        prop_assert_eq!(
            strategic_merge_patch(&doc, &patch, &Schema::empty()).unwrap(),
            merge_patch(&doc, &patch).unwrap()
        );
    }

    #[test]
    fn no_input_makes_any_format_panic(doc in any_json(), patch in hostile_patch(), raw in any_json()) {
        for schema in schemas() {
            for (d, p) in [(&doc, &patch), (&doc, &raw)] {
                if let Err(e) = strategic_merge_patch(d, p, &schema) {
                    prop_assert!(matches!(e.status_code(), 400 | 422 | 500));
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
        let _ = merge_patch(&doc, &patch);
        let _ = json_patch(&doc, &raw);
    }

    #[test]
    fn no_json_patch_operation_makes_it_panic(
        doc in any_json(),
        ops in prop::collection::vec(
            (
                prop_oneof![Just("add"), Just("remove"), Just("replace"), Just("move"), Just("copy"), Just("test"), Just("x")],
                prop_oneof![Just(""), Just("/"), Just("/a"), Just("/a/b"), Just("/0"), Just("/a/-"), Just("/a/0"), Just("/b/1/a"), Just("a"), Just("/~2")],
                prop_oneof![Just(""), Just("/a"), Just("/a/0"), Just("/b"), Just("/a/b/c")],
                any_json(),
            ),
            0..6,
        ),
    ) {
        let patch = Value::Array(ops.into_iter().map(|(op, path, from, value)| {
            json!({"op": op, "path": path, "from": from, "value": value})
        }).collect());
        if let Err(e) = json_patch(&doc, &patch) {
            prop_assert!(matches!(e.status_code(), 400 | 422));
        }
    }
}
