//! The route table against the v1 semantics: hosts, wildcards, path types and their
//! precedence, merging, default backends, ports by number and name, ExternalName, classes;
//! a snapshot of a table; and a property test of `Prefix` matching against its definition.

use proptest::prelude::*;
use serde_json::{json, Value};
use weft_view::{ClusterView, Event};

use super::*;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A Service `name` in `default` with ports http:80 -> 8080 and metrics:9090, and a slice
/// with `ready` and one not-ready endpoint.
fn service(view: &mut ClusterView, name: &str, ready: &[&str]) {
    view.apply(Event::Apply(obj::<Service>(json!({
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
        "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics", "port": 9090, "targetPort": 9090}
        ]}
    }))));
    let mut endpoints: Vec<Value> = ready
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    endpoints.push(json!({"addresses": ["10.244.9.9"], "conditions": {"ready": false}}));
    view.apply(Event::Apply(obj::<k8s_openapi::api::discovery::v1::EndpointSlice>(json!({
        "metadata": {"name": format!("{name}-abc"), "namespace": "default", "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090}],
        "endpoints": endpoints
    }))));
}

fn ingress(view: &mut ClusterView, name: &str, created: &str, extra: Value, spec: Value) {
    let mut meta = json!({"name": name, "namespace": "default", "resourceVersion": "1",
        "creationTimestamp": created});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            meta[k] = v;
        }
    }
    view.apply(Event::Apply(obj::<Ingress>(
        json!({"metadata": meta, "spec": spec}),
    )));
}

fn backend(svc: &str, port: Value) -> Value {
    let port = if port.is_string() {
        json!({"name": port})
    } else {
        json!({"number": port})
    };
    json!({"service": {"name": svc, "port": port}})
}

fn path(path: &str, kind: &str, svc: &str) -> Value {
    json!({"path": path, "pathType": kind, "backend": backend(svc, json!(80))})
}

fn cluster() -> ClusterView {
    let mut v = ClusterView::new();
    service(&mut v, "web", &["10.244.1.2", "10.244.2.3"]);
    service(&mut v, "api", &["10.244.1.4"]);
    service(&mut v, "docs", &[]);
    service(&mut v, "fallback", &["10.244.1.5"]);
    v.apply(Event::Apply(obj::<Service>(json!({
        "metadata": {"name": "outside", "namespace": "default", "resourceVersion": "1"},
        "spec": {"type": "ExternalName", "externalName": "example.org",
            "ports": [{"name": "http", "port": 80}]}
    }))));
    ingress(
        &mut v,
        "site",
        "2026-01-01T00:00:00Z",
        json!({}),
        json!({"rules": [
            {"host": "shop.example.com", "http": {"paths": [
                path("/", "Prefix", "web"),
                path("/api", "Prefix", "api"),
                path("/api/v1/health", "Exact", "fallback"),
                path("/docs", "Exact", "docs"),
                {"path": "/metrics", "pathType": "Prefix", "backend": backend("web", json!("metrics"))}
            ]}},
            {"host": "*.apps.example.com", "http": {"paths": [path("/", "Prefix", "api")]}},
            {"http": {"paths": [path("/any", "Prefix", "web")]}}
        ]}),
    );
    // Newer: merged into shop.example.com; its "/" loses to the older Ingress's.
    ingress(
        &mut v,
        "more",
        "2026-02-01T00:00:00Z",
        json!({"annotations": {"kubernetes.io/ingress.class": "nginx"}}),
        json!({"defaultBackend": backend("fallback", json!(80)), "rules": [
            {"host": "shop.example.com", "http": {"paths": [
                path("/", "Prefix", "api"),
                path("/out", "Prefix", "outside"),
                path("/missing", "Prefix", "nope")
            ]}}
        ]}),
    );
    ingress(
        &mut v,
        "regex",
        "2026-03-01T00:00:00Z",
        json!({"annotations": {"nginx.ingress.kubernetes.io/use-regex": "true"}}),
        json!({"ingressClassName": "weft", "rules": [
            {"host": "re.example.com", "http": {"paths": [
                {"path": "/user/[0-9]+", "pathType": "ImplementationSpecific", "backend": backend("api", json!(80))},
                {"path": "/bad(", "pathType": "ImplementationSpecific", "backend": backend("api", json!(80))}
            ]}}
        ]}),
    );
    // Another controller's: left alone.
    ingress(
        &mut v,
        "theirs",
        "2026-01-01T00:00:00Z",
        json!({}),
        json!({"ingressClassName": "traefik", "rules": [
            {"host": "shop.example.com", "http": {"paths": [path("/traefik", "Prefix", "web")]}}
        ]}),
    );
    v
}

