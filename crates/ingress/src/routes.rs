//! The route table, compiled from the cluster view (pure): which Ingresses this controller
//! serves, and for each request host and path the backend that answers it, down to the ready
//! endpoint addresses. Swapped whole into the proxy on every change.
//!
//! The `networking.k8s.io/v1` semantics, as ingress-nginx serves them:
//! - **Hosts**: exact (case-insensitive), or `*.example.com`, which matches exactly one more
//!   label (`a.example.com`, not `example.com` nor `a.b.example.com`). An exact host beats a
//!   wildcard. A host named by some rule takes only its own rules (its unmatched paths go to
//!   the default backend); rules without a host serve every other host.
//! - **Paths**: `Exact` matches the path as it is; `Prefix` matches element by element on
//!   `/` (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a trailing `/` in the
//!   rule is ignored, `/` matches everything); `ImplementationSpecific` is nginx's `location`
//!   prefix (a plain string prefix), or a regular expression when the Ingress sets
//!   `nginx.ingress.kubernetes.io/use-regex: "true"` (anchored at the start, case-insensitive,
//!   as nginx's `~*`). The longest path wins; at equal length `Exact` beats `Prefix`, which
//!   beats the others. Regular expressions are tried after every literal path of their host, in
//!   the order of their length.
//! - **Several Ingresses for one host** are merged; when two give the same path and type the
//!   older Ingress (creation time, then namespace/name) keeps it.
//! - **Default backend**: an Ingress's `defaultBackend` takes its hosts' unmatched requests;
//!   the oldest Ingress's takes every other unmatched request; without one, 404.
//! - **Backends**: a Service port by number or by name, resolved to each ready endpoint's
//!   port through the Service's EndpointSlices (the port of the same name); a Service of type
//!   ExternalName is reached by its name. A backend that cannot be resolved answers 503 and is
//!   reported, while every other route keeps working.
//! - **TLS**: each served Ingress's `spec.tls` hosts get the certificate of their Secret (a
//!   `kubernetes.io/tls` Secret of the Ingress's namespace; the older Ingress's wins), chosen
//!   by SNI. A route of a host with TLS redirects plain HTTP to HTTPS with 308 unless its
//!   Ingress says `nginx.ingress.kubernetes.io/ssl-redirect: "false"`;
//!   `force-ssl-redirect: "true"` redirects even without TLS. A missing or invalid Secret is a
//!   problem: the host is then served with the default certificate, as ingress-nginx does.
//! - **Classes**: the Ingresses whose class (`spec.ingressClassName`, else the legacy
//!   `kubernetes.io/ingress.class` annotation) is an IngressClass of this controller, or this
//!   controller's class name, or `nginx` (unless turned off); Ingresses without a class when
//!   this controller's class is the default one (`ingressclass.kubernetes.io/is-default-class`)
//!   or no class is.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use weft_view::{ClusterView, NsName};

/// What the controller is, for choosing its Ingresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The IngressClass name of this controller (`weft`).
    pub class: String,
    /// The `spec.controller` of its IngressClasses.
    pub controller: String,
    /// Whether Ingresses of class `nginx` are served too (so ingress-nginx manifests work).
    pub serve_nginx: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            class: CLASS.to_string(),
            controller: CONTROLLER.to_string(),
            serve_nginx: true,
        }
    }
}

pub const CLASS: &str = "weft";
pub const CONTROLLER: &str = "weft.dev/ingress-controller";
const LEGACY_CLASS: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const USE_REGEX: &str = "nginx.ingress.kubernetes.io/use-regex";
const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
const FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";

/// How a rule's path matches.
#[derive(Clone, Debug)]
pub enum PathMatch {
    Exact(String),
    /// The path's elements (`/foo/bar` -> `["foo", "bar"]`; `/` -> none: everything).
    Prefix(String),
    /// nginx's `location` prefix: a plain string prefix.
    Literal(String),
    /// The compiled expression (anchored, case-insensitive) and the rule's text.
    Regex(regex::Regex, String),
}

