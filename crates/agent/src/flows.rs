//! The node's flow log: every connection to, from or between pods that the node's kernel saw
//! start and end (conntrack's own event stream over ctnetlink: no packet is copied to user
//! space), and every packet the policy table dropped (its NFLOG records, naming the policy and
//! direction). Kept in a ring of the last [`CAPACITY`] records, so memory is bounded whoever
//! reads; `GET /flows?since=SEQ` on the agent's health port answers the records after `SEQ`
//! as JSON, which `weft observe` reads from every node.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weft_dataplane::conntrack::{ConntrackEvent, ConntrackEvents, EventKind};
use weft_dataplane::nflog::{Logged, Transport};
use weft_model::cidr::Ipv4Cidr;
use weft_policy::drops::Outcome;
use weft_view::health::Route;
use weft_view::ring::Ring;

/// Records kept per node.
pub const CAPACITY: usize = 10_000;
/// Records one `/flows` answer carries at most.
const PAGE: usize = 2_000;
/// The path of the endpoint.
pub const PATH: &str = "/flows";

/// One record of the flow log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Its place in this node's log (1, 2, ...).
    pub seq: u64,
    /// When the node saw it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub node: String,
    /// `start`, `end` (of a connection), `drop` or `reject` (a packet).
    pub event: Cow<'static, str>,
    /// `tcp`, `udp`, `icmp`, `sctp` or the protocol number.
    pub protocol: Cow<'static, str>,
    pub src: IpAddr,
    pub src_port: Option<u16>,
    /// Where the client sent it (a Service's address for Service traffic).
    pub dst: IpAddr,
    pub dst_port: Option<u16>,
    /// Where it went after NAT (the endpoint a Service chose), when that differs.
    pub nat_dst: Option<IpAddr>,
    pub nat_dst_port: Option<u16>,
    /// The source it was masqueraded as (a node's address, for traffic leaving the pod
    /// network or a Service hairpin), when that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_src_port: Option<u16>,
    /// `FORWARDED`, `DROPPED` (by a policy) or `REJECTED` (by the Service table: a Service
    /// without endpoints, a port no Service has; by the egress table: an address of the pod
    /// network no node holds, "no route").
    pub verdict: Cow<'static, str>,
    /// What dropped or refused it: `ingress default/deny-db`, `spoofed source`, `no endpoints`...
    pub by: Option<String>,
    /// At its end: packets and bytes from the client, and back.
    pub packets: Option<[u64; 2]>,
    pub bytes: Option<[u64; 2]>,
    /// The name the client looked up, when the cluster DNS gave it the address it sent to
    /// (put on when the log is read: [`crate::names`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

/// The ring of records.
pub struct FlowLog {
    node: String,
    inner: Mutex<Inner>,
}

struct Inner {
    records: Ring<Flow>,
    /// Records taken so far, by verdict, then event.
    counts: BTreeMap<String, BTreeMap<String, u64>>,
}

impl FlowLog {
    pub fn new(node: &str) -> Arc<FlowLog> {
        Arc::new(FlowLog {
            node: node.to_string(),
            inner: Mutex::new(Inner {
                records: Ring::new(CAPACITY),
                counts: BTreeMap::new(),
            }),
        })
    }

    fn push(&self, flow: Flow) {
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Counted by the names' text, copied only the first time a pair is seen.
        match ring
            .counts
            .get_mut(flow.verdict.as_ref())
            .and_then(|by_event| by_event.get_mut(flow.event.as_ref()))
        {
            Some(n) => *n += 1,
            None => {
                *ring
                    .counts
                    .entry(flow.verdict.to_string())
                    .or_default()
                    .entry(flow.event.to_string())
                    .or_default() += 1;
            }
        }
        ring.records.push(|seq| Flow { seq, ..flow });
    }

