//! The node agent: one per node (a DaemonSet on a real cluster; in the lab, run by each node's
//! kubelet from the same manifest). It is a tokio runtime hosting weft's per-node reconcilers:
//! kube-rs watchers on the Kubernetes API feed one cluster view ([`weft_view`]), and each
//! reconciler (net: routes, overlay, egress; proxy: Services) follows the changes it subscribed
//! to, compiles from the view (pure) and applies the result to the kernel on its own thread.
//!
//! The agent holds no state that matters across restarts: killed and restarted, it lists the
//! same objects, compiles the same plans, finds the kernel already matching, and established
//! connections never notice.

pub mod announce;
pub mod events;
pub mod flows;
pub mod names;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_controller::speaker::Speaker;
use weft_net::{NetError, NetReconciler, NetworkConfig, NodePlan};
use weft_policy::reconcile::Published;
use weft_policy::PolicyReconciler;
use weft_proxy::reconcile::ReconcileError;
use weft_proxy::ProxyReconciler;
use weft_view::health::Route;
use weft_view::reconciler::{host, Readiness};
use weft_view::source::{self, SourceError};
use weft_view::{Reconciler, Shared};

/// How long `--plan` waits for the first complete lists.
const PLAN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Proxy(#[from] ReconcileError),
    #[error("starting the agent's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("serving the CNI plugin's pod announcements: {0}")]
    Attach(std::io::Error),
    #[error("the API server did not list {0} within {PLAN_WAIT:?}")]
    NotListed(String),
}

/// What one agent needs: which node it runs on, the cluster's network settings, and where the
/// API is (a kubeconfig, or else in-cluster / `KUBECONFIG`, as kubectl decides).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: String,
    pub network: NetworkConfig,
    pub kubeconfig: Option<PathBuf>,
    /// Where `/healthz`, `/readyz` and `/policy` are served (all addresses of the node).
    pub health_port: u16,
    /// Announce this load-balancer pool's addresses by ARP from the elected nodes (the config's
    /// `loadBalancerAnnouncement: arp`); None when a router is told instead.
    pub announce_arp: Option<weft_model::cidr::Ipv4Cidr>,
    /// Where `spec.externalIPs` may be served (the config's `externalIPRanges`): the proxy
    /// ignores any other, whoever admitted the Service (CVE-2020-8554).
    pub external_ip_ranges: Vec<weft_model::cidr::Ipv4Cidr>,
    /// Keep the node's connections in the flow log (the config's `flowLog`); drops and
    /// refusals are kept either way.
    pub flow_log: bool,
}

/// The agent's default health port (`/healthz`, `/readyz`, `/policy`).
pub const HEALTH_PORT: u16 = 9876;

/// Runs the agent until the process is killed.
pub fn run(config: AgentConfig) -> Result<(), AgentError> {
    runtime()?.block_on(async move {
        let client = source::client(config.kubeconfig.as_deref()).await?;
        let shared = Shared::new();
        let net = NetReconciler::new(config.network.clone(), &config.node);
        // The proxy hands its loaded views to the LoadBalancer health check servers, which
        // listen on every address of the node (kube-proxy's healthCheckNodePort servers).
        let (health_tx, health_rx) = weft_proxy::health::channel();
        let proxy = ProxyReconciler::new(&config.node, config.network.cluster_cidr)
            .with_external_ip_ranges(config.external_ip_ranges.clone())
            .with_health(health_tx);
        tokio::spawn(weft_proxy::health::serve(
            health_rx,
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ));
        let policy = PolicyReconciler::new(&config.node, vxlan_port(&config));
        weft_policy::attach::serve(policy.attachments(), shared.clone())
            .map_err(AgentError::Attach)?;
        // The flow log: the node's connections, and each drop the policy table logs (also a
        // line of the agent's log).
        let events =
            events::NodeEvents::new(weft_controller::Writer::new(client.clone()), &config.node);
        let flow_log = flows::FlowLog::new(&config.node);
        if config.flow_log {
            if let Err(e) = flows::spawn(flow_log.clone(), config.network.cluster_cidr) {
                tracing::warn!(node = %config.node, "no flow log: {e}");
                let events = events.clone();
                let message = format!("no flow log on this node: {e}");
                tokio::task::spawn_blocking(move || events.warn("FlowLogFailed", &message));
            }
        }
        let drops_log = flow_log.clone();
        if let Err(e) = weft_policy::drops::spawn(move |r, outcome| drops_log.dropped(r, outcome)) {
            tracing::warn!(node = %config.node, "policy drops will not be logged: {e}");
            let events = events.clone();
            let message = format!("policy drops will not be logged: {e}");
            tokio::task::spawn_blocking(move || events.warn("DropLogFailed", &message));
        }
        let policy_report = policy_route(&config.node, policy.published());
        let metrics = metrics_route(&config.node, policy.published(), flow_log.clone());
        source::spawn(
            &client,
            &shared,
            net.interest()
                .union(proxy.interest())
                .union(policy.interest()),
        );
        tracing::info!(node = %config.node, mode = ?config.network.mode, "agent started");
        let readiness = Readiness::new();
        tokio::spawn(weft_view::health::serve_routes(
            config.health_port,
            readiness.clone(),
            vec![
                policy_report,
                metrics,
                flows::route(flow_log, names::DnsNames::new(shared.clone())),
            ],
        ));
        // A failed sync is also an Event on the node (events::Reporting).
        let mut reconcilers = vec![
            host(
                events::Reporting::new(net, events.clone()),
                &shared,
                &readiness,
            ),
            host(
                events::Reporting::new(proxy, events.clone()),
                &shared,
                &readiness,
            ),
            host(
                events::Reporting::new(policy, events.clone()),
                &shared,
                &readiness,
            ),
        ];
        if let Some(pool) = config.announce_arp {
            let speaker = Speaker::new(announce::ArpAnnouncer::new(pool));
            reconcilers.push(host(speaker, &shared, &readiness));
        }
        // The reconcilers never return; a panic in one ends the agent, to be restarted whole.
        for r in reconcilers {
            if let Err(e) = r.await {
                tracing::error!(node = %config.node, "a reconciler stopped: {e}");
                std::process::exit(1);
            }
        }
        Ok(())
    })
}

