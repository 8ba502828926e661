//! weft's DNS server loop: one zone shared by the UDP and TCP listeners and swapped whole when
//! the cluster changes ([`Served`]), and [`respond`], the pure step from request bytes to
//! response bytes. The wire format is hickory-proto's, but for the common questions, answered
//! by copying bytes encoded when the zone was compiled (`reply`); the loop is weft's own.
//!
//! What a question gets (RFC 1035, 6891, 8482):
//! - a response (QR set), however malformed: nothing, so two servers never bounce errors;
//! - a message that cannot be parsed: FORMERR when its header could be read, else nothing;
//! - an opcode other than QUERY: NOTIMP; not exactly one question: FORMERR;
//! - an EDNS version other than 0: BADVERS (RFC 6891);
//! - a class other than IN, or a zone transfer (AXFR/IXFR): REFUSED;
//! - a name weft does not serve: forwarded upstream when the client asked for recursion and
//!   there is an upstream ([`crate::forward`]), else REFUSED;
//! - otherwise the zone's answer, authoritative for the names weft serves; to ANY, one RRset of
//!   the name (RFC 8482 section 4.1, see [`crate::zone`]);
//! - over UDP, an answer longer than 512 bytes (or the client's EDNS buffer size, at most the
//!   1232 weft advertises) is sent empty with the TC bit, so the client asks again over TCP,
//!   which carries any size.
//!
//! Over TCP a message must arrive whole within [`TCP_IDLE`] of the last, and at most
//! [`TCP_MAX`] connections are open at once: a new one beyond closes the oldest (RFC 7766
//! section 6.2.3), so idle or slow clients can neither hold descriptors forever nor shut out
//! new ones.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Notify;

use crate::forward::Forwarder;
use crate::zone::{Data, Qtype, Rcode, Record, Zone};

mod reply;

/// The EDNS buffer size weft advertises (the DNS flag day's 1232 bytes).
pub const EDNS_PAYLOAD: u16 = 1232;
/// How long an idle TCP connection is kept, and the longest a message may take to arrive.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// The most TCP connections open at once (BIND's `tcp-clients` is 150).
pub const TCP_MAX: usize = 256;

/// The zone being served; replaced whole, so a lookup sees one zone or the next, never a mix.
#[derive(Default)]
pub struct Served {
    zone: RwLock<Option<Arc<Zone>>>,
    pub metrics: crate::metrics::Metrics,
    /// The answers that carried addresses, and to whom (read by the node agents).
    pub lookups: crate::lookups::Lookups,
    /// Log every question (name, type, rcode, duration, client).
    pub log_queries: std::sync::atomic::AtomicBool,
    /// Where names outside the cluster go (None: they are refused).
    forwarder: Option<Forwarder>,
}

impl Served {
    pub fn new() -> Arc<Served> {
        Arc::new(Served::default())
    }

