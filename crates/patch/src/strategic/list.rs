//! Lists in a strategic merge patch: replaced, merged by key, merged as sets, and put in
//! order. The order rules are apimachinery's, so `kubectl apply` leaves lists ordered as it
//! does against kube-apiserver: the patch's elements in the patch's (or `$setElementOrder`'s)
//! order, the object's other elements in their old order, interleaved by where they were.

use super::path::Path;
use super::{fresh, merge_map, Meta, PATCH, SET_ELEMENT_ORDER};
use crate::error::{PatchError, StrategicProblem};
use crate::schema::{FieldStrategy, Node};
use crate::value::{json_eq, kind_name};
use serde_json::{Map, Value};

/// Merges a patch list into a stored one as the field's strategy says.
pub(super) fn merge_field(
    original: Vec<Value>,
    patch: &[Value],
    meta: Meta<'_>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    match meta.strategy {
        Some(strategy) if strategy.merges_lists() => {
            merge_list(original, patch, strategy, meta.node, path)
        }
        _ => patch
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Object(_) => fresh(
                    item,
                    Meta {
                        strategy: None,
                        node: meta.node,
                    },
                    &path.index(index),
                ),
                other => Ok(other.clone()),
            })
            .collect(),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    strategy: &FieldStrategy,
    node: Option<&Node>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !elements_are_objects(&original, patch, path)? {
        return Ok(merge_set(original, patch));
    }
    match strategy.merge_key() {
        Some(key) => merge_by_key(original, patch, key, node, path),
        None => Err(path.error(StrategicProblem::ObjectsInPrimitiveSet)),
    }
}

/// Whether the elements of both lists are objects; merging needs them all of one kind.
fn elements_are_objects(
    original: &[Value],
    patch: &[Value],
    path: &Path<'_>,
) -> Result<bool, PatchError> {
    let mut items = original.iter().chain(patch);
    let Some(first) = items.next() else {
        return Ok(false);
    };
    for item in std::iter::once(first).chain(items) {
        if item.is_array() {
            return Err(path.error(StrategicProblem::ListOfLists));
        }
        if kind_name(item) != kind_name(first) {
            return Err(path.error(StrategicProblem::MixedElements {
                first: kind_name(first),
                other: kind_name(item),
            }));
        }
    }
    Ok(first.is_object())
}

/// Primitive values merged as a set (`metadata.finalizers`).
fn merge_set(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.iter().chain(patch) {
        if !merged.iter().any(|seen| json_eq(seen, item)) {
            merged.push(item.clone());
        }
    }
    let (from_patch, server_only) = merged
        .into_iter()
        .partition(|item| patch.iter().any(|p| json_eq(p, item)));
    interleave(
        from_patch,
        server_only,
        &refs(patch),
        &refs(&original),
        Identity::Value,
    )
}

/// Objects merged by their merge key; elements carrying `$patch` act on the list.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    node: Option<&Node>,
    path: &Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let identity = Identity::Key(key);
    let mut replace = false;
    let mut plain = Vec::with_capacity(patch.len());
    for (index, item) in patch.iter().enumerate() {
        let Value::Object(fields) = item else {
            continue;
        };
        let item_path = path.index(index);
        match fields.get(PATCH) {
            None => plain.push((index, fields)),
            Some(Value::String(directive)) if directive == "merge" => plain.push((index, fields)),
            Some(Value::String(directive)) if directive == "replace" => replace = true,
            Some(Value::String(directive)) if directive == "delete" => {
                let Some(doomed) = fields.get(key) else {
                    return Err(item_path.error(StrategicProblem::MissingMergeKey(key.into())));
                };
                original.retain(|item| {
                    identity
                        .of(item)
                        .is_none_or(|value| !json_eq(value, doomed))
                });
            }
            Some(other) => {
                return Err(item_path
                    .key(PATCH)
                    .error(StrategicProblem::BadPatchValue(super::brief(other))))
            }
        }
    }
    if replace {
        // The list becomes the patch's other elements, in their order.
        return plain
            .into_iter()
            .map(|(index, fields)| {
                merge_map(Map::new(), fields, node, &path.index(index)).map(Value::Object)
            })
            .collect();
    }

    // Ordered by where elements were once deletions are done, as apimachinery does.
    let server_order = original.clone();
    for &(index, fields) in &plain {
        let item_path = path.index(index);
        let Some(wanted) = fields.get(key) else {
            return Err(item_path.error(StrategicProblem::MissingMergeKey(key.into())));
        };
        let found = original.iter().position(|item| {
            identity
                .of(item)
                .is_some_and(|value| json_eq(value, wanted))
        });
        match found {
            Some(at) => {
                let merged = match original[at].take() {
                    Value::Object(stored) => merge_map(stored, fields, node, &item_path)?,
                    _ => merge_map(Map::new(), fields, node, &item_path)?,
                };
                original[at] = Value::Object(merged);
            }
            None => original.push(Value::Object(merge_map(
                Map::new(),
                fields,
                node,
                &item_path,
            )?)),
        }
    }
    let patch_order: Vec<&Value> = plain
        .iter()
        .filter_map(|(index, _)| patch.get(*index))
        .collect();
    let (from_patch, server_only) = original
        .into_iter()
        .partition(|item| identity.position(&patch_order, item).is_some());
    Ok(interleave(
        from_patch,
        server_only,
        &patch_order,
        &refs(&server_order),
        identity,
    ))
}

