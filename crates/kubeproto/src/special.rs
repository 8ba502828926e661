//! Messages whose JSON is not an object of their fields: the types with their own MarshalJSON
//! in Kubernetes (`metav1.Time`, `MicroTime`, `Duration`, `resource.Quantity`,
//! `intstr.IntOrString`, `runtime.RawExtension`, `FieldsV1`, apiextensions' `JSON` and
//! `JSONSchemaPropsOr*`) and Go's named string slices (`Verbs`, `ExtraValue`). build/model.rs
//! checks that k8s-pb numbers their fields as read here.

use serde_json::{Map, Value};

use crate::error::{Located, Problem, Step};
use crate::object::{self, element, expect_len, scalar_value, string};
use crate::schema::{self, MessageDef, Shape, Ty};
use crate::wire::{Raw, Reader};

/// The JSON for a special message, or `None` for a zero `Time`/`MicroTime` (JSON null, which
/// kube-apiserver's JSON leaves out: `creationTimestamp` is `omitzero`).
pub(crate) fn decode(
    def: &'static MessageDef,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Value>, Located> {
    if depth > object::MAX_DEPTH {
        return Err(Located::new(
            def.name,
            None,
            Problem::TooDeep(object::MAX_DEPTH),
        ));
    }
    let fields = Fields::read(def, bytes)?;
    let fail = |number, problem| Located::new(def.name, Some(number), problem);
    let int = |number| -> Result<i64, Located> {
        match fields.last(number) {
            Some(raw) => match scalar_value(Ty::Int64, raw).map_err(|p| fail(number, p))? {
                Value::Number(n) => Ok(n.as_i64().unwrap_or(0)),
                _ => Ok(0),
            },
            None => Ok(0),
        }
    };
    let text = |number| -> Result<Option<String>, Located> {
        fields
            .last(number)
            .map(|raw| string(raw).map_err(|p| fail(number, p)))
            .transpose()
    };
    Ok(Some(match def.shape {
        // Go's protobuf Time writes nothing for the zero time; explicit zeros are the epoch.
        Shape::Time | Shape::MicroTime if bytes.is_empty() => return Ok(None),
        Shape::Time | Shape::MicroTime => {
            let (seconds, nanos) = (int(1)?, int(2)? as i32);
            if time::is_go_zero(seconds, nanos) {
                return Ok(None);
            }
            let micros = def.shape == Shape::MicroTime;
            Value::String(time::rfc3339(seconds, nanos, micros).map_err(|p| fail(1, p))?)
        }
        Shape::Duration => Value::String(time::go_duration(int(1)?)),
        // An empty Quantity message is the zero quantity, which Go writes as "0".
        Shape::Quantity => Value::String(text(1)?.unwrap_or_else(|| "0".to_string())),
        Shape::IntOrString => match int(1)? {
            0 => Value::from(int(2)? as i32),
            1 => Value::String(text(3)?.unwrap_or_default()),
            other => return Err(fail(1, Problem::IntOrStringType(other))),
        },
        Shape::RawJson => match fields.last(1) {
            Some(raw) => {
                raw_json(expect_len(raw).map_err(|p| fail(1, p))?, depth).map_err(|p| fail(1, p))?
            }
            None => Value::Null,
        },
        Shape::StringList => Value::Array(strings(&fields, 1, &fail)?),
        Shape::SchemaOrArray => {
            let list = messages(def, &fields, 2, depth)?;
            if list.is_empty() {
                schema_object(def, &fields, 1, depth)?.unwrap_or(Value::Null)
            } else {
                Value::Array(list)
            }
        }
        Shape::SchemaOrBool => match schema_object(def, &fields, 2, depth)? {
            Some(schema) => schema,
            None => match fields.last(1) {
                Some(raw) => scalar_value(Ty::Bool, raw).map_err(|p| fail(1, p))?,
                None => Value::Bool(false),
            },
        },
        Shape::SchemaOrStringArray => {
            let list = strings(&fields, 2, &fail)?;
            if list.is_empty() {
                schema_object(def, &fields, 1, depth)?.unwrap_or(Value::Null)
            } else {
                Value::Array(list)
            }
        }
        Shape::Struct => Value::Object(object::decode_message(def, bytes, depth)?),
    }))
}