    /// A server that forwards the names it does not serve.
    pub fn forwarding(forwarder: Forwarder) -> Arc<Served> {
        Arc::new(Served {
            forwarder: Some(forwarder),
            ..Served::default()
        })
    }

    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.forwarder.as_ref()
    }

    /// The response to `request`, asking upstream when the question is for a name outside the
    /// cluster and its answer is not cached.
    pub async fn answer(&self, request: &[u8], udp: bool) -> Option<(Vec<u8>, Outcome)> {
        match self.answer_now(request, udp) {
            Now::Reply(reply) => reply,
            Now::AskUpstream(ask) => self.ask_upstream(ask, udp).await,
        }
    }

    /// The response to `request` from the zone or the cache, or the question to ask upstream.
    pub fn answer_now(&self, request: &[u8], udp: bool) -> Now {
        let zone = self.current();
        let Some(decision) = decide(zone.as_deref(), request, udp, self.forwarder.is_some()) else {
            return Now::Reply(None);
        };
        let Some(forwarder) = &self.forwarder else {
            return match decision {
                Decision::Reply(bytes, outcome) => Now::Reply(Some((bytes, outcome))),
                _ => Now::Reply(None),
            };
        };
        match decision {
            Decision::Reply(bytes, outcome) => Now::Reply(Some((bytes, outcome))),
            Decision::Forward(query) => match forwarder.cached(&query, &self.metrics) {
                Some(reply) => {
                    let outcome = outcome_of(&reply);
                    Now::Reply(finish(reply, &query, udp).map(|bytes| (bytes, outcome)))
                }
                None => Now::AskUpstream(Box::new(Upstream::Question(query))),
            },
            Decision::Chase {
                query,
                reply,
                target,
            } => {
                let asked = chase_question(&query, target.clone());
                match forwarder.cached(&asked, &self.metrics) {
                    Some(answer) => {
                        let reply = chased(reply, answer);
                        let outcome = outcome_of(&reply);
                        Now::Reply(finish(reply, &query, udp).map(|bytes| (bytes, outcome)))
                    }
                    None => Now::AskUpstream(Box::new(Upstream::Chase {
                        query,
                        reply,
                        target,
                    })),
                }
            }
        }
    }

    /// The response from upstream.
    pub async fn ask_upstream(&self, ask: Box<Upstream>, udp: bool) -> Option<(Vec<u8>, Outcome)> {
        let forwarder = self.forwarder.as_ref()?;
        let (query, reply) = match *ask {
            Upstream::Question(query) => {
                let reply = forwarder.resolve(&query, &self.metrics).await;
                (query, reply)
            }
            Upstream::Chase {
                query,
                reply,
                target,
            } => {
                let asked = chase_question(&query, target);
                let answer = forwarder.resolve(&asked, &self.metrics).await;
                (query, chased(reply, answer))
            }
        };
        let outcome = outcome_of(&reply);
        Some((finish(reply, &query, udp)?, outcome))
    }

    pub fn swap(&self, zone: Zone) {
        self.metrics.set_records(zone.record_count());
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(zone));
    }

    /// Counts one answered question, logs it when the query log is on (errors always), and
    /// keeps the addresses its `reply` gave the client among the [`crate::lookups`].
    pub fn record(
        &self,
        o: &Outcome,
        reply: &[u8],
        took: Duration,
        client: SocketAddr,
        transport: &str,
    ) {
        self.metrics.observe(&o.qtype, &o.rcode, took);
        if o.rcode == "NOERROR" && matches!(o.qtype.as_str(), "A" | "AAAA" | "ANY") {
            self.lookups.note(client.ip(), &o.name, reply);
        }
        let failed = o.rcode == "FORMERR" || o.rcode == "SERVFAIL";
        if failed || self.log_queries.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!(
                name = %o.name,
                r#type = %o.qtype,
                rcode = %o.rcode,
                duration = ?took,
                client = %client,
                transport,
                "query"
            );
        }
    }

    pub fn current(&self) -> Option<Arc<Zone>> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn qtype(t: RecordType) -> Qtype {
    match t {
        RecordType::A => Qtype::A,
        RecordType::AAAA => Qtype::Aaaa,
        RecordType::SRV => Qtype::Srv,
        RecordType::PTR => Qtype::Ptr,
        RecordType::CNAME => Qtype::Cname,
        RecordType::TXT => Qtype::Txt,
        RecordType::SOA => Qtype::Soa,
        RecordType::ANY => Qtype::Any,
        other => Qtype::Other(u16::from(other)),
    }
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

fn wire(r: &Record) -> Option<WireRecord> {
    let data = match &r.data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        Data::Ptr(target) => RData::PTR(PTR(name(target)?)),
        Data::Cname(target) => RData::CNAME(CNAME(name(target)?)),
        Data::Txt(text) => RData::TXT(TXT::new(vec![text.clone()])),
        Data::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => RData::SOA(SOA::new(
            name(mname)?,
            name(rname)?,
            *serial,
            i32::try_from(*refresh).ok()?,
            i32::try_from(*retry).ok()?,
            i32::try_from(*expire).ok()?,
            *minimum,
        )),
    };
    Some(WireRecord::from_rdata(name(&r.name)?, r.ttl, data))
}

