//! `pods/log` bodies: tail, limit and follow, read directly and over HTTP on loopback.

use std::convert::Infallible;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use weft_apiserver::stream::{log_body, LogOptions};

fn append(path: &Path, data: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .expect("append");
}

async fn whole(path: &Path, query: &str) -> String {
    let opts = LogOptions::from_query(query).expect("options");
    let body = log_body(path.to_path_buf(), opts, std::future::pending::<()>());
    let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("body ends without follow")
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn whole_tail_and_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("c.log");
    append(&log, "one\ntwo\nthree\nfour\n");
    assert_eq!(whole(&log, "").await, "one\ntwo\nthree\nfour\n");
    assert_eq!(whole(&log, "tailLines=2").await, "three\nfour\n");
    assert_eq!(whole(&log, "tailLines=0").await, "");
    assert_eq!(whole(&log, "limitBytes=6").await, "one\ntw");
    assert_eq!(whole(&log, "tailLines=1&limitBytes=2").await, "fo");
    assert_eq!(whole(&dir.path().join("missing.log"), "").await, "");
}

#[tokio::test]
async fn follow_sends_appended_lines_until_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("c.log");
    append(&log, "old\nrecent\n");
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let opts = LogOptions::from_query("follow=true&tailLines=1").expect("options");
    let mut body = log_body(log.clone(), opts, done_rx);

    let mut seen = String::new();
    let mut next = async |seen: &mut String| {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame in time");
        match frame {
            Some(frame) => {
                let data = frame.expect("frame").into_data().expect("data frame");
                seen.push_str(std::str::from_utf8(&data).expect("utf-8"));
                true
            }
            None => false,
        }
    };
    assert!(next(&mut seen).await);
    assert_eq!(seen, "recent\n");
    append(&log, "new\n");
    assert!(next(&mut seen).await);
    assert_eq!(seen, "recent\nnew\n");
    // Written just before the container's end: still delivered, then the body ends.
    append(&log, "last\n");
    done_tx.send(()).expect("done");
    while next(&mut seen).await {}
    assert_eq!(seen, "recent\nnew\nlast\n");
}

#[tokio::test]
async fn follow_over_http_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("c.log");
    append(&log, "first\n");
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done_rx)));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let path = log.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let opts = LogOptions::from_query(req.uri().query().unwrap_or("")).expect("options");
            let done = done.lock().expect("lock").take().expect("one request");
            let body = log_body(path.clone(), opts, done);
            async move { Ok::<_, Infallible>(Response::new(body)) }
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    });

    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(
        b"GET /api/v1/namespaces/default/pods/p/log?follow=true&container=c HTTP/1.1\r\n\
          Host: test\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("request");
    let mut received = Vec::new();
    read_until(&mut tcp, &mut received, "first\n").await;
    append(&log, "second\n");
    read_until(&mut tcp, &mut received, "second\n").await;
    done_tx.send(()).expect("done");
    // The server ends the chunked body (and, with Connection: close, the connection).
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut received))
        .await
        .expect("response ends after done")
        .expect("read");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with("0\r\n\r\n"),
        "chunked body not terminated: {text:?}"
    );
}

async fn read_until(tcp: &mut TcpStream, received: &mut Vec<u8>, want: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(received).contains(want) {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{want:?} did not arrive"))
            .expect("read");
        assert!(n > 0, "connection closed before {want:?}");
        received.extend_from_slice(&buf[..n]);
    }
}
