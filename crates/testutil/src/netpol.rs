//! NetworkPolicy with real connections, after the upstream Kubernetes e2e tests
//! (`test/e2e/network/netpol`): three namespaces x, y, z of pods a, b, c serving TCP and UDP
//! on 80 and 81 ([`matrix_manifest`]), a [`Reachability`] truth table of who may reach whom,
//! and a [`Matrix`] that probes every pair for several ports at once and compares, printing
//! the expected, observed and differing tables when they disagree.
//!
//! Probing is what costs time, so every connection of a round is opened at once: one small
//! Python program per source pod ([`PROBER`], run with `weft exec` in the pod's network
//! namespace) tries all its destinations in parallel threads with a short timeout and prints
//! one JSON line. A round of a 9x9 matrix over four ports costs about one timeout. The same
//! program watches connections without pause while something happens ([`Watch`]), and a
//! [`Capture`] records what really arrives at a pod.

mod capture;
mod probe;
mod truth;
mod watch;

pub use capture::{Capture, VXLAN_SENDER};
pub use probe::{
    expect_probes, probe_all, probe_from, tcp, udp, Ask, Outcome, Port, Probe, Protocol, Source,
    ALL_PORTS, PROBER, PROBE_TIMEOUT,
};
pub use truth::Reachability;
pub use watch::{Watch, Watched, WATCH_TIMEOUT};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::lab::{Lab, AGNHOST};

/// The matrix's namespaces and pod names (upstream's).
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The nine pods as `ns/pod`, in table order.
pub fn matrix_keys() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// Namespaces x, y, z (labelled `ns=<name>`) and in each pods a, b, c (labelled `pod=<name>`),
/// placed round-robin on `nodes`, each running two agnhost netexec containers: TCP and UDP 80,
/// TCP and UDP 81. Container port names: `web`/`web-udp` is 80 and `alt`/`alt-udp` 81, except
/// in namespace z, where they are the other way round (named ports resolve per pod).
pub fn matrix_manifest(nodes: &[String]) -> String {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: '{ns}', labels: {{ns: '{ns}'}}}}\n"
        ));
    }
    let mut i = 0;
    for ns in NAMESPACES {
        let (n80, n81) = if ns == "z" {
            ("alt", "web")
        } else {
            ("web", "alt")
        };
        for pod in PODS {
            let node = &nodes[i % nodes.len()];
            i += 1;
            docs.push(server_pod(ns, pod, node, &[(80, n80), (81, n81)]));
        }
    }
    docs.join("---\n")
}

/// One matrix pod: per `(port, name)`, a netexec container serving TCP and UDP on `port`,
/// declaring them as `name` and `name-udp`, with a readiness probe on the TCP port.
pub fn server_pod(ns: &str, pod: &str, node: &str, ports: &[(u16, &str)]) -> String {
    let mut containers = String::new();
    for (port, name) in ports {
        let _ = write!(
            containers,
            "    - name: c{port}\n      image: {AGNHOST}\n      args: [netexec, --http-port={port}, --udp-port={port}]\n      ports: [{{containerPort: {port}, name: {name}}}, {{containerPort: {port}, name: {name}-udp, protocol: UDP}}]\n      readinessProbe: {{httpGet: {{path: /healthz, port: {port}}}, periodSeconds: 1}}\n"
        );
    }
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: '{pod}', namespace: '{ns}', labels: {{pod: '{pod}'}}}}\nspec:\n  nodeName: {node}\n  containers:\n{containers}"
    )
}

/// A pod of a matrix, with the address it is probed at.
#[derive(Clone, Debug)]
pub struct MatrixPod {
    pub namespace: String,
    pub name: String,
    pub ip: String,
}

impl MatrixPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The full reachability matrix of some pods, probed for real.
pub struct Matrix<'a> {
    lab: &'a Lab,
    pub pods: Vec<MatrixPod>,
    /// How long [`Matrix::check`] keeps probing for the expected tables (policies take effect
    /// a moment after kubectl returns).
    pub settle: Duration,
}

/// One round's observations for one port: the table and what each probe got.
pub struct Observed {
    pub reachability: Reachability,
    pub outcomes: BTreeMap<(String, String), Outcome>,
}

