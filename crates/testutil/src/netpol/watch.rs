//! Connections tried again and again while something happens, to see that nothing changes.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::probe::{Probe, Source, PROBER};
use crate::lab::Lab;

/// How long a watched probe waits for an answer.
pub const WATCH_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes tried again and again for a while from several pods ([`PROBER`]'s watch mode), to
/// see that nothing changes while something else happens (an agent restarting).
pub struct Watch {
    jobs: Vec<Watching>,
}

/// One watching prober: its source, its targets with what they should do, the process.
type Watching = (Source, Vec<(Probe, bool)>, Child);

/// What one watched target saw: attempts, and the first ones not as wanted (seconds after the
/// watch started, what they got).
#[derive(Clone, Debug)]
pub struct Watched {
    pub source: String,
    pub probe: Probe,
    pub want: bool,
    pub attempts: u64,
    pub wrong: Vec<(f64, String)>,
}

/// Source ports a watch's probes take, a block per watch: below the kernel's ephemeral range
/// (32768 and up), so that no watched probe leaves from the port of an earlier connection of the
/// same pair that the policies let through before (`check_all` before any policy, an earlier
/// watch with other wants). Such a connection's conntrack entry is still there, its replies
/// pass as established, and the probe would be answered where a new connection would not.
const WATCH_PORTS: (u16, u16) = (10_000, 1_000);
const WATCH_BLOCKS: u16 = 22;

impl Watch {
    /// Starts watching `jobs` for `duration`.
    pub fn start(lab: &Lab, jobs: &[(Source, Vec<(Probe, bool)>)], duration: Duration) -> Watch {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let block = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % WATCH_BLOCKS;
        let ports = format!(
            "[{}, {}]",
            WATCH_PORTS.0 + block * WATCH_PORTS.1,
            WATCH_PORTS.1
        );
        let jobs = jobs
            .iter()
            .map(|(source, targets)| {
                let list = Value::Array(
                    targets
                        .iter()
                        .map(|(p, want)| {
                            let mut v = p.to_json();
                            v["want"] = Value::Bool(*want);
                            v
                        })
                        .collect(),
                )
                .to_string();
                let timeout = format!("{:.3}", WATCH_TIMEOUT.as_secs_f64());
                let secs = format!("{:.3}", duration.as_secs_f64());
                let child = lab
                    .weft_cmd(&[
                        "exec",
                        "-n",
                        &source.namespace,
                        &source.pod,
                        "--",
                        "/usr/bin/python3",
                        "-c",
                        PROBER,
                        "watch",
                        &list,
                        &timeout,
                        &secs,
                        &ports,
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("starting weft exec");
                (source.clone(), targets.clone(), child)
            })
            .collect();
        Watch { jobs }
    }

    /// Waits for the watch to end; what every target saw.
    pub fn finish(self) -> Vec<Watched> {
        let mut out = Vec::new();
        for (source, targets, child) in self.jobs {
            let done = child.wait_with_output().expect("waiting for weft exec");
            let text = String::from_utf8_lossy(&done.stdout);
            let stats: Vec<Value> = text
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "watcher in {}/{} failed ({}): {text}{}",
                        source.namespace,
                        source.pod,
                        done.status,
                        String::from_utf8_lossy(&done.stderr)
                    )
                });
            for ((probe, want), st) in targets.into_iter().zip(stats) {
                let wrong = st["wrong"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        (
                            w[0].as_f64().unwrap_or_default(),
                            w[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                out.push(Watched {
                    source: format!("{}/{}", source.namespace, source.pod),
                    probe,
                    want,
                    attempts: st["attempts"].as_u64().unwrap_or_default(),
                    wrong,
                });
            }
        }
        out
    }
}
