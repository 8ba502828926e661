//! The agent's side of the CNI plugin's announcement (see `weft_model::attach`): a pod's
//! address is known to the plugin before the pod's status carries it, and a workload may send
//! its first packet the moment the plugin returns. So the plugin tells the agent, the policy
//! reconciler programs the pod with that address (isolating it if a policy selects it), and
//! only then does the agent answer and the plugin return.
//!
//! Only root may announce (the peer's credentials are checked), and only an address for a pod
//! the view has on this node: anything else is refused with the reason.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use weft_cni::agent::{Answer, Attach, SOCKET, TIMEOUT_SECS};
use weft_view::{Change, NsName, Shared};

/// Announced addresses and what the reconciler last programmed.
#[derive(Default)]
pub struct Attachments {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Addresses announced by the plugin, for pods whose status may not have them yet.
    announced: BTreeMap<NsName, (Ipv4Addr, Instant)>,
    /// This node's pods as the last successful sync programmed them.
    programmed: BTreeMap<Ipv4Addr, NsName>,
}

/// How long an announcement is kept for a pod whose status never shows the address (the
/// status normally follows within a second).
const KEEP: Duration = Duration::from_secs(300);

impl Attachments {
    pub fn new() -> Arc<Attachments> {
        Arc::new(Attachments::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The announced addresses still current.
    pub fn announced(&self) -> BTreeMap<NsName, Ipv4Addr> {
        let mut state = self.lock();
        state.announced.retain(|_, (_, at)| at.elapsed() < KEEP);
        state
            .announced
            .iter()
            .map(|(k, (ip, _))| (k.clone(), *ip))
            .collect()
    }

    /// Records what a successful sync programmed; wakes the waiting announcements.
    pub fn programmed(&self, local: &BTreeMap<Ipv4Addr, NsName>) {
        self.lock().programmed = local.clone();
        self.changed.notify_all();
    }

    fn announce(&self, key: NsName, ip: Ipv4Addr) {
        self.lock().announced.insert(key, (ip, Instant::now()));
    }

    /// Waits until a sync has programmed `ip` as `key`'s address.
    fn wait(&self, key: &NsName, ip: Ipv4Addr, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.programmed.get(&ip) != Some(key))
            .unwrap_or_else(|e| e.into_inner());
        state.programmed.get(&ip) == Some(key)
    }
}

/// Serves announcements on the node's abstract socket, a thread per connection, until the
/// process ends.
pub fn serve(attachments: Arc<Attachments>, shared: Arc<Shared>) -> std::io::Result<()> {
    let addr = SocketAddr::from_abstract_name(SOCKET)?;
    let listener = UnixListener::bind_addr(&addr)?;
    std::thread::Builder::new()
        .name("policy-attach".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (a, s) = (attachments.clone(), shared.clone());
                let _ = std::thread::Builder::new()
                    .name("policy-attach-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &a, &s) {
                            tracing::warn!("pod attachment: {e}");
                        }
                    });
            }
        })?;
    Ok(())
}

fn handle(conn: UnixStream, attachments: &Attachments, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let answer = match peer_uid(&conn) {
        Some(0) => {
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line)?;
            match serde_json::from_str::<Attach>(&line) {
                Ok(req) => attach(req, attachments, shared),
                Err(e) => Answer::refused(format!("not an attachment: {e}")),
            }
        }
        uid => Answer::refused(format!("only root may announce pods (peer uid {uid:?})")),
    };
    let mut out = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
    out.push('\n');
    (&conn).write_all(out.as_bytes())
}

fn attach(req: Attach, attachments: &Attachments, shared: &Shared) -> Answer {
    let key = NsName::new(&req.namespace, &req.name);
    attachments.announce(key.clone(), req.ip);
    shared.notify(&[Change::Pod(key.clone())]);
    let started = Instant::now();
    if attachments.wait(&key, req.ip, Duration::from_secs(TIMEOUT_SECS)) {
        tracing::debug!(pod = %key, ip = %req.ip, took = ?started.elapsed(), "pod programmed");
        return Answer::ok();
    }
    let why = match shared.read().pod(&key) {
        None => "the agent's view has no such pod".to_string(),
        Some(_) => "the pod is not on this node, or the policy table could not be loaded (see the agent's log)".to_string(),
    };
    Answer::refused(format!(
        "pod {key} with address {} not programmed within {TIMEOUT_SECS}s: {why}",
        req.ip
    ))
}

fn peer_uid(conn: &UnixStream) -> Option<u32> {
    nix::sys::socket::getsockopt(conn, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}
