//! The schema table build/main.rs generates from k8s-pb (numbers, types) and k8s-openapi (JSON
//! names), and the lookups the decoder makes in it.

/// How a message appears in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Struct,
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    RawJson,
    StringList,
    SchemaOrArray,
    SchemaOrBool,
    SchemaOrStringArray,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Card {
    Single,
    Repeated,
    Map,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameSource {
    Openapi,
    OpenapiElsewhere,
    Computed,
}

#[derive(Debug)]
pub(crate) struct FieldDef {
    pub number: u32,
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
    pub zero_is_unset: bool,
    pub inline: bool,
    /// Only the tests read this (to list names no k8s-openapi type confirms).
    #[cfg_attr(not(test), allow(dead_code))]
    pub name_source: NameSource,
}

#[derive(Debug)]
pub(crate) struct MessageDef {
    pub name: &'static str,
    pub shape: Shape,
    pub fields: &'static [FieldDef],
}

#[derive(Debug)]
pub(crate) struct KindDef {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub message: u16,
}

include!(concat!(env!("OUT_DIR"), "/schema.rs"));

/// Kinds every API group version accepts as bodies, from meta.k8s.io/v1 (client-go encodes
/// DeleteOptions under the group version of the resource being deleted).
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "Status",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
    "WatchEvent",
];

impl MessageDef {
    /// The field with this number (fields are sorted by number).
    pub(crate) fn field(&self, number: u32) -> Option<&'static FieldDef> {
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// The message a field of message type holds. Indices come from the generated table, which
/// build/model.rs resolved against the same list.
pub(crate) fn message(index: u16) -> &'static MessageDef {
    &MESSAGES[usize::from(index)]
}

/// The top-level message for an apiVersion and kind.
pub(crate) fn kind(api_version: &str, kind: &str) -> Option<&'static MessageDef> {
    let find = |api_version: &str, kind: &str| {
        KINDS
            .binary_search_by(|k| (k.api_version, k.kind).cmp(&(api_version, kind)))
            .ok()
            .and_then(|i| KINDS.get(i))
            .map(|k| message(k.message))
    };
    find(api_version, kind).or_else(|| {
        let known_group_version = KINDS.iter().any(|k| k.api_version == api_version);
        if known_group_version && META_KINDS.contains(&kind) {
            find("meta.k8s.io/v1", kind)
        } else {
            None
        }
    })
}
