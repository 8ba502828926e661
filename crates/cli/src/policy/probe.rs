//! `--probe`: a real connection from the source pod, made through the API's `pods/exec` as
//! `weft exec` makes it (in a lab the command runs in the pod's network namespace). TCP is a
//! `curl` to the port; UDP a datagram from bash's `/dev/udp` and one read of the answer. A
//! connection, an answer or a refusal (RST, ICMP port unreachable) means the packet got through
//! the policies; silence until the timeout means it was dropped on the way.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;
use weft_dataplane::nft::L4Proto;
use weft_view::NsName;

use crate::client::Cluster;

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Connected (TCP) or answered (UDP).
    Connected,
    /// Refused: the packet reached the destination, where nothing listens.
    Refused,
    /// Nothing came back within the timeout: dropped on the way (or, for UDP, a server that
    /// does not answer).
    NoAnswer,
    /// The probe itself failed (no curl in the pod, exec refused...).
    Failed(String),
    /// Not probed, and why.
    NotProbed(String),
}

impl Observed {
    /// Whether the probe says the traffic is allowed; None when it says nothing.
    pub fn allowed(&self) -> Option<bool> {
        match self {
            Observed::Connected | Observed::Refused => Some(true),
            Observed::NoAnswer => Some(false),
            Observed::Failed(_) | Observed::NotProbed(_) => None,
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Observed::Connected => "connected",
            Observed::Refused => "refused",
            Observed::NoAnswer => "no-answer",
            Observed::Failed(_) => "failed",
            Observed::NotProbed(_) => "not-probed",
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Connected => f.write_str("connected (allowed)"),
            Observed::Refused => {
                f.write_str("refused by the destination (allowed: nothing listens there)")
            }
            Observed::NoAnswer => f.write_str("no answer within the timeout (blocked)"),
            Observed::Failed(why) => write!(f, "failed: {why}"),
            Observed::NotProbed(why) => write!(f, "not probed: {why}"),
        }
    }
}

/// The command that probes `dst`:`port` from inside a pod.
pub fn command(dst: Ipv4Addr, proto: L4Proto, port: u16, timeout: Duration) -> Option<Vec<String>> {
    let secs = timeout.as_secs().max(1);
    match proto {
        L4Proto::Tcp => Some(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{time_connect}",
                "--connect-timeout",
                &secs.to_string(),
                "--max-time",
                &(secs + 3).to_string(),
                &format!("http://{dst}:{port}/"),
            ]
            .map(str::to_string)
            .to_vec(),
        ),
        // One datagram, one read of one answer (dd reads once; head would wait for more).
        L4Proto::Udp => Some(
            [
                "bash",
                "-c",
                "exec 3<>/dev/udp/$0/$1 && printf hostname >&3 && timeout $2 dd bs=65536 count=1 status=none <&3 >/dev/null",
                &dst.to_string(),
                &port.to_string(),
                &secs.to_string(),
            ]
            .map(str::to_string)
            .to_vec(),
        ),
        L4Proto::Sctp => None,
    }
}

/// What a probe's exit code and output mean.
pub fn classify(proto: L4Proto, code: i32, stdout: &str, stderr: &str) -> Observed {
    let refused = stderr.to_ascii_lowercase().contains("refused");
    match proto {
        L4Proto::Tcp => {
            let connected = stdout.trim().parse::<f64>().is_ok_and(|t| t > 0.0);
            match code {
                0 => Observed::Connected,
                _ if connected => Observed::Connected,
                7 if refused => Observed::Refused,
                28 => Observed::NoAnswer,
                127 => Observed::Failed("no curl in the pod".into()),
                _ => Observed::Failed(format!("curl exited {code}: {}", stderr.trim())),
            }
        }
        L4Proto::Udp => match code {
            0 => Observed::Connected,
            _ if refused => Observed::Refused,
            124 => Observed::NoAnswer,
            127 => Observed::Failed("no bash or timeout in the pod".into()),
            _ => Observed::Failed(format!("the UDP probe exited {code}: {}", stderr.trim())),
        },
        L4Proto::Sctp => Observed::NotProbed("there is no SCTP probe".into()),
    }
}

/// Probes from pod `src` (None: the source is not a pod) to `dst`:`port`.
pub async fn probe(
    cluster: &Cluster,
    src: Option<&NsName>,
    dst: Ipv4Addr,
    proto: L4Proto,
    port: u16,
    timeout: Duration,
) -> Observed {
    let Some(src) = src else {
        return Observed::NotProbed(
            "the source is not a pod (probes run in the source pod)".into(),
        );
    };
    let Some(cmd) = command(dst, proto, port, timeout) else {
        return Observed::NotProbed("there is no SCTP probe".into());
    };
    let limit = timeout + Duration::from_secs(20);
    match tokio::time::timeout(limit, exec(cluster, src, cmd)).await {
        Ok(Ok((code, out, err))) => classify(proto, code, &out, &err),
        Ok(Err(e)) => Observed::Failed(format!("exec in {src}: {e:#}")),
        Err(_) => Observed::Failed(format!(
            "exec in {src} did not finish in {}s",
            limit.as_secs()
        )),
    }
}

/// Runs `cmd` in `pod`'s first container: (exit code, stdout, stderr).
async fn exec(
    cluster: &Cluster,
    pod: &NsName,
    cmd: Vec<String>,
) -> anyhow::Result<(i32, String, String)> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &pod.namespace);
    // A pod of several containers needs one named (they share the network namespace).
    let first = api
        .get(&pod.name)
        .await
        .map_err(|e| cluster.error(e))?
        .spec
        .and_then(|s| s.containers.first().map(|c| c.name.clone()));
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    if let Some(c) = first {
        params = params.container(c);
    }
    let mut attached = api
        .exec(&pod.name, cmd, &params)
        .await
        .map_err(|e| cluster.error(e))?;
    let status = attached.take_status();
    let (mut out, mut err) = (String::new(), String::new());
    let (stdout, stderr) = (attached.stdout(), attached.stderr());
    let read_out = async {
        if let Some(mut r) = stdout {
            let _ = r.read_to_string(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(mut r) = stderr {
            let _ = r.read_to_string(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let code = match status {
        Some(s) => crate::exec::exit_code(&s)?,
        None => anyhow::bail!("the connection to the pod ended without an exit status"),
    };
    Ok((code, out, err))
}
