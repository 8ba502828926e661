//! Names outside the cluster: asked of the upstream resolvers, and their answers kept in a bounded
//! cache, positive and negative (RFC 2308), as CoreDNS's `forward` and `cache` plugins do.
//!
//! - A question weft does not serve is forwarded only when the client asked for recursion (RD)
//!   and there are upstreams; otherwise it is REFUSED: weft recurses for nobody who did not ask.
//! - Each question goes to the upstreams in turn, starting with the next one round-robin, over
//!   UDP from a fresh socket (a random source port and a random ID per question, so an answer
//!   cannot be guessed), and over TCP when the UDP answer is truncated. An answer must carry the
//!   ID and the question that were sent. When every upstream fails the client gets SERVFAIL; so
//!   does a question beyond [`MAX_IN_FLIGHT`] waiting at once.
//! - Cached: NOERROR answers for the smallest TTL of their records (at most an hour), NXDOMAIN and
//!   NODATA for the SOA's negative TTL (at most 30 minutes; without an SOA, not at all), never
//!   SERVFAIL or REFUSED. A cached answer's TTLs count down. When the cache is full, an entry is
//!   evicted (an expired one when the one looked at has expired, else an arbitrary one).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::Metrics;

/// How long one upstream gets to answer one question (glibc's resolver waits 5 s in all).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a positive answer is kept (CoreDNS's cache: 3600 s).
pub const MAX_POSITIVE_TTL: u32 = 3600;
/// The longest a negative answer is kept (CoreDNS's cache: 1800 s).
pub const MAX_NEGATIVE_TTL: u32 = 1800;
/// The most questions waiting for upstream at once; beyond, SERVFAIL at once, so a flood of
/// questions for outside names cannot take every socket (and file descriptor) of the process.
pub const MAX_IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream DNS server")]
    NoUpstream,
    #[error("{server}: no answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("{server}: {error}")]
    Io {
        server: SocketAddr,
        error: std::io::Error,
    },
    #[error("{server}: the answer {problem}")]
    BadAnswer { server: SocketAddr, problem: String },
}

impl ForwardError {
    /// The `reason` label of the failure metric.
    fn reason(&self) -> &'static str {
        match self {
            ForwardError::NoUpstream => "no_upstream",
            ForwardError::Timeout { .. } => "timeout",
            ForwardError::Io { .. } => "error",
            ForwardError::BadAnswer { .. } => "bad_answer",
        }
    }
}

/// The nameservers of a resolv.conf, port 53 (`nameserver` lines; anything else is ignored).
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            // A scope (`fe80::1%eth0`) is dropped with the address: link-local is not supported.
            words.next()?.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The cache's key: the question, its name in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
}

