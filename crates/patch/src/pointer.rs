//! JSON pointers (RFC 6901) and finding what they point at in a document.

use crate::error::JsonPatchFailure;
use crate::value::kind_name;
use serde_json::Value;

/// A parsed JSON pointer: `/spec/containers/0/image`, with `~1` for `/` and `~0` for `~`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    pub(crate) fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer { tokens: Vec::new() });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must be empty or start with \"/\""
            ));
        };
        let tokens = rest
            .split('/')
            .map(|raw| {
                unescape(raw).ok_or_else(|| {
                    format!("{text:?} is not a JSON pointer: \"~\" must be followed by 0 or 1")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Pointer { tokens })
    }

    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether `self` lies strictly inside `other` (`/a/b` inside `/a`).
    pub(crate) fn is_inside(&self, other: &Pointer) -> bool {
        self.tokens.len() > other.tokens.len() && self.tokens.starts_with(&other.tokens)
    }

    /// The pointer text of the first `len` tokens, for messages.
    pub(crate) fn prefix(&self, len: usize) -> String {
        self.tokens[..len.min(self.tokens.len())]
            .iter()
            .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
            .collect()
    }

    pub(crate) fn text(&self) -> String {
        self.prefix(self.tokens.len())
    }

    /// The value this pointer names.
    pub(crate) fn resolve<'v>(&self, doc: &'v Value) -> Result<&'v Value, JsonPatchFailure> {
        let mut current = doc;
        for (depth, token) in self.tokens.iter().enumerate() {
            current = match current {
                Value::Object(map) => map
                    .get(token)
                    .ok_or_else(|| JsonPatchFailure::Missing(self.prefix(depth + 1)))?,
                Value::Array(list) => {
                    let index = self.element_index(depth, list.len())?;
                    &list[index]
                }
                other => return Err(self.not_a_container(depth, other)),
            };
        }
        Ok(current)
    }

    /// The value named by the first `len` tokens, for changing it.
    pub(crate) fn resolve_mut<'v>(
        &self,
        doc: &'v mut Value,
        len: usize,
    ) -> Result<&'v mut Value, JsonPatchFailure> {
        let mut current = doc;
        for (depth, token) in self.tokens.iter().take(len).enumerate() {
            current = match current {
                Value::Object(map) => map
                    .get_mut(token)
                    .ok_or_else(|| JsonPatchFailure::Missing(self.prefix(depth + 1)))?,
                Value::Array(list) => {
                    let index = self.element_index(depth, list.len())?;
                    &mut list[index]
                }
                other => return Err(self.not_a_container(depth, other)),
            };
        }
        Ok(current)
    }

    /// The index of an existing element named by token `depth` in a list of `len` elements.
    pub(crate) fn element_index(
        &self,
        depth: usize,
        len: usize,
    ) -> Result<usize, JsonPatchFailure> {
        let index = self.index_token(depth)?;
        if index < len {
            Ok(index)
        } else {
            Err(JsonPatchFailure::OutOfRange {
                at: self.prefix(depth),
                index,
                len,
            })
        }
    }

    /// Token `depth` read as a list index: decimal digits, no sign, no leading zero.
    pub(crate) fn index_token(&self, depth: usize) -> Result<usize, JsonPatchFailure> {
        let token = &self.tokens[depth];
        let canonical = !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_digit())
            && (token == "0" || !token.starts_with('0'));
        canonical
            .then(|| token.parse().ok())
            .flatten()
            .ok_or_else(|| JsonPatchFailure::BadIndex {
                at: self.prefix(depth),
                token: token.clone(),
            })
    }

    pub(crate) fn not_a_container(&self, depth: usize, found: &Value) -> JsonPatchFailure {
        JsonPatchFailure::NotAContainer {
            at: self.prefix(depth),
            found: kind_name(found),
        }
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_decode_and_render_back() {
        let p = Pointer::parse("/metadata/annotations/a~1b~0c").unwrap();
        assert_eq!(p.tokens(), ["metadata", "annotations", "a/b~c"]);
        assert_eq!(p.text(), "/metadata/annotations/a~1b~0c");
        // "~01" is "~" then "1", not "/".
        assert_eq!(Pointer::parse("/~01").unwrap().tokens(), ["~1"]);
        assert_eq!(Pointer::parse("/").unwrap().tokens(), [""]);
        assert!(Pointer::parse("").unwrap().tokens().is_empty());
    }

    #[test]
    fn malformed_pointers_are_refused() {
        assert!(Pointer::parse("spec").unwrap_err().contains("start with"));
        assert!(Pointer::parse("/a~2").unwrap_err().contains("~"));
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn list_indexes_are_canonical_decimals() {
        let doc = json!({"l": [10, 20, 30]});
        let at = |p: &str| Pointer::parse(p).unwrap().resolve(&doc).cloned();
        assert_eq!(at("/l/2"), Ok(json!(30)));
        assert_eq!(at("/l/0"), Ok(json!(10)));
        for bad in [
            "/l/01",
            "/l/-1",
            "/l/+1",
            "/l/",
            "/l/-",
            "/l/1e0",
            "/l/99999999999999999999999",
        ] {
            assert!(
                matches!(at(bad), Err(JsonPatchFailure::BadIndex { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            at("/l/3"),
            Err(JsonPatchFailure::OutOfRange {
                at: "/l".into(),
                index: 3,
                len: 3
            })
        );
    }

    #[test]
    fn resolving_through_a_scalar_or_a_missing_key_says_where() {
        let doc = json!({"a": {"b": 1}});
        let at = |p: &str| Pointer::parse(p).unwrap().resolve(&doc).cloned();
        assert_eq!(at("/a/x/y"), Err(JsonPatchFailure::Missing("/a/x".into())));
        assert_eq!(
            at("/a/b/c"),
            Err(JsonPatchFailure::NotAContainer {
                at: "/a/b".into(),
                found: "a number"
            })
        );
        assert!(Pointer::parse("/a/b")
            .unwrap()
            .is_inside(&Pointer::parse("/a").unwrap()));
        assert!(!Pointer::parse("/a")
            .unwrap()
            .is_inside(&Pointer::parse("/a").unwrap()));
        assert!(!Pointer::parse("/ab")
            .unwrap()
            .is_inside(&Pointer::parse("/a").unwrap()));
    }
}
