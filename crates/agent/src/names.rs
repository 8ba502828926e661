//! The names the cluster DNS gave the pods, put on their flows: a client that looked up
//! `web.default.svc.cluster.local` and connected to the address it got has that name on its
//! records. The DNS pods keep what they answered whom (`weft_dns::lookups`, on their metrics
//! port); the agent reads their new answers only when its flow log is read, so nothing is
//! asked while nobody looks. What it learned is kept per (client, address), bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weft_dns::lookups::Lookup;
use weft_view::{NsName, Shared};

use crate::flows::Flow;

/// The cluster DNS Service, whose endpoints are the DNS pods (CoreDNS's name, which weft's
/// DNS takes: `deploy/dns.yaml`).
const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");
/// The port the DNS pods serve `/lookups` on when their slices do not name one `metrics`.
const DEFAULT_PORT: u16 = weft_dns::run::METRICS_PORT;
/// How long one DNS pod may take to accept, and then each read of its answer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// A DNS pod that did not answer is not asked again for this long.
const BACKOFF: Duration = Duration::from_secs(10);
/// (client, address) pairs kept; beyond, the least recently looked up quarter goes.
const KEPT: usize = 65_536;
/// A lookup names a flow that started at most this long before it was answered: clocks of
/// two nodes differ a little, and a DNS pod notes its answer after sending it.
const SLACK_MS: u64 = 1_000;

pub struct DnsNames {
    shared: Arc<Shared>,
    /// One reader asks the DNS pods at a time; a reader arriving meanwhile waits for those
    /// answers rather than asking again.
    asking: Mutex<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each DNS pod's last lookup read.
    cursors: HashMap<SocketAddr, u64>,
    /// DNS pods that did not answer, and when.
    failed: HashMap<SocketAddr, Instant>,
    names: HashMap<(IpAddr, IpAddr), Known>,
}

/// What a client last looked up to get an address.
struct Known {
    name: String,
    /// When it first got the address for this name, and when last.
    first_ms: u64,
    last_ms: u64,
}

impl DnsNames {
    pub fn new(shared: Arc<Shared>) -> Arc<DnsNames> {
        Arc::new(DnsNames {
            shared,
            asking: Mutex::new(()),
            state: Mutex::new(State::default()),
        })
    }