    /// Records taken so far, by (verdict, event).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.counts
            .iter()
            .flat_map(|(verdict, by_event)| {
                by_event
                    .iter()
                    .map(|(event, n)| ((verdict.clone(), event.clone()), *n))
            })
            .collect()
    }

    /// The records after `seq`, oldest first, at most [`PAGE`] (the newest when more).
    pub fn since(&self, seq: u64) -> Vec<Flow> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.records.since(seq, PAGE)
    }

    /// A connection's start or end, if it concerns the pod network (`pods`): an address in
    /// it, or NAT to one (a Service or node port).
    pub fn connection(&self, event: &ConntrackEvent, pods: Ipv4Cidr) {
        let (orig, reply) = (&event.entry.orig, &event.entry.reply);
        let in_pods = |ip: &IpAddr| matches!(ip, IpAddr::V4(v4) if pods.contains(*v4));
        if ![orig.src, orig.dst, reply.src].iter().any(in_pods) {
            return;
        }
        // Replies come from the endpoint the connection was sent to, and go to the address it
        // was masqueraded as.
        let natted = reply.src != orig.dst || reply.src_port != orig.dst_port;
        let masqueraded = reply.dst != orig.src || reply.dst_port != orig.src_port;
        let ended = event.kind == EventKind::Destroy;
        let pair = |a: Option<u64>, b: Option<u64>| Some([a?, b?]);
        self.push(Flow {
            seq: 0,
            time_ms: now_ms(),
            node: self.node.clone(),
            event: Cow::Borrowed(if ended { "end" } else { "start" }),
            protocol: protocol_name(event.entry.protocol),
            src: orig.src,
            src_port: orig.src_port,
            dst: orig.dst,
            dst_port: orig.dst_port,
            nat_dst: natted.then_some(reply.src),
            nat_dst_port: if natted { reply.src_port } else { None },
            nat_src: masqueraded.then_some(reply.dst),
            nat_src_port: if masqueraded { reply.dst_port } else { None },
            verdict: Cow::Borrowed("FORWARDED"),
            by: None,
            packets: pair(
                event.orig.map(|c| c.packets),
                event.reply.map(|c| c.packets),
            ),
            bytes: pair(event.orig.map(|c| c.bytes), event.reply.map(|c| c.bytes)),
            dns: None,
        });
    }

    /// A packet the policy table dropped, or the Service table refused.
    pub fn dropped(&self, record: &Logged, outcome: Outcome<'_>) {
        let (verdict, event, what) = match outcome {
            Outcome::Dropped(what) => ("DROPPED", "drop", what),
            Outcome::Rejected(what) => ("REJECTED", "reject", what),
        };
        let Ok(packet) = &record.packet else {
            return;
        };
        let (src_port, dst_port) = match packet.transport {
            Transport::Ports { src, dst } => (Some(src), Some(dst)),
            _ => (None, None),
        };
        self.push(Flow {
            seq: 0,
            time_ms: now_ms(),
            node: self.node.clone(),
            event: Cow::Borrowed(event),
            protocol: protocol_name(packet.protocol),
            src: packet.src,
            src_port,
            dst: packet.dst,
            dst_port,
            nat_dst: None,
            nat_dst_port: None,
            nat_src: None,
            nat_src_port: None,
            verdict: Cow::Borrowed(verdict),
            by: Some(what.to_string()),
            packets: None,
            bytes: None,
            dns: None,
        });
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn protocol_name(n: u8) -> Cow<'static, str> {
    match n {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => Cow::Owned(n.to_string()),
    }
}

/// Follows the node's conntrack events into `log`, for as long as the process lives (in the
/// calling process's network namespace: the node's). Counting each connection's packets and
/// bytes is switched on for the namespace (`net.netfilter.nf_conntrack_acct`).
pub fn spawn(log: Arc<FlowLog>, pods: Ipv4Cidr) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("flows".into())
        .spawn(move || {
            if let Err(e) = weft_dataplane::sysctl::write("net/netfilter/nf_conntrack_acct", "1") {
                tracing::warn!("flows will have no byte counts: {e}");
            }
            let mut warned = false;
            loop {
                match ConntrackEvents::subscribe() {
                    Ok(mut events) => {
                        let e = follow(&mut events, &log, pods);
                        tracing::warn!("the flow log stops for now: {e}");
                    }
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!("no flow log (retrying): {e}");
                    }
                    Err(e) => tracing::debug!("no flow log: {e}"),
                }
                std::thread::sleep(Duration::from_secs(10));
            }
        })
}

/// How long the reader lets events queue between batches: one wake-up per batch instead of
/// one per event (a wake-up costs more than reading and keeping an event).
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Reads `events` into `log` until the socket fails: wait for one, take every queued one, then
/// let the next batch queue.
fn follow(
    events: &mut ConntrackEvents,
    log: &FlowLog,
    pods: Ipv4Cidr,
) -> weft_dataplane::conntrack::ConntrackError {
    use weft_dataplane::conntrack::ConntrackError;
    loop {
        let mut next = events.recv().map(Some);
        loop {
            match next {
                Ok(Some(batch)) => batch.iter().for_each(|e| log.connection(e, pods)),
                Ok(None) => break,
                Err(e @ ConntrackError::Overrun) => tracing::warn!("{e}"),
                Err(e) => return e,
            }
            next = events.try_recv();
        }
        std::thread::sleep(BATCH_WINDOW);
    }
}

