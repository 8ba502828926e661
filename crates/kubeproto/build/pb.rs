//! Reads k8s-pb's prost-generated sources: every `pub struct` with its `#[prost(...)]` fields
//! (number, scalar type or message path, label) and every `impl crate::Resource` (apiVersion,
//! group, kind). Only the facts are taken; no code is copied.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// A module path inside k8s-pb, e.g. `["api", "apps", "v1"]`.
pub type Module = Vec<String>;

pub struct PbMessage {
    pub module: Module,
    /// prost's Rust name, which re-cases acronyms (`HttpGetAction` for `HTTPGetAction`).
    pub rust_name: String,
    pub fields: Vec<PbField>,
}

pub struct PbField {
    pub number: u32,
    /// prost's snake_case name, without a raw-identifier prefix.
    pub rust_name: String,
    pub ty: PbType,
    pub label: Label,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PbType {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Module and Rust name of the message type.
    Message(Module, String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    Optional,
    Repeated,
    /// `map<string, V>`: `ty` is V.
    Map,
}

pub struct PbResource {
    pub module: Module,
    pub rust_name: String,
    pub group: String,
    pub kind: String,
}

pub struct PbCrate {
    pub messages: Vec<PbMessage>,
    pub resources: Vec<PbResource>,
}

pub fn parse(crate_dir: &Path) -> PbCrate {
    let mut files = BTreeMap::new();
    collect(&crate_dir.join("src"), &mut Vec::new(), &mut files);
    let mut out = PbCrate {
        messages: Vec::new(),
        resources: Vec::new(),
    };
    for (module, path) in files {
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        parse_file(&module, &text, &mut out);
    }
    assert!(
        out.messages.len() > 500,
        "k8s-pb at {} yielded only {} messages: has its generated code changed shape?",
        crate_dir.display(),
        out.messages.len()
    );
    out
}

fn collect(dir: &Path, module: &mut Module, out: &mut BTreeMap<Module, std::path::PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            module.push(name);
            collect(&path, module, out);
            module.pop();
        } else if name == "mod.rs" && !module.is_empty() {
            out.insert(module.clone(), path);
        }
    }
}

