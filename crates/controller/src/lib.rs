//! weft's controllers, each a Kubernetes client running as a reconciler of one cluster view
//! ([`weft_view`]): it reads the view, decides with a pure function, and writes through the API.
//!
//! On any cluster (`weft controller`, the Deployment in `deploy/controller.yaml`):
//! - [`lb`]: load-balancer address allocation from the configured pool;
//! - [`speaker`]: the plan of which nodes take each load-balancer address (the announcing
//!   itself is the network's: in the lab, routes in the fabric namespace).
//!
//! For the lab only (a real cluster has kube-controller-manager and kube-scheduler):
//! - [`scheduler`]: binds pods to nodes;
//! - [`workloads`]: Deployments and DaemonSets to Pods, garbage collection, their status;
//! - [`endpoints`]: the EndpointSlice controller.

pub mod endpoints;
pub mod lb;
pub mod scheduler;
pub mod speaker;
pub mod workloads;
pub mod writer;

use std::path::PathBuf;

use weft_model::cidr::Ipv4Cidr;
use weft_view::reconciler::{host, Readiness};
use weft_view::source::{self, SourceError};
use weft_view::{Interest, Reconciler, Shared};

pub use writer::{WriteError, Writer};

/// The controller's default health port (`/healthz`, `/readyz`).
pub const HEALTH_PORT: u16 = 9877;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("starting the controller's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("nothing to run: neither load-balancer allocation nor the lab's controllers")]
    Nothing,
}

/// What one controller process runs, and against which API.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// A kubeconfig, or else in-cluster / `KUBECONFIG` (as the agent decides).
    pub kubeconfig: Option<PathBuf>,
    /// Allocate load-balancer addresses from this pool.
    pub load_balancers: Option<Ipv4Cidr>,
    /// Also run the lab's scheduler, workload and EndpointSlice controllers.
    pub lab: bool,
    /// Where `/healthz` and `/readyz` are served (None: not at all).
    pub health_port: Option<u16>,
}

/// Runs the controllers until the process is killed.
pub fn run(config: ControllerConfig) -> Result<(), ControllerError> {
    if config.load_balancers.is_none() && !config.lab {
        return Err(ControllerError::Nothing);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ControllerError::Runtime)?;
    runtime.block_on(async move {
        let client = source::client(config.kubeconfig.as_deref()).await?;
        let shared = Shared::new();
        let readiness = Readiness::new();
        let writer = Writer::new(client.clone());
        let mut interest = Interest::default();
        let mut hosted = Vec::new();
        let mut start = |r: &dyn Fn() -> Interest, h: tokio::task::JoinHandle<()>| {
            interest = interest.union(r());
            hosted.push(h);
        };
        if let Some(pool) = config.load_balancers {
            let r = lb::Allocator::new(writer.clone(), pool);
            let i = r.interest();
            start(&|| i, host(r, &shared, &readiness));
        }
        if config.lab {
            let r = scheduler::Scheduler::new(writer.clone());
            let i = r.interest();
            start(&|| i, host(r, &shared, &readiness));
            let r = workloads::Workloads::new(writer.clone());
            let i = r.interest();
            start(&|| i, host(r, &shared, &readiness));
            let r = endpoints::EndpointsController::new(writer.clone());
            let i = r.interest();
            start(&|| i, host(r, &shared, &readiness));
        }
        source::spawn(&client, &shared, interest);
        if let Some(port) = config.health_port {
            // `/metrics`: the reconcilers' syncs.
            tokio::spawn(weft_view::health::serve_routes(
                port,
                readiness.clone(),
                vec![weft_view::metrics::route(|_| {})],
            ));
        }
        tracing::info!(
            load_balancers = ?config.load_balancers,
            lab = config.lab,
            "controller started"
        );
        // The reconcilers never return; a panic in one ends the process, to be restarted whole.
        for h in hosted {
            if let Err(e) = h.await {
                tracing::error!("a controller stopped: {e}");
                std::process::exit(1);
            }
        }
        Ok(())
    })
}
