//! The lab's control-plane daemon: what kube-controller-manager and kube-scheduler are to a
//! real cluster. The controllers themselves are `weft_controller`'s (scheduler, Deployments and
//! DaemonSets, garbage collection, EndpointSlices), Kubernetes clients of the lab's API server
//! like any other; this daemon runs them with the lab's kubeconfig and, on a thread of its own,
//! keeps the lab's other daemons alive (the API server, the speaker and every kubelet).
//! Load-balancer addresses are not allocated here: that is `weft controller`, deployed into the
//! lab from `deploy/controller.yaml` as on a real cluster.

use std::time::Duration;

use weft_sources::Store;

use crate::layout::Layout;
use crate::LabError;

/// How often the daemons are looked after.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// Runs until killed.
pub fn run(layout: Layout, store: Store) -> Result<(), LabError> {
    let kubeconfig = layout.kubeconfig_file();
    std::thread::spawn(move || loop {
        if let Err(e) = crate::supervise::control_plane(&layout, &store) {
            tracing::warn!("supervising the lab's daemons: {e}");
        }
        std::thread::sleep(SUPERVISE_EVERY);
    });
    weft_controller::run(weft_controller::ControllerConfig {
        kubeconfig: Some(kubeconfig),
        load_balancers: None,
        lab: true,
        health_port: None,
    })
    .map_err(|e| LabError::Invalid(format!("controller: {e}")))
}
