//! Connections tried from inside pods: what to try ([`Probe`]), the program that tries them
//! ([`PROBER`], run with `weft exec` in the pod's network namespace), and running many at once.

use std::fmt;
use std::fmt::Write as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::lab::Lab;

/// The transport of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A destination port of a matrix: protocol and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub protocol: Protocol,
    pub port: u16,
}

pub const fn tcp(port: u16) -> Port {
    Port {
        protocol: Protocol::Tcp,
        port,
    }
}

pub const fn udp(port: u16) -> Port {
    Port {
        protocol: Protocol::Udp,
        port,
    }
}

/// The four ports every matrix pod serves.
pub const ALL_PORTS: [Port; 4] = [tcp(80), tcp(81), udp(80), udp(81)];

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        write!(f, "{p}/{}", self.port)
    }
}

/// What a probe asks: netexec's `hostname` or `clientip` (an HTTP path on TCP, a datagram on
/// UDP), or a DNS question for a name's A record (UDP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Hostname,
    ClientIp,
    Dns(String),
}

/// One connection to try from a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ip: String,
    pub port: Port,
    pub ask: Ask,
}

impl Probe {
    pub fn hostname(ip: &str, port: Port) -> Probe {
        Probe {
            ip: ip.to_string(),
            port,
            ask: Ask::Hostname,
        }
    }

    pub fn client_ip(ip: &str, port: Port) -> Probe {
        Probe {
            ip: ip.to_string(),
            port,
            ask: Ask::ClientIp,
        }
    }

    /// A DNS question for `name` to `server` port 53 over UDP.
    pub fn dns(server: &str, name: &str) -> Probe {
        Probe {
            ip: server.to_string(),
            port: udp(53),
            ask: Ask::Dns(name.to_string()),
        }
    }

    /// The probe as the prober reads it.
    pub fn to_json(&self) -> Value {
        let (proto, ask) = match (&self.ask, self.port.protocol) {
            (Ask::Dns(name), _) => ("dns", name.clone()),
            (Ask::Hostname, Protocol::Tcp) => ("tcp", "hostname".into()),
            (Ask::Hostname, Protocol::Udp) => ("udp", "hostname".into()),
            (Ask::ClientIp, Protocol::Tcp) => ("tcp", "clientip".into()),
            (Ask::ClientIp, Protocol::Udp) => ("udp", "clientip".into()),
        };
        json!({"ip": self.ip, "port": self.port.port, "proto": proto, "ask": ask})
    }
}

/// What a probe got: `Ok(answer)` (the body or datagram, trimmed; for DNS the rcode and
/// answer count), or `Err(why)` (`timeout`, `Connection refused`, an HTTP status).
pub type Outcome = Result<String, String>;

/// The prober run inside a source pod. `once PROBES TIMEOUT [OPTIONS]`: tries every probe (a
/// JSON list) at once, from OPTIONS' `source` address and with its socket `mark` if given,
/// and prints a JSON list of `[ok, answer-or-error]` in order. `watch TARGETS TIMEOUT SECONDS PORTS`: for SECONDS, tries each target (a probe with
/// `want`, whether it should answer) again and again (targets that should not answer from three
/// staggered threads, so a gap shorter than the timeout is seen too), and prints per target the
/// attempts and the first outcomes that were not as wanted, with their time. `PORTS` is
/// `[FIRST, COUNT]`: the watch's source ports, taken in turn (see [`Watch`](super::watch::Watch)).
pub const PROBER: &str = r#"
import json, random, socket, struct, sys, threading, time

def query(name):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return qid, q + b"\0" + struct.pack(">HH", 1, 1)

def attempt(p, timeout, source="", mark=0, sport=None):
    proto = p["proto"]
    s = None
    try:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(timeout)
        if mark:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), struct.pack("I", mark))
        if sport:
            for _ in range(20):
                try:
                    s.bind((source, sport()))
                    break
                except OSError:
                    pass
        elif source:
            s.bind((source, 0))
        s.connect((p["ip"], p["port"]))
        if proto == "tcp":
            s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (p["ask"], p["ip"])).encode())
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = head.split(b"\r\n")[0].decode(errors="replace")
            if " 200 " not in status + " ":
                return [False, "HTTP: " + status]
            return [True, body.decode(errors="replace").strip()]
        if proto == "dns":
            qid, q = query(p["ask"])
            s.send(q)
            while True:
                r = s.recv(4096)
                if len(r) >= 12 and struct.unpack(">H", r[:2])[0] == qid:
                    break
            rcode, answers = r[3] & 15, struct.unpack(">H", r[6:8])[0]
            return [rcode == 0 and answers > 0, "rcode %d, %d answers" % (rcode, answers)]
        s.send(p["ask"].encode())
        return [True, s.recv(65536).decode(errors="replace").strip()]
    except socket.timeout:
        return [False, "timeout"]
    except OSError as e:
        return [False, e.strerror or str(e)]
    except Exception as e:
        return [False, "prober: %r" % e]
    finally:
        if s is not None:
            s.close()

def once(probes, timeout, options):
    out = [None] * len(probes)
    def one(i, p):
        out[i] = attempt(p, timeout, options.get("source", ""), options.get("mark", 0))
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(probes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out), flush=True)

