//! NetworkPolicy truth tables with real connections, continued (see `netpol.rs` for the
//! matrix): egress (default deny with DNS allowed, named ports resolved on each destination,
//! policy types given or inferred), ipBlock peers with exceptions for pods and for the outside
//! host, Services (judged on the backend after DNAT, with the client's address), and the node
//! reaching its own pods under a default deny. The first test's nodes route pod CIDRs directly
//! (`networkMode: direct`), the other's through the VXLAN overlay. Needs root; each lab is
//! torn down in Drop.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;
use weft_testutil::netpol::{
    apply, delete_policies, expect_probes, matrix_keys, policy, reset, server_pod, step, tcp, udp,
    up_matrix, up_matrix_in, Matrix, Probe, Source, ALL_PORTS, NAMESPACES,
};
use weft_testutil::{wait_for_what, Lab};

/// The cluster DNS Service (Kubernetes' default address) and a name it always answers.
const DNS: &str = "10.96.0.10";
const NAME: &str = "kubernetes.default.svc.cluster.local";
/// The lab's outside host: agnhost netexec on TCP 80 and UDP 8081.
const OUTSIDE: &str = "203.0.113.10";

fn settle() -> Duration {
    Duration::from_secs(20)
}

fn src(key: &str) -> Source {
    let (ns, pod) = key.split_once('/').expect("ns/pod");
    Source::pod(ns, pod)
}

/// A node as the API serves it.
fn node(lab: &Lab, name: &str) -> Value {
    serde_json::from_str(&lab.kubectl_ok(&["get", "node", name, "-o", "json"])).expect("node")
}

