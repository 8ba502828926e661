//! Schema-driven decoding of one message into a JSON object. Each field on the wire is looked
//! up by number in the message's [`MessageDef`]; a number the schema lacks is an error, so no
//! data is dropped silently. Repeated occurrences follow protobuf: a scalar's last value wins,
//! a message merges into the one before (client-go's decoder does the same), lists append.

use base64::Engine;
use serde_json::{Map, Number, Value};

use crate::error::{Located, Problem, Step};
use crate::schema::{self, Card, FieldDef, MessageDef, Shape, Ty};
use crate::special;
use crate::wire::{Raw, Reader, WireType};

/// How deep messages may nest before the body is refused. Kubernetes objects nest about 15
/// levels (a CronJob's containers' probes); recursive types (JSONSchemaProps) could go on
/// forever, and the stack must not.
pub(crate) const MAX_DEPTH: usize = 100;

/// Decodes `bytes` as `def` into a new JSON object.
pub(crate) fn decode_message(
    def: &'static MessageDef,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, Located> {
    let mut out = Map::new();
    decode_into(def, bytes, &mut out, depth)?;
    Ok(out)
}

/// Decodes `bytes` as `def` into `out`, merging with what is there (an embedded Go struct's
/// fields land in its parent's object).
pub(crate) fn decode_into(
    def: &'static MessageDef,
    bytes: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Located> {
    if depth > MAX_DEPTH {
        return Err(Located::new(def.name, None, Problem::TooDeep(MAX_DEPTH)));
    }
    let mut reader = Reader::new(bytes);
    while let Some(next) = reader.next_field() {
        let (number, raw) =
            next.map_err(|(field, problem)| Located::new(def.name, field, problem))?;
        let field = def
            .field(number)
            .ok_or_else(|| Located::new(def.name, Some(number), Problem::UnknownField))?;
        decode_field(def, field, raw, out, depth)?;
    }
    Ok(())
}

fn decode_field(
    def: &'static MessageDef,
    field: &'static FieldDef,
    raw: Raw<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), Located> {
    let fail = |problem| Located::new(def.name, Some(field.number), problem);
    let key = Step::Key(field.json);
    match (field.card, field.ty) {
        (Card::Single, Ty::Message(index)) => {
            let child = schema::message(index);
            let payload = expect_len(raw).map_err(fail)?;
            if child.shape != Shape::Struct {
                match special::decode(child, payload, depth + 1).map_err(|e| e.within(key))? {
                    Some(value) => out.insert(field.json.to_string(), value),
                    // A zero metav1.Time: JSON null, which means the same as no field.
                    None => out.remove(field.json),
                };
                return Ok(());
            }
            if field.inline {
                return decode_into(child, payload, out, depth + 1);
            }
            with_object(out, field.json, |map| {
                decode_into(child, payload, map, depth + 1).map_err(|e| e.within(key))
            })?;
        }
        (Card::Single, scalar) => {
            let value = scalar_value(scalar, raw).map_err(fail)?;
            if field.zero_is_unset && is_zero(&value) {
                out.remove(field.json);
            } else {
                out.insert(field.json.to_string(), value);
            }
        }
        (Card::Repeated, Ty::Message(index)) => {
            let payload = expect_len(raw).map_err(fail)?;
            with_array(out, field.json, |list| {
                let value = element(schema::message(index), payload, depth + 1)
                    .map_err(|e| e.within(Step::Index(list.len())).within(key))?;
                list.push(value);
                Ok(())
            })?;
        }
        (Card::Repeated, scalar) => with_array(out, field.json, |list| {
            match raw {
                // Packed: numbers and bools may come as one payload of many values.
                Raw::Len(payload) if !matches!(scalar, Ty::String | Ty::Bytes) => {
                    let mut packed = Reader::new(payload);
                    while !packed.is_empty() {
                        let raw = match scalar {
                            Ty::Double => Raw::Fixed64(packed.fixed64().map_err(fail)?),
                            _ => Raw::Varint(packed.varint().map_err(fail)?),
                        };
                        list.push(scalar_value(scalar, raw).map_err(fail)?);
                    }
                }
                _ => list.push(scalar_value(scalar, raw).map_err(fail)?),
            }
            Ok(())
        })?,
        (Card::Map, ty) => {
            let payload = expect_len(raw).map_err(fail)?;
            let (map_key, value) = map_entry(def, field, ty, payload, depth + 1)?;
            with_object(out, field.json, |map| {
                map.insert(map_key, value);
            });
        }
    }
    Ok(())
}

/// One element of a list or one map value of message type.
pub(crate) fn element(
    def: &'static MessageDef,
    payload: &[u8],
    depth: usize,
) -> Result<Value, Located> {
    if def.shape == Shape::Struct {
        Ok(Value::Object(decode_message(def, payload, depth)?))
    } else {
        Ok(special::decode(def, payload, depth)?.unwrap_or(Value::Null))
    }
}

/// A map entry is a message {1: key, 2: value}; either may be missing (then it is zero).
fn map_entry(
    def: &'static MessageDef,
    field: &'static FieldDef,
    ty: Ty,
    payload: &[u8],
    depth: usize,
) -> Result<(String, Value), Located> {
    let fail = |problem| Located::new(def.name, Some(field.number), problem);
    let mut key = String::new();
    let mut value_raw = None;
    let mut reader = Reader::new(payload);
    while let Some(next) = reader.next_field() {
        let (number, raw) = next.map_err(|(_, problem)| fail(problem))?;
        match number {
            1 => key = string(raw).map_err(fail)?,
            2 => value_raw = Some(raw),
            _ => return Err(fail(Problem::UnknownField)),
        }
    }
    let within = |e: Located| {
        e.within(Step::MapKey(key.clone()))
            .within(Step::Key(field.json))
    };
    let value = match (ty, value_raw) {
        (Ty::Message(index), raw) => {
            let payload = match raw {
                Some(raw) => expect_len(raw).map_err(fail)?,
                None => &[],
            };
            element(schema::message(index), payload, depth).map_err(within)?
        }
        (scalar, Some(raw)) => scalar_value(scalar, raw).map_err(fail)?,
        (scalar, None) => zero(scalar),
    };
    Ok((key, value))
}

/// Runs `f` on the list under `key`, made empty first if absent or not a list.
fn with_array<T>(
    out: &mut Map<String, Value>,
    key: &'static str,
    f: impl FnOnce(&mut Vec<Value>) -> T,
) -> T {
    let entry = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = entry {
        return f(list);
    }
    let mut list = Vec::new();
    let result = f(&mut list);
    *entry = Value::Array(list);
    result
}

/// Runs `f` on the object under `key`, made empty first if absent or not an object.
fn with_object<T>(
    out: &mut Map<String, Value>,
    key: &'static str,
    f: impl FnOnce(&mut Map<String, Value>) -> T,
) -> T {
    let entry = out.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(map) = entry {
        return f(map);
    }
    let mut map = Map::new();
    let result = f(&mut map);
    *entry = Value::Object(map);
    result
}

pub(crate) fn expect_len(raw: Raw<'_>) -> Result<&[u8], Problem> {
    match raw {
        Raw::Len(payload) => Ok(payload),
        other => Err(wrong_wire(WireType::Len, other)),
    }
}

fn wrong_wire(expected: WireType, found: Raw<'_>) -> Problem {
    Problem::WrongWireType {
        expected: expected.describe(),
        found: found.wire_type().describe(),
    }
}

/// A scalar as Kubernetes' JSON writes it: numbers as numbers (int64 too), bytes as base64.
pub(crate) fn scalar_value(ty: Ty, raw: Raw<'_>) -> Result<Value, Problem> {
    Ok(match (ty, raw) {
        (Ty::String, raw @ Raw::Len(_)) => Value::String(string(raw)?),
        (Ty::Bytes, Raw::Len(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (Ty::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
        // Go truncates an over-long varint to the field's 32 bits; so do we.
        (Ty::Int32, Raw::Varint(v)) => Value::from(v as u32 as i32),
        (Ty::Int64, Raw::Varint(v)) => Value::from(v as i64),
        (Ty::Double, Raw::Fixed64(bits)) => double(f64::from_bits(bits))?,
        (Ty::String | Ty::Bytes | Ty::Message(_), other) => {
            return Err(wrong_wire(WireType::Len, other))
        }
        (Ty::Bool | Ty::Int32 | Ty::Int64, other) => {
            return Err(wrong_wire(WireType::Varint, other))
        }
        (Ty::Double, other) => return Err(wrong_wire(WireType::Fixed64, other)),
    })
}

/// A length-delimited UTF-8 string (Go does not check, but JSON cannot carry anything else).
pub(crate) fn string(raw: Raw<'_>) -> Result<String, Problem> {
    let bytes = expect_len(raw)?;
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| Problem::InvalidUtf8)
}

/// Go writes an integral float64 without a fraction (`1`, not `1.0`).
fn double(x: f64) -> Result<Value, Problem> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if !x.is_finite() {
        return Err(Problem::NotFinite(x));
    }
    if x.fract() == 0.0 && x.abs() < EXACT {
        return Ok(Value::from(x as i64));
    }
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or(Problem::NotFinite(x))
}

fn zero(ty: Ty) -> Value {
    match ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Int32 | Ty::Int64 | Ty::Double => Value::from(0),
        Ty::Message(_) => Value::Null,
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}
