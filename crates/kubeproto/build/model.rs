//! Joins the two sources into the decoder's schema: k8s-pb gives numbers and types, k8s-openapi
//! the JSON names (and, by their absence, the Go structs embedded with `json:",inline"`), and
//! `value_fields.txt` the Go value fields whose zero value means "unset".

use std::collections::{BTreeMap, BTreeSet};

use crate::openapi::{OpenapiType, OpenapiTypes};
use crate::pb::{Label, Module, PbCrate, PbField, PbMessage, PbType};

pub struct Schema {
    pub messages: Vec<Message>,
    pub kinds: Vec<Kind>,
}

pub struct Message {
    pub full_name: String,
    pub shape: Shape,
    /// Sorted by number.
    pub fields: Vec<Field>,
}

pub struct Field {
    pub number: u32,
    pub json: String,
    pub ty: Ty,
    pub label: Label,
    pub zero_is_unset: bool,
    pub inline: bool,
    pub name_source: NameSource,
}

#[derive(Clone, Copy)]
pub enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(usize),
}

/// How a message appears in JSON; names match the runtime `Shape`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
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

/// Where a field's JSON name came from; the tests list the computed ones.
#[derive(Clone, Copy, Debug)]
pub enum NameSource {
    /// The k8s-openapi type of the same API version (or of the type embedding this one).
    Openapi,
    /// A k8s-openapi type of the same name in another API version (older versions).
    OpenapiElsewhere,
    /// Neither knows the field (newer than k8s-openapi's module): camelCase with acronyms.
    Computed,
}

pub struct Kind {
    pub api_version: String,
    pub kind: String,
    pub message: usize,
}

const META_V1: &[&str] = &["apimachinery", "pkg", "apis", "meta", "v1"];

/// Groups with no `impl Resource` in k8s-pb to learn their module from.
const EXTRA_GROUPS: &[(&str, &[&str])] = &[
    ("meta.k8s.io", &["apimachinery", "pkg", "apis", "meta"]),
    ("admission.k8s.io", &["api", "admission"]),
    ("imagepolicy.k8s.io", &["api", "imagepolicy"]),
    ("apidiscovery.k8s.io", &["api", "apidiscovery"]),
    ("extensions", &["api", "extensions"]),
    ("metrics.k8s.io", &["metrics", "pkg", "apis", "metrics"]),
    (
        "custom.metrics.k8s.io",
        &["metrics", "pkg", "apis", "custom_metrics"],
    ),
    (
        "external.metrics.k8s.io",
        &["metrics", "pkg", "apis", "external_metrics"],
    ),
];

/// Kinds sent as bodies that have no `metadata` (so the rule below does not find them).
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
    "WatchEvent",
];

