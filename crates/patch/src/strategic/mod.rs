//! Strategic merge patch: Kubernetes' merge patch that knows, from the kind's [`Schema`],
//! which lists merge element by element, and that takes the version 2 directives kubectl's
//! client-side apply sends. The semantics follow apimachinery's `strategicpatch` as
//! kube-apiserver applies it (`StrategicMergeMapPatch`), with two deliberate differences:
//! values the patch introduces where the object had none are themselves merged into nothing,
//! so their `null`s and directives are dropped instead of stored (kube-apiserver stores them
//! raw and lets decoding into Go structs discard them, which an object kept as JSON cannot
//! rely on); and `$patch: merge`, which apimachinery refuses, is accepted as the explicit
//! form of the default.

mod list;
mod path;

use crate::error::{PatchError, StrategicProblem};
use crate::schema::{FieldStrategy, Node, Schema};
use crate::value::{json_eq, kind_name, remove_member};
use path::Path;
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies a strategic merge patch to `doc` (both JSON objects) with `schema`'s list
/// strategies: objects merge recursively and `null` deletes a member; lists with a merge
/// strategy merge by their key (or as sets of primitives), other lists are replaced; the
/// `$patch`, `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`
/// directives act as in Kubernetes, and any other `$` key is an error.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &Schema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::StrategicPatchNotAnObject {
            found: kind_name(patch),
        });
    };
    let Value::Object(doc) = doc else {
        return Err(PatchError::DocumentNotAnObject {
            found: kind_name(doc),
        });
    };
    merge_map(doc.clone(), patch, Some(schema.root()), &Path::ROOT).map(Value::Object)
}

/// What the schema says about one field: its own strategy and the fields below it (list
/// elements share their list's).
#[derive(Clone, Copy, Default)]
struct Meta<'s> {
    strategy: Option<&'s FieldStrategy>,
    node: Option<&'s Node>,
}

impl<'s> Meta<'s> {
    fn of(node: Option<&'s Node>, name: &str) -> Meta<'s> {
        let field = node.and_then(|node| node.field(name));
        Meta {
            strategy: field.and_then(|field| field.strategy.as_ref()),
            node: field.map(|field| &field.node),
        }
    }
}

enum MapDirective {
    Merge,
    Replace,
    Delete,
}

fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    node: Option<&Node>,
    path: &Path<'_>,
) -> Result<Map<String, Value>, PatchError> {
    let mut original = match map_directive(patch, path)? {
        // apimachinery leaves an empty object, not an absent one.
        MapDirective::Delete => return Ok(Map::new()),
        MapDirective::Replace => Map::new(),
        MapDirective::Merge => original,
    };
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, retain, &path.key(RETAIN_KEYS))?;
    }

    // Ordered lists first, as apimachinery does: they merge their own patch list, which the
    // member loop then skips.
    let mut ordered = Vec::new();
    for (key, order) in patch {
        if let Some(field) = directive_field(key, SET_ELEMENT_ORDER) {
            let directive_path = path.key(key);
            if field.is_empty() {
                return Err(
                    directive_path.error(StrategicProblem::DirectiveWithoutField(key.clone()))
                );
            }
            let meta = Meta::of(node, field);
            list::set_element_order(
                &mut original,
                patch,
                field,
                order,
                meta,
                path,
                &directive_path,
            )?;
            ordered.push(field);
        }
    }

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key == PATCH || key == RETAIN_KEYS || directive_field(key, SET_ELEMENT_ORDER).is_some() {
            continue;
        }
        if let Some(field) = directive_field(key, DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((key, field, value));
            continue;
        }
        if key.starts_with('$') {
            return Err(path
                .key(key)
                .error(StrategicProblem::UnknownDirective(key.clone())));
        }
        if ordered.contains(&key.as_str()) {
            continue;
        }
        let member_path = path.key(key);
        let meta = Meta::of(node, key);
        if value.is_null() {
            remove_member(&mut original, key);
        } else if let Some(slot) = original.get_mut(key) {
            *slot = merge_value(slot.take(), value, meta, &member_path)?;
        } else {
            let value = fresh(value, meta, &member_path)?;
            original.insert(key.clone(), value);
        }
    }

    // After the merges, so a value both added and deleted by one patch ends up deleted.
    for (key, field, values) in deletions {
        delete_from_primitive_list(&mut original, key, field, values, path)?;
    }
    Ok(original)
}