impl Key {
    fn of(q: &Query) -> Key {
        Key {
            name: q.name().to_lowercase(),
            qtype: q.query_type(),
            qclass: q.query_class(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    /// Seconds the entry is good for from `stored`.
    ttl: u32,
}

impl Entry {
    fn negative(&self) -> bool {
        self.rcode != ResponseCode::NoError || self.answers.is_empty()
    }
}

/// How long an upstream answer may be cached, None: not at all.
fn cache_ttl(answer: &Message) -> Option<u32> {
    let negative = match answer.response_code() {
        ResponseCode::NoError => answer.answers().is_empty(),
        ResponseCode::NXDomain => true,
        _ => return None,
    };
    let ttl = if negative {
        // RFC 2308 section 5: the SOA's TTL, or its MINIMUM field when that is smaller.
        let soa = answer.name_servers().iter().find_map(|r| match r.data() {
            RData::SOA(soa) => Some(r.ttl().min(soa.minimum())),
            _ => None,
        })?;
        soa.min(MAX_NEGATIVE_TTL)
    } else {
        answer
            .answers()
            .iter()
            .map(Record::ttl)
            .min()?
            .min(MAX_POSITIVE_TTL)
    };
    (ttl > 0).then_some(ttl)
}

/// Upstream answers, at most `capacity` of them.
pub struct Cache {
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key` as of `now`, its TTLs counted down; an expired one is dropped.
    fn get(&self, key: &Key, now: Instant) -> Option<Entry> {
        let mut entries = self.lock();
        let entry = entries.get(key)?;
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs())
            .unwrap_or(u32::MAX);
        if age >= entry.ttl {
            entries.remove(key);
            return None;
        }
        let left = entry.ttl - age;
        let mut entry = entry.clone();
        drop(entries);
        for r in entry
            .answers
            .iter_mut()
            .chain(&mut entry.authority)
            .chain(&mut entry.additionals)
        {
            r.set_ttl(r.ttl().min(left));
        }
        Some(entry)
    }

    /// Keeps `answer` for `key` if it may be cached; false when it may not.
    fn put(&self, key: Key, answer: &Message, now: Instant) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let Some(ttl) = cache_ttl(answer) else {
            return false;
        };
        let entry = Entry {
            rcode: answer.response_code(),
            answers: answer.answers().to_vec(),
            authority: answer.name_servers().to_vec(),
            additionals: answer
                .additionals()
                .iter()
                .filter(|r| r.record_type() != RecordType::OPT)
                .cloned()
                .collect(),
            stored: now,
            ttl,
        };
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let victim = entries.keys().next().cloned();
            if let Some(victim) = victim {
                entries.remove(&victim);
            }
        }
        entries.insert(key, entry);
        true
    }
}

/// Asks the upstream resolvers and keeps their answers.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Cache,
    next: AtomicUsize,
    timeout: Duration,
    in_flight: tokio::sync::Semaphore,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, cache_size: usize) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Cache::new(cache_size),
            next: AtomicUsize::new(0),
            timeout: ATTEMPT_TIMEOUT,
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// The same, with at most `n` questions waiting for upstream at once (tests).
    pub fn with_max_in_flight(mut self, n: usize) -> Forwarder {
        self.in_flight = tokio::sync::Semaphore::new(n);
        self
    }

    /// The same, with a shorter wait per upstream (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Forwarder {
        self.timeout = timeout;
        self
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The cached answer to `query`, ready to send, if there is one.
    pub fn cached(&self, query: &Message, metrics: &Metrics) -> Option<Message> {
        let q = query.queries().first()?;
        match self.cache.get(&Key::of(q), Instant::now()) {
            Some(entry) => {
                metrics.cache_hit(entry.negative());
                Some(reply_from(
                    query,
                    entry.rcode,
                    entry.answers,
                    entry.authority,
                    entry.additionals,
                ))
            }
            None => {
                metrics.cache_miss();
                None
            }
        }
    }

    /// The answer to `query` from upstream (not from the cache), then cached.
    pub async fn resolve(&self, query: &Message, metrics: &Metrics) -> Message {
        let Some(q) = query.queries().first() else {
            return error(query, ResponseCode::FormErr);
        };
        let Ok(_permit) = self.in_flight.try_acquire() else {
            metrics.forward_overloaded();
            return error(query, ResponseCode::ServFail);
        };
        match self.ask(q, metrics).await {
            Ok(answer) => {
                if self.cache.put(Key::of(q), &answer, Instant::now()) {
                    metrics.set_cache_entries(self.cache.len());
                }
                let mut answer = answer;
                reply_from(
                    query,
                    answer.response_code(),
                    answer.take_answers(),
                    answer.take_name_servers(),
                    answer
                        .take_additionals()
                        .into_iter()
                        .filter(|r| r.record_type() != RecordType::OPT)
                        .collect(),
                )
            }
            Err(e) => {
                tracing::warn!(name = %q.name(), r#type = %q.query_type(), "forwarding failed: {e}");
                error(query, ResponseCode::ServFail)
            }
        }
    }

    /// Asks each upstream in turn (two tries when there is one) until one answers.
    async fn ask(&self, q: &Query, metrics: &Metrics) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let tries = self.upstreams.len().max(2);
        let mut last = ForwardError::NoUpstream;
        for i in 0..tries {
            let server = self.upstreams[(start + i) % self.upstreams.len()];
            metrics.forward_request(server);
            match exchange(server, q, self.timeout).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    metrics.forward_failure(server, e.reason());
                    tracing::debug!("upstream attempt failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// The reply to `query` carrying an answer: the client's ID and question as asked, recursion
/// available, not authoritative.
fn reply_from(
    query: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
) -> Message {
    let mut reply = error(query, rcode);
    reply
        .add_answers(answers)
        .add_name_servers(authority)
        .add_additionals(additionals);
    reply
}

/// A reply to `query` with `rcode` and no records.
fn error(query: &Message, rcode: ResponseCode) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(rcode)
        .add_queries(query.queries().to_vec());
    if let Some(edns) = query.extensions() {
        let mut ours = Edns::new();
        ours.set_max_payload(crate::server::EDNS_PAYLOAD.min(edns.max_payload().max(512)));
        reply.set_edns(ours);
    }
    reply
}

/// One question to one upstream: UDP, then TCP if the answer was truncated.
async fn exchange(
    server: SocketAddr,
    q: &Query,
    timeout: Duration,
) -> Result<Message, ForwardError> {
    let id: u16 = rand::random();
    let mut ask = Message::new();
    ask.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(q.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(crate::server::EDNS_PAYLOAD);
    ask.set_edns(edns);
    let bytes = ask.to_vec().map_err(|e| ForwardError::BadAnswer {
        server,
        problem: format!("could not be asked: {e}"),
    })?;
    let io = |error| ForwardError::Io { server, error };
    let timed_out = |_| ForwardError::Timeout { server, timeout };
    let answer = tokio::time::timeout(timeout, async {
        let local: SocketAddr = match server.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        socket.send(&bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io)?;
            // Anything that is not the answer to this question is ignored, as a spoofed reply.
            match check(server, id, q, &buf[..n]) {
                Ok(answer) => return Ok(answer),
                Err(e) => tracing::debug!("ignored: {e}"),
            }
        }
    })
    .await
    .map_err(timed_out)??;
    if !answer.truncated() {
        return Ok(answer);
    }
    tokio::time::timeout(timeout, async {
        let mut conn = TcpStream::connect(server).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).map_err(|_| ForwardError::BadAnswer {
            server,
            problem: "question too long".into(),
        })?;
        conn.write_all(&len.to_be_bytes()).await.map_err(io)?;
        conn.write_all(&bytes).await.map_err(io)?;
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut buf).await.map_err(io)?;
        check(server, id, q, &buf)
    })
    .await
    .map_err(timed_out)?
}

/// `bytes` parsed, if they answer question `q` sent with `id`.
fn check(server: SocketAddr, id: u16, q: &Query, bytes: &[u8]) -> Result<Message, ForwardError> {
    let bad = |problem: String| ForwardError::BadAnswer { server, problem };
    let answer = Message::from_vec(bytes).map_err(|e| bad(format!("is not DNS: {e}")))?;
    if answer.id() != id || answer.message_type() != MessageType::Response {
        return Err(bad(format!("has ID {} (asked with {id})", answer.id())));
    }
    let same = answer.queries().first().is_some_and(|a| {
        a.query_type() == q.query_type()
            && a.query_class() == q.query_class()
            && a.name().to_lowercase() == q.name().to_lowercase()
    });
    if !same {
        return Err(bad("is for another question".into()));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests;
