//! The nginx server on loopback: every path answers the pod name, through std sockets and curl.

mod support;

use support::*;

#[test]
fn every_path_answers_the_hostname_with_a_server_header() {
    let server = nginx("pod-web");
    for target in ["/", "/index.html", "/deep/path?x=1"] {
        let answer = get(server.tcp[0], target);
        assert_eq!(answer.status, 200, "{target}");
        assert_eq!(answer.text(), "pod-web\n", "{target}");
        assert_eq!(answer.header("server"), Some("weft-nginx"), "{target}");
    }
}

#[test]
fn curl_sees_it() {
    let server = nginx("pod-web-curl");
    let url = format!("http://{}/", server.tcp[0]);
    assert_eq!(curl(&[&url]), "pod-web-curl\n");
    let head = curl(&["-sI", &url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Server: weft-nginx\r\n"), "{head}");
    assert!(head.contains("Content-Length: 13\r\n"), "{head}");
}

#[test]
fn non_http_bytes_get_400_not_an_echo() {
    let server = nginx("pod-web-bad");
    let answer =
        String::from_utf8_lossy(&send_and_drain(server.tcp[0], b"hello\r\n\r\n")).into_owned();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(get(server.tcp[0], "/").text(), "pod-web-bad\n");
}
