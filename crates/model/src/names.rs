//! Kubernetes name rules (RFC 1123 labels and subdomains, RFC 1035 labels, label keys and values),
//! checked once here so manifests, selectors and the cluster config agree on what a valid name is.

/// A DNS label as Kubernetes checks it for namespaces and container names: at most 63 characters of
/// `[a-z0-9-]`, starting and ending with an alphanumeric.
pub fn check_rfc1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("{name:?} is longer than 63 characters"));
    }
    let bytes = name.as_bytes();
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !bytes.iter().all(|&b| ok_char(b)) {
        return Err(format!(
            "{name:?} must consist of lower case alphanumeric characters or '-' (RFC 1123 label)"
        ));
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err(format!(
            "{name:?} must start and end with an alphanumeric character (RFC 1123 label)"
        ));
    }
    Ok(())
}

/// A DNS-1035 label (Service names): an RFC 1123 label that also starts with a letter.
pub fn check_rfc1035_label(name: &str) -> Result<(), String> {
    check_rfc1123_label(name)?;
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!(
            "{name:?} must start with a letter (RFC 1035 label)"
        ));
    }
    Ok(())
}

/// A DNS subdomain as Kubernetes checks it for most object names: at most 253 characters,
/// dot-separated RFC 1123 labels.
pub fn check_rfc1123_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    for label in name.split('.') {
        check_rfc1123_label(label).map_err(|_| {
            format!(
                "{name:?} must consist of lower case alphanumeric characters, '-' or '.', and must \
                 start and end with an alphanumeric character (RFC 1123 subdomain)"
            )
        })?;
    }
    Ok(())
}

fn is_qualified_name_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9-_.]` starting and ending with an alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_rfc1123_subdomain(prefix).map_err(|e| format!("label key {key:?}: prefix {e}"))?;
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "label key {key:?}: name part must be 1-63 characters of [A-Za-z0-9-_.], starting and \
             ending with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9-_.]` starting and ending with an
/// alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and \
             ending with an alphanumeric character"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(check_rfc1123_label("web-1").is_ok());
        assert!(check_rfc1123_label("1web").is_ok());
        assert!(check_rfc1123_label("Web").is_err());
        assert!(check_rfc1123_label("-web").is_err());
        assert!(check_rfc1123_label("web-").is_err());
        assert!(check_rfc1123_label(&"a".repeat(64)).is_err());
        assert!(check_rfc1123_label("").is_err());
        assert!(check_rfc1035_label("1web").is_err());
        assert!(check_rfc1035_label("web1").is_ok());
        assert!(check_rfc1123_subdomain("cluster.local").is_ok());
        assert!(check_rfc1123_subdomain("a..b").is_err());
        assert!(check_rfc1123_subdomain("web_1").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("Tier_1.x").is_ok());
        assert!(check_label_key("/app").is_err());
        assert!(check_label_key("a/b/c").is_err());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3-x").is_ok());
        assert!(check_label_value("a b").is_err());
    }
}
