//! TCP serving: one accept loop per listener, one thread per connection. A connection is sniffed
//! once: HTTP clients get a keep-alive request loop, others (on agnhost ports) a raw echo. Every read
//! has a deadline and every buffer a bound, so a slow or hostile client only ever holds its own thread,
//! and the number of those threads is capped.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hostname::Hostname;
use crate::http::{
    parse_head, sniff, HttpVersion, RequestHead, Response, Sniff, Status, MAX_HEAD_BYTES,
};
use crate::routes::{self, HttpService};
use crate::{Protocol, WorkloadError};

/// How long a connection may sit idle between requests (or between echoed bytes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client may take to send one complete request head and body once it started it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// How long one write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body accepted (and discarded: no route reads bodies).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Connections served at once per listener; more are closed at once rather than exhausting threads.
const MAX_CONNECTIONS: usize = 1024;
/// Consecutive accept failures (about a minute of them) after which the listener is declared dead.
const MAX_ACCEPT_FAILURES: u32 = 1200;
const READ_CHUNK: usize = 8192;
/// Connection threads need little stack; a small one keeps a thousand of them cheap in a lab pod.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// Accepts connections forever; returns only when the listener keeps failing.
pub fn serve(listener: TcpListener, service: HttpService, hostname: Hostname) -> WorkloadError {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let active = Arc::new(AtomicUsize::new(0));
    let mut failures = 0;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => {
                failures = 0;
                accepted
            }
            Err(err) => {
                // EMFILE, ECONNABORTED and friends pass; back off so a full fd table does not spin.
                failures += 1;
                if failures >= MAX_ACCEPT_FAILURES {
                    return WorkloadError::ServerStopped {
                        protocol: Protocol::Tcp,
                        addr,
                        reason: format!("accept kept failing, last with: {err}"),
                    };
                }
                tracing::warn!(%addr, %err, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%addr, %peer, "connection limit {MAX_CONNECTIONS} reached, closing");
            continue;
        }
        let guard = ActiveGuard(Arc::clone(&active));
        let hostname = hostname.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{peer}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _guard = guard;
                if let Err(err) = handle(stream, peer, service, &hostname) {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
            });
        if let Err(err) = spawned {
            // The closure (and its guard and stream) was dropped: the count is already restored.
            tracing::warn!(%addr, %peer, %err, "could not start a connection thread");
        }
    }
}

/// Gives a connection slot back however the connection thread ends, panics included.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a bounded read produced.
enum ReadOutcome {
    Data,
    Eof,
    TimedOut,
}

/// Reads one chunk into `buf`, waiting at most until `deadline`.
fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    else {
        return Ok(ReadOutcome::TimedOut);
    };
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        return match stream.read(&mut chunk) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(ReadOutcome::Data)
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(ReadOutcome::TimedOut)
            }
            Err(err) => Err(err),
        };
    }
}

fn handle(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: HttpService,
    hostname: &Hostname,
) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let idle_deadline = Instant::now() + IDLE_TIMEOUT;
    loop {
        match sniff(&buf) {
            Sniff::NeedMore => match read_until(&mut stream, &mut buf, idle_deadline)? {
                ReadOutcome::Data => continue,
                ReadOutcome::Eof | ReadOutcome::TimedOut => return Ok(()),
            },
            Sniff::Raw if service.echoes_raw_tcp() => return echo(stream, buf),
            Sniff::Http | Sniff::Raw => return serve_http(stream, buf, peer, service, hostname),
        }
    }
}

/// Sends back everything the client sends until it closes its side, then closes ours.
fn echo(mut stream: TcpStream, first_bytes: Vec<u8>) -> io::Result<()> {
    stream.write_all(&first_bytes)?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        buf.clear();
        match read_until(&mut stream, &mut buf, Instant::now() + IDLE_TIMEOUT)? {
            ReadOutcome::Data => stream.write_all(&buf)?,
            ReadOutcome::Eof | ReadOutcome::TimedOut => break,
        }
    }
    stream.shutdown(Shutdown::Write)
}