fn routed(t: &RouteTable, host: &str, path: &str) -> String {
    match t.route(host, path) {
        None => "404".into(),
        Some(m) => m.backend.describe(),
    }
}

#[test]
fn table_snapshot() {
    let t = compile(&cluster(), &Settings::default());
    insta::assert_snapshot!(t.render());
}

#[test]
fn hosts_paths_and_precedence() {
    let t = compile(&cluster(), &Settings::default());
    let web = "default/web:80 -> [10.244.1.2:8080, 10.244.2.3:8080]";
    let api = "default/api:80 -> [10.244.1.4:8080]";
    let fallback = "default/fallback:80 -> [10.244.1.5:8080]";
    let cases = [
        // Prefix element by element; the longest match wins.
        ("shop.example.com", "/", web),
        ("SHOP.example.com", "/anything", web),
        ("shop.example.com", "/api", api),
        ("shop.example.com", "/api/", api),
        ("shop.example.com", "/api/users", api),
        ("shop.example.com", "/apis", web),
        // Exact beats a longer-reaching Prefix, and only matches itself.
        ("shop.example.com", "/api/v1/health", fallback),
        ("shop.example.com", "/api/v1/health/", api),
        // Exact /docs: docs has no ready endpoint (503); /docs/x falls to "/".
        ("shop.example.com", "/docs", "default/docs:80 -> []"),
        ("shop.example.com", "/docs/x", web),
        // A port by name.
        (
            "shop.example.com",
            "/metrics",
            "default/web:metrics -> [10.244.1.2:9090, 10.244.2.3:9090]",
        ),
        // Merged from the newer Ingress: ExternalName, and a missing Service.
        (
            "shop.example.com",
            "/out",
            "default/outside -> external example.org:80",
        ),
        (
            "shop.example.com",
            "/missing/x",
            "default/nope:80 -> 503 (the Service does not exist)",
        ),
        // A wildcard matches exactly one label.
        ("a.apps.example.com", "/", api),
        ("apps.example.com", "/", fallback),
        ("a.b.apps.example.com", "/", fallback),
        // Hosts without rules of their own take the hostless rules, then the default backend.
        ("other.example.com", "/any/thing", web),
        ("other.example.com", "/else", fallback),
        // Regular expressions (use-regex), anchored, case-insensitive.
        ("re.example.com", "/user/42", api),
        ("re.example.com", "/USER/42/x", api),
        ("re.example.com", "/user/x", fallback),
        ("re.example.com", "/x/user/42", fallback),
    ];
    let mut wrong = Vec::new();
    for (host, path, want) in cases {
        let got = routed(&t, host, path);
        if got != want {
            wrong.push(format!("{host}{path}: got {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn problems_name_the_ingress_and_leave_the_rest_working() {
    let t = compile(&cluster(), &Settings::default());
    let problems: Vec<String> = t
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.ingress, p.what))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p
                .starts_with("default/regex: path \"/bad(\" is not a valid regular expression")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == "default/more: backend default/nope:80: the Service does not exist"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with(
            "default/more: host \"shop.example.com\" path \"/\" (Prefix) is already served"
        )),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn classes_choose_the_ingresses() {
    let served = |v: &ClusterView, s: &Settings| -> Vec<String> {
        compile(v, s)
            .served
            .iter()
            .map(|k| k.name.clone())
            .collect()
    };
    let mut v = cluster();
    // No IngressClass at all: classless Ingresses are served, nginx's too, traefik's not.
    assert_eq!(served(&v, &Settings::default()), ["site", "more", "regex"]);
    let without_nginx = Settings {
        serve_nginx: false,
        ..Settings::default()
    };
    assert_eq!(served(&v, &without_nginx), ["site", "regex"]);
    // Another controller's class is the default: classless Ingresses are its.
    v.apply(Event::Apply(obj::<IngressClass>(json!({
        "metadata": {"name": "traefik", "resourceVersion": "1",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "traefik.io/ingress-controller"}
    }))));
    assert_eq!(served(&v, &Settings::default()), ["more", "regex"]);
    // Ours is a default too, under another name: classless ones and that name are ours.
    v.apply(Event::Apply(obj::<IngressClass>(json!({
        "metadata": {"name": "edge", "resourceVersion": "1",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER}
    }))));
    ingress(
        &mut v,
        "edge",
        "2026-04-01T00:00:00Z",
        json!({}),
        json!({"ingressClassName": "edge", "rules": [{"host": "edge.example.com", "http": {"paths": [path("/", "Prefix", "web")]}}]}),
    );
    assert_eq!(
        served(&v, &Settings::default()),
        ["site", "more", "regex", "edge"]
    );
}

#[test]
fn endpoints_take_turns() {
    let t = compile(&cluster(), &Settings::default());
    let m = t.route("shop.example.com", "/").unwrap();
    let firsts: Vec<_> = (0..4).map(|_| m.backend.endpoints_in_turn()[0]).collect();
    assert_eq!(firsts[0], firsts[2]);
    assert_ne!(firsts[0], firsts[1]);
    // Every endpoint is offered each time (the rest are the retries).
    assert_eq!(m.backend.endpoints_in_turn().len(), 2);
}

/// `Prefix` by its definition: the request path's `/`-separated elements begin with the
/// rule's (empty elements from a trailing `/` ignored).
fn prefix_reference(rule: &str, path: &str) -> bool {
    let elems = |p: &str| -> Vec<String> {
        p.trim_end_matches('/')
            .split('/')
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let (r, p) = (elems(rule), elems(path));
    if rule.trim_end_matches('/').is_empty() {
        return true;
    }
    // A request path with a trailing slash has its last element as written.
    p.len() >= r.len() && p[..r.len()] == r[..]
}

proptest! {
    #[test]
    fn prefix_matching_is_element_wise(
        rule in prop::collection::vec("[ab]{1,2}", 0..3),
        path in prop::collection::vec("[ab]{0,2}", 0..4),
        rule_slash in any::<bool>(),
        path_slash in any::<bool>(),
    ) {
        let rule = format!("/{}{}", rule.join("/"), if rule_slash && !rule.is_empty() { "/" } else { "" });
        let path = format!("/{}{}", path.join("/"), if path_slash { "/" } else { "" });
        prop_assert_eq!(
            PathMatch::Prefix(rule.clone()).matches(&path),
            prefix_reference(&rule, &path),
            "rule {} path {}", rule, path
        );
    }
}

/// A self-signed certificate for `host`, as a Secret's (tls.crt, tls.key) PEM.
fn self_signed(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn secret(view: &mut ClusterView, name: &str, crt: &str, key: &str) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    view.apply(Event::Apply(obj::<k8s_openapi::api::core::v1::Secret>(
        json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(crt), "tls.key": b64(key)}
        }),
    )));
}

