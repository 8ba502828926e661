//! The ingress-nginx annotations weft serves, read from an Ingress into the options of its
//! routes (pure). Values are read as ingress-nginx reads them; a value it would refuse is a
//! problem of the Ingress, and the annotation is then left out (its default applies). Other
//! `nginx.ingress.kubernetes.io/` annotations are listed as not served (`describe`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Annotations read elsewhere (routes, TLS) or here.
const KNOWN: &[&str] = &[
    "use-regex",
    "ssl-redirect",
    "force-ssl-redirect",
    "rewrite-target",
    "proxy-body-size",
    "whitelist-source-range",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "limit-rps",
    "affinity",
    "session-cookie-name",
    "backend-protocol",
];

/// What a route does besides choosing its backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Larger request bodies get 413 (None: no limit). Default 1 MiB.
    pub body_limit: Option<u64>,
    /// `rewrite-target`: the URI sent to the backend, `$1`... from the path's captures.
    pub rewrite: Option<String>,
    /// `whitelist-source-range`: other clients get 403 (None: everyone).
    pub allow: Option<Vec<(IpAddr, u8)>>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub cors: Option<Cors>,
    /// `limit-rps`: requests per second per client address (burst: five times as many).
    pub limit_rps: Option<u32>,
    /// `affinity: cookie`: the cookie's name.
    pub affinity_cookie: Option<String>,
    pub protocol: Protocol,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            body_limit: Some(1024 * 1024),
            rewrite: None,
            allow: None,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            cors: None,
            limit_rps: None,
            affinity_cookie: None,
            protocol: Protocol::Http,
        }
    }
}

/// How the proxy talks to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    /// TLS to the backend, not verified (nginx's `proxy_ssl_verify off`, its default).
    Https,
    /// HTTP/2 without TLS (gRPC).
    Grpc,
}

/// `enable-cors` and its settings (ingress-nginx's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub allow_origin: String,
    pub allow_methods: String,
    pub allow_headers: String,
    pub allow_credentials: bool,
    pub max_age: u64,
}

/// The options of `annotations`, the problems with them, and the ingress-nginx annotations
/// not served.
pub fn parse(annotations: &BTreeMap<String, String>) -> (Options, Vec<String>, Vec<String>) {
    let mut o = Options::default();
    let mut problems = Vec::new();
    let get = |name: &str| {
        annotations
            .get(&format!("{PREFIX}{name}"))
            .map(|s| s.trim())
    };
    let mut bad = |name: &str, value: &str, why: &str| {
        problems.push(format!(
            "annotation {PREFIX}{name}: {value:?} {why}; ignored"
        ));
    };
    if let Some(v) = get("proxy-body-size") {
        match size(v) {
            Some(0) => o.body_limit = None,
            Some(n) => o.body_limit = Some(n),
            None => bad("proxy-body-size", v, "is not a size (like 8k, 1m, 0)"),
        }
    }
    if let Some(v) = get("rewrite-target") {
        o.rewrite = Some(v.to_string());
    }
    if let Some(v) = get("whitelist-source-range") {
        let mut ranges = Vec::new();
        let mut ok = true;
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match cidr(part) {
                Some(c) => ranges.push(c),
                None => ok = false,
            }
        }
        if ok {
            o.allow = Some(ranges);
        } else {
            bad("whitelist-source-range", v, "is not a list of CIDRs");
        }
    }
    for (name, field) in [
        ("proxy-connect-timeout", &mut o.connect_timeout),
        ("proxy-read-timeout", &mut o.read_timeout),
        ("proxy-send-timeout", &mut o.send_timeout),
    ] {
        if let Some(v) = get(name) {
            match seconds(v) {
                Some(d) => *field = Some(d),
                None => bad(name, v, "is not a number of seconds"),
            }
        }
    }
    if get("enable-cors") == Some("true") {
        o.cors = Some(Cors {
            allow_origin: get("cors-allow-origin").unwrap_or("*").to_string(),
            allow_methods: get("cors-allow-methods")
                .unwrap_or("GET, PUT, POST, DELETE, PATCH, OPTIONS")
                .to_string(),
            allow_headers: get("cors-allow-headers")
                .unwrap_or("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization")
                .to_string(),
            allow_credentials: get("cors-allow-credentials") != Some("false"),
            max_age: get("cors-max-age").and_then(|v| v.parse().ok()).unwrap_or(1_728_000),
        });
    }
    if let Some(v) = get("limit-rps") {
        match v.parse::<u32>() {
            Ok(0) => {}
            Ok(n) => o.limit_rps = Some(n),
            Err(_) => bad("limit-rps", v, "is not a whole number"),
        }
    }
    if let Some(v) = get("affinity") {
        if v == "cookie" {
            o.affinity_cookie = Some(
                get("session-cookie-name")
                    .unwrap_or("INGRESSCOOKIE")
                    .to_string(),
            );
        } else {
            bad("affinity", v, "is not \"cookie\"");
        }
    }
    if let Some(v) = get("backend-protocol") {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => o.protocol = Protocol::Http,
            "HTTPS" => o.protocol = Protocol::Https,
            "GRPC" => o.protocol = Protocol::Grpc,
            _ => bad("backend-protocol", v, "is not one of HTTP, HTTPS, GRPC"),
        }
    }
    let unknown = annotations
        .keys()
        .filter_map(|k| k.strip_prefix(PREFIX))
        .filter(|k| !KNOWN.contains(k))
        .map(|k| format!("{PREFIX}{k}"))
        .collect();
    (o, problems, unknown)
}

