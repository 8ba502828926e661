use super::*;

fn parse_ok(raw: &[u8]) -> (RequestHead, usize) {
    parse_head(raw).unwrap().unwrap()
}

#[test]
fn sniff_decides_early() {
    assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Http);
    assert_eq!(sniff(b"DELETE "), Sniff::Http);
    assert_eq!(sniff(b"G"), Sniff::NeedMore);
    assert_eq!(sniff(b"GET"), Sniff::NeedMore);
    assert_eq!(sniff(b"OPTIO"), Sniff::NeedMore);
    assert_eq!(sniff(b""), Sniff::NeedMore);
    assert_eq!(sniff(b"hello\n"), Sniff::Raw);
    assert_eq!(sniff(b"GETX"), Sniff::Raw);
    assert_eq!(sniff(b"get / HTTP/1.1"), Sniff::Raw);
    assert_eq!(sniff(b"\x00\xff\x16\x03"), Sniff::Raw);
}

#[test]
fn parses_a_simple_request() {
    let raw = b"GET /echo?msg=hello%20world HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\n\r\nBODY";
    let (head, used) = parse_ok(raw);
    assert_eq!(&raw[used..], b"BODY");
    assert_eq!(head.method, "GET");
    assert_eq!(head.path, "/echo");
    assert_eq!(head.query.as_deref(), Some("msg=hello%20world"));
    assert_eq!(head.version, HttpVersion::Http11);
    assert_eq!(head.header("host"), Some("x"));
    assert_eq!(head.header("x-thing"), Some("v"));
    assert_eq!(head.query_param("msg").as_deref(), Some("hello world"));
    assert_eq!(head.query_param("other"), None);
    assert!(head.keep_alive());
}

#[test]
fn accepts_bare_newlines_and_absolute_targets() {
    let raw = b"GET http://example/hostname?x=1 HTTP/1.0\nHost: a\n\n";
    let (head, used) = parse_ok(raw);
    assert_eq!(used, raw.len());
    assert_eq!(head.path, "/hostname");
    assert_eq!(head.query.as_deref(), Some("x=1"));
    assert!(!head.keep_alive());
    let (head, _) = parse_ok(b"GET http://example HTTP/1.0\r\n\r\n");
    assert_eq!(head.path, "/");
}

#[test]
fn keep_alive_follows_version_and_connection_header() {
    let (head, _) = parse_ok(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n");
    assert!(!head.keep_alive());
    let (head, _) = parse_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(head.keep_alive());
}

#[test]
fn incomplete_heads_ask_for_more() {
    assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    assert_eq!(parse_head(b"GET / HTT"), Ok(None));
    assert_eq!(parse_head(b""), Ok(None));
}

#[test]
fn malformed_request_lines_are_bad_requests() {
    for raw in [
        &b"GET /foo\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET foo HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.0\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\r\n",
    ] {
        let err = parse_head(raw).unwrap_err();
        assert_eq!(err.status(), Status::BadRequest, "{raw:?}: {err}");
    }
    let err = parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err();
    assert_eq!(err.status(), Status::VersionNotSupported);
}

#[test]
fn malformed_headers_are_bad_requests() {
    for raw in [
        &b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: b\r\n\r\n",
    ] {
        let err = parse_head(raw).unwrap_err();
        assert_eq!(err.status(), Status::BadRequest, "{raw:?}: {err}");
    }
}

#[test]
fn oversized_heads_are_refused() {
    let mut raw = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    assert_eq!(parse_head(&raw), Err(HeadError::TooLarge));
    raw.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_head(&raw), Err(HeadError::TooLarge));

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
}

#[test]
fn garbage_never_panics() {
    // A cheap deterministic fuzz: every prefix of several hostile inputs, plus pseudo-random bytes.
    let inputs: [&[u8]; 5] = [
        b"GET /\xff\xfe HTTP/1.1\r\n\xc3\x28: \xa0\xa1\r\n\r\n",
        b"POST /echo?msg=%zz%4 HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"\n\n\n\r\r\r\0\0GET",
        b"GET / HTTP/1.1\r\n\r\r\n\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
    ];
    for input in inputs {
        for end in 0..=input.len() {
            let _ = parse_head(&input[..end]);
            let _ = sniff(&input[..end]);
        }
    }
    let mut state: u32 = 0x1234_5678;
    let mut bytes = Vec::new();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let alphabet = b"GET /?=%&HTP1.\r\n: x";
        bytes.push(alphabet[state as usize % alphabet.len()]);
        if bytes.len() > 300 {
            bytes.clear();
        }
        let _ = parse_head(&bytes);
    }
}

