//! `run` the way the lab runs it: a process in its own network namespace and UTS namespace (hostname =
//! pod name), binding 0.0.0.0 on the workload's real ports. The server process is this test binary,
//! re-executed into `serve_workload_from_env` inside `ip netns exec <ns> unshare --uts`. Needs root.
//! Each test creates its own uniquely named namespace and removes it (and kills its server) in Drop.

mod support;

use std::fs::File;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::unique_name;
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
    netns: String,
    server: Option<Child>,
}

impl Pod {
    fn new() -> Pod {
        let netns = unique_name("weft-wl");
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        let pod = Pod {
            netns,
            server: None,
        };
        run_ok(Command::new("ip").args(["-n", &pod.netns, "link", "set", "lo", "up"]));
        pod
    }

    /// Starts `workload` as the lab does: in the netns, in a new UTS namespace named `hostname`.
    fn serve(&mut self, workload: &Workload, hostname: &str) {
        let exe = std::env::current_exe().unwrap();
        // `ip netns exec`, `unshare` and `exec` all replace themselves, so the child pid is the server.
        let script = format!("hostname {hostname} && exec \"$0\" --ignored --exact serve_workload_from_env --nocapture");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "unshare",
                "--uts",
                "sh",
                "-c",
                &script,
            ])
            .arg(exe)
            .env(CHILD_ENV, workload.to_args().join(" "))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    /// Runs `f` on a thread that entered this pod's network namespace, so its sockets live there.
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns = File::open(format!("/run/netns/{}", self.netns)).unwrap();
                    // setns on a thread moves only that thread; the rest of the test process stays.
                    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .unwrap()
        })
    }

    fn curl(&self, url: &str) -> String {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-sS",
                "--max-time",
                "5",
                url,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn run_ok(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed: {status}");
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