impl PathMatch {
    /// Whether `path` (the request's, without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Literal(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r, _) => r.is_match(path),
        }
    }

    /// The rule's text, as written.
    pub fn text(&self) -> &str {
        match self {
            PathMatch::Exact(p)
            | PathMatch::Prefix(p)
            | PathMatch::Literal(p)
            | PathMatch::Regex(_, p) => p,
        }
    }

    /// Precedence among matches of one length: Exact, then Prefix, then the rest.
    fn rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            PathMatch::Prefix(_) => 1,
            PathMatch::Literal(_) => 2,
            PathMatch::Regex(..) => 3,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "Prefix",
            PathMatch::Literal(_) => "ImplementationSpecific",
            PathMatch::Regex(..) => "ImplementationSpecific (regex)",
        }
    }
}

/// `Prefix` matching, element by element: the rule `/foo` (or `/foo/`) matches `/foo`,
/// `/foo/` and `/foo/...`.
fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return true;
    }
    match path.strip_prefix(rule) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Where a route's requests go.
#[derive(Debug)]
pub enum Backend {
    /// Ready endpoints of a Service port, balanced round-robin.
    Endpoints {
        service: NsName,
        /// The Service port, as the Ingress names it (`80` or `http`).
        port: String,
        endpoints: Vec<SocketAddr>,
        next: AtomicUsize,
    },
    /// A Service of type ExternalName.
    External {
        service: NsName,
        host: String,
        port: u16,
    },
    /// Nothing to send to: answered with 503, and why.
    Unavailable { service: String, why: String },
}

impl Backend {
    /// The endpoints to try, starting with the next in turn.
    pub fn endpoints_in_turn(&self) -> Vec<SocketAddr> {
        match self {
            Backend::Endpoints {
                endpoints, next, ..
            } if !endpoints.is_empty() => {
                let start = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
                endpoints[start..]
                    .iter()
                    .chain(&endpoints[..start])
                    .copied()
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The Service's name (for metrics).
    pub fn service_name(&self) -> String {
        match self {
            Backend::Endpoints { service, .. } | Backend::External { service, .. } => {
                service.name.clone()
            }
            Backend::Unavailable { service, .. } => service
                .split_once('/')
                .map_or(service.as_str(), |(_, rest)| rest)
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// The upstream's name in the access log, as ingress-nginx names it:
    /// `namespace-service-port`.
    pub fn name(&self) -> String {
        match self {
            Backend::Endpoints { service, port, .. } => {
                format!("{}-{}-{port}", service.namespace, service.name)
            }
            Backend::External { service, port, .. } => {
                format!("{}-{}-{port}", service.namespace, service.name)
            }
            Backend::Unavailable { service, .. } => service.replace(['/', ':'], "-"),
        }
    }

    /// A one-line description for snapshots and `describe`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Endpoints {
                service,
                port,
                endpoints,
                ..
            } => {
                let list: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
                format!("{service}:{port} -> [{}]", list.join(", "))
            }
            Backend::External {
                service,
                host,
                port,
            } => format!("{service} -> external {host}:{port}"),
            Backend::Unavailable { service, why } => format!("{service} -> 503 ({why})"),
        }
    }
}

/// One path of a host.
#[derive(Debug)]
pub struct Route {
    pub ingress: NsName,
    pub path: PathMatch,
    pub backend: Arc<Backend>,
    /// Plain HTTP requests get a 308 to HTTPS.
    pub https_redirect: bool,
    /// What its Ingress's annotations ask for.
    pub options: Arc<crate::options::Options>,
    /// Its Ingress and backend, for the metrics and the access log.
    pub target: Arc<crate::metrics::Target>,
}

/// The routes of one host (or of every host without rules of its own).
#[derive(Debug, Default)]
pub struct Host {
    /// Literal paths, longest first (ties: Exact, Prefix, literal); then regular expressions,
    /// longest first.
    pub routes: Vec<Route>,
    /// Where unmatched requests go (an Ingress's `defaultBackend`).
    pub default: Option<Arc<Backend>>,
}

impl Host {
    fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.path.matches(path))
    }
}

/// A problem with one Ingress, reported while every other route keeps working.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub ingress: NsName,
    pub what: String,
}

/// What a request matched.
#[derive(Debug)]
pub struct Matched<'a> {
    /// None: the default backend of everything.
    pub route: Option<&'a Route>,
    pub backend: &'a Backend,
}

