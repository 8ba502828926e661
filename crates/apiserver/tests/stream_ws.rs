//! exec and attach over a real WebSocket on loopback: a hyper server whose handler calls
//! `accept_websocket` and spawns `run_exec`/`run_attach`, and a tokio-tungstenite client
//! speaking the channel protocol as client-go does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};
use weft_apiserver::stream::{accept_websocket, run_attach, run_exec, AttachSpec, ExecSpec};
use weft_apiserver::Body;

type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<Body> + Send + Sync>;

/// Serves every connection on a loopback port with `handler`, upgrades enabled.
async fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn serve_exec(spec: ExecSpec) -> SocketAddr {
    serve(Arc::new(move |mut req| {
        let (resp, upgrade) = accept_websocket(&mut req).expect("websocket request");
        tokio::spawn(run_exec(upgrade, spec.clone()));
        resp
    }))
    .await
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        stdout: true,
        stderr: true,
        ..ExecSpec::default()
    }
}

type Client = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr, protocol: &str) -> Client {
    let mut req = format!("ws://{addr}/api/v1/namespaces/default/pods/p/exec")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        protocol.parse().expect("header value"),
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (ws, resp) = client_async(req, tcp).await.expect("handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

async fn send(ws: &mut Client, id: u8, data: &[u8]) {
    let mut frame = vec![id];
    frame.extend_from_slice(data);
    ws.send(Message::Binary(frame.into())).await.expect("send");
}

/// Everything the server sent, by stream, until it closed.
#[derive(Debug, Default)]
struct Transcript {
    first: Option<Vec<u8>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error: Vec<u8>,
    closed_normally: bool,
}

impl Transcript {
    fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error).expect("status JSON on the error stream")
    }
}

async fn read_all(ws: &mut Client) -> Transcript {
    let mut t = Transcript::default();
    let deadline = Duration::from_secs(20);
    while let Some(message) = tokio::time::timeout(deadline, ws.next())
        .await
        .expect("server ended the session in time")
    {
        match message.expect("read") {
            Message::Binary(data) => {
                if t.first.is_none() {
                    t.first = Some(data.to_vec());
                }
                let (id, payload) = data.split_first().expect("stream id");
                match id {
                    1 => t.stdout.extend_from_slice(payload),
                    2 => t.stderr.extend_from_slice(payload),
                    3 => t.error.extend_from_slice(payload),
                    other => panic!("unexpected stream {other}"),
                }
            }
            Message::Close(frame) => {
                t.closed_normally = frame.is_some_and(|f| u16::from(f.code) == 1000);
            }
            _ => {}
        }
    }
    t
}

#[tokio::test]
async fn exec_streams_stdout_and_stderr_and_reports_the_exit_code() {
    let addr = serve_exec(sh("echo out; echo err >&2; exit 3")).await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    let t = read_all(&mut ws).await;
    // The kubelet's "connected" signal: an empty message on the first output stream.
    assert_eq!(t.first.as_deref(), Some(&[1u8][..]));
    assert_eq!(t.stdout, b"out\n");
    assert_eq!(t.stderr, b"err\n");
    let status = t.status();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert!(t.closed_normally);
}

#[tokio::test]
async fn exec_exit_zero_is_success() {
    let addr = serve_exec(sh("printf hello")).await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    let t = read_all(&mut ws).await;
    assert_eq!(t.stdout, b"hello");
    assert_eq!(t.status()["status"], "Success");
}

#[tokio::test]
async fn exec_speaks_v4_too() {
    let addr = serve_exec(sh("echo four; exit 4")).await;
    let mut ws = connect(addr, "v4.channel.k8s.io").await;
    let t = read_all(&mut ws).await;
    assert_eq!(t.stdout, b"four\n");
    assert_eq!(t.status()["details"]["causes"][0]["message"], "4");
}

#[tokio::test]
async fn exec_stdin_reaches_cat_and_the_v5_close_ends_it() {
    let spec = ExecSpec {
        program: "/bin/cat".into(),
        stdin: true,
        stdout: true,
        stderr: true,
        ..ExecSpec::default()
    };
    let addr = serve_exec(spec).await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    send(&mut ws, 0, b"hello\n").await;
    send(&mut ws, 0, b"world\n").await;
    send(&mut ws, 255, &[0]).await;
    let t = read_all(&mut ws).await;
    assert_eq!(t.stdout, b"hello\nworld\n");
    assert_eq!(t.status()["status"], "Success");
}

#[tokio::test]
async fn exec_tty_gets_a_terminal_that_resizes() {
    let spec = ExecSpec {
        stdin: true,
        stderr: false,
        tty: true,
        ..sh("tty; read go; stty size; exit 7")
    };
    let addr = serve_exec(spec).await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    send(&mut ws, 4, br#"{"Width":100,"Height":40}"#).await;
    // The size is applied by its own task; give it a moment before the shell asks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut ws, 0, b"go\n").await;
    let t = read_all(&mut ws).await;
    let out = String::from_utf8_lossy(&t.stdout);
    assert!(out.contains("/dev/pts/"), "tty output: {out:?}");
    assert!(out.contains("40 100\r\n"), "stty size output: {out:?}");
    assert!(t.stderr.is_empty());
    assert_eq!(t.status()["details"]["causes"][0]["message"], "7");
}

#[tokio::test]
async fn exec_client_leaving_kills_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let addr = serve_exec(sh(&script)).await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    let pid = wait_for_pid(&pidfile).await;
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    ws.close(None).await.expect("close");
    drop(ws);
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("process {pid} still running after the client left");
}

async fn wait_for_pid(pidfile: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(pidfile) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", pidfile.display());
}

#[tokio::test]
async fn exec_of_a_missing_program_is_an_internal_error() {
    let addr = serve_exec(ExecSpec {
        program: "/nonexistent/weft-test".into(),
        stdout: true,
        ..ExecSpec::default()
    })
    .await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    let t = read_all(&mut ws).await;
    let status = t.status();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "InternalError");
}

#[tokio::test]
async fn attach_follows_the_current_run_and_feeds_the_stdin_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("c.log");
    let fifo = dir.path().join("stdin");
    std::fs::write(&log, "previous run\n").expect("write log");
    let offset = std::fs::metadata(&log).expect("stat").len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"started\n"))
        .expect("append");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");

    // The "container": copies its stdin FIFO into its output file, exits at end of input.
    let script = format!("exec cat < {} >> {}", fifo.display(), log.display());
    let mut container = tokio::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn container");
    // Let it reach its open of the FIFO, so the attach finds a reader.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = container.wait().await;
        let _ = exited_tx.send(());
    });
    let exited = Arc::new(std::sync::Mutex::new(Some(exited_rx)));

    let spec = AttachSpec {
        log: log.clone(),
        log_offset: offset,
        stdin_pipe: Some(fifo.clone()),
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let addr = serve(Arc::new(move |mut req| {
        let (resp, upgrade) = accept_websocket(&mut req).expect("websocket request");
        let done = exited.lock().expect("lock").take().expect("one attach");
        tokio::spawn(run_attach(upgrade, spec.clone(), done));
        resp
    }))
    .await;
    let mut ws = connect(addr, "v5.channel.k8s.io").await;
    send(&mut ws, 0, b"typed\n").await;
    // Give the line time to go round (FIFO, cat, log file, follower) before closing stdin.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&mut ws, 255, &[0]).await;
    let t = read_all(&mut ws).await;
    assert_eq!(String::from_utf8_lossy(&t.stdout), "started\ntyped\n");
    assert_eq!(t.status()["status"], "Success");
    assert!(t.closed_normally);
}