fn parse_file(module: &Module, text: &str, out: &mut PbCrate) {
    // Doc comments may hold anything (braces, `pub struct` in prose): drop them first.
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("pub struct ") {
        rest = &rest[at + "pub struct ".len()..];
        let name_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .expect("struct name ends");
        let name = &rest[..name_end];
        let open = rest.find('{').expect("struct body opens");
        assert!(
            rest[name_end..open].trim().is_empty(),
            "{name}: expected a braced struct body"
        );
        let close = rest[open..].find('}').expect("struct body closes") + open;
        let body = &rest[open + 1..close];
        out.messages.push(PbMessage {
            module: module.clone(),
            rust_name: name.to_string(),
            fields: parse_fields(module, name, body),
        });
        rest = &rest[close..];
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find("impl crate::Resource for ") {
        rest = &rest[at + "impl crate::Resource for ".len()..];
        let name = rest.split_whitespace().next().expect("impl names a type");
        let block = &rest[..rest.find('}').expect("impl block closes")];
        out.resources.push(PbResource {
            module: module.clone(),
            rust_name: name.to_string(),
            group: const_str(block, "GROUP"),
            kind: const_str(block, "KIND"),
        });
    }
}

fn const_str(block: &str, name: &str) -> String {
    let key = format!("const {name}: &'static str = \"");
    let at = block
        .find(&key)
        .unwrap_or_else(|| panic!("Resource impl without {name}: {block}"));
    let value = &block[at + key.len()..];
    value[..value.find('"').expect("string closes")].to_string()
}

fn parse_fields(module: &Module, message: &str, body: &str) -> Vec<PbField> {
    let mut fields = Vec::new();
    for chunk in body.split("#[prost(").skip(1) {
        let attr_end = chunk.find(")]").expect("prost attribute closes");
        let attr = &chunk[..attr_end];
        let decl = chunk[attr_end + 2..].trim();
        let decl = decl.strip_prefix("pub ").unwrap_or_else(|| {
            panic!("{message}: field after #[prost({attr})] is not `pub`: {decl}")
        });
        let colon = decl.find(':').expect("field has a type");
        let rust_name = decl[..colon].trim().trim_start_matches("r#").to_string();
        let rust_type: String = decl[colon + 1..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // rustfmt leaves a trailing comma in generics it breaks over lines.
        let rust_type = rust_type.trim_end_matches(',').replace(",>", ">");
        fields.push(parse_field(module, message, attr, &rust_name, &rust_type));
    }
    fields
}

fn parse_field(module: &Module, message: &str, attr: &str, name: &str, rust_type: &str) -> PbField {
    let parts = split_attr(attr);
    let mut number = None;
    let mut label = Label::Optional;
    let mut ty = None;
    for part in &parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (part.trim(), None),
        };
        match (key, value) {
            ("tag", Some(v)) => number = Some(v.parse::<u32>().expect("numeric tag")),
            ("optional" | "boxed" | "packed", _) => {}
            ("repeated", None) => label = Label::Repeated,
            ("btree_map" | "map", Some(kv)) => {
                label = Label::Map;
                let (k, v) = kv.split_once(',').expect("map has key and value types");
                assert_eq!(
                    k.trim(),
                    "string",
                    "{message}.{name}: map key is not a string"
                );
                ty = Some(scalar_or_message(
                    module,
                    message,
                    name,
                    v.trim(),
                    rust_type,
                ));
            }
            ("bytes", Some(_)) => ty = Some(PbType::Bytes),
            (scalar, None) if ty.is_none() => {
                ty = Some(scalar_or_message(module, message, name, scalar, rust_type))
            }
            _ => panic!("{message}.{name}: unexpected prost attribute part {part:?}"),
        }
    }
    PbField {
        number: number.unwrap_or_else(|| panic!("{message}.{name} has no tag")),
        rust_name: name.to_string(),
        ty: ty.unwrap_or_else(|| panic!("{message}.{name} has no type in #[prost({attr})]")),
        label,
    }
}

fn split_attr(attr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in attr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

fn scalar_or_message(module: &Module, message: &str, field: &str, ty: &str, rust: &str) -> PbType {
    match ty {
        "string" => PbType::String,
        "bytes" => PbType::Bytes,
        "bool" => PbType::Bool,
        "int32" => PbType::Int32,
        "int64" => PbType::Int64,
        "double" => PbType::Double,
        "message" => {
            let path = message_path(rust);
            resolve(module, &path)
        }
        other => panic!("{message}.{field}: unsupported protobuf type {other}"),
    }
}

/// The message path inside a field's Rust type: the last type argument with its wrappers
/// (`Option`, `Vec`, `Box`, `BTreeMap<String, _>`) taken off.
fn message_path(rust: &str) -> String {
    let mut inner = rust;
    while let Some(open) = inner.find('<') {
        let args = &inner[open + 1..inner.rfind('>').expect("generic closes")];
        // A map's value is its second type argument.
        inner = match args.split_once(',') {
            Some((_, value)) if inner[..open].ends_with("BTreeMap") => value,
            _ => args,
        };
    }
    inner.to_string()
}

fn resolve(module: &Module, path: &str) -> PbType {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let name = segments.pop().expect("path names a type").to_string();
    let mut resolved = if segments.first() == Some(&"crate") {
        segments.remove(0);
        Vec::new()
    } else {
        module.clone()
    };
    for segment in segments {
        if segment == "super" {
            resolved.pop().expect("super:: stays inside the crate");
        } else {
            resolved.push(segment.to_string());
        }
    }
    PbType::Message(resolved, name)
}
