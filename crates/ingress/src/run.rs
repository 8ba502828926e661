//! `weft ingress`: the controller and proxy as one process, a Kubernetes client like the agent.
//! A reconciler of the cluster view (Ingresses, IngressClasses, Services, EndpointSlices)
//! compiles the route table on each change and swaps it into the proxy, then writes the
//! address of the controller's own Service (`--publish-service`, as ingress-nginx's flag: its
//! LoadBalancer address, else its cluster IP) into `status.loadBalancer.ingress` of every
//! Ingress it serves, so `kubectl get ingress` shows it, and takes it out of those it stops
//! serving. Problems of one Ingress (a missing Service, a bad regular expression, a missing TLS
//! Secret) are logged, recorded as Warning events on the Ingress (`kubectl describe ingress`
//! shows them), and leave the others working. Ready (`/readyz`) once the first table is served; the
//! Prometheus metrics are at `/metrics` on the same port ([`crate::metrics`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use weft_view::reconciler::{host, Readiness};
use weft_view::source::{self, SourceError};
use weft_view::{ClusterView, Interest, NsName, Reconciler, Shared, Wake};

use crate::proxy::{spawn_workers, Proxy, ProxyConfig};
use crate::routes::{compile, serves, Settings};

/// The ingress pod's health port (`/healthz`, `/readyz`; ingress-nginx's is 10254).
pub const HEALTH_PORT: u16 = 10254;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("starting the ingress controller's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the TLS setup: {0}")]
    Tls(String),
    #[error("listening on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct IngressConfig {
    pub kubeconfig: Option<PathBuf>,
    pub settings: Settings,
    /// Where plain HTTP is served.
    pub http: SocketAddr,
    /// Where HTTPS is served.
    pub https: SocketAddr,
    pub health_port: Option<u16>,
    /// The controller's own Service, whose address goes into the served Ingresses' status.
    pub publish_service: Option<NsName>,
    /// The ConfigMap holding the cluster config (`cluster.yaml`, weft's `kube-system/weft-config`),
    /// read once at start: `ingressNginxClass: false` there turns off serving class `nginx`.
    pub cluster_config: Option<NsName>,
    /// Proxy threads, each with its own listeners and backend connections (nginx's
    /// `worker_processes`); `None`: one per CPU.
    pub workers: Option<usize>,
    pub proxy: ProxyConfig,
}

/// Compiles the route table, swaps it in, and keeps the served Ingresses' status.
pub struct RouteReconciler {
    settings: Settings,
    proxy: Arc<Proxy>,
    status: Option<StatusWriter>,
}

struct StatusWriter {
    writer: weft_controller::Writer,
    publish: NsName,
    /// The problems already reported as Events.
    reported: BTreeSet<(NsName, String)>,
}

impl Reconciler for RouteReconciler {
    type Error = String;

    fn name(&self) -> &'static str {
        "ingress routes"
    }

    fn interest(&self) -> Interest {
        Interest {
            services: true,
            ingresses: true,
            secrets: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every change recompiles the whole table: a pure pass over the Ingresses.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), String> {
        let started = std::time::Instant::now();
        // What to write is read under the view's lock; the writes come after it is released
        // (a write's watch event needs the view's write lock to be delivered).
        let (table, status, writes) = {
            let view = shared.read();
            let table = compile(&view, &self.settings);
            let status = self
                .status
                .as_ref()
                .map(|w| wanted_status(&view, &self.settings, &w.publish));
            let writes = self.status.as_ref().map(|_| Writes::of(&view, &table));
            (table, status, writes)
        };
        if let (Some(w), Some(writes)) = (self.status.as_mut(), writes) {
            w.events(&table.problems, &writes.uids);
            w.issue(writes.certificates, writes.ca.as_ref());
        }
        for p in &table.problems {
            tracing::warn!(ingress = %p.ingress, "{}", p.what);
        }
        self.proxy
            .metrics
            .compiled(started.elapsed(), table.served.len(), table.problems.len());
        self.proxy.swap(table);
        match (&self.status, status) {
            (Some(writer), Some(changes)) => writer.write(changes),
            _ => Ok(()),
        }
    }
}

/// What a sync writes besides the status, read from the view: the certificates to issue, the
/// cluster CA to issue them from, and the uids of the Ingresses with problems (for events).
struct Writes {
    certificates: Vec<crate::issuer::Wanted>,
    ca: Option<k8s_openapi::api::core::v1::Secret>,
    uids: std::collections::BTreeMap<NsName, String>,
}

