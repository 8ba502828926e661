//! The one exchange between the CNI plugin and its node's agent: after wiring a pod, the
//! plugin announces the pod's address and waits until the agent has programmed the pod's
//! policy (isolated or not), so a pod a policy selects is isolated before its first packet.
//! One JSON line each way over an abstract unix socket, which lives in the node's network
//! namespace: the plugin and the agent (hostNetwork) share it, on a real node and on a lab's
//! alike, and no path has to agree between them. The agent's side is `weft_policy::attach`.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The abstract socket name (no file: `\0weft-agent-attach` in the node's network namespace).
pub const SOCKET: &str = "weft-agent-attach";

/// How long the plugin waits for the agent by default.
pub const TIMEOUT_SECS: u64 = 10;

/// The plugin's announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// The agent's answer: programmed, or why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer { error: None }
    }

    pub fn refused(why: impl Into<String>) -> Answer {
        Answer {
            error: Some(why.into()),
        }
    }
}

/// Announces `attach` on the abstract socket `socket` and waits (up to `timeout` beyond the
/// agent's own wait) for the agent's answer. The error says what failed, for the runtime's log.
pub fn announce(socket: &str, attach: &Attach, timeout: Duration) -> Result<(), String> {
    let unreachable = |e: std::io::Error| {
        format!("the node's weft agent is not answering on @{socket} ({e}); is it running?")
    };
    let addr = SocketAddr::from_abstract_name(socket).map_err(unreachable)?;
    let conn = UnixStream::connect_addr(&addr).map_err(unreachable)?;
    conn.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    let mut line = serde_json::to_string(attach).map_err(|e| e.to_string())?;
    line.push('\n');
    (&conn).write_all(line.as_bytes()).map_err(unreachable)?;
    let mut reply = String::new();
    BufReader::new(&conn)
        .read_line(&mut reply)
        .map_err(|e| format!("waiting for the node's weft agent on @{socket}: {e}"))?;
    let answer: Answer = serde_json::from_str(&reply)
        .map_err(|e| format!("the node's weft agent answered {reply:?}: {e}"))?;
    match answer.error {
        None => Ok(()),
        Some(why) => Err(format!("the node's weft agent refused the pod: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let a = Attach {
            namespace: "default".into(),
            name: "web".into(),
            ip: Ipv4Addr::new(10, 244, 1, 5),
        };
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(
            line,
            r#"{"namespace":"default","name":"web","ip":"10.244.1.5"}"#
        );
        assert_eq!(serde_json::from_str::<Attach>(&line).unwrap(), a);
        assert_eq!(serde_json::to_string(&Answer::ok()).unwrap(), "{}");
        assert_eq!(
            serde_json::from_str::<Answer>(r#"{"error":"x"}"#).unwrap(),
            Answer::refused("x")
        );
    }
}