impl<'a> Matrix<'a> {
    /// The matrix of `keys` (`ns/pod`), reading their addresses from the lab (they must be
    /// running).
    pub fn new(lab: &'a Lab, keys: &[String]) -> Matrix<'a> {
        let mut ips = BTreeMap::new();
        for ns in keys
            .iter()
            .filter_map(|k| k.split_once('/'))
            .map(|(ns, _)| ns)
        {
            for pod in lab.pods(&["-n", ns]) {
                ips.insert(
                    format!("{ns}/{}", crate::lab::name_of(&pod)),
                    crate::lab::pod_ip(&pod),
                );
            }
        }
        let pods = keys
            .iter()
            .map(|k| {
                let (ns, name) = k.split_once('/').expect("ns/pod");
                let ip = ips.get(k).cloned().unwrap_or_default();
                assert!(!ip.is_empty(), "pod {k} has no address yet");
                MatrixPod {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    ip,
                }
            })
            .collect();
        Matrix {
            lab,
            pods,
            settle: Duration::from_secs(20),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.pods.iter().map(MatrixPod::key).collect()
    }

    /// A table over this matrix's pods, every pair `allowed`.
    pub fn all(&self, allowed: bool) -> Reachability {
        Reachability::new(&self.keys(), allowed)
    }

    pub fn ip(&self, key: &str) -> &str {
        &self.pods.iter().find(|p| p.key() == key).expect(key).ip
    }

    /// One round: every pod to every pod on every port, all at once. A probe counts as
    /// reaching only when the destination pod itself answered (its hostname).
    pub fn probe(&self, ports: &[Port]) -> BTreeMap<Port, Observed> {
        let jobs: Vec<(Source, Vec<Probe>)> = self
            .pods
            .iter()
            .map(|from| {
                let probes = ports
                    .iter()
                    .flat_map(|port| self.pods.iter().map(|to| Probe::hostname(&to.ip, *port)))
                    .collect();
                (Source::pod(&from.namespace, &from.name), probes)
            })
            .collect();
        let results = probe_all(self.lab, &jobs, PROBE_TIMEOUT);
        let mut out: BTreeMap<Port, Observed> = ports
            .iter()
            .map(|p| {
                (
                    *p,
                    Observed {
                        reachability: self.all(false),
                        outcomes: BTreeMap::new(),
                    },
                )
            })
            .collect();
        for (from, outcomes) in self.pods.iter().zip(results) {
            let mut it = outcomes.into_iter();
            for port in ports {
                for to in &self.pods {
                    let outcome = it.next().expect("one outcome per probe");
                    let reached = outcome.as_ref().is_ok_and(|host| *host == to.name);
                    let obs = out.get_mut(port).expect("port");
                    obs.reachability.set(&from.key(), &to.key(), reached);
                    obs.outcomes.insert((from.key(), to.key()), outcome);
                }
            }
        }
        out
    }

    /// Probes until every port's table is the expected one (for up to [`Matrix::settle`]),
    /// or fails the test showing, per differing port, the expected, observed and comparison
    /// tables and what the differing probes got.
    pub fn check(&self, case: &str, expected: &[(Port, &Reachability)]) {
        let started = Instant::now();
        let ports: Vec<Port> = expected.iter().map(|(p, _)| *p).collect();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let observed = self.probe(&ports);
            let wrong: Vec<(Port, &Reachability, &Observed)> = expected
                .iter()
                .filter_map(|(port, want)| {
                    let obs = &observed[port];
                    (!want.differences(&obs.reachability).is_empty()).then_some((*port, *want, obs))
                })
                .collect();
            if wrong.is_empty() {
                eprintln!(
                    "{case}: as expected on {} after {rounds} round(s), {:.1}s",
                    ports
                        .iter()
                        .map(Port::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            if started.elapsed() >= self.settle {
                let mut report = format!(
                    "{case}: reachability differs after {rounds} rounds in {:.1}s\n",
                    started.elapsed().as_secs_f64()
                );
                for (port, want, obs) in wrong {
                    let _ = write!(
                        report,
                        "\n== {port}: expected\n{}\n== {port}: observed\n{}\n== {port}: comparison (X: differs)\n{}",
                        want.table(),
                        obs.reachability.table(),
                        want.comparison(&obs.reachability)
                    );
                    for (f, t) in want.differences(&obs.reachability) {
                        let _ = writeln!(
                            report,
                            "  {f} -> {t} ({}): expected {}, got {:?}",
                            self.ip(&t),
                            if want.get(&f, &t) {
                                "reach"
                            } else {
                                "no reach"
                            },
                            obs.outcomes[&(f.clone(), t.clone())]
                        );
                    }
                }
                panic!("{report}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// [`Matrix::check`] with one table for every port in `ports`.
    pub fn check_all(&self, case: &str, ports: &[Port], expected: &Reachability) {
        let list: Vec<(Port, &Reachability)> = ports.iter().map(|p| (*p, expected)).collect();
        self.check(case, &list);
    }
}

/// `lab up` with `nodes` nodes, then the matrix's namespaces and pods and `extra` manifests
/// through the real kubectl (so the API server labels the namespaces with
/// `kubernetes.io/metadata.name`, as upstream's tests select them), waiting until every pod
/// is ready; the node names.
pub fn up_matrix(lab: &Lab, nodes: u32, extra: &[String]) -> Vec<String> {
    up_matrix_in(lab, "vxlan", nodes, extra)
}

/// [`up_matrix`] with the nodes connected in `network_mode` (`vxlan` or `direct`).
pub fn up_matrix_in(lab: &Lab, network_mode: &str, nodes: u32, extra: &[String]) -> Vec<String> {
    let names: Vec<String> = (1..=nodes)
        .map(|n| format!("{}-node{n}", lab.name))
        .collect();
    lab.ok(&[
        "lab",
        "up",
        "--nodes",
        &nodes.to_string(),
        "--network-mode",
        network_mode,
        "--wait",
        "60",
    ]);
    let mut docs = vec![matrix_manifest(&names)];
    docs.extend(extra.iter().cloned());
    let manifest = lab.write("matrix.yaml", &docs.join("---\n"));
    lab.kubectl_ok(&["apply", "-f", &manifest]);
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pods",
        "--all",
        "--all-namespaces",
        "--timeout=60s",
    ]);
    names
}

/// A NetworkPolicy `namespace/name` with `spec` (YAML lines indented by two spaces).
pub fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: '{name}', namespace: '{namespace}'}}\nspec:\n{spec}"
    )
}

/// `kubectl apply` of `yaml` (a policy or anything else), through the real kubectl.
pub fn apply(lab: &Lab, name: &str, yaml: &str) {
    let file: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = lab.write(&format!("{file}.yaml"), yaml);
    lab.kubectl_ok(&["apply", "-f", &path]);
}

/// `kubectl delete networkpolicy --all` in each namespace of `namespaces`.
pub fn delete_policies(lab: &Lab, namespaces: &[&str]) {
    for ns in namespaces {
        lab.kubectl_ok(&["delete", "networkpolicy", "--all", "-n", ns, "--wait=false"]);
    }
}

/// Applies `docs` (policies, in one kubectl apply) and checks the tables.
pub fn step(
    lab: &Lab,
    m: &Matrix,
    case: &str,
    docs: &[String],
    expected: &[(Port, &Reachability)],
) {
    apply(lab, case, &docs.join("---\n"));
    m.check(case, expected);
}

/// Deletes every policy of the matrix's namespaces and waits until everything reaches
/// everything again.
pub fn reset(lab: &Lab, m: &Matrix) {
    delete_policies(lab, &NAMESPACES);
    m.check_all("no policy", &ALL_PORTS, &m.all(true));
}

/// The node's `ip weft_policy` table as nft lists it (empty if there is none).
pub fn policy_table(lab: &Lab, node: &str) -> String {
    list_policy_table(lab, node, &[])
}

/// `nft FLAGS list table ip weft_policy` in the node's namespace.
fn list_policy_table(lab: &Lab, node: &str, flags: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("weft_{}_{node}", lab.name), "nft"])
        .args(flags)
        .args(["list", "table", "ip", "weft_policy"])
        .output()
        .expect("ip netns exec nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's policy table as `nft -a` lists it, with handles and without counter values:
/// equal before and after means not one chain, set or rule was replaced.
pub fn policy_table_shape(lab: &Lab, node: &str) -> String {
    list_policy_table(lab, node, &["-a"])
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            let mut kept = Vec::new();
            let mut i = 0;
            while i < words.len() {
                // `counter packets N bytes M` -> `counter`
                if words[i].trim_start_matches('\t') == "counter"
                    && words.get(i + 1) == Some(&"packets")
                {
                    kept.push(words[i]);
                    i += 5;
                } else {
                    kept.push(words[i]);
                    i += 1;
                }
            }
            kept.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The elements of set `set` of the node's policy table, as nft prints them (empty if the
/// set or the table is missing).
pub fn policy_set(lab: &Lab, node: &str, set: &str) -> Vec<String> {
    let table = policy_table(lab, node);
    let Some(start) = table
        .find(&format!("set {set} {{"))
        .or_else(|| table.find(&format!("set \"{set}\" {{")))
    else {
        return Vec::new();
    };
    let body = &table[start..];
    let body = &body[..body.find("\n\t}").unwrap_or(body.len())];
    let Some(elements) = body.find("elements = {") else {
        return Vec::new();
    };
    let list = &body[elements + "elements = {".len()..];
    list[..list.find('}').unwrap_or(list.len())]
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// The packets counted by the counter rules of chain `chain` of the node's policy table
/// (summed; 0 if the chain is missing).
pub fn chain_packets(lab: &Lab, node: &str, chain: &str) -> u64 {
    let table = policy_table(lab, node);
    let mut inside = false;
    let mut total = 0;
    for line in table.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("chain ") {
            let name = rest.trim_end_matches('{').trim();
            inside = name.trim_matches('"') == chain;
            continue;
        }
        if inside {
            if line == "}" {
                inside = false;
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = words.iter().position(|w| *w == "packets") {
                total += words
                    .get(i + 1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}