/// The whole table.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// By lowercase host.
    pub exact: HashMap<String, Host>,
    /// By the part after `*.`.
    pub wildcard: HashMap<String, Host>,
    /// Rules without a host.
    pub any: Host,
    /// The oldest Ingress's `defaultBackend`.
    pub default: Option<Arc<Backend>>,
    /// The Ingresses served (for status), in order.
    pub served: Vec<NsName>,
    /// Certificates by SNI.
    pub certs: crate::tls::Certs,
    pub problems: Vec<Problem>,
    /// Per Ingress, its `nginx.ingress.kubernetes.io/` annotations that weft does not serve.
    pub unserved: BTreeMap<NsName, Vec<String>>,
}

/// `host` in lowercase, copied only if it has an uppercase letter.
pub fn lowercase(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

impl RouteTable {
    /// The backend for a request to `host` (without port, any case) and `path`; None: 404.
    pub fn route(&self, host: &str, path: &str) -> Option<Matched<'_>> {
        // Hosts come lowercase already from both proxy paths: no copy for them.
        let host = lowercase(host);
        let own = self.exact.get(host.as_ref()).or_else(|| {
            host.split_once('.')
                .and_then(|(_, rest)| self.wildcard.get(rest))
        });
        let chosen = own.unwrap_or(&self.any);
        if let Some(route) = chosen.find(path) {
            return Some(Matched {
                route: Some(route),
                backend: &route.backend,
            });
        }
        chosen
            .default
            .as_deref()
            .or(self.default.as_deref())
            .map(|backend| Matched {
                route: None,
                backend,
            })
    }

    /// The table as text: hosts, their routes in the order they are tried, defaults, problems
    /// (for snapshots and `describe`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut host = |name: &str, h: &Host| {
            out.push_str(&format!("host {name}\n"));
            for r in &h.routes {
                out.push_str(&format!(
                    "  {} {} ({}){} -> {}\n",
                    r.path.kind(),
                    r.path.text(),
                    r.ingress,
                    if r.https_redirect {
                        " [https redirect]"
                    } else {
                        ""
                    },
                    r.backend.describe()
                ));
            }
            if let Some(d) = &h.default {
                out.push_str(&format!("  default -> {}\n", d.describe()));
            }
        };
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort_by_key(|(k, _)| k.as_str());
        for (name, h) in exact {
            host(name, h);
        }
        let mut wild: Vec<_> = self.wildcard.iter().collect();
        wild.sort_by_key(|(k, _)| k.as_str());
        for (name, h) in wild {
            host(&format!("*.{name}"), h);
        }
        host("(any)", &self.any);
        if let Some(d) = &self.default {
            out.push_str(&format!("default -> {}\n", d.describe()));
        }
        let mut certs: Vec<String> = self
            .certs
            .exact
            .keys()
            .cloned()
            .chain(self.certs.wildcard.keys().map(|k| format!("*.{k}")))
            .collect();
        certs.sort();
        for c in certs {
            out.push_str(&format!("certificate {c}\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("problem {}: {}\n", p.ingress, p.what));
        }
        out
    }
}

/// The class an Ingress asks for: `spec.ingressClassName`, else the legacy annotation.
pub fn class_of(ing: &Ingress) -> Option<&str> {
    ing.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS))
                .map(String::as_str)
        })
}

fn is_default_class(c: &IngressClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS))
        .is_some_and(|v| v == "true")
}

/// Whether this controller serves `ing`.
pub fn serves(view: &ClusterView, settings: &Settings, ing: &Ingress) -> bool {
    let ours = |c: &IngressClass| {
        c.spec
            .as_ref()
            .is_some_and(|s| s.controller.as_deref() == Some(settings.controller.as_str()))
    };
    match class_of(ing) {
        Some(name) => {
            if name == settings.class || (settings.serve_nginx && name == "nginx") {
                return true;
            }
            view.ingress_classes()
                .any(|c| c.metadata.name.as_deref() == Some(name) && ours(c))
        }
        None => {
            let defaults: Vec<&IngressClass> = view
                .ingress_classes()
                .filter(|c| is_default_class(c))
                .collect();
            defaults.is_empty() || defaults.iter().any(|c| ours(c))
        }
    }
}