/// The header-only error answer to a request whose first 12 bytes could be read (none to a
/// response: two servers would send each other errors forever).
fn error_reply(request: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    if request.len() < 12 || request[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let opcode = OpCode::from_u8((request[2] >> 3) & 0x0f);
    Message::error_msg(id, opcode, code).to_vec().ok()
}

/// The answer to a datagram too long to be a question: FORMERR (None: not even a header).
pub fn oversized(request: &[u8]) -> Option<(Vec<u8>, Outcome)> {
    let outcome = Outcome {
        name: String::new(),
        qtype: "-".into(),
        rcode: "FORMERR".into(),
    };
    error_reply(request, ResponseCode::FormErr).map(|bytes| (bytes, outcome))
}

/// What was asked and answered, for the metrics and the query log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub qtype: String,
    pub rcode: String,
}

/// The response to `request` (None: no answer at all); `udp` applies the client's UDP size
/// limit.
pub fn respond(zone: Option<&Zone>, request: &[u8], udp: bool) -> Option<Vec<u8>> {
    respond_with_outcome(zone, request, udp).map(|(bytes, _)| bytes)
}

/// [`respond`], also saying what was asked and the response code.
pub fn respond_with_outcome(
    zone: Option<&Zone>,
    request: &[u8],
    udp: bool,
) -> Option<(Vec<u8>, Outcome)> {
    match decide(zone, request, udp, false)? {
        Decision::Reply(bytes, outcome) => Some((bytes, outcome)),
        Decision::Forward(_) | Decision::Chase { .. } => None,
    }
}

fn outcome_of(m: &Message) -> Outcome {
    Outcome {
        name: m
            .queries()
            .first()
            .map(|q| q.name().to_ascii())
            .unwrap_or_default(),
        qtype: m
            .queries()
            .first()
            .map(|q| q.query_type().to_string())
            .unwrap_or_else(|| "-".into()),
        rcode: rcode_name(m.response_code()),
    }
}

/// What [`Served::answer_now`] has for one request.
pub enum Now {
    /// The response (None: none at all).
    Reply(Option<(Vec<u8>, Outcome)>),
    /// Only upstream can answer this question.
    AskUpstream(Box<Upstream>),
}

/// What upstream is to be asked (always boxed, in [`Now`]: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    /// The client's question.
    Question(Message),
    /// The target of a CNAME in `reply`, the answer to `query` so far.
    Chase {
        query: Message,
        reply: Message,
        target: Name,
    },
}

/// The question upstream is asked for a CNAME's `target`: the client's type, recursion desired.
fn chase_question(query: &Message, target: Name) -> Message {
    let mut asked = Message::new();
    asked.set_id(query.id()).set_recursion_desired(true);
    if let Some(q) = query.queries().first() {
        asked.add_query(hickory_proto::op::Query::query(target, q.query_type()));
    }
    asked
}

/// `reply` (ending in a CNAME) with upstream's `answer` for the CNAME's target: its records,
/// its response code and its authority.
fn chased(mut reply: Message, mut answer: Message) -> Message {
    reply
        .set_response_code(answer.response_code())
        .set_recursion_available(true)
        .add_answers(answer.take_answers())
        .add_name_servers(answer.take_name_servers());
    reply
}

/// What to do with one request (one per request, moved once: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Decision {
    /// Send these bytes, which answer as the outcome says.
    Reply(Vec<u8>, Outcome),
    /// Ask upstream: the question is for a name weft does not serve, and recursion was asked for.
    Forward(Message),
    /// Ask upstream for `target`, where a CNAME in `reply` leads, and add its answer.
    Chase {
        query: Message,
        reply: Message,
        target: Name,
    },
}

/// A response code as dig prints it (`NOERROR`, `NXDOMAIN`...).
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => u16::from(other).to_string(),
    }
}