/// What the agent would program on its node now, without changing anything: the net plan and
/// the Service table's `nft` script.
/// The overlay's UDP port, which the policy table closes to all but nodes (the default one in
/// direct mode, where nothing listens on it).
fn vxlan_port(config: &AgentConfig) -> u16 {
    match config.network.mode {
        weft_net::Mode::Vxlan { port, .. } => port,
        weft_net::Mode::Direct => weft_model::ClusterConfig::default().vxlan_port,
    }
}

/// What the agent would program: the net plan, the Service table and the policy table.
pub struct Plan {
    pub net: NodePlan,
    pub services: String,
    pub policy: String,
}

pub fn plan(config: AgentConfig) -> Result<Plan, AgentError> {
    runtime()?.block_on(async move {
        let client = source::client(config.kubeconfig.as_deref()).await?;
        let shared = Shared::new();
        let net = NetReconciler::new(config.network.clone(), &config.node);
        let proxy = ProxyReconciler::new(&config.node, config.network.cluster_cidr)
            .with_external_ip_ranges(config.external_ip_ranges.clone());
        let policy = PolicyReconciler::new(&config.node, vxlan_port(&config));
        let interest = net
            .interest()
            .union(proxy.interest())
            .union(policy.interest());
        source::spawn(&client, &shared, interest);
        let kinds = source::kinds(&interest);
        let started = Instant::now();
        while !shared.read().listed(&kinds) {
            if started.elapsed() > PLAN_WAIT {
                return Err(AgentError::NotListed(kinds.join(", ")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, table) = policy.compile(&shared.read());
        Ok(Plan {
            net: net.plan(&shared)?,
            services: proxy.script(&shared)?,
            policy: table.render(),
        })
    })
}

/// `GET /policy`: what the policies did on this node ([`weft_policy::report`]), as JSON.
fn policy_route(node: &str, published: Published) -> Route {
    let node = node.to_string();
    Route {
        path: weft_policy::report::PATH,
        content_type: "application/json",
        answer: Arc::new(move |_: &str| match report(&node, &published) {
            Ok(report) => match serde_json::to_string(&report) {
                Ok(json) => ("200 OK", json),
                Err(e) => ("500 Internal Server Error", format!("{e}\n")),
            },
            Err(answer) => answer,
        }),
    }
}

/// What the policies did on this node, read from the kernel's counters; or the answer to give
/// when that cannot be read now.
fn report(
    node: &str,
    published: &Published,
) -> Result<weft_policy::report::NodeReport, (&'static str, String)> {
    // The report reads the kernel: the lock is not held for it. While a sync runs the
    // reconciler holds the resolution (it is updated in place, not copied): wait for it a
    // little (a label change takes about a millisecond, a whole load at 1,000 policies x 1,000
    // pods about a tenth of a second) before answering 503.
    let mut loaded = None;
    for _ in 0..50 {
        loaded = published.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if loaded.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let Some(policies) = loaded else {
        return Err((
            "503 Service Unavailable",
            "the policy table is not loaded yet, or being updated: try again\n".to_string(),
        ));
    };
    weft_policy::report::read(node, &policies)
        .map_err(|e| ("500 Internal Server Error", format!("{e}\n")))
}

/// `GET /metrics`: the reconcilers' syncs ([`weft_view::metrics`]), the nftables batches sent
/// and the tables' sizes, the node's conntrack entries, the flow log's records by verdict, and
/// the policy table's counters: packets and bytes each policy allowed and dropped, by
/// direction, and the pod network's drops by reason.
fn metrics_route(node: &str, published: Published, flow_log: Arc<flows::FlowLog>) -> Route {
    let node = node.to_string();
    weft_view::metrics::route(move |out| {
        use weft_view::metrics::Family;
        let tables = weft_dataplane::nft::stats::stats();
        let mut f = Family::new(
            out,
            "weft_agent_nft_batches_total",
            "counter",
            "nf_tables batches the agent sent, by table, kind (whole, incremental, digest: the table digest written after incremental changes) and result (ok, refused: the kernel returned an error).",
        );
        for (table, s) in &tables {
            for ((kind, result), n) in &s.batches {
                f.sample(
                    &[("table", table), ("kind", kind), ("result", result)],
                    *n as f64,
                );
            }
        }
        let mut f = Family::new(
            out,
            "weft_agent_nft_batch_messages_total",
            "counter",
            "Netlink messages in the nf_tables batches the agent sent, by table.",
        );
        for (table, s) in &tables {
            f.sample(&[("table", table)], s.messages as f64);
        }
        let mut f = Family::new(
            out,
            "weft_agent_nft_rules",
            "gauge",
            "Rules in each of the agent's nftables tables as last loaded.",
        );
        for (table, s) in &tables {
            f.sample(&[("table", table)], s.rules as f64);
        }
        let mut f = Family::new(
            out,
            "weft_agent_nft_set_elements",
            "gauge",
            "Set and map elements in each of the agent's nftables tables as last loaded.",
        );
        for (table, s) in &tables {
            f.sample(&[("table", table)], s.elements as f64);
        }
        let mut f = Family::new(
            out,
            "weft_agent_flows_total",
            "counter",
            "Records the node's flow log took, by verdict and event (start, end, drop, reject; drops and refusals are logged at most 10 a second per chain).",
        );
        for ((verdict, event), n) in flow_log.counts() {
            f.sample(&[("verdict", &verdict), ("event", &event)], n as f64);
        }
        // Per network namespace: the node's (the agent is a hostNetwork pod).
        let conntrack = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok());
        if let Some(n) = conntrack {
            Family::new(
                out,
                "weft_agent_conntrack_entries",
                "gauge",
                "Connections the node's conntrack table tracks.",
            )
            .sample(&[], n);
        }
        let Ok(report) = report(&node, &published) else {
            return;
        };
        let mut packets = Family::new(
            out,
            "weft_agent_policy_packets_total",
            "counter",
            "Packets each NetworkPolicy allowed or dropped on this node, by direction (kernel counters; reset when the table is reloaded whole).",
        );
        let mut bytes_seen = Vec::new();
        for p in &report.policies {
            for (direction, traffic) in [("ingress", &p.ingress), ("egress", &p.egress)] {
                let Some(t) = traffic else { continue };
                for (verdict, count) in [("allowed", &t.allowed), ("dropped", &t.dropped)] {
                    let labels = [
                        ("namespace", p.namespace.as_str()),
                        ("policy", p.name.as_str()),
                        ("direction", direction),
                        ("verdict", verdict),
                    ];
                    packets.sample(&labels, count.packets as f64);
                    bytes_seen.push((labels, count.bytes));
                }
            }
        }
        let mut bytes = Family::new(
            out,
            "weft_agent_policy_bytes_total",
            "counter",
            "Bytes each NetworkPolicy allowed or dropped on this node, by direction.",
        );
        for (labels, n) in &bytes_seen {
            bytes.sample(labels, *n as f64);
        }
        let drops = &report.pod_network;
        let mut f = Family::new(
            out,
            "weft_agent_pod_network_drops_total",
            "counter",
            "Packets the pod network dropped before any policy, by reason.",
        );
        for (reason, count) in [
            ("spoofed_source", &drops.spoofed),
            ("vxlan_from_pod", &drops.vxlan_from_pod),
            ("vxlan_foreign", &drops.vxlan_foreign),
        ] {
            f.sample(&[("reason", reason)], count.packets as f64);
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, AgentError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)
}