fn serve_http(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    peer: SocketAddr,
    service: HttpService,
    hostname: &Hostname,
) -> io::Result<()> {
    // The clock for a request starts with its first byte; an idle keep-alive connection waits longer.
    let mut request_deadline = Some(Instant::now() + REQUEST_DEADLINE);
    loop {
        let (head, used) = match parse_head(&buf) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                let deadline = request_deadline.unwrap_or_else(|| Instant::now() + IDLE_TIMEOUT);
                let before = buf.len();
                match read_until(&mut stream, &mut buf, deadline)? {
                    ReadOutcome::Data => {
                        let deadline = *request_deadline
                            .get_or_insert_with(|| Instant::now() + REQUEST_DEADLINE);
                        // A head only ends at a newline: skip re-parsing the whole buffer after each
                        // byte of a client trickling its head, which would cost quadratic time.
                        while !buf[before..].contains(&b'\n') && buf.len() < MAX_HEAD_BYTES {
                            match read_until(&mut stream, &mut buf, deadline)? {
                                ReadOutcome::Data => {}
                                ReadOutcome::Eof => return Ok(()),
                                ReadOutcome::TimedOut => break,
                            }
                        }
                        continue;
                    }
                    ReadOutcome::Eof => return Ok(()),
                    ReadOutcome::TimedOut if buf.is_empty() => return Ok(()),
                    ReadOutcome::TimedOut => {
                        let response = Response::text(Status::RequestTimeout, "request timeout\n");
                        return finish(stream, &response, HttpVersion::Http11);
                    }
                }
            }
            Err(err) => {
                let response = Response::text(err.status(), format!("{err}\n"));
                return finish(stream, &response, HttpVersion::Http11);
            }
        };
        buf.drain(..used);
        let body_deadline = request_deadline.unwrap_or_else(|| Instant::now() + REQUEST_DEADLINE);
        if let Err(response) = read_body(&mut stream, &mut buf, &head, body_deadline)? {
            return finish(stream, &response, head.version);
        }
        let response = routes::respond(service, &head, hostname, peer);
        let keep_alive = head.keep_alive();
        stream.write_all(&response.encode(head.version, keep_alive, head.method == "HEAD"))?;
        log_request(peer, &head, &response);
        if !keep_alive {
            return close(stream);
        }
        // A pipelined next request already started; otherwise its clock starts with its first byte.
        request_deadline = (!buf.is_empty()).then(|| Instant::now() + REQUEST_DEADLINE);
    }
}

/// The request in the container's log (`kubectl logs`), as nginx logs it: one write per line.
fn log_request(peer: SocketAddr, head: &RequestHead, response: &Response) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = crate::http::access_line(
        peer.ip(),
        head,
        response,
        i64::try_from(now).unwrap_or(i64::MAX),
    );
    let _ = io::stdout().lock().write_all(line.as_bytes());
}

/// Reads and drops the request body. `Ok(Err(response))` refuses the request with that response.
fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    deadline: Instant,
) -> io::Result<Result<(), Response>> {
    if head.header("transfer-encoding").is_some() {
        return Ok(Err(Response::text(
            Status::NotImplemented,
            "chunked request bodies are not supported; send Content-Length\n",
        )));
    }
    let length = match head.header("content-length") {
        None => 0,
        Some(text) => match text.parse::<usize>() {
            Ok(length) if length <= MAX_BODY_BYTES => length,
            Ok(_) => {
                return Ok(Err(Response::text(
                    Status::PayloadTooLarge,
                    format!("request bodies are limited to {MAX_BODY_BYTES} bytes\n"),
                )))
            }
            Err(_) => {
                return Ok(Err(Response::text(
                    Status::BadRequest,
                    format!("invalid Content-Length {text:?}\n"),
                )))
            }
        },
    };
    // curl sends `Expect: 100-continue` before larger bodies and would otherwise wait a second for it.
    let expects_continue = head
        .header("expect")
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    if expects_continue && head.version == HttpVersion::Http11 && buf.len() < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    while buf.len() < length {
        match read_until(stream, buf, deadline)? {
            ReadOutcome::Data => {}
            ReadOutcome::Eof => return Err(ErrorKind::UnexpectedEof.into()),
            ReadOutcome::TimedOut => {
                return Ok(Err(Response::text(
                    Status::RequestTimeout,
                    "request body timeout\n",
                )))
            }
        }
    }
    buf.drain(..length);
    Ok(Ok(()))
}

/// Answers with `response` and closes: used for every refused request, as the framing is then unknown.
fn finish(mut stream: TcpStream, response: &Response, version: HttpVersion) -> io::Result<()> {
    stream.write_all(&response.encode(version, false, false))?;
    close(stream)
}

/// Closes gracefully: a FIN first, then a short drain, so the kernel does not answer unread request
/// bytes with a RST that could destroy the response before the client reads it.
fn close(mut stream: TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let mut sink = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok(ReadOutcome::Data) = read_until(&mut stream, &mut sink, deadline) {
        if sink.len() > MAX_BODY_BYTES {
            break;
        }
        sink.clear();
    }
    Ok(())
}