/// nginx sizes: `1024`, `8k`, `1m`, `1g` (either case).
fn size(v: &str) -> Option<u64> {
    let v = v.to_ascii_lowercase();
    let (digits, unit) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1024),
        'm' => (&v[..v.len() - 1], 1024 * 1024),
        'g' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v.as_str(), 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Seconds, as ingress-nginx's timeouts (a whole number; `s` allowed).
fn seconds(v: &str) -> Option<Duration> {
    v.trim_end_matches('s')
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `10.0.0.0/8`, or one address.
fn cidr(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = v.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` is in `(net, len)`.
pub fn contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
    match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// `target` with `$1`..`$9` replaced by `captures` (missing ones: empty), as nginx's rewrite.
pub fn expand(target: &str, captures: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                chars.next();
                out.push_str(captures.get(d as usize).map_or("", |m| m.as_str()));
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_read_as_ingress_nginx_reads_them() {
        let (o, problems, unknown) = parse(&ann(&[
            ("proxy-body-size", "8k"),
            ("whitelist-source-range", "10.0.0.0/8, 203.0.113.10"),
            ("proxy-read-timeout", "5"),
            ("enable-cors", "true"),
            ("limit-rps", "3"),
            ("affinity", "cookie"),
            ("backend-protocol", "grpc"),
            ("configuration-snippet", "more_set_headers x"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(o.body_limit, Some(8192));
        assert_eq!(o.allow.as_ref().unwrap().len(), 2);
        assert_eq!(o.read_timeout, Some(Duration::from_secs(5)));
        assert_eq!(o.cors.as_ref().unwrap().allow_origin, "*");
        assert_eq!(o.limit_rps, Some(3));
        assert_eq!(o.affinity_cookie.as_deref(), Some("INGRESSCOOKIE"));
        assert_eq!(o.protocol, Protocol::Grpc);
        assert_eq!(unknown, [format!("{PREFIX}configuration-snippet")]);
        // Defaults: 1m bodies, no limit with 0.
        assert_eq!(parse(&BTreeMap::new()).0.body_limit, Some(1 << 20));
        assert_eq!(parse(&ann(&[("proxy-body-size", "0")])).0.body_limit, None);
    }

    #[test]
    fn bad_values_are_problems_and_keep_the_default() {
        let (o, problems, _) = parse(&ann(&[
            ("proxy-body-size", "lots"),
            ("whitelist-source-range", "10.0.0.0/33"),
            ("backend-protocol", "FTP"),
        ]));
        assert_eq!(o, Options::default());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("proxy-body-size: \"lots\" is not a size"),
            "{problems:?}"
        );
    }

    #[test]
    fn ranges_and_rewrites() {
        let net = cidr("10.1.0.0/16").unwrap();
        assert!(contains(net, "10.1.2.3".parse().unwrap()));
        assert!(!contains(net, "10.2.0.1".parse().unwrap()));
        assert!(contains(
            cidr("0.0.0.0/0").unwrap(),
            "1.2.3.4".parse().unwrap()
        ));
        let re = regex::Regex::new("^(?:/something(/|$)(.*))").unwrap();
        let caps = re.captures("/something/new/x").unwrap();
        assert_eq!(expand("/$2", &caps), "/new/x");
        let caps = re.captures("/something").unwrap();
        assert_eq!(expand("/$2", &caps), "/");
    }
}