impl Writes {
    fn of(view: &ClusterView, table: &crate::RouteTable) -> Writes {
        let (ns, name) = crate::issuer::CA_SECRET;
        Writes {
            certificates: crate::issuer::wanted(view, &table.served, std::time::SystemTime::now()),
            ca: view.secret(&NsName::new(ns, name)).cloned(),
            uids: table
                .problems
                .iter()
                .filter_map(|p| {
                    let uid = view.ingress(&p.ingress)?.metadata.uid.clone()?;
                    Some((p.ingress.clone(), uid))
                })
                .collect(),
        }
    }
}

/// Per Ingress whose status is not what it should be: the addresses it should show.
type StatusChanges = Vec<(NsName, Vec<String>)>;

/// The addresses of the published Service (LoadBalancer ingress IPs, else its cluster IP), and
/// each Ingress whose status differs: served ones get them, others lose ours.
fn wanted_status(view: &ClusterView, settings: &Settings, publish: &NsName) -> StatusChanges {
    let addresses: Vec<String> = view
        .service(publish)
        .map(|svc| {
            let lb = weft_model::service::load_balancer_ingress(svc);
            if lb.is_empty() {
                svc.spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.clone())
                    .filter(|ip| ip != "None")
                    .into_iter()
                    .collect()
            } else {
                lb
            }
        })
        .unwrap_or_default();
    let ours: BTreeSet<&String> = addresses.iter().collect();
    let mut out = Vec::new();
    for ing in view.ingresses() {
        let key = crate::routes::key(ing);
        let now = crate::routes::status_addresses(ing);
        let want = if serves(view, settings, ing) {
            addresses.clone()
        } else if now.iter().any(|a| ours.contains(a)) {
            // Served by us before: ours comes out, anything else stays.
            now.iter().filter(|a| !ours.contains(a)).cloned().collect()
        } else {
            continue;
        };
        if want != now {
            out.push((key, want));
        }
    }
    out
}

impl StatusWriter {
    fn write(&self, changes: StatusChanges) -> Result<(), String> {
        let mut failures = weft_controller::writer::Failures::default();
        for (key, addresses) in changes {
            let ingress: Vec<serde_json::Value> = addresses
                .iter()
                .map(|a| match a.parse::<std::net::IpAddr>() {
                    Ok(_) => json!({"ip": a}),
                    Err(_) => json!({"hostname": a}),
                })
                .collect();
            let status = json!({"loadBalancer": {"ingress": ingress}});
            match self
                .writer
                .patch_status::<Ingress>(Some(&key.namespace), &key.name, &status)
            {
                Err(e) if e.code() == Some(404) => {}
                Ok(()) => tracing::info!(ingress = %key, ?addresses, "status written"),
                other => failures.note(other),
            }
        }
        failures.result().map_err(|e| e.to_string())
    }