pub fn build(pb: &PbCrate, openapi: &OpenapiTypes, value_fields: &str) -> Schema {
    let index: BTreeMap<(&Module, &str), usize> = pb
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| ((&m.module, m.rust_name.as_str()), i))
        .collect();
    let lookup = |module: &Module, name: &str| -> usize {
        *index.get(&(module, name)).unwrap_or_else(|| {
            panic!(
                "k8s-pb refers to {}::{name}, which it does not define",
                module.join("::")
            )
        })
    };
    let upstream = |m: &PbMessage| -> Option<&OpenapiType> {
        openapi.get(&(m.module.clone(), m.rust_name.to_lowercase()))
    };
    let shapes: Vec<Shape> = pb.messages.iter().map(shape_of).collect();
    // Go structs embedded with `json:",inline"` have no JSON type of their own: their fields
    // are named by the type that embeds them (VolumeSource's by Volume's).
    let mut hosts: Vec<Vec<&OpenapiType>> = vec![Vec::new(); pb.messages.len()];
    for m in &pb.messages {
        let Some(own) = upstream(m) else { continue };
        for f in &m.fields {
            if let (PbType::Message(module, name), Label::Optional) = (&f.ty, f.label) {
                let child = lookup(module, name);
                if find_json(own, &f.rust_name).is_none()
                    && embedded_in(own, Ty::Message(child), pb, &shapes, 0)
                {
                    hosts[child].push(own);
                }
            }
        }
    }
    let mut messages = Vec::with_capacity(pb.messages.len());
    for (i, m) in pb.messages.iter().enumerate() {
        let name = upstream(m).map_or(m.rust_name.as_str(), |t| t.name.as_str());
        let full_name = format!("k8s.io.{}.{}", m.module.join("."), name);
        let confirmed: Vec<&OpenapiType> = upstream(m)
            .into_iter()
            .chain(hosts[i].iter().copied())
            .collect();
        let elsewhere: Vec<&OpenapiType> = openapi
            .iter()
            .filter(|((module, lower), _)| {
                *lower == m.rust_name.to_lowercase() && *module != m.module
            })
            .map(|(_, t)| t)
            .collect();
        let mut fields: Vec<Field> = m
            .fields
            .iter()
            .map(|f| {
                let ty = match &f.ty {
                    PbType::String => Ty::String,
                    PbType::Bytes => Ty::Bytes,
                    PbType::Bool => Ty::Bool,
                    PbType::Int32 => Ty::Int32,
                    PbType::Int64 => Ty::Int64,
                    PbType::Double => Ty::Double,
                    PbType::Message(module, name) => Ty::Message(lookup(module, name)),
                };
                let (json, name_source, inline) =
                    json_name(f, ty, &confirmed, &elsewhere, pb, &shapes);
                Field {
                    number: f.number,
                    json,
                    ty,
                    label: f.label,
                    zero_is_unset: false,
                    inline,
                    name_source,
                }
            })
            .collect();
        fields.sort_by_key(|f| f.number);
        for pair in fields.windows(2) {
            assert!(
                pair[0].number != pair[1].number,
                "{full_name}: field {} twice",
                pair[0].number
            );
        }
        check_shape(&full_name, shapes[i], &fields);
        messages.push(Message {
            full_name,
            shape: shapes[i],
            fields,
        });
    }
    apply_value_fields(&mut messages, value_fields);
    let kinds = kinds(pb, &messages, openapi, &lookup);
    Schema { messages, kinds }
}

fn shape_of(m: &PbMessage) -> Shape {
    let module: Vec<&str> = m.module.iter().map(String::as_str).collect();
    let apiextensions = module.len() == 5
        && module[..4] == ["apiextensions_apiserver", "pkg", "apis", "apiextensions"];
    match (module.as_slice(), m.rust_name.as_str()) {
        (META_V1, "Time") => Shape::Time,
        (META_V1, "MicroTime") => Shape::MicroTime,
        (META_V1, "Duration") => Shape::Duration,
        (META_V1, "FieldsV1") => Shape::RawJson,
        (["apimachinery", "pkg", "runtime"], "RawExtension") => Shape::RawJson,
        (["apimachinery", "pkg", "api", "resource"], "Quantity") => Shape::Quantity,
        (["apimachinery", "pkg", "util", "intstr"], "IntOrString") => Shape::IntOrString,
        (_, "Json") if apiextensions => Shape::RawJson,
        (_, "JsonSchemaPropsOrArray") if apiextensions => Shape::SchemaOrArray,
        (_, "JsonSchemaPropsOrBool") if apiextensions => Shape::SchemaOrBool,
        (_, "JsonSchemaPropsOrStringArray") if apiextensions => Shape::SchemaOrStringArray,
        // Go's named string slices (`type Verbs []string`, `type ExtraValue []string`) become a
        // message with one repeated `items`, but their JSON is the bare array.
        _ if m.fields.len() == 1
            && m.fields[0].number == 1
            && m.fields[0].rust_name == "items"
            && m.fields[0].ty == PbType::String
            && m.fields[0].label == Label::Repeated =>
        {
            Shape::StringList
        }
        _ => Shape::Struct,
    }
}