/// The route table for the view as it is.
pub fn compile(view: &ClusterView, settings: &Settings) -> RouteTable {
    let mut served: Vec<&Ingress> = view
        .ingresses()
        .filter(|i| serves(view, settings, i))
        .collect();
    // Oldest first: the older Ingress keeps a path two of them give.
    served.sort_by(|a, b| {
        let created = |i: &Ingress| i.metadata.creation_timestamp.clone().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| key(a).cmp(&key(b)))
    });
    let mut table = RouteTable::default();
    let mut problems: Vec<Problem> = Vec::new();
    // TLS first: which hosts have it (for redirects), and their certificates.
    let mut tls_hosts: std::collections::BTreeSet<String> = Default::default();
    for ing in &served {
        let ikey = key(ing);
        for tls in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            let hosts: Vec<String> = tls
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            tls_hosts.extend(hosts.iter().cloned());
            let Some(name) = tls.secret_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let secret_key = NsName::new(&ikey.namespace, name);
            let loaded = match view.secret(&secret_key) {
                None => Err("does not exist".to_string()),
                Some(secret) => crate::tls::certified_key(secret),
            };
            match loaded {
                Ok(certified) => {
                    let certified = Arc::new(certified);
                    for host in &hosts {
                        table.certs.add(host, certified.clone());
                    }
                }
                Err(why) => problems.push(Problem {
                    ingress: ikey.clone(),
                    what: format!(
                        "TLS secret {secret_key} {why}: hosts {} get the default certificate",
                        hosts.join(",")
                    ),
                }),
            }
        }
    }
    // Per host, the (path kind, text) already given, so the older Ingress keeps it.
    let mut taken: BTreeMap<(String, u8, String), ()> = BTreeMap::new();
    for ing in served {
        let ikey = key(ing);
        table.served.push(ikey.clone());
        let annotation = |name: &str| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(name))
                .map(String::as_str)
        };
        let (options, option_problems, unserved) = crate::options::parse(
            ing.metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        );
        for what in option_problems {
            problems.push(Problem {
                ingress: ikey.clone(),
                what,
            });
        }
        if !unserved.is_empty() {
            table.unserved.insert(ikey.clone(), unserved);
        }
        let options = Arc::new(options);
        // rewrite-target makes the paths regular expressions, as in ingress-nginx.
        let regex = annotation(USE_REGEX) == Some("true") || options.rewrite.is_some();
        let ssl_redirect = annotation(SSL_REDIRECT) != Some("false");
        let force_ssl_redirect = annotation(FORCE_SSL_REDIRECT) == Some("true");
        let Some(spec) = &ing.spec else { continue };
        let mut problem = |what: String| {
            problems.push(Problem {
                ingress: ikey.clone(),
                what,
            })
        };
        let default = spec
            .default_backend
            .as_ref()
            .map(|b| Arc::new(backend(view, &ikey.namespace, b, &mut problem)));
        if let (Some(d), None) = (&default, &table.default) {
            table.default = Some(d.clone());
        }
        for rule in spec.rules.iter().flatten() {
            let host_name = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
            let host = if host_name.is_empty() {
                &mut table.any
            } else if let Some(rest) = host_name.strip_prefix("*.") {
                table.wildcard.entry(rest.to_string()).or_default()
            } else {
                table.exact.entry(host_name.clone()).or_default()
            };
            if host.default.is_none() && !host_name.is_empty() {
                host.default = default.clone();
            }
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let text = path.path.clone().unwrap_or_else(|| "/".to_string());
                let matcher = match path.path_type.as_str() {
                    "Exact" => PathMatch::Exact(text.clone()),
                    "Prefix" if !regex => PathMatch::Prefix(text.clone()),
                    _ if regex => {
                        match regex::RegexBuilder::new(&format!("^(?:{text})"))
                            .case_insensitive(true)
                            .build()
                        {
                            Ok(r) => PathMatch::Regex(r, text.clone()),
                            Err(e) => {
                                let e = e.to_string().replace('\n', " ");
                                problem(format!(
                                    "path {text:?} is not a valid regular expression: {e}"
                                ));
                                continue;
                            }
                        }
                    }
                    _ => PathMatch::Literal(text.clone()),
                };
                if taken
                    .insert((host_name.clone(), matcher.rank(), text.clone()), ())
                    .is_some()
                {
                    problem(format!(
                        "host {:?} path {text:?} ({}) is already served by an older Ingress",
                        host_name,
                        matcher.kind()
                    ));
                    continue;
                }
                let b = Arc::new(backend(view, &ikey.namespace, &path.backend, &mut problem));
                // TLS for the host itself, or for its wildcard.
                let tls = !host_name.is_empty()
                    && (tls_hosts.contains(&host_name)
                        || host_name
                            .split_once('.')
                            .is_some_and(|(_, rest)| tls_hosts.contains(&format!("*.{rest}"))));
                host.routes.push(Route {
                    ingress: ikey.clone(),
                    path: matcher,
                    https_redirect: force_ssl_redirect || (ssl_redirect && tls),
                    options: options.clone(),
                    target: Arc::new(crate::metrics::Target {
                        namespace: ikey.namespace.clone(),
                        ingress: ikey.name.clone(),
                        service: b.service_name(),
                        upstream: b.name(),
                    }),
                    backend: b,
                });
            }
        }
    }
    for host in table
        .exact
        .values_mut()
        .chain(table.wildcard.values_mut())
        .chain(std::iter::once(&mut table.any))
    {
        order(&mut host.routes);
    }
    table.problems = problems;
    table
}