/// `GET /flows?since=SEQ`: the records after SEQ (all with no query), as a JSON array, with
/// the names their clients looked up.
pub fn route(log: Arc<FlowLog>, names: Arc<crate::names::DnsNames>) -> Route {
    weft_view::health::json_since(PATH, move |since| {
        let mut flows = log.since(since);
        names.name(&mut flows);
        flows
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_dataplane::conntrack::{ConntrackEntry, Counters, Tuple};

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple::with_ports(src.parse().unwrap(), sport, dst.parse().unwrap(), dport)
    }

    #[test]
    fn service_connections_are_logged_with_their_endpoint_and_counts() {
        let log = FlowLog::new("n1");
        let pods: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        let entry = ConntrackEntry::new(
            6,
            tuple("10.244.1.5", 40000, "10.96.0.20", 80),
            tuple("10.244.0.7", 8080, "10.244.1.5", 40000),
        );
        let event = |kind, counted: bool| ConntrackEvent {
            kind,
            entry: entry.clone(),
            orig: counted.then_some(Counters {
                packets: 6,
                bytes: 400,
            }),
            reply: counted.then_some(Counters {
                packets: 4,
                bytes: 900,
            }),
        };
        log.connection(&event(EventKind::New, false), pods);
        log.connection(&event(EventKind::Destroy, true), pods);
        // The node's own traffic outside the pod network is not logged.
        let own = ConntrackEntry::new(
            6,
            tuple("172.20.0.2", 5000, "172.20.0.1", 6443),
            tuple("172.20.0.1", 6443, "172.20.0.2", 5000),
        );
        log.connection(
            &ConntrackEvent {
                kind: EventKind::New,
                entry: own,
                orig: None,
                reply: None,
            },
            pods,
        );
        let all = log.since(0);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!((all[0].seq, all[0].event.as_ref()), (1, "start"));
        assert_eq!(all[0].nat_dst, Some("10.244.0.7".parse().unwrap()));
        assert_eq!(all[0].nat_dst_port, Some(8080));
        assert_eq!(all[0].nat_src, None);
        assert_eq!(all[1].packets, Some([6, 4]));
        assert_eq!(all[1].bytes, Some([400, 900]));
        assert_eq!(log.since(1).len(), 1);
        let counts = log.counts();
        assert_eq!(counts[&("FORWARDED".to_string(), "start".to_string())], 1);
        assert_eq!(counts[&("FORWARDED".to_string(), "end".to_string())], 1);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn masquerade_is_shown_as_the_source_it_became() {
        let log = FlowLog::new("n1");
        let pods: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        // A pod's connection out of the cluster, masqueraded as its node.
        let entry = ConntrackEntry::new(
            6,
            tuple("10.244.1.5", 40000, "203.0.113.10", 443),
            tuple("203.0.113.10", 443, "172.20.0.3", 61000),
        );
        log.connection(
            &ConntrackEvent {
                kind: EventKind::New,
                entry,
                orig: None,
                reply: None,
            },
            pods,
        );
        let f = &log.since(0)[0];
        assert_eq!(f.nat_dst, None);
        assert_eq!(f.nat_src, Some("172.20.0.3".parse().unwrap()));
        assert_eq!(f.nat_src_port, Some(61000));
        // Older readers' records (no such field) still read.
        let mut json = serde_json::to_value(f).unwrap();
        json.as_object_mut().unwrap().remove("nat_src");
        json.as_object_mut().unwrap().remove("nat_src_port");
        let back: Flow = serde_json::from_value(json).unwrap();
        assert_eq!(back.nat_src, None);
    }

    #[test]
    fn the_ring_keeps_the_newest_records() {
        let log = FlowLog::new("n1");
        let pods: Ipv4Cidr = "10.244.0.0/16".parse().unwrap();
        let event = ConntrackEvent {
            kind: EventKind::New,
            entry: ConntrackEntry::new(
                17,
                tuple("10.244.1.5", 1, "10.244.0.7", 53),
                tuple("10.244.0.7", 53, "10.244.1.5", 1),
            ),
            orig: None,
            reply: None,
        };
        for _ in 0..CAPACITY + 5 {
            log.connection(&event, pods);
        }
        let page = log.since(0);
        assert_eq!(page.len(), PAGE);
        assert_eq!(page.last().unwrap().seq, (CAPACITY + 5) as u64);
        assert_eq!(log.since((CAPACITY + 4) as u64).len(), 1);
        assert_eq!(log.inner.lock().unwrap().records.len(), CAPACITY);
    }
}