    /// Reads the DNS pods' new answers, then names each of `flows` whose client looked up the
    /// address it sent to. The names are only ever read under the state's lock, never the
    /// network: a DNS pod that does not answer delays its reader by its timeouts, and then is
    /// left alone for [`BACKOFF`].
    pub fn name(&self, flows: &mut [Flow]) {
        if flows.is_empty() {
            return;
        }
        {
            let _one = self.asking.lock().unwrap_or_else(|e| e.into_inner());
            let servers = servers(&self.shared);
            let todo: Vec<(SocketAddr, u64)> = {
                let mut state = self.lock();
                state.cursors.retain(|s, _| servers.contains(s));
                state
                    .failed
                    .retain(|s, at| servers.contains(s) && at.elapsed() < BACKOFF);
                servers
                    .iter()
                    .filter(|s| !state.failed.contains_key(s))
                    .map(|s| (*s, state.cursors.get(s).copied().unwrap_or(0)))
                    .collect()
            };
            for (server, since) in todo {
                let answer = read(server, since);
                let mut state = self.lock();
                match answer {
                    Ok(lookups) => state.learn(server, lookups),
                    Err(e) => {
                        tracing::debug!("dns lookups of {server}: {e}");
                        state.failed.insert(server, Instant::now());
                    }
                }
            }
        }
        let state = self.lock();
        for f in flows {
            f.dns = state.name_of(f.src, f.dst, f.time_ms);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn learn(&mut self, server: SocketAddr, lookups: Vec<Lookup>) {
        let Some(last) = lookups.last() else {
            return;
        };
        self.cursors.insert(server, last.seq);
        for l in lookups {
            for address in &l.addresses {
                let known = self
                    .names
                    .entry((l.client, *address))
                    .or_insert_with(|| Known {
                        name: l.name.clone(),
                        first_ms: l.time_ms,
                        last_ms: l.time_ms,
                    });
                if known.name == l.name {
                    known.first_ms = known.first_ms.min(l.time_ms);
                    known.last_ms = known.last_ms.max(l.time_ms);
                } else if l.time_ms >= known.last_ms {
                    // Another name now gives this address (DNS pods are read one after the
                    // other: an older answer from the next one does not undo a newer one).
                    known.name.clone_from(&l.name);
                    known.first_ms = l.time_ms;
                    known.last_ms = l.time_ms;
                }
            }
        }
        if self.names.len() > KEPT {
            // The least recently looked up quarter goes (ties broken by the key, so exactly).
            let mut ages: Vec<(u64, (IpAddr, IpAddr))> =
                self.names.iter().map(|(k, v)| (v.last_ms, *k)).collect();
            let cut = ages.len() - KEPT * 3 / 4;
            ages.select_nth_unstable(cut);
            for (_, key) in &ages[..cut] {
                self.names.remove(key);
            }
        }
    }

    fn name_of(&self, client: IpAddr, address: IpAddr, time_ms: u64) -> Option<String> {
        let known = self.names.get(&(client, address))?;
        (known.first_ms <= time_ms + SLACK_MS).then(|| known.name.clone())
    }
}

/// The DNS pods' `/lookups` addresses: the serving endpoints of the cluster DNS Service, on
/// its port named `metrics`.
fn servers(shared: &Shared) -> Vec<SocketAddr> {
    let view = shared.read();
    let service = NsName::new(DNS_SERVICE.0, DNS_SERVICE.1);
    let mut out = Vec::new();
    for slice in view.slices_of(&service) {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PORT);
        for endpoint in slice
            .endpoints
            .iter()
            .filter(|e| weft_model::endpoints::is_serving(e))
        {
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One DNS pod's answers after `since`.
fn read(server: SocketAddr, since: u64) -> Result<Vec<Lookup>, String> {
    let stream = std::net::TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let path = format!("{}?since={since}", weft_dns::lookups::PATH);
    match weft_view::health::get(stream, server, &path, READ_TIMEOUT) {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| e.to_string()),
        Ok((status, _)) => Err(format!("status {status}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(seq: u64, time_ms: u64, client: &str, name: &str, address: &str) -> Lookup {
        Lookup {
            seq,
            time_ms,
            client: client.parse().unwrap(),
            name: name.into(),
            addresses: vec![address.parse().unwrap()],
        }
    }

    #[test]
    fn a_flow_gets_the_name_its_client_looked_up_before_it() {
        let server: SocketAddr = "10.244.0.3:9153".parse().unwrap();
        let mut state = State::default();
        let web = "web.default.svc.cluster.local";
        state.learn(
            server,
            vec![
                lookup(1, 10_000, "10.244.1.5", web, "10.96.0.20"),
                // Asked again later: the name was still known from the first answer.
                lookup(2, 50_000, "10.244.1.5", web, "10.96.0.20"),
                lookup(3, 20_000, "10.244.1.6", "example.org", "203.0.113.10"),
            ],
        );
        assert_eq!(state.cursors[&server], 3);
        fn at(state: &State, c: &str, a: &str, t: u64) -> Option<String> {
            state.name_of(c.parse().unwrap(), a.parse().unwrap(), t)
        }
        assert_eq!(
            at(&state, "10.244.1.5", "10.96.0.20", 30_000).as_deref(),
            Some(web)
        );
        // Another client, the same address: it did not look it up.
        assert_eq!(at(&state, "10.244.1.6", "10.96.0.20", 30_000), None);
        // A flow long before the lookup: not because of it.
        assert_eq!(at(&state, "10.244.1.6", "203.0.113.10", 5_000), None);
        assert_eq!(
            at(&state, "10.244.1.6", "203.0.113.10", 19_500).as_deref(),
            Some("example.org")
        );
        // Another DNS pod's older answer with another name does not undo the newer one.
        state.learn(
            "10.244.1.3:9153".parse().unwrap(),
            vec![lookup(
                7,
                40_000,
                "10.244.1.5",
                "old.example.org",
                "10.96.0.20",
            )],
        );
        assert_eq!(
            at(&state, "10.244.1.5", "10.96.0.20", 55_000).as_deref(),
            Some(web)
        );
        // The address now answers another name: flows from then on get the new one.
        state.learn(
            server,
            vec![lookup(
                4,
                60_000,
                "10.244.1.5",
                "docs.default.svc.cluster.local",
                "10.96.0.20",
            )],
        );
        assert_eq!(
            at(&state, "10.244.1.5", "10.96.0.20", 61_000).as_deref(),
            Some("docs.default.svc.cluster.local")
        );
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let server: SocketAddr = "10.244.0.3:9153".parse().unwrap();
        let mut state = State::default();
        let lookups: Vec<Lookup> = (0..KEPT as u64 + 10)
            .map(|i| Lookup {
                seq: i + 1,
                time_ms: i,
                client: "10.244.1.5".parse().unwrap(),
                name: format!("n{i}.example.org"),
                addresses: vec![IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + i as u32,
                ))],
            })
            .collect();
        state.learn(server, lookups);
        assert_eq!(state.names.len(), KEPT * 3 / 4);
        // The newest stay.
        let newest = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + KEPT as u32 + 9));
        assert!(state
            .names
            .contains_key(&("10.244.1.5".parse().unwrap(), newest)));
    }
}