/// The reply from the zone, or [`Decision::Forward`] when `forwarding` and the name is not
/// the zone's (None: no reply at all).
fn decide(zone: Option<&Zone>, request: &[u8], udp: bool, forwarding: bool) -> Option<Decision> {
    if let Some((bytes, outcome)) = reply::plain(zone, request, udp, forwarding) {
        return Some(Decision::Reply(bytes, outcome));
    }
    general(zone, request, udp, forwarding)
}

/// [`decide`] through hickory's parser and encoder, for any request.
fn general(zone: Option<&Zone>, request: &[u8], udp: bool, forwarding: bool) -> Option<Decision> {
    let query = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) => {
            let outcome = Outcome {
                name: String::new(),
                qtype: "-".into(),
                rcode: "FORMERR".into(),
            };
            return error_reply(request, ResponseCode::FormErr)
                .map(|bytes| Decision::Reply(bytes, outcome));
        }
    };
    answer(zone, query, udp, forwarding)
}

fn answer(zone: Option<&Zone>, query: Message, udp: bool, forwarding: bool) -> Option<Decision> {
    let reply_bytes = |reply: Message| {
        let outcome = outcome_of(&reply);
        reply
            .to_vec()
            .ok()
            .map(|bytes| Decision::Reply(bytes, outcome))
    };
    if query.message_type() != MessageType::Query {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        // Recursion is available when there is an upstream to forward to.
        .set_recursion_available(forwarding);
    if query.op_code() != OpCode::Query {
        reply.set_response_code(ResponseCode::NotImp);
        return reply_bytes(reply);
    }
    if query.queries().len() != 1 {
        reply.set_response_code(ResponseCode::FormErr);
        return reply_bytes(reply);
    }
    let q = query.queries()[0].clone();
    reply.add_query(q.clone());
    if let Some(edns) = query.extensions() {
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_PAYLOAD.min(edns.max_payload().max(512)));
        reply.set_edns(ours);
        if edns.version() > 0 {
            // RFC 6891 6.1.3: an EDNS version weft does not speak; the answer says version 0.
            reply.set_response_code(ResponseCode::BADVERS);
            return reply_bytes(reply);
        }
    }
    let refused = q.query_class() != DNSClass::IN
        || matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR);
    let answer = match (refused, zone) {
        (false, Some(zone)) => zone.lookup(&q.name().to_ascii(), qtype(q.query_type())),
        _ => {
            reply.set_response_code(ResponseCode::Refused);
            return reply_bytes(reply);
        }
    };
    match answer.rcode {
        Rcode::NoError => {}
        Rcode::NxDomain => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        Rcode::Refused if forwarding && query.recursion_desired() => {
            return Some(Decision::Forward(query));
        }
        Rcode::Refused => {
            reply.set_response_code(ResponseCode::Refused);
            return reply_bytes(reply);
        }
    }
    reply.set_authoritative(true);
    reply.add_answers(answer.answers.iter().filter_map(wire));
    let mut authority = answer.authority;
    // A CNAME (an ExternalName) answering another type: the chain is followed and its records
    // added, as resolver libraries expect the whole chain in one answer (RFC 1034 4.3.2).
    let wanted = qtype(q.query_type());
    let mut target = chained(&answer.answers, wanted);
    let mut hops = 0;
    while let (Some(next), Some(zone)) = (target.take(), zone) {
        hops += 1;
        if hops > MAX_CHAIN {
            break;
        }
        let found = zone.lookup(&next, wanted);
        match found.rcode {
            // Outside the cluster: upstream's to answer, if the client asked for recursion.
            Rcode::Refused => {
                if forwarding && query.recursion_desired() {
                    if let Some(target) = name(&next) {
                        return Some(Decision::Chase {
                            query,
                            reply,
                            target,
                        });
                    }
                }
            }
            Rcode::NxDomain => {
                reply.set_response_code(ResponseCode::NXDomain);
                authority = found.authority;
            }
            Rcode::NoError => {
                reply.add_answers(found.answers.iter().filter_map(wire));
                authority = found.authority;
                target = chained(&found.answers, wanted);
            }
        }
    }
    reply.add_name_servers(authority.iter().filter_map(wire));
    let outcome = outcome_of(&reply);
    finish(reply, &query, udp).map(|bytes| Decision::Reply(bytes, outcome))
}

