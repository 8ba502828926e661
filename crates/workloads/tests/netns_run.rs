//! `run` the way the lab runs it: a process in its own network namespace and UTS namespace (hostname =
//! pod name), binding 0.0.0.0 on the workload's real ports. The server process is this test binary,
//! re-executed into `serve_workload_from_env` inside `nsenter --net=<ns> unshare --uts`. Needs root.
//! Each test creates its own uniquely named namespace and removes it (and kills its server) in Drop.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use weft_testutil::{rerun_test, run_ok, unique_name, TestNetns};
use weft_workloads::{builtin_for, DeclaredPort, Protocol, Workload};

const CHILD_ENV: &str = "WEFT_WORKLOADS_TEST_SERVE";

/// Not a test of its own: the server process the tests below start (skipped unless they set the env).
#[test]
#[ignore = "entry point for the server process of the netns tests"]
fn serve_workload_from_env() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<String> = args.split(' ').map(str::to_string).collect();
    let workload = Workload::from_args(&args).unwrap();
    let err = weft_workloads::run(&workload).unwrap_err();
    panic!("run returned: {err}");
}

/// A network namespace this test made, and the server process in it.
struct Pod {
    // Dropped after the server (fields drop in order, after `Drop::drop`).
    netns: TestNetns,
    server: Option<Child>,
}

impl Pod {
    fn new() -> Pod {
        Pod {
            netns: TestNetns::new("weft-wl").with_loopback_up(),
            server: None,
        }
    }

    /// Starts `workload` as the lab does: in the netns, in a new UTS namespace named `hostname`.
    fn serve(&mut self, workload: &Workload, hostname: &str) {
        let serve = rerun_test("serve_workload_from_env");
        // `nsenter`, `unshare` and `exec` all replace themselves, so the child pid is the server.
        let script = format!("hostname {hostname} && exec \"$@\"");
        let child = self
            .netns
            .command("unshare")
            .args(["--uts", "sh", "-c", &script, "sh"])
            .arg(serve.get_program())
            .args(serve.get_args())
            .arg("--ignored")
            .env(CHILD_ENV, workload.to_args().join(" "))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    /// Runs `f` with this thread in the pod's network namespace, so its sockets live there.
    fn inside<T>(&self, f: impl FnOnce() -> T) -> T {
        self.netns.run(f)
    }

    fn curl(&self, url: &str) -> String {
        run_ok(
            self.netns
                .command("curl")
                .args(["-sS", "--max-time", "5", url]),
        )
    }

    /// Waits until the server accepts TCP connections on `port`.
    fn wait_for_tcp(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.inside(|| loop {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        });
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn agnhost_netexec_in_a_pod_namespace() {
    let workload = builtin_for(
        "registry.k8s.io/e2e-test-images/agnhost:2.53",
        &[],
        &strings(&["netexec", "--http-port=8080", "--udp-port=8081"]),
        &[],
    )
    .unwrap()
    .unwrap();
    let mut pod = Pod::new();
    let pod_name = unique_name("agnhost-pod");
    pod.serve(&workload, &pod_name);
    pod.wait_for_tcp(8080);
    assert_eq!(pod.curl("http://127.0.0.1:8080/hostname"), pod_name);
    assert_eq!(
        pod.curl("http://127.0.0.1:8080/echo?msg=in-netns"),
        "in-netns"
    );
    let udp_answer = pod.inside(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(b"hostname", "127.0.0.1:8081").unwrap();
        let mut buf = [0; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    });
    assert_eq!(udp_answer, pod_name);
}

#[test]
fn nginx_on_port_80_in_a_pod_namespace() {
    let ports = [DeclaredPort {
        port: 80,
        protocol: Protocol::Tcp,
    }];
    let workload = builtin_for("docker.io/library/nginx:1.27", &[], &[], &ports)
        .unwrap()
        .unwrap();
    let mut pod = Pod::new();
    let pod_name = unique_name("web");
    pod.serve(&workload, &pod_name);
    pod.wait_for_tcp(80);
    assert_eq!(pod.curl("http://127.0.0.1/"), format!("{pod_name}\n"));
}

#[test]
fn a_taken_port_makes_run_fail_naming_it() {
    let workload = builtin_for(
        "agnhost",
        &[],
        &strings(&["serve-hostname", "--port", "9376"]),
        &[],
    )
    .unwrap()
    .unwrap();
    let pod = Pod::new();
    let err = pod.inside(|| {
        let _taken = std::net::TcpListener::bind("0.0.0.0:9376").unwrap();
        weft_workloads::run(&workload).unwrap_err().to_string()
    });
    assert!(err.contains("TCP 0.0.0.0:9376"), "{err}");
    assert!(err.contains("in use"), "{err}");
}