fn node_ip(lab: &Lab, name: &str) -> String {
    node(lab, name)["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("node InternalIP")
        .to_string()
}

/// The address of pod `ns/name`.
fn m_ip(lab: &Lab, ns: &str, name: &str) -> String {
    lab.pods(&["-n", ns])
        .iter()
        .find(|p| p["metadata"]["name"] == name)
        .and_then(|p| p["status"]["podIP"].as_str())
        .unwrap_or_else(|| panic!("no address for {ns}/{name}"))
        .to_string()
}

/// Whether `ip` is in `cidr` (`a.b.c.d/n`).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("a CIDR");
    let (ip, net): (Ipv4Addr, Ipv4Addr) = (ip.parse().expect("ip"), net.parse().expect("net"));
    let mask = u32::MAX
        .checked_shl(32 - len.parse::<u32>().expect("len"))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn egress_policy_types_and_ip_blocks() {
    let lab = Lab::new();
    // Nodes routing each other's pod CIDRs directly (the other tests use the overlay).
    let nodes = up_matrix_in(&lab, "direct", 2, &[]);
    assert!(
        !lab.in_node(&nodes[0], &["ip", "link"])
            .contains("weft.vxlan"),
        "no overlay in direct mode"
    );
    let m = Matrix::new(&lab, &matrix_keys());
    m.check_all("before any policy", &ALL_PORTS, &m.all(true));
    let dns = |ok_x: bool| {
        vec![
            (src("x/a"), vec![(Probe::dns(DNS, NAME), ok_x)]),
            (src("x/b"), vec![(Probe::dns(DNS, NAME), ok_x)]),
            (src("y/a"), vec![(Probe::dns(DNS, NAME), true)]),
        ]
    };
    expect_probes(&lab, "DNS before any policy", &dns(true), settle());

    // default-deny-egress: x reaches nothing, not even the cluster DNS; everyone still reaches
    // x, whose replies pass its egress isolation.
    let mut x_mute = m.all(true);
    x_mute.expect("x/*", "*", false);
    step(
        &lab,
        &m,
        "default-deny-egress",
        &[policy(
            "x",
            "deny-egress",
            "  podSelector: {}\n  policyTypes: [Egress]\n",
        )],
        &ALL_PORTS.map(|p| (p, &x_mute)),
    );
    expect_probes(&lab, "DNS under default-deny-egress", &dns(false), settle());
    // Allowing DNS to kube-system (through the kube-dns Service: judged on the DNS pod it is
    // sent to) opens DNS and nothing else.
    apply(
        &lab,
        "allow-dns",
        &policy(
            "x",
            "allow-dns",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}], ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]\n",
        ),
    );
    expect_probes(&lab, "DNS allowed to kube-system", &dns(true), settle());
    m.check_all("DNS allowed, pods still not", &ALL_PORTS, &x_mute);
    reset(&lab, &m);

    // Egress by named port: `web`/`web-udp` is 80 on pods of x and y, 81 on pods of z.
    let mut p80 = m.all(true);
    p80.expect("x/*", "z/*", false);
    let mut p81 = m.all(true);
    p81.expect("x/*", "x/*", false).expect("x/*", "y/*", false);
    step(
        &lab,
        &m,
        "egress named ports",
        &[policy(
            "x",
            "egress-web",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: web}, {port: web-udp, protocol: UDP}]}]\n",
        )],
        &[
            (tcp(80), &p80),
            (udp(80), &p80),
            (tcp(81), &p81),
            (udp(81), &p81),
        ],
    );
    // A pod created now, declaring the names the other way round (as z does), is resolved on
    // its own: x may reach it on 81, not on 80.
    let d = lab.write(
        "y-d.yaml",
        &server_pod("y", "d", &nodes[1], &[(80, "alt"), (81, "web")]),
    );
    lab.kubectl_ok(&["apply", "-f", &d]);
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/d",
        "-n",
        "y",
        "--timeout=60s",
    ]);
    let d_ip = m_ip(&lab, "y", "d");
    let to_d = |on81: bool, on80: bool| {
        vec![
            (Probe::hostname(&d_ip, tcp(81)), on81),
            (Probe::hostname(&d_ip, udp(81)), on81),
            (Probe::hostname(&d_ip, tcp(80)), on80),
            (Probe::hostname(&d_ip, udp(80)), on80),
        ]
    };
    expect_probes(
        &lab,
        "egress named ports resolved on a new pod",
        &[
            (src("x/a"), to_d(true, false)),
            (src("x/b"), to_d(true, false)),
            (src("y/a"), to_d(true, true)),
        ],
        settle(),
    );
    lab.kubectl_ok(&["delete", "pod", "d", "-n", "y", "--wait=false"]);
    reset(&lab, &m);

    // policyTypes given: an Egress-only policy leaves ingress open. The same rules with
    // policyTypes left out: inferred Ingress and Egress, so ingress is denied too.
    let to_y = |types: &str| {
        policy(
            "x",
            "egress-to-y",
            &format!("  podSelector: {{}}\n{types}  egress: [{{to: [{{namespaceSelector: {{matchLabels: {{ns: 'y'}}}}}}]}}]\n"),
        )
    };
    let mut egress_only = m.all(true);
    egress_only
        .expect("x/*", "x/*", false)
        .expect("x/*", "z/*", false);
    step(
        &lab,
        &m,
        "policyTypes [Egress]",
        &[to_y("  policyTypes: [Egress]\n")],
        &ALL_PORTS.map(|p| (p, &egress_only)),
    );
    let mut both = egress_only.clone();
    both.expect("*", "x/*", false);
    step(
        &lab,
        &m,
        "policyTypes inferred",
        &[to_y("")],
        &ALL_PORTS.map(|p| (p, &both)),
    );
    reset(&lab, &m);

    // ipBlock with except, on pod addresses: the pod network but y/b and z/c may reach x/a;
    // x/b may reach the pod network but y/a; x/c takes only node 1's pod CIDR.
    let cidr1 = node(&lab, &nodes[0])["spec"]["podCIDR"]
        .as_str()
        .expect("pod CIDR")
        .to_string();
    let mut blocks = m.all(true);
    blocks
        .expect("y/b", "x/a", false)
        .expect("z/c", "x/a", false)
        .expect("x/b", "y/a", false);
    for p in &m.pods {
        if !in_cidr(&p.ip, &cidr1) {
            blocks.expect(&p.key(), "x/c", false);
        }
    }
    step(
        &lab,
        &m,
        "ipBlock with except",
        &[
            policy(
                "x",
                "a-from-pods-but",
                &format!(
                    "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{}/32, {}/32]}}}}]}}]\n",
                    m.ip("y/b"),
                    m.ip("z/c")
                ),
            ),
            policy(
                "x",
                "b-to-pods-but",
                &format!(
                    "  podSelector: {{matchLabels: {{pod: b}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{}/32]}}}}]}}]\n",
                    m.ip("y/a")
                ),
            ),
            policy(
                "x",
                "c-from-node1",
                &format!("  podSelector: {{matchLabels: {{pod: c}}}}\n  ingress: [{{from: [{{ipBlock: {{cidr: {cidr1}}}}}]}}]\n"),
            ),
        ],
        &ALL_PORTS.map(|p| (p, &blocks)),
    );
    // An address excepted from one block but inside another block (here of another policy)
    // is allowed: policies add up.
    let mut overlap = blocks.clone();
    overlap.expect("y/b", "x/a", true);
    step(
        &lab,
        &m,
        "ipBlock except overlapped by another block",
        &[policy(
            "x",
            "a-from-y-b",
            &format!(
                "  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{ipBlock: {{cidr: {}/32}}}}]}}]\n",
                m.ip("y/b")
            ),
        )],
        &ALL_PORTS.map(|p| (p, &overlap)),
    );
    reset(&lab, &m);
}

