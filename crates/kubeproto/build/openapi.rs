//! Reads the exact JSON names of every API type from k8s-openapi's sources: each file holds one
//! type, and its serde visitor maps JSON keys (`"podIP" => Field::Key_pod_ip`). prost's
//! snake_case names lose the upstream casing (`pod_ips`, `u_id` for `uid`), so these are the
//! names the decoder writes; only the facts are taken, no code.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::pb::Module;

pub struct OpenapiType {
    /// The upstream name, with its acronyms (`HTTPGetAction`).
    pub name: String,
    /// The JSON keys its deserializer accepts, `apiVersion` and `kind` included.
    pub json_names: Vec<String>,
}

/// Types by module and lower-cased name (prost and k8s-openapi case acronyms differently).
pub type OpenapiTypes = BTreeMap<(Module, String), OpenapiType>;

pub fn parse(version_dir: &Path) -> OpenapiTypes {
    let mut out = BTreeMap::new();
    collect(version_dir, &mut Vec::new(), &mut out);
    assert!(
        out.len() > 500,
        "k8s-openapi at {} yielded only {} types: has its generated code changed shape?",
        version_dir.display(),
        out.len()
    );
    out
}

fn collect(dir: &Path, module: &mut Module, out: &mut OpenapiTypes) {
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
        } else if name.ends_with(".rs") && name != "mod.rs" && !module.is_empty() {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            if let Some(ty) = parse_type(&text) {
                out.insert((module.clone(), ty.name.to_lowercase()), ty);
            }
        }
    }
}

fn parse_type(text: &str) -> Option<OpenapiType> {
    let at = text.find("\npub struct ")?;
    let rest = &text[at + "\npub struct ".len()..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    let name = rest[..end].to_string();
    let json_names = text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (key, rest) = line.strip_prefix('"')?.split_once('"')?;
            rest.trim_start()
                .starts_with("=> Field::Key_")
                .then(|| key.to_string())
        })
        .collect();
    Some(OpenapiType { name, json_names })
}