    /// Creates or renews the certificates Ingresses ask a cert-manager issuer for, from the
    /// cluster CA ([`crate::issuer`]).
    fn issue(
        &self,
        wanted: Vec<crate::issuer::Wanted>,
        ca: Option<&k8s_openapi::api::core::v1::Secret>,
    ) {
        if wanted.is_empty() {
            return;
        }
        let (ns, name) = crate::issuer::CA_SECRET;
        let ca = match ca {
            None => Err(format!("the cluster CA Secret {ns}/{name} does not exist")),
            Some(secret) => crate::issuer::Ca::from_secret(secret)
                .map_err(|e| format!("the cluster CA Secret {ns}/{name} {e}")),
        };
        for w in wanted {
            let issued = ca
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|ca| ca.issue(&w.hosts));
            match issued {
                Ok((chain, key, not_after)) => {
                    let secret = crate::issuer::secret(&w, &chain, &key, not_after);
                    match self.writer.put(&secret) {
                        Ok(()) => tracing::info!(
                            ingress = %w.ingress, secret = %w.secret, hosts = ?w.hosts,
                            "certificate issued for issuer {}", w.issuer
                        ),
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Err(why) => tracing::warn!(
                    ingress = %w.ingress,
                    "cannot issue the certificate {} for issuer {}: {why}", w.secret, w.issuer
                ),
            }
        }
    }

    /// A Warning event on each Ingress for each problem not reported before (and forgets
    /// those that are gone, so a problem that comes back is reported again).
    fn events(
        &mut self,
        problems: &[crate::routes::Problem],
        uids: &std::collections::BTreeMap<NsName, String>,
    ) {
        let now: BTreeSet<(NsName, String)> = problems
            .iter()
            .map(|p| (p.ingress.clone(), p.what.clone()))
            .collect();
        for (key, what) in now.difference(&self.reported) {
            let uid = uids.get(key);
            let about = weft_controller::writer::Involved {
                api_version: "networking.k8s.io/v1",
                kind: "Ingress",
                namespace: &key.namespace,
                name: &key.name,
                uid: uid.map(String::as_str),
            };
            if let Err(e) = self.writer.warn(&about, "IngressProblem", what) {
                tracing::warn!("{e}");
            }
        }
        self.reported = now;
    }
}

/// Where weft's cluster config is on a cluster (deploy/config.yaml): the ConfigMap's
/// namespace and name; its key is `cluster.yaml`.
pub const CLUSTER_CONFIG: (&str, &str) = ("kube-system", "weft-config");

/// `settings` as the cluster config in the ConfigMap `at` amends them: `ingressNginxClass:
/// false` turns off serving class `nginx`. No such ConfigMap, or one that cannot be read,
/// leaves them as they are (said in the log).
pub async fn configured(client: &kube::Client, at: &NsName, mut settings: Settings) -> Settings {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), &at.namespace);
    let text = match api.get_opt(&at.name).await {
        Ok(map) => map.and_then(|m| m.data?.remove("cluster.yaml")),
        Err(e) => {
            tracing::warn!("reading the cluster config {at}: {e}; its defaults apply");
            return settings;
        }
    };
    let Some(text) = text else {
        tracing::info!("no cluster config at {at}: its defaults apply");
        return settings;
    };
    match weft_model::ClusterConfig::from_yaml(&format!("{at} cluster.yaml"), &text) {
        Ok(cluster) => settings.serve_nginx &= cluster.ingress_nginx_class,
        Err(e) => tracing::warn!("the cluster config at {at}: {e}; its defaults apply"),
    }
    settings
}

/// Runs the controller and proxy until the process is killed.
pub fn run(config: IngressConfig) -> Result<(), IngressError> {
    // The controller side (watches, the reconciler, health and metrics); the proxy runs on
    // worker threads of its own (proxy::spawn_workers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(IngressError::Runtime)?;
    runtime.block_on(async move {
        let client = source::client(config.kubeconfig.as_deref()).await?;
        let settings = match &config.cluster_config {
            Some(at) => configured(&client, at, config.settings.clone()).await,
            None => config.settings.clone(),
        };
        let shared = Shared::new();
        let proxy = Proxy::new(config.proxy.clone());
        let reconciler = RouteReconciler {
            settings: settings.clone(),
            proxy: proxy.clone(),
            status: config.publish_service.clone().map(|publish| StatusWriter {
                writer: weft_controller::Writer::new(client.clone()),
                publish,
                reported: BTreeSet::new(),
            }),
        };
        source::spawn(&client, &shared, reconciler.interest());
        let readiness = Readiness::new();
        let routes = host(reconciler, &shared, &readiness);
        let default = crate::tls::default_certificate().map_err(IngressError::Tls)?;
        let tls = crate::tls::server_config(proxy.clone(), default)
            .map_err(|e| IngressError::Tls(e.to_string()))?;
        let workers = config.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        spawn_workers(
            config.http,
            config.https,
            proxy.clone(),
            Arc::new(tls),
            workers,
        )
        .map_err(|error| IngressError::Listen {
            addr: config.http,
            error,
        })?;
        let proxy_for_metrics = proxy.clone();
        if let Some(port) = config.health_port {
            let metrics = proxy_for_metrics.clone();
            // The route reconciler's syncs, then the proxy's requests.
            let route =
                weft_view::metrics::route(move |out| out.push_str(&metrics.metrics.render()));
            tokio::spawn(weft_view::health::serve_routes(
                port,
                readiness,
                vec![route],
            ));
        }
        tracing::info!(
            http = %config.http, https = %config.https, class = %settings.class,
            nginx_class = settings.serve_nginx, "ingress started"
        );
        if let Err(e) = routes.await {
            tracing::error!("the route reconciler stopped: {e}");
            std::process::exit(1);
        }
        Ok(())
    })
}