/// The most CNAMEs followed for one answer (a loop ends there).
const MAX_CHAIN: usize = 8;

/// The target of the CNAME that ends `answers`, when the question was for another type.
fn chained(answers: &[Record], wanted: Qtype) -> Option<String> {
    if matches!(wanted, Qtype::Cname | Qtype::Any) {
        return None;
    }
    match &answers.last()?.data {
        Data::Cname(target) => Some(target.clone()),
        _ => None,
    }
}

/// `reply` as bytes; over UDP, when longer than the client takes (512 bytes, or its EDNS size,
/// at most [`EDNS_PAYLOAD`]: larger datagrams fragment), the question alone with the TC bit, so
/// the client asks again over TCP.
fn finish(reply: Message, query: &Message, udp: bool) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    let limit = usize::from(query.max_payload().min(EDNS_PAYLOAD));
    if udp && bytes.len() > limit {
        let mut short = reply.truncate();
        short.set_truncated(true);
        return short.to_vec().ok();
    }
    Some(bytes)
}

/// Answers on `socket` until the runtime stops: the batched loop of [`crate::udp`] on a thread
/// of the runtime's blocking pool, questions for upstream on the runtime.
pub async fn serve_udp(socket: UdpSocket, served: Arc<Served>) {
    let socket = match socket.into_std() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("dns udp: {e}");
            return;
        }
    };
    let runtime = tokio::runtime::Handle::current();
    let _ = tokio::task::spawn_blocking(move || crate::udp::serve(socket, served, runtime)).await;
}

/// Answers every connection on `listener` (length-prefixed messages, several per connection).
pub async fn serve_tcp(listener: TcpListener, served: Arc<Served>) {
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: the same error again at once, so wait a little.
                tracing::warn!("dns tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let served = served.clone();
        let this = OpenConnection::admit(&open);
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = this.closing.notified() => return,
                    read = tokio::time::timeout(TCP_IDLE, read_message(&mut conn)) => match read {
                        Ok(Some(request)) => request,
                        _ => return,
                    },
                };
                let started = std::time::Instant::now();
                let Some((reply, outcome)) = served.answer(&request, false).await else {
                    return;
                };
                served.record(&outcome, &reply, started.elapsed(), peer, "tcp");
                let Ok(n) = u16::try_from(reply.len()) else {
                    return;
                };
                if conn.write_all(&n.to_be_bytes()).await.is_err()
                    || conn.write_all(&reply).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// One length-prefixed message (None: the connection ended first).
async fn read_message(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    conn.read_exact(&mut len).await.ok()?;
    let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut request).await.ok()?;
    Some(request)
}

/// The open TCP connections, oldest first: how to tell each one to close.
#[derive(Default)]
struct OpenConnections {
    next: u64,
    by_age: BTreeMap<u64, Arc<Notify>>,
}

/// One open connection's place among the [`OpenConnections`]; leaves it when dropped.
struct OpenConnection {
    id: u64,
    closing: Arc<Notify>,
    open: Arc<Mutex<OpenConnections>>,
}

impl OpenConnection {
    /// A new connection's place, closing the oldest when [`TCP_MAX`] are open. The oldest closes
    /// when it next waits for a message (after sending the answer it is working on, if any).
    fn admit(open: &Arc<Mutex<OpenConnections>>) -> OpenConnection {
        let mut all = open.lock().unwrap_or_else(|e| e.into_inner());
        while all.by_age.len() >= TCP_MAX {
            if let Some((_, oldest)) = all.by_age.pop_first() {
                oldest.notify_one();
            }
        }
        let id = all.next;
        all.next += 1;
        let closing = Arc::new(Notify::new());
        all.by_age.insert(id, closing.clone());
        OpenConnection {
            id,
            closing,
            open: open.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut all = self.open.lock().unwrap_or_else(|e| e.into_inner());
        all.by_age.remove(&self.id);
    }
}