#[test]
fn url_decoding() {
    assert_eq!(url_decode("hello"), "hello");
    assert_eq!(url_decode("a+b%20c"), "a b c");
    assert_eq!(url_decode("%41%6a"), "Aj");
    assert_eq!(url_decode("100%"), "100%");
    assert_eq!(url_decode("%4"), "%4");
    assert_eq!(url_decode("%zz"), "%zz");
    assert_eq!(url_decode("%e2%9c%93"), "\u{2713}");
    assert_eq!(url_decode("%ff"), "\u{fffd}");
}

#[test]
fn query_params_decode_keys_and_values() {
    let (head, _) =
        parse_ok(b"GET /dial?request=hostname&host=10.0.0.1&port=80&x HTTP/1.1\r\n\r\n");
    assert_eq!(head.query_param("request").as_deref(), Some("hostname"));
    assert_eq!(head.query_param("port").as_deref(), Some("80"));
    assert_eq!(head.query_param("x").as_deref(), Some(""));
}

#[test]
fn responses_have_exact_content_length() {
    let response = Response::text(Status::Ok, "pod-a").with_header("Server", "weft-nginx");
    let wire = String::from_utf8(response.encode(HttpVersion::Http11, true, false)).unwrap();
    assert_eq!(
        wire,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\
         Server: weft-nginx\r\nConnection: keep-alive\r\n\r\npod-a"
    );
    let head_only = String::from_utf8(response.encode(HttpVersion::Http10, false, true)).unwrap();
    assert!(head_only.starts_with("HTTP/1.0 200 OK\r\n"));
    assert!(
        head_only.ends_with("Content-Length: 5\r\nServer: weft-nginx\r\nConnection: close\r\n\r\n")
    );
}

proptest::proptest! {
    #[test]
    fn parse_head_never_panics_and_stays_in_bounds(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        if let Ok(Some((_, used))) = parse_head(&bytes) {
            proptest::prop_assert!(used <= bytes.len());
        }
        let _ = sniff(&bytes);
    }

    #[test]
    fn any_well_formed_request_parses(path in "/[a-zA-Z0-9._~/-]{0,50}", value in "[ -~]{0,40}") {
        let raw = format!("GET {path} HTTP/1.1\r\nX-Value: {value}\r\n\r\n");
        let (head, used) = parse_head(raw.as_bytes()).unwrap().unwrap();
        proptest::prop_assert_eq!(used, raw.len());
        proptest::prop_assert_eq!(&head.path, &path);
        proptest::prop_assert_eq!(head.header("x-value"), Some(value.trim_matches([' ', '\t'])));
    }

    #[test]
    fn url_decode_inverts_percent_encoding(text in "\\PC{0,40}") {
        let encoded: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
        proptest::prop_assert_eq!(url_decode(&encoded), text);
    }
}

#[test]
fn access_lines_are_nginx_combined() {
    let (head, _) =
        parse_ok(b"GET /hostname?x=1 HTTP/1.1\r\nHost: web\r\nUser-Agent: curl/7.88 \"q\"\r\n\r\n");
    let response = Response::text(Status::Ok, "web-1\n");
    let line = access_line("::ffff:10.244.0.7".parse().unwrap(), &head, &response, 0);
    assert_eq!(
        line,
        "10.244.0.7 - - [01/Jan/1970:00:00:00 +0000] \"GET /hostname?x=1 HTTP/1.1\" 200 6 \"-\" \"curl/7.88 \\x22q\\x22\"\n"
    );
    let (head, _) = parse_ok(b"HEAD / HTTP/1.0\r\nReferer: http://a/\r\n\r\n");
    let line = access_line("10.0.0.1".parse().unwrap(), &head, &response, 0);
    assert!(
        line.ends_with("\"HEAD / HTTP/1.0\" 200 0 \"http://a/\" \"-\"\n"),
        "{line}"
    );
}