/// A special message's fields, checked against its definition (unknown numbers are errors).
struct Fields<'a> {
    all: Vec<(u32, Raw<'a>)>,
}

impl<'a> Fields<'a> {
    fn read(def: &'static MessageDef, bytes: &'a [u8]) -> Result<Self, Located> {
        let mut all = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some(next) = reader.next_field() {
            let (number, raw) =
                next.map_err(|(field, problem)| Located::new(def.name, field, problem))?;
            if def.field(number).is_none() {
                return Err(Located::new(def.name, Some(number), Problem::UnknownField));
            }
            all.push((number, raw));
        }
        Ok(Fields { all })
    }

    fn last(&self, number: u32) -> Option<Raw<'a>> {
        self.all
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, raw)| *raw)
    }

    fn each(&self, number: u32) -> impl Iterator<Item = Raw<'a>> + '_ {
        self.all
            .iter()
            .filter(move |(n, _)| *n == number)
            .map(|(_, raw)| *raw)
    }
}

fn strings(
    fields: &Fields<'_>,
    number: u32,
    fail: &dyn Fn(u32, Problem) -> Located,
) -> Result<Vec<Value>, Located> {
    fields
        .each(number)
        .map(|raw| string(raw).map(Value::String).map_err(|p| fail(number, p)))
        .collect()
}

/// The message-typed field `number` of `def`, each occurrence an element.
fn messages(
    def: &'static MessageDef,
    fields: &Fields<'_>,
    number: u32,
    depth: usize,
) -> Result<Vec<Value>, Located> {
    let Some(Ty::Message(index)) = def.field(number).map(|f| f.ty) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for raw in fields.each(number) {
        let payload = expect_len(raw).map_err(|p| Located::new(def.name, Some(number), p))?;
        let value = element(schema::message(index), payload, depth + 1)
            .map_err(|e| e.within(Step::Index(out.len())))?;
        out.push(value);
    }
    Ok(out)
}

/// The message-typed field `number` of `def` as one object (occurrences merge), if present.
fn schema_object(
    def: &'static MessageDef,
    fields: &Fields<'_>,
    number: u32,
    depth: usize,
) -> Result<Option<Value>, Located> {
    let Some(Ty::Message(index)) = def.field(number).map(|f| f.ty) else {
        return Ok(None);
    };
    let mut merged: Option<Map<String, Value>> = None;
    for raw in fields.each(number) {
        let payload = expect_len(raw).map_err(|p| Located::new(def.name, Some(number), p))?;
        let target = merged.get_or_insert_with(Map::new);
        object::decode_into(schema::message(index), payload, target, depth + 1)?;
    }
    Ok(merged.map(Value::Object))
}

/// A RawExtension's bytes: JSON as client-go writes it, or (when it starts with the protobuf
/// prefix) an object in protobuf, decoded the same way as a body.
fn raw_json(bytes: &[u8], depth: usize) -> Result<Value, Problem> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    if bytes.starts_with(crate::MAGIC) {
        return crate::decode_at_depth(bytes, depth + 1)
            .map_err(|e| Problem::Embedded(Box::new(e)));
    }
    serde_json::from_slice(bytes).map_err(|e| Problem::InvalidJson(e.to_string()))
}

/// Kubernetes' time formats, from seconds and nanoseconds since the Unix epoch.
mod time {
    use crate::error::Problem;

    const NANOS_PER_SECOND: i128 = 1_000_000_000;