/// The decoder reads special messages by field number; fail the build if k8s-pb disagrees.
fn check_shape(full_name: &str, shape: Shape, fields: &[Field]) {
    let expect: &[(u32, &str)] = match shape {
        Shape::Struct => return,
        Shape::Time | Shape::MicroTime => &[(1, "int64"), (2, "int32")],
        Shape::Duration => &[(1, "int64")],
        Shape::Quantity => &[(1, "string")],
        Shape::IntOrString => &[(1, "int64"), (2, "int32"), (3, "string")],
        Shape::RawJson => &[(1, "bytes")],
        Shape::StringList => &[(1, "string")],
        Shape::SchemaOrArray => &[(1, "message"), (2, "message")],
        Shape::SchemaOrBool => &[(1, "bool"), (2, "message")],
        Shape::SchemaOrStringArray => &[(1, "message"), (2, "string")],
    };
    let got: Vec<(u32, &str)> = fields
        .iter()
        .map(|f| {
            let ty = match f.ty {
                Ty::String => "string",
                Ty::Bytes => "bytes",
                Ty::Bool => "bool",
                Ty::Int32 => "int32",
                Ty::Int64 => "int64",
                Ty::Double => "double",
                Ty::Message(_) => "message",
            };
            (f.number, ty)
        })
        .collect();
    assert_eq!(
        got, expect,
        "{full_name}: fields differ from what its {shape:?} decoder reads"
    );
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn find_json<'a>(ty: &'a OpenapiType, rust_name: &str) -> Option<&'a str> {
    let wanted = normalize(rust_name);
    ty.json_names
        .iter()
        .find(|j| normalize(j) == wanted)
        .map(String::as_str)
}

fn json_name(
    f: &PbField,
    ty: Ty,
    confirmed: &[&OpenapiType],
    elsewhere: &[&OpenapiType],
    pb: &PbCrate,
    shapes: &[Shape],
) -> (String, NameSource, bool) {
    let candidates = confirmed
        .iter()
        .map(|t| (*t, NameSource::Openapi))
        .chain(elsewhere.iter().map(|t| (*t, NameSource::OpenapiElsewhere)));
    for (candidate, source) in candidates {
        if let Some(json) = find_json(candidate, &f.rust_name) {
            return (json.to_string(), source, false);
        }
        if f.label == Label::Optional && embedded_in(candidate, ty, pb, shapes, 0) {
            return (String::new(), source, true);
        }
    }
    (camel_case(&f.rust_name), NameSource::Computed, false)
}

/// An embedded Go struct (`json:",inline"`) is a field in the proto but its fields are the
/// parent's in JSON: the parent's JSON type has all of the child's fields (or, for an embedded
/// struct that embeds another, the grandchild's).
fn embedded_in(parent: &OpenapiType, ty: Ty, pb: &PbCrate, shapes: &[Shape], depth: u32) -> bool {
    let Ty::Message(child) = ty else { return false };
    let fields = &pb.messages[child].fields;
    depth < 4
        && shapes[child] == Shape::Struct
        && !fields.is_empty()
        && fields.iter().all(|cf| {
            find_json(parent, &cf.rust_name).is_some()
                || (cf.label == Label::Optional
                    && match &cf.ty {
                        PbType::Message(module, name) => pb
                            .messages
                            .iter()
                            .position(|m| &m.module == module && &m.rust_name == name)
                            .is_some_and(|i| {
                                embedded_in(parent, Ty::Message(i), pb, shapes, depth + 1)
                            }),
                        _ => false,
                    })
        })
}