#[test]
fn tls_certificates_and_https_redirects() {
    let mut v = ClusterView::new();
    service(&mut v, "web", &["10.244.1.2"]);
    let (crt, key) = self_signed("a.example.com");
    secret(&mut v, "a-tls", &crt, &key);
    let (wild, wild_key) = self_signed("*.w.example.com");
    secret(&mut v, "w-tls", &wild, &wild_key);
    // A key that is not the certificate's.
    let (_, other_key) = self_signed("x");
    secret(&mut v, "mismatch", &crt, &other_key);
    let rule = |host: &str| json!({"host": host, "http": {"paths": [path("/", "Prefix", "web")]}});
    ingress(
        &mut v,
        "tls",
        "2026-01-01T00:00:00Z",
        json!({}),
        json!({
            "tls": [
                {"hosts": ["a.example.com"], "secretName": "a-tls"},
                {"hosts": ["*.w.example.com"], "secretName": "w-tls"},
                {"hosts": ["gone.example.com"], "secretName": "nope"},
                {"hosts": ["bad.example.com"], "secretName": "mismatch"}
            ],
            "rules": [rule("a.example.com"), rule("x.w.example.com"), rule("gone.example.com"), rule("plain.example.com")]
        }),
    );
    ingress(
        &mut v,
        "opt-out",
        "2026-01-02T00:00:00Z",
        json!({"annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}}),
        json!({"tls": [{"hosts": ["b.example.com"], "secretName": "a-tls"}], "rules": [rule("b.example.com")]}),
    );
    ingress(
        &mut v,
        "forced",
        "2026-01-03T00:00:00Z",
        json!({"annotations": {"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}}),
        json!({"rules": [rule("f.example.com")]}),
    );
    let t = compile(&v, &Settings::default());
    let redirect = |host: &str| t.route(host, "/").unwrap().route.unwrap().https_redirect;
    assert!(redirect("a.example.com"));
    assert!(redirect("x.w.example.com"));
    // A TLS host whose Secret is missing still redirects (served with the default certificate).
    assert!(redirect("gone.example.com"));
    assert!(!redirect("plain.example.com"));
    assert!(!redirect("b.example.com"));
    assert!(redirect("f.example.com"));
    assert!(t.certs.find("a.example.com").is_some());
    assert!(t.certs.find("x.w.example.com").is_some());
    assert!(t.certs.find("y.x.w.example.com").is_none());
    assert!(t.certs.find("gone.example.com").is_none());
    assert!(t.certs.find("bad.example.com").is_none());
    let problems: Vec<String> = t.problems.iter().map(|p| p.what.clone()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("TLS secret default/nope does not exist"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("TLS secret default/mismatch tls.key does not belong"),
        "{problems:?}"
    );
}
