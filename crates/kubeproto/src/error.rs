//! What can be wrong with a body, and where: the message type, the field number and the JSON
//! path of the object being decoded, so a 400/415 answer tells the client which field failed.

use std::fmt;

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Kubernetes protobuf bodies start with `k8s\0`; this one does not.
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    MissingMagic,
    /// The `runtime.Unknown` envelope around the object is malformed.
    #[error("runtime.Unknown envelope{}: {problem}", field_suffix(*field))]
    Envelope {
        field: Option<u32>,
        problem: Problem,
    },
    /// The envelope says the object is compressed or not protobuf.
    #[error("runtime.Unknown envelope: unsupported {what} {value:?}")]
    UnsupportedEncoding { what: &'static str, value: String },
    /// The envelope's typeMeta lacks an apiVersion or a kind.
    #[error("runtime.Unknown envelope: typeMeta has no {missing}")]
    MissingTypeMeta { missing: &'static str },
    /// No protobuf message is known for this apiVersion and kind.
    #[error("no protobuf schema for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    /// The object's own bytes are wrong somewhere.
    #[error(transparent)]
    Object(Box<ObjectError>),
}

/// Where in the object decoding failed, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{api_version} {kind}: {message}{} at {path}: {problem}",
    field_suffix(*field)
)]
pub struct ObjectError {
    pub api_version: String,
    pub kind: String,
    /// The JSON path of the message being decoded (`spec.template.spec.containers[0]`).
    pub path: String,
    /// The full protobuf name of that message (`k8s.io.api.core.v1.Container`).
    pub message: &'static str,
    /// The field number, when the problem is in one field.
    pub field: Option<u32>,
    pub problem: Problem,
}

fn field_suffix(field: Option<u32>) -> String {
    field.map(|f| format!(" field {f}")).unwrap_or_default()
}

/// The problem itself, without its location.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("the data ends inside a field")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    VarintTooLong,
    #[error("field number {0} is outside 1..2^29")]
    InvalidFieldNumber(u64),
    #[error("wire type {0} is not supported (groups and unassigned types)")]
    UnsupportedWireType(u8),
    /// The schema has no field with this number: decoding on would lose data.
    #[error("unknown field")]
    UnknownField,
    #[error("{found} value where the schema has a {expected} field")]
    WrongWireType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the string is not valid UTF-8")]
    InvalidUtf8,
    #[error("the embedded JSON does not parse: {0}")]
    InvalidJson(String),
    #[error("IntOrString type {0} is neither 0 (int) nor 1 (string)")]
    IntOrStringType(i64),
    #[error("the number {0} is not finite")]
    NotFinite(f64),
    #[error("the time {seconds}s {nanos}ns is outside years 0-9999")]
    TimeOutOfRange { seconds: i64, nanos: i32 },
    #[error("messages nest deeper than {0} levels")]
    TooDeep(usize),
    /// A `runtime.RawExtension` held a protobuf object that did not decode.
    #[error("embedded object: {0}")]
    Embedded(Box<DecodeError>),
}

/// One step of the path from the object's root to the failing message.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Key(&'static str),
    Index(usize),
    MapKey(String),
}

/// A problem located inside the object; an [`ObjectError`] once the kind is attached.
#[derive(Debug)]
pub(crate) struct Located {
    pub message: &'static str,
    pub field: Option<u32>,
    pub problem: Problem,
    /// Innermost step first: each level pushes its own as the error travels up.
    pub steps: Vec<Step>,
}

impl Located {
    pub(crate) fn new(message: &'static str, field: Option<u32>, problem: Problem) -> Self {
        Located {
            message,
            field,
            problem,
            steps: Vec::new(),
        }
    }

    pub(crate) fn within(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub(crate) fn into_error(self, api_version: &str, kind: &str) -> DecodeError {
        DecodeError::Object(Box::new(ObjectError {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            path: Path(&self.steps).to_string(),
            message: self.message,
            field: self.field,
            problem: self.problem,
        }))
    }
}

/// Renders steps (innermost first) as `spec.containers[0].env`, or `.` for the root.
struct Path<'a>(&'a [Step]);

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, step) in self.0.iter().rev().enumerate() {
            match step {
                Step::Key(key) if i == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::MapKey(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}