/// `$setElementOrder/<field>`: merges the field's patch list (if any), then orders the list:
/// the elements it names in its order, the others where they were.
pub(super) fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    meta: Meta<'_>,
    path: &Path<'_>,
    directive_path: &Path<'_>,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(directive_path.error(StrategicProblem::BadDirectiveValue {
            directive: format!("{SET_ELEMENT_ORDER}/{field}"),
            expected: "a list",
            found: kind_name(order),
        }));
    };
    let field_path = path.key(field);
    let not_a_list = |found: &Value| {
        field_path.error(StrategicProblem::WrongType {
            expected: "a list",
            found: kind_name(found),
        })
    };
    let stored = match original.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.clone()),
        Some(other) => return Err(not_a_list(other)),
    };
    let patched = match patch.get(field) {
        None => None,
        Some(Value::Array(list)) => Some(list.as_slice()),
        Some(other) => return Err(not_a_list(other)),
    };
    let identity = match meta.strategy.and_then(FieldStrategy::merge_key) {
        Some(key) => Identity::Key(key),
        None => Identity::Value,
    };
    if let Identity::Key(key) = identity {
        if let Some(index) = order.iter().position(|item| identity.of(item).is_none()) {
            return Err(directive_path
                .index(index)
                .error(StrategicProblem::MissingMergeKey(key.into())));
        }
    }
    if let Some(patched) = patched {
        check_order(patched, order, identity, field, &field_path)?;
    }

    let merged = match (stored.clone(), patched) {
        (Some(stored), None) => stored,
        (stored, Some(patched)) => {
            merge_field(stored.unwrap_or_default(), patched, meta, &field_path)?
        }
        (None, None) => return Ok(()),
    };
    let order = refs(order);
    let (listed, unlisted) = merged
        .into_iter()
        .partition(|item| identity.position(&order, item).is_some());
    let stored = stored.unwrap_or_default();
    let ordered = interleave(listed, unlisted, &order, &refs(&stored), identity);
    original.insert(field.to_string(), Value::Array(ordered));
    Ok(())
}

/// The patch list's ordinary elements must appear in `$setElementOrder` in the same order.
fn check_order(
    patched: &[Value],
    order: &[Value],
    identity: Identity<'_>,
    field: &str,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let items: Vec<(usize, &Value)> = patched
        .iter()
        .enumerate()
        .filter(|(_, item)| item.get(PATCH).is_none())
        .collect();
    if let Identity::Key(key) = identity {
        if let Some((index, _)) = items.iter().find(|(_, item)| identity.of(item).is_none()) {
            return Err(path
                .index(*index)
                .error(StrategicProblem::MissingMergeKey(key.into())));
        }
    }
    let mut next = 0;
    for wanted in order {
        if items
            .get(next)
            .is_some_and(|(_, item)| identity.same(item, wanted))
        {
            next += 1;
        }
    }
    if order.is_empty() || next == items.len() {
        Ok(())
    } else {
        Err(path.error(StrategicProblem::OrderMismatch(field.into())))
    }
}

/// What makes two elements "the same" element: their merge key, or their whole value.
#[derive(Clone, Copy)]
enum Identity<'k> {
    Value,
    Key(&'k str),
}

impl Identity<'_> {
    fn of<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        match self {
            Identity::Value => Some(item),
            Identity::Key(key) => item.as_object().and_then(|fields| fields.get(*key)),
        }
    }

    /// Stored elements without the key (which a valid object never has) are told apart by
    /// their whole value, so they keep their place instead of being lost or refused.
    fn same(&self, a: &Value, b: &Value) -> bool {
        match (self.of(a), self.of(b)) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => json_eq(a, b),
            _ => false,
        }
    }

    fn position(&self, list: &[&Value], item: &Value) -> Option<usize> {
        list.iter().position(|candidate| self.same(candidate, item))
    }
}

/// apimachinery's `normalizeElementOrder`: `from_patch` sorted by `patch_order`,
/// `server_only` by `server_order`, then merged so a server-only element goes before a
/// patch element exactly when it stood before it in `server_order`.
fn interleave(
    from_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[&Value],
    server_order: &[&Value],
    identity: Identity<'_>,
) -> Vec<Value> {
    let from_patch = sorted(from_patch, patch_order, identity);
    let server_only = sorted(server_only, server_order, identity);
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut right = from_patch.into_iter().peekable();
    let mut left = server_only.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some((_, l)), Some((_, r))) => {
                match (
                    identity.position(server_order, l),
                    identity.position(server_order, r),
                ) {
                    (Some(l), Some(r)) => l < r,
                    _ => false,
                }
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|(_, item)| item));
    }
    out
}

/// Stable sort by position in `order`; elements it lacks go last, in their current order.
fn sorted(items: Vec<Value>, order: &[&Value], identity: Identity<'_>) -> Vec<(usize, Value)> {
    let mut keyed: Vec<(usize, Value)> = items
        .into_iter()
        .map(|item| (identity.position(order, &item).unwrap_or(usize::MAX), item))
        .collect();
    keyed.sort_by_key(|(position, _)| *position);
    keyed
}

fn refs(list: &[Value]) -> Vec<&Value> {
    list.iter().collect()
}
