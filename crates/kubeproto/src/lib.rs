//! Kubernetes protobuf request bodies, turned into the JSON the lab's API server reads.
//!
//! kubectl and every client-go typed client send built-in kinds as
//! `application/vnd.kubernetes.protobuf` (`kubectl create deployment`, `run`, `create secret`,
//! `drain`'s evictions, `auth can-i`'s reviews...), and do not retry as JSON on a 415. The API
//! server (crates/apiserver) speaks JSON only, so it hands such a body to [`decode`] and goes on
//! exactly as if the client had sent the JSON: the result is kube-apiserver's JSON form of the
//! object, with `apiVersion` and `kind` from the envelope. Responses stay JSON.
//!
//! The decoder is a generic protobuf reader walking a schema table that the build script
//! generates from two crates.io dependencies: field numbers and types from k8s-pb (Kubernetes'
//! `generated.proto` files as prost code), exact JSON names from k8s-openapi (which keeps
//! `podIPs`, `clusterIP`, `uid` where prost's snake_case lost the casing). Types with their own
//! JSON form (Time, Quantity, IntOrString, RawExtension...) are decoded by hand in `special`,
//! and `build/value_fields.txt` says which Go value fields' zero values are "unset" (client-go
//! writes them all; kube's JSON omits them). A field number the schema does not know is an
//! error naming the message and number, never silently dropped.

mod envelope;
mod error;
mod object;
mod schema;
mod special;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use error::{DecodeError, ObjectError, Problem};

/// The media type of Kubernetes protobuf bodies (the `Content-Type` client-go sends).
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body: `k8s` and a zero byte.
pub const MAGIC: &[u8] = b"k8s\x00";

/// Decodes a `application/vnd.kubernetes.protobuf` body into the object's JSON (apiVersion and
/// kind set from typeMeta).
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    decode_at_depth(body, 0)
}

/// [`decode`] for a body nested `depth` messages deep (a RawExtension holding protobuf).
pub(crate) fn decode_at_depth(body: &[u8], depth: usize) -> Result<Value, DecodeError> {
    let envelope = envelope::open(body)?;
    let def = schema::kind(&envelope.api_version, &envelope.kind).ok_or_else(|| {
        DecodeError::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        }
    })?;
    let mut object = object::decode_message(def, envelope.raw, depth)
        .map_err(|e| e.into_error(&envelope.api_version, &envelope.kind))?;
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    Ok(Value::Object(object))
}
