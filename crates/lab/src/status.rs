//! Pod status as the kubelet reports it: phase, conditions, IPs and one status per container,
//! derived from the sandbox record alone so the same record always gives the same status.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::sandbox::Sandbox;

pub fn pod_status(pod: &Pod, sandbox: &Sandbox, host_ip: Option<&str>) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut statuses = Vec::new();
    let (mut running, mut succeeded, mut failed) = (0, 0, 0);
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
        let mut status = json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": is_running,
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
    let all_ready = total > 0 && running == total;
    let phase = if all_ready || running > 0 {
        "Running"
    } else if total > 0 && succeeded == total && restart_policy != "Always" {
        "Succeeded"
    } else if failed > 0 && restart_policy == "Never" && running == 0 {
        "Failed"
    } else {
        "Pending"
    };
    let ready = if all_ready { "True" } else { "False" };
    let ip = sandbox.ip.to_string();
    let mut status = json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
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
    fn finished_pods_succeed_or_fail() {
        let done = |code| ContainerRecord {
            last_exit_code: Some(code),
            waiting_reason: Some("Completed".into()),
            started_at: Some("x".into()),
            restart_after: u64::MAX,
            ..Default::default()
        };
        assert_eq!(
            pod_status(&pod(&["a"], "Never"), &sandbox(&[("a", done(0))]), None)["phase"],
            "Succeeded"
        );
        assert_eq!(
            pod_status(&pod(&["a"], "Never"), &sandbox(&[("a", done(2))]), None)["phase"],
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
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImageNotBuiltIn"
        );
    }
}