def watch(targets, timeout, seconds, ports):
    start = time.time()
    end = start + seconds
    stats = [{"attempts": 0, "wrong": []} for _ in targets]
    lock = threading.Lock()
    first, count = ports
    used = [0]
    def sport():
        with lock:
            used[0] += 1
            return first + used[0] % count
    def loop(i, p, delay):
        time.sleep(delay)
        while time.time() < end:
            at = time.time() - start
            ok, detail = attempt(p, timeout, sport=sport)
            with lock:
                stats[i]["attempts"] += 1
                if ok != p["want"] and len(stats[i]["wrong"]) < 10:
                    stats[i]["wrong"].append([round(at, 2), detail])
            if ok:
                time.sleep(0.02)
    threads = []
    for i, p in enumerate(targets):
        copies = 1 if p["want"] else 3
        for c in range(copies):
            threads.append(threading.Thread(target=loop, args=(i, p, c * timeout / copies)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(stats), flush=True)

mode = sys.argv[1]
if mode == "once":
    once(json.loads(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
else:
    watch(json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5]))
"#;

/// How long a probe waits for an answer: dropped traffic costs this much per round.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A source of probes: a pod (`namespace`, `name`), optionally sending from `bind` instead of
/// its own address, or with `mark` as its sockets' mark (`SO_MARK`).
#[derive(Clone, Debug)]
pub struct Source {
    pub namespace: String,
    pub pod: String,
    pub bind: Option<String>,
    pub mark: Option<u32>,
}

impl Source {
    pub fn pod(namespace: &str, pod: &str) -> Source {
        Source {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            bind: None,
            mark: None,
        }
    }
}

fn spawn_prober(lab: &Lab, source: &Source, probes: &[Probe], timeout: Duration) -> Child {
    let list = Value::Array(probes.iter().map(Probe::to_json).collect()).to_string();
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let mut options = json!({});
    if let Some(bind) = &source.bind {
        options["source"] = json!(bind);
    }
    if let Some(mark) = source.mark {
        options["mark"] = json!(mark);
    }
    let options = options.to_string();
    let args = [
        "exec",
        "-n",
        &source.namespace,
        &source.pod,
        "--",
        "/usr/bin/python3",
        "-c",
        PROBER,
        "once",
        &list,
        &secs,
        &options,
    ];
    lab.weft_cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weft exec")
}

/// Runs every source's probes at once (a prober per source, all its probes in parallel);
/// the outcomes per source, in order. A prober that fails to run counts all its probes as
/// failed, with its error.
pub fn probe_all(lab: &Lab, jobs: &[(Source, Vec<Probe>)], timeout: Duration) -> Vec<Vec<Outcome>> {
    let children: Vec<Child> = jobs
        .iter()
        .map(|(source, probes)| spawn_prober(lab, source, probes, timeout))
        .collect();
    children
        .into_iter()
        .zip(jobs)
        .map(|(child, (source, probes))| {
            let out = child.wait_with_output().expect("waiting for weft exec");
            let text = String::from_utf8_lossy(&out.stdout);
            let parsed: Option<Vec<Value>> = text
                .lines()
                .last()
                .and_then(|l| serde_json::from_str(l).ok());
            match parsed {
                Some(list) if list.len() == probes.len() => list
                    .iter()
                    .map(|v| {
                        let detail = v[1].as_str().unwrap_or_default().to_string();
                        if v[0].as_bool() == Some(true) {
                            Ok(detail)
                        } else {
                            Err(detail)
                        }
                    })
                    .collect(),
                _ => {
                    let why = format!(
                        "prober in {}/{} failed ({}): {}{}",
                        source.namespace,
                        source.pod,
                        out.status,
                        text,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    vec![Err(why); probes.len()]
                }
            }
        })
        .collect()
}

/// [`probe_all`] for one source.
pub fn probe_from(lab: &Lab, source: &Source, probes: &[Probe], timeout: Duration) -> Vec<Outcome> {
    probe_all(lab, &[(source.clone(), probes.to_vec())], timeout).remove(0)
}

/// Probes until every probe's success is as expected (for up to `settle`), or fails the test
/// listing each probe with what was expected and what it got; the last outcomes.
pub fn expect_probes(
    lab: &Lab,
    case: &str,
    jobs: &[(Source, Vec<(Probe, bool)>)],
    settle: Duration,
) -> Vec<Vec<Outcome>> {
    let started = Instant::now();
    let plain: Vec<(Source, Vec<Probe>)> = jobs
        .iter()
        .map(|(s, list)| (s.clone(), list.iter().map(|(p, _)| p.clone()).collect()))
        .collect();
    loop {
        let got = probe_all(lab, &plain, PROBE_TIMEOUT);
        let agree = jobs.iter().zip(&got).all(|((_, list), outcomes)| {
            list.iter()
                .zip(outcomes)
                .all(|((_, want), o)| o.is_ok() == *want)
        });
        if agree {
            return got;
        }
        if started.elapsed() >= settle {
            let mut report = format!(
                "{case}: probes differ after {:.1}s\n",
                started.elapsed().as_secs_f64()
            );
            for ((source, list), outcomes) in jobs.iter().zip(&got) {
                for ((probe, want), o) in list.iter().zip(outcomes) {
                    let _ = writeln!(
                        report,
                        "{} {}/{} -> {} {} ({:?}): expected {}, got {o:?}",
                        if o.is_ok() == *want { " " } else { "X" },
                        source.namespace,
                        source.pod,
                        probe.ip,
                        probe.port,
                        probe.ask,
                        if *want { "an answer" } else { "none" },
                    );
                }
            }
            panic!("{report}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
