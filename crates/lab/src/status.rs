//! Pod status as the kubelet reports it: phase, conditions, IPs and one status per container,
//! derived from the sandbox record and the readiness probes' verdicts alone, so the same inputs
//! always give the same status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::sandbox::Sandbox;

/// `probes` holds, for each container with a readinessProbe, whether the probe passes now; a
/// container with a probe and no verdict yet is not ready (as in Kubernetes, readiness starts
/// false).
pub fn pod_status(
    pod: &Pod,
    sandbox: &Sandbox,
    host_ip: Option<&str>,
    probes: &BTreeMap<String, bool>,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut statuses = Vec::new();
    let (mut running, mut ready, mut succeeded, mut failed) = (0, 0, 0, 0);
    let mut unready = Vec::new();
    for c in &spec.containers {
        let rec = sandbox.containers.get(&c.name).cloned().unwrap_or_default();
        let is_running = rec.pid.is_some();
        let state = if let (true, Some(at)) = (is_running, rec.started_at.as_deref()) {
            running += 1;
            json!({"running": {"startedAt": at}})
        } else if rec.restart_after == u64::MAX && rec.last_exit_code.is_some() {
            // Exited for good (restartPolicy says no more).
            let code = rec.last_exit_code.unwrap_or(0);
            if code == 0 {
                succeeded += 1;
            } else {
                failed += 1;
            }
            json!({"terminated": {"exitCode": code, "reason": rec.waiting_reason.clone().unwrap_or_default()}})
        } else {
            let reason = match (rec.waiting_reason.as_deref(), rec.last_exit_code) {
                (Some(_), Some(_)) => "CrashLoopBackOff".to_string(),
                (Some(r), None) => r.to_string(),
                (None, _) => "ContainerCreating".to_string(),
            };
            if rec.restart_after == u64::MAX {
                failed += 1;
            }
            json!({"waiting": {"reason": reason, "message": rec.message.clone().unwrap_or_default()}})
        };
        let probe_passes =
            c.readiness_probe.is_none() || probes.get(&c.name).copied().unwrap_or(false);
        let is_ready = is_running && probe_passes;
        if is_ready {
            ready += 1;
        } else {
            unready.push(c.name.clone());
        }
        let mut status = json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": is_ready,
            "started": is_running,
            "restartCount": rec.restarts,
            "state": state,
        });
        if let Some(code) = rec
            .last_exit_code
            .filter(|_| is_running || rec.restarts > 0)
        {
            status["lastState"] = json!({"terminated": {"exitCode": code}});
        }
        statuses.push(status);
    }
    let total = spec.containers.len();
    let all_ready = total > 0 && ready == total;
    let phase = if running > 0 {
        "Running"
    } else if total > 0 && succeeded == total && restart_policy != "Always" {
        "Succeeded"
    } else if failed > 0 && restart_policy == "Never" && running == 0 {
        "Failed"
    } else {
        "Pending"
    };
    let ready_condition = |type_: &str| {
        if all_ready {
            json!({"type": type_, "status": "True"})
        } else {
            // Kubernetes' words, so `describe` reads as it does there.
            json!({"type": type_, "status": "False", "reason": "ContainersNotReady",
                   "message": format!("containers with unready status: [{}]", unready.join(" "))})
        }
    };
    let ip = sandbox.ip.to_string();
    let mut status = json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            ready_condition("ContainersReady"),
            ready_condition("Ready"),
        ],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": sandbox.started_at,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    if let Some(host_ip) = host_ip {
        status["hostIP"] = json!(host_ip);
        status["hostIPs"] = json!([{"ip": host_ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::ContainerRecord;

    fn pod(containers: &[&str], policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": containers.iter().map(|n| json!({"name": n, "image": "busybox"})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn sandbox(records: &[(&str, ContainerRecord)]) -> Sandbox {
        Sandbox {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p".into(),
            netns: "n".into(),
            ip: "10.244.0.5".parse().unwrap(),
            started_at: "2026-11-23T09:00:00Z".into(),
            host_network: false,
            containers: records
                .iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect(),
        }
    }

    fn running() -> ContainerRecord {
        ContainerRecord {
            pid: Some(42),
            started_at: Some("2026-11-23T09:00:01Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn all_containers_running_is_ready() {
        let s = pod_status(
            &pod(&["a", "b"], "Always"),
            &sandbox(&[("a", running()), ("b", running())]),
            Some("172.20.0.2"),
            &BTreeMap::new(),
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["conditions"][3]["status"], "True");
        assert_eq!(s["podIP"], "10.244.0.5");
        assert_eq!(s["hostIP"], "172.20.0.2");
        assert_eq!(s["containerStatuses"][1]["ready"], true);
    }

    #[test]
    fn a_crashing_container_is_not_ready() {
        let crashed = ContainerRecord {
            last_exit_code: Some(1),
            waiting_reason: Some("Error".into()),
            started_at: Some("x".into()),
            restarts: 3,
            restart_after: 10,
            ..Default::default()
        };
        let s = pod_status(
            &pod(&["a", "b"], "Always"),
            &sandbox(&[("a", running()), ("b", crashed)]),
            None,
            &BTreeMap::new(),
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["conditions"][3]["status"], "False");
        assert_eq!(
            s["containerStatuses"][1]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert_eq!(s["containerStatuses"][1]["restartCount"], 3);
    }

    #[test]
    fn a_readiness_probe_gates_readiness() {
        let mut p = pod(&["a", "b"], "Always");
        p.spec.as_mut().unwrap().containers[1].readiness_probe = Some(Default::default());
        let sb = sandbox(&[("a", running()), ("b", running())]);
        let status = |verdicts: &[(&str, bool)]| {
            let probes = verdicts.iter().map(|(n, v)| (n.to_string(), *v)).collect();
            pod_status(&p, &sb, None, &probes)
        };
        for s in [status(&[]), status(&[("b", false)])] {
            assert_eq!(s["phase"], "Running");
            assert_eq!(s["conditions"][2]["status"], "False");
            assert_eq!(s["conditions"][3]["status"], "False");
            assert_eq!(
                s["conditions"][3]["message"],
                "containers with unready status: [b]"
            );
            assert_eq!(s["containerStatuses"][0]["ready"], true);
            assert_eq!(s["containerStatuses"][1]["ready"], false);
            assert_eq!(s["containerStatuses"][1]["started"], true);
        }
        let s = status(&[("b", true)]);
        assert_eq!(s["conditions"][3]["status"], "True");
        assert_eq!(s["containerStatuses"][1]["ready"], true);
    }

    #[test]
    fn finished_pods_succeed_or_fail() {
        let done = |code| ContainerRecord {
            last_exit_code: Some(code),
            waiting_reason: Some("Completed".into()),
            started_at: Some("x".into()),
            restart_after: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            pod_status(
                &pod(&["a"], "Never"),
                &sandbox(&[("a", done(0))]),
                None,
                &BTreeMap::new()
            )["phase"],
            "Succeeded"
        );
        assert_eq!(
            pod_status(
                &pod(&["a"], "Never"),
                &sandbox(&[("a", done(2))]),
                None,
                &BTreeMap::new()
            )["phase"],
            "Failed"
        );
        let unknown_image = ContainerRecord {
            waiting_reason: Some("ImageNotBuiltIn".into()),
            started_at: Some(String::new()),
            restart_after: u64::MAX,
            ..Default::default()
        };
        let s = pod_status(
            &pod(&["a"], "Always"),
            &sandbox(&[("a", unknown_image)]),
            None,
            &BTreeMap::new(),
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImageNotBuiltIn"
        );
    }
}