    /// Go's zero time.Time, 0001-01-01T00:00:00Z, which metav1.Time writes as null.
    pub(super) fn is_go_zero(seconds: i64, nanos: i32) -> bool {
        i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos)
            == -62_135_596_800 * NANOS_PER_SECOND
    }

    /// RFC 3339 in UTC as metav1.Time writes it (`2024-01-02T03:04:05Z`, seconds only), or as
    /// MicroTime does (always six fraction digits, truncated).
    pub(super) fn rfc3339(seconds: i64, nanos: i32, micros: bool) -> Result<String, Problem> {
        // Go normalises nanos outside 0..1e9 into the seconds (time.Unix).
        let total = i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos);
        let whole = total.div_euclid(NANOS_PER_SECOND);
        let fraction = total.rem_euclid(NANOS_PER_SECOND);
        let days = whole.div_euclid(86_400);
        let of_day = whole.rem_euclid(86_400);
        let out_of_range = Problem::TimeOutOfRange { seconds, nanos };
        let days = i64::try_from(days).map_err(|_| out_of_range.clone())?;
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return Err(out_of_range);
        }
        let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
        let date = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
        Ok(if micros {
            format!("{date}.{:06}Z", fraction / 1000)
        } else {
            format!("{date}Z")
        })
    }

    /// The proleptic Gregorian date of a day number (days since 1970-01-01), by counting
    /// 400-year eras of 146097 days from 0000-03-01, so leap days fall at the end of a year.
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// Go's time.Duration.String: `5m0s`, `1h0m0s`, `1.5s`, `300ms`, `2µs`, `0s`.
    pub(super) fn go_duration(nanos: i64) -> String {
        if nanos == 0 {
            return "0s".to_string();
        }
        let sign = if nanos < 0 { "-" } else { "" };
        let u = nanos.unsigned_abs();
        if u < 1_000_000_000 {
            let (digits, unit) = match u {
                0..1_000 => (0, "ns"),
                1_000..1_000_000 => (3, "µs"),
                _ => (6, "ms"),
            };
            let (whole, fraction) = split(u, digits);
            return format!("{sign}{whole}{fraction}{unit}");
        }
        let (seconds, fraction) = split(u, 9);
        let (minutes, seconds) = (seconds / 60, seconds % 60);
        let (hours, minutes) = (minutes / 60, minutes % 60);
        match (hours, minutes) {
            (0, 0) => format!("{sign}{seconds}{fraction}s"),
            (0, _) => format!("{sign}{minutes}m{seconds}{fraction}s"),
            _ => format!("{sign}{hours}h{minutes}m{seconds}{fraction}s"),
        }
    }

    /// `value` split at `digits` decimal places: the whole part and `.fraction` without
    /// trailing zeros (empty when the fraction is zero).
    fn split(value: u64, digits: u32) -> (u64, String) {
        let scale = 10u64.pow(digits);
        let fraction = value % scale;
        let text = if fraction == 0 {
            String::new()
        } else {
            let padded = format!(".{fraction:0width$}", width = digits as usize);
            padded.trim_end_matches('0').to_string()
        };
        (value / scale, text)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn durations_read_like_go() {
            let second = 1_000_000_000;
            assert_eq!(go_duration(300 * second), "5m0s");
            assert_eq!(go_duration(3600 * second), "1h0m0s");
            assert_eq!(go_duration(5400 * second + 500_000_000), "1h30m0.5s");
            assert_eq!(go_duration(1_500_000_000), "1.5s");
            assert_eq!(go_duration(100_000_000), "100ms");
            assert_eq!(go_duration(1_500_000), "1.5ms");
            assert_eq!(go_duration(2_000), "2µs");
            assert_eq!(go_duration(7), "7ns");
            assert_eq!(go_duration(-90 * second), "-1m30s");
            assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
        }

        #[test]
        fn times_are_rfc3339_utc() {
            assert_eq!(rfc3339(0, 0, false).as_deref(), Ok("1970-01-01T00:00:00Z"));
            assert_eq!(
                rfc3339(1_704_164_645, 999_999_999, false).as_deref(),
                Ok("2024-01-02T03:04:05Z")
            );
            assert_eq!(
                rfc3339(1_704_164_645, 123_456_789, true).as_deref(),
                Ok("2024-01-02T03:04:05.123456Z")
            );
            // Leap day, and a date before the epoch.
            assert_eq!(
                rfc3339(951_782_400, 0, false).as_deref(),
                Ok("2000-02-29T00:00:00Z")
            );
            assert_eq!(rfc3339(-1, 0, false).as_deref(), Ok("1969-12-31T23:59:59Z"));
            assert_eq!(
                rfc3339(0, -1, true).as_deref(),
                Ok("1969-12-31T23:59:59.999999Z")
            );
            assert_eq!(
                rfc3339(-62_135_596_800, 0, false).as_deref(),
                Ok("0001-01-01T00:00:00Z")
            );
            assert!(rfc3339(i64::MAX, 0, false).is_err());
            assert!(rfc3339(253_402_300_800, 0, false).is_err()); // year 10000
        }
    }
}
