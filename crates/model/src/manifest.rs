//! Manifests to objects: multi-document YAML or JSON, and `kind: List`, parsed into [`Object`]s and
//! validated as one set, with errors that say which file, document, object and field is wrong.

mod checks;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::object::{Object, ObjectKey};

/// A manifest problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file name, `<stdin>`, or whatever the caller passed as source.
    pub source: String,
    /// 1-based document number inside the source; 0 when the error is not about one document.
    pub document: usize,
    /// The object, as `Deployment default/web`, when known.
    pub object: Option<String>,
    /// The field, as `spec.replicas`, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.source)?;
        if self.document > 0 {
            write!(f, " document {}", self.document)?;
            if let Some(object) = &self.object {
                write!(f, " ({object})")?;
            }
            f.write_str(":")?;
        } else if let Some(object) = &self.object {
            write!(f, " {object}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// One parsed object and where it came from.
struct Located {
    source: String,
    document: usize,
    object: Object,
}

fn error(source: &str, document: usize, message: impl Into<String>) -> ManifestError {
    ManifestError {
        source: source.to_string(),
        document,
        object: None,
        field: None,
        message: message.into(),
    }
}

/// Splits the text into (document number, JSON value) pairs, skipping empty documents.
fn documents(source: &str, text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // One JSON value or several in a row (`kubectl get -o json` output, concatenated). YAML
        // flow style (`{kind: Pod}`) also starts with a brace: fall back to YAML before failing.
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let json: Result<Vec<(usize, Value)>, _> = stream
            .enumerate()
            .map(|(i, value)| value.map(|v| (i + 1, v)))
            .collect();
        return match json {
            Ok(values) => Ok(values),
            // JSON documents between `---` lines, as kubectl takes them: JSON is YAML's flow style,
            // so YAML reads them, numbered and located in the whole file like YAML documents.
            Err(_) if text.lines().any(is_document_marker) => yaml_documents(source, text),
            // Meant as JSON, so report the JSON error rather than YAML's reading.
            Err(json_error) if meant_as_json(text) => {
                Err(error(source, 1, format!("malformed JSON: {json_error}")))
            }
            Err(_) => yaml_documents(source, text),
        };
    }
    yaml_documents(source, text)
}

/// A JSON list, or an object whose first key is quoted: YAML flow style (`{kind: Pod}`) is not.
fn meant_as_json(document: &str) -> bool {
    let trimmed = document.trim_start();
    trimmed.starts_with('[')
        || trimmed
            .strip_prefix('{')
            .is_some_and(|rest| rest.trim_start().starts_with('"'))
}

/// A line that starts a new YAML document: `---` alone, or followed by a space and content.
fn is_document_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Whether the document holding the 1-based `line` and `column` is written as JSON, to name the
/// syntax in errors: YAML's parser reads JSON documents too, and reports their mistakes.
fn json_document_at(text: &str, line: usize, column: usize) -> bool {
    let mut start = 0;
    let mut offset = 0;
    for (number, content) in (1..=line).zip(text.split_inclusive('\n')) {
        // An error on the `---` itself is about the document it ends (an unclosed brace, say).
        if is_document_marker(content.trim_end_matches('\n')) && (number < line || column > 3) {
            start = offset + "---".len();
        }
        offset += content.len();
    }
    text.get(start..).is_some_and(meant_as_json)
}

fn yaml_documents(source: &str, text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let mut out = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = Value::deserialize(document).map_err(|e| {
            let syntax = match e.location() {
                Some(at) if json_document_at(text, at.line(), at.column()) => "JSON",
                _ => "YAML",
            };
            error(source, number, format!("malformed {syntax}: {e}"))
        })?;
        if !value.is_null() {
            out.push((number, value));
        }
    }
    Ok(out)
}

/// `Kind namespace/name` for messages, from whatever the raw value has (before it is known valid).
fn describe(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    if Object::is_namespaced_kind(kind) {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default");
        Some(format!("{kind} {ns}/{name}"))
    } else {
        Some(format!("{kind} {name}"))
    }
}

fn is_list(value: &Value) -> bool {
    value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && value.get("items").is_some()
}

