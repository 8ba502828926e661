//! What a request asks for, read from its path and query the way kube-apiserver's RequestInfo
//! reads them: `/api/v1/namespaces/default/pods/web/log?follow=true`.

use std::collections::BTreeMap;

/// The path of a resource request, before it is matched against the served resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Every path the server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    /// `/api`
    CoreGroup,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV2,
    /// `/openapi/v3` (None) or `/openapi/v3/apis/apps/v1` (the group version).
    OpenApiV3(Option<String>),
    Resource(ResourcePath),
    Unknown,
}

/// Namespaces' own subresources: `/api/v1/namespaces/x/status` is not a resource named status.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreGroup,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3(None),
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(Some(rest.join("/"))),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !NAMESPACE_SUBRESOURCES.contains(resource) => {
            (Some(ns.to_string()), {
                let mut v = vec![*resource];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let path = |plural: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.clone(),
            plural: plural.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        })
    };
    match rest.as_slice() {
        [plural] if !plural.is_empty() => path(plural, None, None),
        [plural, name] if !name.is_empty() => path(plural, Some(name), None),
        [plural, name, sub] if !name.is_empty() => path(plural, Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

/// The query parameters, decoded (`+` is a space, `%xx` a byte).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    params: BTreeMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(decode(k)).or_default().push(decode(v));
        }
        Query { params }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a repeated parameter (`command=sh&command=-c`).
    pub fn all(&self, key: &str) -> &[String] {
        self.params.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// `true`, `1` (and an empty value, as Go's strconv does not accept it, is false).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True" | "TRUE"))
    }

    /// A non-negative number, or a message naming the parameter.
    pub fn number(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                format!("invalid value for {key}: {v:?} is not a non-negative integer")
            }),
        }
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(p) => p,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn reads_resource_paths_like_kube_apiserver() {
        let p = res("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(
            (
                p.plural.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("pods", Some("web"), Some("log"))
        );
        let p = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let p = res("/api/v1/namespaces/x/status");
        assert_eq!(
            (p.plural.as_str(), p.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let p = res("/apis/apps/v1/deployments");
        assert_eq!((p.group.as_str(), p.namespace.clone()), ("apps", None));
        let p = res("/apis/apps/v1/namespaces/a/deployments/web/scale");
        assert_eq!(p.subresource.as_deref(), Some("scale"));
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3(Some("apis/apps/v1".into()))
        );
        assert_eq!(route("/api/v1/namespaces/a/pods/b/c/d"), Route::Unknown);
    }

    #[test]
    fn decodes_queries() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&command=sh&command=-c&watch=true&limit=5&bad=%zz"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.all("command"), ["sh", "-c"]);
        assert!(q.flag("watch"));
        assert_eq!(q.number("limit"), Ok(Some(5)));
        assert!(q.number("labelSelector").is_err());
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(Query::parse(Some("a=%4")).get("a"), Some("%4"));
    }
}
