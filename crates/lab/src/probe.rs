//! Readiness probes as the kubelet runs them: from the node (not from inside the pod) to the pod
//! IP for httpGet and tcpSocket, inside the container's namespaces for exec. A container takes
//! traffic only once its probe passes, which is what Pod `Ready` and the EndpointSlice
//! conditions follow.
//!
//! Each run happens on its own short-lived thread, so a slow or hanging target never stalls the
//! kubelet loop: [`Prober::tick`] only collects a finished result and starts the next run when
//! one is due.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::container::ContainerProcess;

/// What one probe run does.
#[derive(Clone, Debug)]
pub enum Action {
    Http {
        addr: SocketAddr,
        path: String,
        /// `Host` and any `httpHeaders` of the probe, in order.
        headers: Vec<(String, String)>,
    },
    Tcp {
        addr: SocketAddr,
    },
    Exec(ContainerProcess),
    /// A probe that cannot run (unknown port name, HTTPS, gRPC): it fails with this message, as
    /// the kubelet's does.
    Invalid(String),
}

/// A probe's timing and thresholds, with Kubernetes' defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(
                v.and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(default)
                    .max(min),
            )
        };
        let count = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The action of `probe` for `container`, aimed at `pod_ip`. `exec` builds the process for an
/// exec probe's command (the kubelet knows the pod's namespaces; this module does not).
pub fn action(
    probe: &Probe,
    container: &Container,
    pod_ip: IpAddr,
    exec: impl FnOnce(&[String]) -> Result<ContainerProcess, String>,
) -> Action {
    let resolve = |port: &IntOrString| -> Result<u16, String> {
        let number = match port {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!(
                        "port {name:?} is not a port of container {}",
                        container.name
                    )
                })?,
        };
        u16::try_from(number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {number} is out of range"))
    };
    let host_ip = |host: Option<&str>| -> Result<IpAddr, String> {
        match host.filter(|h| !h.is_empty()) {
            None => Ok(pod_ip),
            Some(h) => h
                .parse()
                .map_err(|_| format!("host {h:?} is not an IP address (names are not resolved)")),
        }
    };
    let built = if let Some(http) = &probe.http_get {
        (|| {
            if let Some(scheme) = http.scheme.as_deref().filter(|s| *s != "HTTP") {
                return Err(format!("scheme {scheme} is not supported (HTTP only)"));
            }
            let ip = host_ip(http.host.as_deref())?;
            let port = resolve(&http.port)?;
            let mut headers = vec![("Host".to_string(), format!("{ip}:{port}"))];
            for h in http.http_headers.iter().flatten() {
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&h.name));
                headers.push((h.name.clone(), h.value.clone()));
            }
            Ok(Action::Http {
                addr: SocketAddr::new(ip, port),
                path: http.path.clone().unwrap_or_else(|| "/".into()),
                headers,
            })
        })()
    } else if let Some(tcp) = &probe.tcp_socket {
        (|| {
            Ok(Action::Tcp {
                addr: SocketAddr::new(host_ip(tcp.host.as_deref())?, resolve(&tcp.port)?),
            })
        })()
    } else if let Some(cmd) = probe.exec.as_ref().and_then(|e| e.command.as_ref()) {
        if cmd.is_empty() {
            Err("exec probe has an empty command".to_string())
        } else {
            exec(cmd).map(Action::Exec)
        }
    } else if probe.grpc.is_some() {
        Err("grpc probes are not supported".to_string())
    } else {
        Err("probe has no handler (httpGet, tcpSocket or exec)".to_string())
    };
    built.unwrap_or_else(Action::Invalid)
}

/// One run of `action`, giving up after `timeout`. Ok means the probe passed; Err says why not.
pub fn run(action: &Action, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    match action {
        Action::Http {
            addr,
            path,
            headers,
        } => http_get(*addr, path, headers, deadline),
        Action::Tcp { addr } => TcpStream::connect_timeout(addr, timeout)
            .map(drop)
            .map_err(|e| format!("dial tcp {addr}: {e}")),
        Action::Exec(process) => exec(process, deadline),
        Action::Invalid(message) => Err(message.clone()),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "timeout".to_string())
}

fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<(), String> {
    let url = format!("http://{addr}{path}");
    let fail = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("Get {url}: timeout awaiting response")
        } else {
            format!("Get {url}: {e}")
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline)?).map_err(fail)?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("User-Agent: kube-probe/weft\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(fail)?;
    stream.write_all(request.as_bytes()).map_err(fail)?;
    // Only the status line matters.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(
                remaining(deadline).map_err(|_| format!("Get {url}: timeout awaiting response"))?,
            ))
            .map_err(fail)?;
        let n = stream.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let code: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get {url}: malformed HTTP response {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

fn exec(process: &ContainerProcess, deadline: Instant) -> Result<(), String> {
    let mut child = process
        .command()
        .map_err(|e| e.to_string())?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", process.program.display()))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "command {} exited with {}",
                    process.program.display(),
                    status.code().unwrap_or(128)
                ))
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("command {} timed out", process.program.display()));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", process.program.display())),
        }
    }
}

/// The readiness state of one container's probe: consecutive results against the thresholds,
/// and at most one run in flight.
#[derive(Debug)]
pub struct Prober {
    action: Action,
    timing: Timing,
    /// When the container started; the first run waits initialDelaySeconds after it.
    started: Instant,
    last_run: Option<Instant>,
    in_flight: Option<mpsc::Receiver<Result<(), String>>>,
    /// Results collected so far.
    verdicts: u32,
    successes: u32,
    failures: u32,
    ready: bool,
    /// Why the last run failed, for the kubelet's log.
    pub last_failure: Option<String>,
}

impl Prober {
    /// A prober for a container that started at `started`; not ready until its probe passes.
    pub fn new(action: Action, timing: Timing, started: Instant) -> Prober {
        Prober {
            action,
            timing,
            started,
            last_run: None,
            in_flight: None,
            verdicts: 0,
            successes: 0,
            failures: 0,
            ready: false,
            last_failure: None,
        }
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Collects a finished run and starts the next one when due. Returns whether there is news
    /// worth a log line: the first verdict, a change of readiness, or a new reason for failing
    /// (so a log shows why without one line per period).
    pub fn tick(&mut self, now: Instant) -> bool {
        let before = (self.ready, self.verdicts > 0, self.last_failure.clone());
        if let Some(rx) = &self.in_flight {
            match rx.try_recv() {
                Ok(result) => {
                    self.in_flight = None;
                    self.record(result);
                }
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.in_flight = None;
                    self.record(Err("probe thread ended without a result".into()));
                }
            }
        }
        let due = match self.last_run {
            None => now >= self.started + self.timing.initial_delay,
            Some(last) => now >= last + self.timing.period,
        };
        if due {
            self.last_run = Some(now);
            let (tx, rx) = mpsc::channel();
            let (action, timeout) = (self.action.clone(), self.timing.timeout);
            std::thread::spawn(move || {
                let _ = tx.send(run(&action, timeout));
            });
            self.in_flight = Some(rx);
        }
        (self.ready, self.verdicts > 0, self.last_failure.clone()) != before
    }

    fn record(&mut self, result: Result<(), String>) {
        self.verdicts = self.verdicts.saturating_add(1);
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                self.last_failure = None;
                if self.successes >= self.timing.success_threshold {
                    self.ready = true;
                }
            }
            Err(why) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.last_failure = Some(why);
                if self.failures >= self.timing.failure_threshold {
                    self.ready = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
