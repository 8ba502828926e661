//! Tests: a tiny protobuf encoder to hand-build bodies the way client-go's (gogo) encoder
//! writes them, objects kubectl sends checked against exact JSON and k8s-openapi, error
//! reporting, schema-wide checks against k8s-openapi, and property tests on arbitrary bytes.

mod coverage;
mod errors;
mod objects;
mod props;

use serde_json::Value;

/// A message being built; fields are appended in the order the test writes them.
#[derive(Clone, Default)]
pub(crate) struct Msg(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub(crate) fn new() -> Self {
        Msg(Vec::new())
    }

    fn key(&mut self, field: u32, wire: u8) {
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    pub(crate) fn varint(mut self, field: u32, v: u64) -> Self {
        self.key(field, 0);
        put_varint(&mut self.0, v);
        self
    }

    /// int32/int64: negative values are sign-extended to ten bytes, as protobuf does.
    pub(crate) fn int(self, field: u32, v: i64) -> Self {
        self.varint(field, v as u64)
    }

    pub(crate) fn boolean(self, field: u32, b: bool) -> Self {
        self.varint(field, u64::from(b))
    }

    pub(crate) fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn string(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    pub(crate) fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }

    pub(crate) fn double(mut self, field: u32, x: f64) -> Self {
        self.key(field, 1);
        self.0.extend_from_slice(&x.to_bits().to_le_bytes());
        self
    }

    /// A `map<string, string>` entry.
    pub(crate) fn entry(self, field: u32, key: &str, value: &str) -> Self {
        self.msg(field, Msg::new().string(1, key).string(2, value))
    }

    /// A `map<string, Message>` entry.
    pub(crate) fn entry_msg(self, field: u32, key: &str, value: Msg) -> Self {
        self.msg(field, Msg::new().string(1, key).msg(2, value))
    }

    pub(crate) fn raw(self, bytes: &[u8]) -> Self {
        let mut out = self;
        out.0.extend_from_slice(bytes);
        out
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The full body: prefix, then runtime.Unknown as client-go writes it (contentEncoding and
/// contentType present and empty).
pub(crate) fn body(api_version: &str, kind: &str, object: &Msg) -> Vec<u8> {
    let unknown = Msg::new()
        .msg(1, Msg::new().string(1, api_version).string(2, kind))
        .bytes(2, object.as_bytes())
        .string(3, "")
        .string(4, "");
    let mut out = crate::MAGIC.to_vec();
    out.extend_from_slice(unknown.as_bytes());
    out
}

/// Decodes and fails the test with the error's message.
pub(crate) fn decoded(body: &[u8]) -> Value {
    match crate::decode(body) {
        Ok(v) => v,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// Parses `json` as the k8s-openapi type and writes it back: equal to the input only if every
/// field name and value form is one k8s-openapi knows (it ignores unknown fields).
pub(crate) fn openapi_roundtrip<T>(json: &Value) -> Value
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = match serde_json::from_value(json.clone()) {
        Ok(t) => t,
        Err(e) => panic!("{} rejects {json}: {e}", std::any::type_name::<T>()),
    };
    match serde_json::to_value(typed) {
        Ok(v) => v,
        Err(e) => panic!("{} does not serialize: {e}", std::any::type_name::<T>()),
    }
}