/// Parses one source into located objects, checking each object on its own.
fn parse_located(source: &str, text: &str) -> Result<Vec<Located>, ManifestError> {
    let mut out = Vec::new();
    for (document, value) in documents(source, text)? {
        let values = if is_list(&value) {
            match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) => Vec::new(),
                _ => {
                    return Err(ManifestError {
                        field: Some("items".into()),
                        ..error(source, document, "a List's items must be a list")
                    })
                }
            }
        } else {
            vec![value]
        };
        for value in values {
            let object = parse_object(source, document, value)?;
            out.push(Located {
                source: source.to_string(),
                document,
                object,
            });
        }
    }
    Ok(out)
}

fn parse_object(source: &str, document: usize, value: Value) -> Result<Object, ManifestError> {
    let described = describe(&value);
    let fail = |field: Option<String>, message: String| ManifestError {
        source: source.to_string(),
        document,
        object: described.clone(),
        field,
        message,
    };
    checks::check_raw(&value).map_err(|(field, message)| fail(Some(field), message))?;
    let input = value.clone();
    let mut object = Object::from_json(value).map_err(|e| fail(e.field(), e.message()))?;
    if object.is_handled() {
        // Like kubectl's strict field validation: a misspelt field would otherwise vanish silently.
        if let Some(path) = checks::unknown_field(&input, &object.to_json(), "") {
            return Err(fail(Some(path), "unknown field".to_string()));
        }
    }
    let namespaced = Object::is_namespaced_kind(object.kind());
    let meta = object.metadata_mut();
    if namespaced {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".to_string());
        }
    } else {
        // Kubernetes ignores a namespace on cluster-scoped objects; dropping it keeps keys unique.
        meta.namespace = None;
    }
    checks::check_object(&object).map_err(|(field, message)| fail(field, message))?;
    Ok(object)
}

/// Refuses two objects with the same kind, namespace and name anywhere in the set.
fn check_duplicates(located: &[Located]) -> Result<(), ManifestError> {
    let mut seen: BTreeMap<ObjectKey, &Located> = BTreeMap::new();
    for item in located {
        let key = item.object.key();
        if let Some(first) = seen.get(&key) {
            let message = if first.source == item.source {
                format!(
                    "duplicate {key}: documents {} and {}",
                    first.document, item.document
                )
            } else {
                format!(
                    "duplicate {key}: {} document {} and {} document {}",
                    first.source, first.document, item.source, item.document
                )
            };
            return Err(error(&item.source, 0, message));
        }
        seen.insert(key, item);
    }
    Ok(())
}

/// Parses a manifest: multi-document YAML (`---`), JSON objects (one after another, or as documents
/// between `---` lines, also mixed with YAML ones), or a `List` (JSON or YAML) with `items`. Empty
/// documents are skipped; namespaced objects without a namespace get `default`. Kinds weft does not
/// handle become [`Object::Other`].
pub fn parse(source: &str, text: &str) -> Result<Vec<Object>, ManifestError> {
    let located = parse_located(source, text)?;
    check_duplicates(&located)?;
    Ok(located.into_iter().map(|l| l.object).collect())
}

fn manifest_files_in(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let source = dir.display().to_string();
    let entries =
        std::fs::read_dir(dir).map_err(|e| error(&source, 0, format!("cannot list: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| error(&source, 0, format!("cannot list: {e}")))?
            .path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses files, directories (their `*.yaml`, `*.yml` and `*.json` files, sorted by name,
/// not recursive) and `-` for stdin, validating all documents together (duplicates across files
/// are refused).
pub fn read_files(paths: &[PathBuf]) -> Result<Vec<Object>, ManifestError> {
    let mut sources: Vec<(String, String)> = Vec::new();
    let read = |path: &Path| {
        let source = path.display().to_string();
        std::fs::read_to_string(path)
            .map(|text| (source.clone(), text))
            .map_err(|e| error(&source, 0, format!("cannot read: {e}")))
    };
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| error("<stdin>", 0, format!("cannot read: {e}")))?;
            sources.push(("<stdin>".to_string(), text));
        } else if path.is_dir() {
            for file in manifest_files_in(path)? {
                sources.push(read(&file)?);
            }
        } else {
            sources.push(read(path)?);
        }
    }
    let mut located = Vec::new();
    for (source, text) in &sources {
        located.extend(parse_located(source, text)?);
    }
    check_duplicates(&located)?;
    Ok(located.into_iter().map(|l| l.object).collect())
}

#[cfg(test)]
mod tests;
