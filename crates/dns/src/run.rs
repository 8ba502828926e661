//! `weft dns`: the cluster DNS as a process, a Kubernetes client like the agent. A reconciler of
//! the cluster view (Services and their EndpointSlices) compiles the zone on each change and
//! swaps it into the server; the UDP and TCP listeners answer from whatever zone is current.
//! Ready (`/readyz`) once the first zone is served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_view::reconciler::{host, Readiness};
use weft_view::source::{self, SourceError};
use weft_view::{Interest, Reconciler, Shared, Wake};

use crate::forward::{self, Forwarder};
use crate::server::{serve_tcp, Served};
use crate::zone::{Zone, ZoneConfig};

/// The DNS pod's health port (`/healthz`, `/readyz`).
pub const HEALTH_PORT: u16 = 8080;
/// Where the metrics are served (CoreDNS's port).
pub const METRICS_PORT: u16 = 9153;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("starting the DNS server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("listening on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub zone: ZoneConfig,
    pub kubeconfig: Option<PathBuf>,
    /// Where to answer (UDP and TCP).
    pub listen: SocketAddr,
    pub health_port: Option<u16>,
    /// Where `/metrics` is served (None: not at all).
    pub metrics_port: Option<u16>,
    /// Log every question.
    pub log_queries: bool,
    /// Where names outside the cluster are forwarded; empty: the nameservers of
    /// `/etc/resolv.conf` (the DNS pod has dnsPolicy Default: the node's resolvers).
    pub upstream: Vec<SocketAddr>,
    /// Upstream answers kept.
    pub cache_size: usize,
    /// The cluster DNS's own Service address, never an upstream (a loop).
    pub cluster_dns: Option<IpAddr>,
}

/// Where to forward: the configured upstreams, else resolv.conf's; without the cluster's own DNS
/// address, which would send each question back to weft.
pub fn upstreams(config: &DnsConfig, resolv_conf: &str) -> Vec<SocketAddr> {
    let (from, servers) = if config.upstream.is_empty() {
        (
            "/etc/resolv.conf",
            forward::resolv_conf_servers(resolv_conf),
        )
    } else {
        ("upstreamDNS", config.upstream.clone())
    };
    servers
        .into_iter()
        .filter(|s| {
            let looped = Some(s.ip()) == config.cluster_dns || *s == config.listen;
            if looped {
                tracing::warn!(
                    "{from}: {s} is the cluster DNS itself, left out of the upstreams (a loop)"
                );
            }
            !looped
        })
        .collect()
}

/// Compiles the zone from the view and swaps it in.
pub struct ZoneReconciler {
    config: ZoneConfig,
    served: Arc<Served>,
    serial: u32,
}

impl Reconciler for ZoneReconciler {
    type Error = std::convert::Infallible;

    fn name(&self) -> &'static str {
        "zone"
    }

    fn interest(&self) -> Interest {
        Interest {
            services: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every change recompiles the whole zone: a pure pass over the Services and slices.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), Self::Error> {
        self.serial = self.serial.wrapping_add(1);
        let zone = {
            let view = shared.read();
            let services: Vec<&Service> = view.services().map(|(_, s)| s).collect();
            let slices: Vec<&EndpointSlice> = view.slices().collect();
            Zone::compile(self.config.clone(), &services, &slices, self.serial)
        };
        self.served.swap(zone);
        Ok(())
    }
}

/// Runs the DNS server until the process is killed.
pub fn run(config: DnsConfig) -> Result<(), DnsError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DnsError::Runtime)?;
    runtime.block_on(async move {
        let client = source::client(config.kubeconfig.as_deref()).await?;
        let shared = Shared::new();
        let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream = upstreams(&config, &resolv_conf);
        let served = if upstream.is_empty() {
            tracing::warn!("no upstream DNS server: names outside the cluster are refused");
            Served::new()
        } else {
            Served::forwarding(Forwarder::new(upstream.clone(), config.cache_size))
        };
        served
            .log_queries
            .store(config.log_queries, std::sync::atomic::Ordering::Relaxed);
        let serial = crate::zone::first_serial();
        let reconciler = ZoneReconciler {
            config: config.zone.clone(),
            served: served.clone(),
            serial,
        };
        source::spawn(&client, &shared, reconciler.interest());
        let readiness = Readiness::new();
        let zone = host(reconciler, &shared, &readiness);
        let listen_err = |error| DnsError::Listen {
            addr: config.listen,
            error,
        };
        // UDP: one thread per core the process may use (at most 4), each with its own
        // SO_REUSEPORT socket, off the async scheduler (crate::udp).
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4);
        let udp = crate::udp::sockets(config.listen, threads).map_err(listen_err)?;
        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(listen_err)?;
        let served_for_metrics = served.clone();
        let runtime = tokio::runtime::Handle::current();
        for (i, socket) in udp.into_iter().enumerate() {
            let (served, runtime) = (served.clone(), runtime.clone());
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || crate::udp::serve(socket, served, runtime))
                .map_err(DnsError::Runtime)?;
        }
        tokio::spawn(serve_tcp(tcp, served));
        if let Some(port) = config.health_port {
            tokio::spawn(weft_view::health::serve(port, readiness));
        }
        if let Some(port) = config.metrics_port {
            tokio::spawn(serve_metrics(port, served_for_metrics));
        }
        tracing::info!(listen = %config.listen, domain = %config.zone.domain, upstream = ?upstream, "dns started");
        if let Err(e) = zone.await {
            tracing::error!("the zone reconciler stopped: {e}");
            std::process::exit(1);
        }
        Ok(())
    })
}

/// Serves `GET /metrics` (the Prometheus text format) and `GET /lookups?since=SEQ` (the
/// answers that carried addresses, after SEQ: [`crate::lookups`]) until the runtime stops.
pub async fn serve_metrics(port: u16, served: Arc<Served>) {
    let lookups = served.clone();
    let routes = vec![
        // The zone reconciler's syncs, then the server's answers.
        weft_view::metrics::route(move |out| out.push_str(&served.metrics.render())),
        weft_view::health::json_since(crate::lookups::PATH, move |since| {
            lookups.lookups.since(since)
        }),
    ];
    weft_view::health::serve_only(port, "metrics", routes).await;
}

/// The default listening address: port 53 on every address.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &[&str]) -> DnsConfig {
        DnsConfig {
            zone: ZoneConfig {
                domain: "cluster.local".into(),
                ttl: 30,
                reverse: Vec::new(),
            },
            kubeconfig: None,
            listen: "10.244.1.5:53".parse().unwrap(),
            health_port: None,
            metrics_port: None,
            log_queries: false,
            upstream: upstream.iter().map(|s| s.parse().unwrap()).collect(),
            cache_size: 10,
            cluster_dns: Some("10.96.0.10".parse().unwrap()),
        }
    }

    #[test]
    fn upstreams_come_from_the_config_else_resolv_conf_and_never_loop() {
        let resolv = "nameserver 203.0.113.10\nnameserver 10.96.0.10\n";
        let from_file: Vec<String> = upstreams(&config(&[]), resolv)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(from_file, ["203.0.113.10:53"]);
        let configured: Vec<String> =
            upstreams(&config(&["198.51.100.53:5353", "10.244.1.5:53"]), resolv)
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(configured, ["198.51.100.53:5353"]);
        assert!(upstreams(&config(&[]), "").is_empty());
    }
}