fn merge_value(
    original: Value,
    patch: &Value,
    meta: Meta<'_>,
    path: &Path<'_>,
) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(original), Value::Object(patch))
            if meta.strategy != Some(&FieldStrategy::Replace) =>
        {
            merge_map(original, patch, meta.node, path).map(Value::Object)
        }
        (Value::Array(original), Value::Array(patch)) => {
            list::merge_field(original, patch, meta, path).map(Value::Array)
        }
        (_, patch) => fresh(patch, meta, path),
    }
}

/// The patch's value where the object had none (or one of another type, or one the field's
/// strategy replaces): merged into nothing, which drops its `null`s and applies its
/// directives.
fn fresh(patch: &Value, meta: Meta<'_>, path: &Path<'_>) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => merge_map(Map::new(), patch, meta.node, path).map(Value::Object),
        Value::Array(patch) => list::merge_field(Vec::new(), patch, meta, path).map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn map_directive(patch: &Map<String, Value>, path: &Path<'_>) -> Result<MapDirective, PatchError> {
    match patch.get(PATCH) {
        None => Ok(MapDirective::Merge),
        Some(Value::String(directive)) if directive == "merge" => Ok(MapDirective::Merge),
        Some(Value::String(directive)) if directive == "replace" => Ok(MapDirective::Replace),
        Some(Value::String(directive)) if directive == "delete" => Ok(MapDirective::Delete),
        Some(other) => Err(path
            .key(PATCH)
            .error(StrategicProblem::BadPatchValue(brief(other)))),
    }
}

/// `$retainKeys`: the object keeps only the listed members, and the patch may set no others.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let bad = |found: &Value| StrategicProblem::BadDirectiveValue {
        directive: RETAIN_KEYS.into(),
        expected: "a list of field names",
        found: kind_name(found),
    };
    let Value::Array(names) = retain else {
        return Err(path.error(bad(retain)));
    };
    let names = names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            name.as_str()
                .ok_or_else(|| path.index(index).error(bad(name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Directives and deletions are not "set"; unknown directives are refused later.
    if let Some((key, _)) = patch.iter().find(|(key, value)| {
        !value.is_null() && !key.starts_with('$') && !names.contains(&key.as_str())
    }) {
        return Err(path.error(StrategicProblem::NotRetained(key.clone())));
    }
    original.retain(|key, _| names.contains(&key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes those values from the list.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    key: &str,
    field: &str,
    values: &Value,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let directive_path = path.key(key);
    if field.is_empty() {
        return Err(directive_path.error(StrategicProblem::DirectiveWithoutField(key.into())));
    }
    let Value::Array(values) = values else {
        return Err(directive_path.error(StrategicProblem::BadDirectiveValue {
            directive: key.into(),
            expected: "a list",
            found: kind_name(values),
        }));
    };
    match original.get_mut(field) {
        Some(Value::Array(list)) => {
            list.retain(|item| !values.iter().any(|value| json_eq(item, value)))
        }
        None | Some(Value::Null) => {}
        Some(other) => {
            return Err(path.key(field).error(StrategicProblem::WrongType {
                expected: "a list",
                found: kind_name(other),
            }))
        }
    }
    Ok(())
}

/// The field a parallel-list directive names: `containers` for `$setElementOrder/containers`,
/// "" when it names none, `None` when `key` is not that directive.
fn directive_field<'k>(key: &'k str, directive: &str) -> Option<&'k str> {
    let rest = key.strip_prefix(directive)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// A value for a message, cut short if long.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod kubectl_tests;