/// Services of x: `xa` and `xb` (cluster IPs, 8080/TCP and 8081/UDP to the pods' 80), and
/// `xa-np`, a NodePort 30080 to x/a with `externalTrafficPolicy: Local`, so an outside
/// client keeps its address on x/a's node.
fn services() -> Vec<String> {
    let svc = |name: &str, pod: &str, extra: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: x}}\nspec:\n{extra}  selector: {{pod: {pod}}}\n  ports: [{{name: http, port: 8080, targetPort: 80}}, {{name: udp, port: 8081, targetPort: 80, protocol: UDP}}]\n")
    };
    vec![
        svc("xa", "a", ""),
        svc("xb", "b", ""),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: xa-np, namespace: x}}\nspec:\n  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {{pod: a}}\n  ports: [{{port: 80, nodePort: 30080}}]\n"),
    ]
}

#[test]
fn services_the_outside_host_and_the_node() {
    let lab = Lab::new();
    let nodes = up_matrix(&lab, 2, &services());
    let m = Matrix::new(&lab, &matrix_keys());
    m.check_all("before any policy", &ALL_PORTS, &m.all(true));
    let cluster_ip = |name: &str| {
        lab.service_in("x", name)["spec"]["clusterIP"]
            .as_str()
            .expect("cluster IP")
            .to_string()
    };
    let (xa, xb) = (cluster_ip("xa"), cluster_ip("xb"));

    // A Service's traffic is judged on its backend after DNAT, with the client's own address:
    // x/a takes port 80 from pods a and b of y only, so they reach it through its Service's
    // 8080 and 8081 (y/a from the other node, y/b from x/a's own; both seen without SNAT),
    // and y/c and z/c do not. x/a reaching itself through its own Service is never judged.
    apply(
        &lab,
        "svc-ingress",
        &policy(
            "x",
            "a-from-y-a-b",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: 'y'}}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}}], ports: [{port: 80}, {port: 80, protocol: UDP}]}]\n",
        ),
    );
    let via = |ok: bool| {
        vec![
            (Probe::client_ip(&xa, tcp(8080)), ok),
            (Probe::client_ip(&xa, udp(8081)), ok),
            (Probe::hostname(&xb, tcp(8080)), true),
        ]
    };
    let got = expect_probes(
        &lab,
        "Service to an isolated backend",
        &[
            (src("y/a"), via(true)),
            (src("y/b"), via(true)),
            (src("y/c"), via(false)),
            (src("z/c"), via(false)),
            (src("x/a"), via(true)),
        ],
        settle(),
    );
    for (i, client) in ["y/a", "y/b"].iter().enumerate() {
        for seen in &got[i][..2] {
            let seen = seen.as_ref().expect("answered");
            assert_eq!(
                seen.split(':').next(),
                Some(m.ip(client)),
                "the backend sees {client}'s own address"
            );
        }
    }
    delete_policies(&lab, &["x"]);
    // Egress too is judged after DNAT: pods a and b of z may send only to x/a's port 80,
    // which is what its Service's port 8080 becomes (z/a on x/a's node, z/b on the other);
    // the other Service's backend stays out of reach.
    apply(
        &lab,
        "svc-egress",
        &policy(
            "z",
            "to-x-a",
            "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}], ports: [{port: 80}, {port: 80, protocol: UDP}]}]\n",
        ),
    );
    let to_xa = || {
        vec![
            (Probe::hostname(&xa, tcp(8080)), true),
            (Probe::hostname(&xa, udp(8081)), true),
            (Probe::hostname(m.ip("x/a"), tcp(80)), true),
            (Probe::hostname(m.ip("x/a"), tcp(81)), false),
            (Probe::hostname(&xb, tcp(8080)), false),
            (Probe::hostname(&xb, udp(8081)), false),
            (Probe::hostname(m.ip("x/b"), tcp(80)), false),
        ]
    };
    expect_probes(
        &lab,
        "Service from an egress-isolated client",
        &[(src("z/a"), to_xa()), (src("z/b"), to_xa())],
        settle(),
    );
    reset(&lab, &m);

    // The outside host through the NodePort (Local: its address is kept): an ipBlock of its
    // network lets it in, the same block with it excepted does not.
    let x_a_node = lab
        .pods(&["-n", "x"])
        .iter()
        .find(|p| p["metadata"]["name"] == "a")
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .expect("x/a's node");
    let url = format!("http://{}:30080/clientip", node_ip(&lab, &x_a_node));
    let (code, seen) = lab.outside_curl(&url, 5);
    assert_eq!(code, 0, "outside -> {url} before any policy: {seen}");
    assert!(seen.starts_with(&format!("{OUTSIDE}:")), "{seen}");
    let from_outside = |except: &str| {
        policy(
            "x",
            "a-from-outside",
            &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 203.0.113.0/24{except}}}}}]}}]\n"),
        )
    };
    apply(&lab, "outside-in", &from_outside(""));
    expect_probes(
        &lab,
        "x/a takes the outside network only",
        &[(
            src("y/a"),
            vec![(Probe::hostname(m.ip("x/a"), tcp(80)), false)],
        )],
        settle(),
    );
    let (code, seen) = lab.outside_curl(&url, 5);
    assert_eq!(code, 0, "outside -> {url} allowed by ipBlock: {seen}");
    apply(
        &lab,
        "outside-except",
        &from_outside(", except: [203.0.113.10/32]"),
    );
    wait_for_what("the outside host excepted from the block", || {
        lab.outside_curl(&url, 2).0 == 28
    });
    delete_policies(&lab, &["x"]);
    wait_for_what("the outside host back in", || {
        lab.outside_curl(&url, 2).0 == 0
    });

    // Egress to the outside host by ipBlock, judged before the node masquerades it: x/a may
    // reach it (and nothing else), x/c may reach its network except it, x/b anything but the
    // pod network (a /0 block: not the pods, nor the DNS pods behind the DNS Service), and
    // y/a is not isolated.
    apply(
        &lab,
        "egress-outside",
        &[
            policy(
                "x",
                "a-to-outside",
                &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: {OUTSIDE}/32}}}}]}}]\n"),
            ),
            policy(
                "x",
                "c-to-outside-but",
                &format!("  podSelector: {{matchLabels: {{pod: c}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 203.0.113.0/24, except: [{OUTSIDE}/32]}}}}]}}]\n"),
            ),
            policy(
                "x",
                "b-anywhere-but-pods",
                "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.244.0.0/16]}}]}]\n",
            ),
        ]
        .join("---\n"),
    );
    let outside = |ok: bool| {
        vec![
            (Probe::hostname(OUTSIDE, tcp(80)), ok),
            (Probe::hostname(OUTSIDE, udp(8081)), ok),
        ]
    };
    let mut a = outside(true);
    a.push((Probe::hostname(m.ip("y/a"), tcp(80)), false));
    let mut b = outside(true);
    b.push((Probe::hostname(m.ip("y/a"), tcp(80)), false));
    b.push((Probe::dns(DNS, NAME), false));
    let mut free = outside(true);
    free.push((Probe::dns(DNS, NAME), true));
    expect_probes(
        &lab,
        "egress to the outside host",
        &[
            (src("x/a"), a),
            (src("x/b"), b),
            (src("x/c"), outside(false)),
            (src("y/a"), free),
        ],
        settle(),
    );
    reset(&lab, &m);

    // The node reaches its own pods under a default deny everywhere: the kubelet's readiness
    // probes keep passing and curl from the node's namespace answers, while no pod reaches
    // another.
    for ns in NAMESPACES {
        apply(
            &lab,
            &format!("deny-{ns}"),
            &policy(ns, "deny-ingress", "  podSelector: {}\n  ingress: []\n"),
        );
    }
    let none = m.all(false);
    m.check_all("default deny everywhere", &[tcp(80), udp(81)], &none);
    // Long enough for three failed probes (period 1 s) to make a pod unready.
    std::thread::sleep(Duration::from_secs(4));
    for ns in NAMESPACES {
        for pod in lab.pods(&["-n", ns]) {
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            assert!(
                ready,
                "{ns}/{} stays ready: {}",
                pod["metadata"]["name"], pod["status"]
            );
        }
    }
    for n in &nodes {
        for pod in ["x", "y", "z"]
            .iter()
            .flat_map(|ns| lab.pods(&["-n", ns]))
            .filter(|p| p["spec"]["nodeName"] == n.as_str())
        {
            let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
            let out = lab.in_node(
                n,
                &[
                    "curl",
                    "-sS",
                    "--max-time",
                    "3",
                    &format!("http://{ip}:81/hostname"),
                ],
            );
            assert_eq!(
                out,
                pod["metadata"]["name"].as_str().unwrap_or_default(),
                "{n} -> {ip}"
            );
        }
    }
    reset(&lab, &m);
}
