//! HTTP/1.x wire format: sniffing whether a connection speaks HTTP, parsing a request head, URL
//! decoding, and writing a response. Pure functions over bytes, so they are tested with hostile input
//! apart from any socket.

use std::fmt;

/// The most bytes a request head (request line plus headers) may take; larger heads get 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header lines a request may carry; more get 431.
const MAX_HEADERS: usize = 100;

/// Methods that make a connection an HTTP one. A connection starting with anything else is raw TCP.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Starts with a known method and a space: parse as HTTP (a malformed line then gets 400).
    Http,
    /// Cannot be the start of an HTTP request.
    Raw,
    /// Still a prefix of `<METHOD> `: read more before deciding.
    NeedMore,
}

/// Decides from the first bytes whether a connection is HTTP, deciding as early as possible so a raw
/// client sending a few bytes without a newline still gets its echo at once.
pub fn sniff(first_bytes: &[u8]) -> Sniff {
    let mut could_still_match = false;
    for method in METHODS {
        let mut expected = method.as_bytes().to_vec();
        expected.push(b' ');
        if first_bytes.starts_with(&expected) {
            return Sniff::Http;
        }
        if expected.starts_with(first_bytes) {
            could_still_match = true;
        }
    }
    if could_still_match {
        Sniff::NeedMore
    } else {
        Sniff::Raw
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http10,
    Http11,
}

impl fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpVersion::Http10 => "HTTP/1.0",
            HttpVersion::Http11 => "HTTP/1.1",
        })
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path, without the query (origin form; an absolute-form target is reduced to its path).
    pub path: String,
    /// The raw query after `?`, if any.
    pub query: Option<String>,
    pub version: HttpVersion,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match self.version {
            HttpVersion::Http11 => connection.as_deref() != Some("close"),
            HttpVersion::Http10 => connection.as_deref() == Some("keep-alive"),
        }
    }

    /// The decoded value of a query parameter (`+` is a space, `%XX` a byte).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(key) == name).then(|| url_decode(value))
        })
    }
}

/// Why a request head was refused, each with the status it answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request line {0:?}")]
    BadRequestLine(String),
    #[error("unsupported HTTP version {0:?}")]
    BadVersion(String),
    #[error("malformed header line {0:?}")]
    BadHeader(String),
    #[error("request head larger than {MAX_HEAD_BYTES} bytes or more than {MAX_HEADERS} headers")]
    TooLarge,
}

impl HeadError {
    pub fn status(&self) -> Status {
        match self {
            HeadError::BadRequestLine(_) | HeadError::BadHeader(_) => Status::BadRequest,
            HeadError::BadVersion(_) => Status::VersionNotSupported,
            HeadError::TooLarge => Status::HeaderFieldsTooLarge,
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means the head is not complete yet;
/// `Ok(Some((head, n)))` means it took the first `n` bytes (any body or next request follows).
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD_BYTES {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    // Stray blank lines before a request (left after a previous body) are skipped, as RFC 9112 advises.
    let request_line = lines
        .by_ref()
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let (method, path, query, version) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        if headers.len() == MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        headers.push(parse_header(line)?);
    }
    let head = RequestHead {
        method,
        path,
        query,
        version,
        headers,
    };
    Ok(Some((head, end)))
}

/// The length of the head including its blank line, accepting bare `\n` line ends as HTTP/1.1 allows.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if byte != b'\n' {
            continue;
        }
        let line = &buf[line_start..i];
        if line.is_empty() || line == b"\r" {
            // A blank line before the request line is tolerated by servers; only end after it.
            if line_start > 0 {
                return Some(i + 1);
            }
        }
        line_start = i + 1;
    }
    None
}

type RequestLine = (String, String, Option<String>, HttpVersion);

fn parse_request_line(line: &str) -> Result<RequestLine, HeadError> {
    let bad = || HeadError::BadRequestLine(line.chars().take(200).collect());
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(bad());
    }
    let version = match version {
        "HTTP/1.1" => HttpVersion::Http11,
        "HTTP/1.0" => HttpVersion::Http10,
        other if other.starts_with("HTTP/") => {
            return Err(HeadError::BadVersion(other.chars().take(20).collect()))
        }
        _ => return Err(bad()),
    };
    let origin = if target.starts_with('/') {
        target
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        // Absolute form (proxies): keep only the path and query.
        rest.find('/').map_or("/", |at| &rest[at..])
    } else if target == "*" && method == "OPTIONS" {
        "*"
    } else {
        return Err(bad());
    };
    if origin.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad());
    }
    let (path, query) = match origin.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (origin.to_string(), None),
    };
    Ok((method.to_string(), path, query, version))
}

fn parse_header(line: &str) -> Result<(String, String), HeadError> {
    let bad = || HeadError::BadHeader(line.chars().take(200).collect());
    // A line starting with whitespace is obsolete line folding, which RFC 9112 lets servers refuse.
    let Some((name, value)) = line.split_once(':') else {
        return Err(bad());
    };
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(bad());
    }
    Ok((
        name.to_ascii_lowercase(),
        value.trim_matches([' ', '\t']).to_string(),
    ))
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Decodes `application/x-www-form-urlencoded` text; invalid escapes are kept as written.
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The statuses the built-in servers answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::RequestTimeout => "Request Timeout",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// A response about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: Status, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json(body: impl Into<Vec<u8>>) -> Response {
        Response {
            content_type: "application/json",
            ..Response::text(Status::Ok, body)
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire. A HEAD answer keeps the Content-Length of the body it leaves out.
    pub fn encode(&self, version: HttpVersion, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "{version} {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra_headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// One line of nginx's `combined` access log for a request answered with `response`:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`, quotes in what the client sent escaped as nginx does.
pub fn access_line(
    client: std::net::IpAddr,
    head: &RequestHead,
    response: &Response,
    unix_seconds: i64,
) -> String {
    let quoted = |v: Option<&str>| v.map_or_else(|| "-".to_string(), |v| v.replace('"', "\\x22"));
    let target = match &head.query {
        Some(q) => format!("{}?{q}", head.path),
        None => head.path.clone(),
    };
    let sent = if head.method == "HEAD" {
        0
    } else {
        response.body.len()
    };
    format!(
        "{} - - [{}] \"{} {} {}\" {} {sent} \"{}\" \"{}\"\n",
        client.to_canonical(),
        weft_model::time::nginx_time_local(unix_seconds),
        head.method,
        quoted(Some(&target)),
        head.version,
        response.status.code(),
        quoted(head.header("referer")),
        quoted(head.header("user-agent")),
    )
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