/// Literal paths longest first (ties by kind), then regular expressions longest first.
fn order(routes: &mut [Route]) {
    routes.sort_by(|a, b| {
        let regex = |r: &Route| matches!(r.path, PathMatch::Regex(..));
        regex(a)
            .cmp(&regex(b))
            .then_with(|| b.path.text().len().cmp(&a.path.text().len()))
            .then_with(|| a.path.rank().cmp(&b.path.rank()))
    });
}

/// An Ingress's namespace and name.
pub fn key(ing: &Ingress) -> NsName {
    NsName::new(
        ing.metadata.namespace.clone().unwrap_or_default(),
        ing.metadata.name.clone().unwrap_or_default(),
    )
}

/// The addresses an Ingress's status shows (`status.loadBalancer.ingress`: IPs, else names),
/// as `weft_model::service::load_balancer_ingress` reads a Service's.
pub fn status_addresses(ing: &Ingress) -> Vec<String> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

/// An Ingress backend resolved to where requests go.
fn backend(
    view: &ClusterView,
    namespace: &str,
    b: &IngressBackend,
    problem: &mut dyn FnMut(String),
) -> Backend {
    let Some(svc) = &b.service else {
        let what = "a resource backend (only Service backends are served)".to_string();
        problem(what.clone());
        return Backend::Unavailable {
            service: "(resource)".into(),
            why: what,
        };
    };
    let key = NsName::new(namespace, &svc.name);
    let port_ref = svc
        .port
        .as_ref()
        .map(|p| match (&p.name, p.number) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(n)) => n.to_string(),
            _ => String::new(),
        })
        .unwrap_or_default();
    let unavailable = |why: String, problem: &mut dyn FnMut(String)| {
        problem(format!("backend {key}:{port_ref}: {why}"));
        Backend::Unavailable {
            service: format!("{key}:{port_ref}"),
            why,
        }
    };
    let Some(service) = view.service(&key) else {
        return unavailable("the Service does not exist".into(), problem);
    };
    let spec = service.spec.as_ref();
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .cloned()
        .unwrap_or_default();
    let wanted = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(port_ref.as_str()) || p.port.to_string() == port_ref);
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        let host = spec
            .and_then(|s| s.external_name.clone())
            .unwrap_or_default();
        let port = wanted
            .map(|p| p.port)
            .or_else(|| port_ref.parse().ok())
            .and_then(|p| u16::try_from(p).ok());
        return match port {
            Some(port) if !host.is_empty() => Backend::External {
                service: key,
                host,
                port,
            },
            _ => unavailable(
                "an ExternalName Service without a name or port".into(),
                problem,
            ),
        };
    }
    let Some(wanted) = wanted else {
        return unavailable(format!("the Service has no port {port_ref:?}"), problem);
    };
    let endpoints = ready_endpoints(view, &key, service, wanted.name.as_deref());
    // No ready endpoint is not a problem of the Ingress: 503 until one is ready.
    Backend::Endpoints {
        service: key,
        port: port_ref,
        endpoints,
        next: AtomicUsize::new(0),
    }
}

/// The ready endpoints of a Service port (by the port's name in the EndpointSlices), sorted.
fn ready_endpoints(
    view: &ClusterView,
    key: &NsName,
    _service: &Service,
    port_name: Option<&str>,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in view.slices_of(key) {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name.unwrap_or("")
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        let Some(number) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, number));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