/// Kubernetes' JSON names are lowerCamelCase with acronyms kept upper-case (`podIPs`,
/// `clusterIP`, `hostPID`); only for fields no k8s-openapi type names.
fn camel_case(snake: &str) -> String {
    const ACRONYMS: &[&str] = &[
        "api", "cidr", "cidrs", "cpu", "dns", "fqdn", "http", "id", "ids", "io", "ip", "ipc",
        "ips", "json", "pid", "tcp", "tls", "udp", "uid", "uids", "url", "uuid",
    ];
    let mut out = String::new();
    for (i, part) in snake.split('_').filter(|p| !p.is_empty()).enumerate() {
        if i == 0 {
            out.push_str(part);
        } else if ACRONYMS.contains(&part) {
            // Plurals keep a lower-case `s`: `IPs`, `CIDRs`.
            match part
                .strip_suffix('s')
                .filter(|stem| ACRONYMS.contains(stem))
            {
                Some(stem) => {
                    out.push_str(&stem.to_uppercase());
                    out.push('s');
                }
                None => out.push_str(&part.to_uppercase()),
            }
        } else {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

/// Marks the fields listed in `value_fields.txt` (lines `<message full name> <json name>...`).
fn apply_value_fields(messages: &mut [Message], text: &str) {
    let by_name: BTreeMap<String, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.full_name.to_lowercase(), i))
        .collect();
    let mut seen = BTreeSet::new();
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(message) = words.next() else {
            continue;
        };
        assert!(
            seen.insert(message.to_lowercase()),
            "value_fields.txt:{}: {message} listed twice",
            line_no + 1
        );
        let Some(&index) = by_name.get(&message.to_lowercase()) else {
            panic!(
                "value_fields.txt:{}: no message {message} in k8s-pb",
                line_no + 1
            )
        };
        for json in words {
            let field = messages[index]
                .fields
                .iter_mut()
                .find(|f| f.json == json)
                .unwrap_or_else(|| {
                    panic!(
                        "value_fields.txt:{}: {message} has no field {json}",
                        line_no + 1
                    )
                });
            assert!(
                field.label == Label::Optional && !matches!(field.ty, Ty::Message(_)),
                "value_fields.txt:{}: {message}.{json} is not a single scalar",
                line_no + 1
            );
            field.zero_is_unset = true;
        }
    }
}

fn kinds(
    pb: &PbCrate,
    messages: &[Message],
    openapi: &OpenapiTypes,
    lookup: &dyn Fn(&Module, &str) -> usize,
) -> Vec<Kind> {
    let mut groups: BTreeMap<String, Module> = BTreeMap::new();
    for r in &pb.resources {
        let prefix = r.module[..r.module.len() - 1].to_vec();
        if let Some(known) = groups.insert(r.group.clone(), prefix.clone()) {
            assert_eq!(known, prefix, "group {:?} lives in two modules", r.group);
        }
    }
    for (group, module) in EXTRA_GROUPS {
        groups
            .entry(group.to_string())
            .or_insert_with(|| module.iter().map(|s| s.to_string()).collect());
    }
    let object_meta = lookup(
        &META_V1.iter().map(|s| s.to_string()).collect(),
        "ObjectMeta",
    );
    let list_meta = lookup(&META_V1.iter().map(|s| s.to_string()).collect(), "ListMeta");
    let mut kinds = Vec::new();
    for (group, prefix) in &groups {
        for (i, m) in pb.messages.iter().enumerate() {
            if m.module.len() != prefix.len() + 1 || !m.module.starts_with(prefix) {
                continue;
            }
            let has_metadata = messages[i].fields.iter().any(|f| {
                f.number == 1
                    && f.json == "metadata"
                    && matches!(f.ty, Ty::Message(t) if t == object_meta || t == list_meta)
            });
            let is_meta_kind = group == "meta.k8s.io" && META_KINDS.contains(&m.rust_name.as_str());
            if !has_metadata && !is_meta_kind {
                continue;
            }
            let version = &m.module[m.module.len() - 1];
            let api_version = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            let kind = pb
                .resources
                .iter()
                .find(|r| r.module == m.module && r.rust_name == m.rust_name)
                .map(|r| r.kind.clone())
                .or_else(|| {
                    openapi
                        .get(&(m.module.clone(), m.rust_name.to_lowercase()))
                        .map(|t| t.name.clone())
                })
                .unwrap_or_else(|| m.rust_name.clone());
            kinds.push(Kind {
                api_version,
                kind,
                message: i,
            });
        }
    }
    kinds.sort_by(|a, b| (&a.api_version, &a.kind).cmp(&(&b.api_version, &b.kind)));
    for pair in kinds.windows(2) {
        assert!(
            (&pair[0].api_version, &pair[0].kind) != (&pair[1].api_version, &pair[1].kind),
            "kind {} {} found twice",
            pair[0].api_version,
            pair[0].kind
        );
    }
    kinds
}
