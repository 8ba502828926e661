//! NetworkPolicy truth tables with real connections, after the upstream Kubernetes e2e tests
//! (`test/e2e/network/netpol`): namespaces x, y, z (labelled `ns=<name>`) with pods a, b, c
//! (labelled `pod=<name>`) on two nodes, each serving TCP and UDP on 80 and 81. Before any
//! policy everything reaches everything; each case applies its policies with the real kubectl,
//! probes the whole 9x9 matrix on every port and protocol it concerns, compares with the
//! expected table (printing expected, observed and the difference when they disagree), and
//! deletes its policies, after which everything reaches everything again. This file: peers
//! (pod and namespace selectors, expressions) and ports (numbers, names, ranges, protocols),
//! several policies at once, and changes to policies and labels. Egress, ipBlock, Services and
//! the node are in `netpol_egress.rs`. Needs root; each lab is torn down in Drop.

use weft_testutil::netpol::{
    expect_probes, matrix_keys, matrix_manifest, policy, reset, server_pod, step, tcp, udp,
    up_matrix, Matrix, Probe, Reachability, Source, ALL_PORTS,
};
use weft_testutil::Lab;

/// Ingress to x/a from one peer list (`from:` YAML), on every port.
fn x_a_from(name: &str, from: &str) -> String {
    policy(
        "x",
        name,
        &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: {from}}}]\n"),
    )
}

#[test]
fn peers_select_pods_and_namespaces() {
    let lab = Lab::new();
    up_matrix(&lab, 2, &[]);
    let m = Matrix::new(&lab, &matrix_keys());
    m.check_all("before any policy", &ALL_PORTS, &m.all(true));

    // default-deny-ingress: nothing reaches x. Pods of x still reach everyone else: the
    // replies of their allowed connections come back although x is isolated for ingress.
    let mut want = m.all(true);
    want.expect("*", "x/*", false);
    step(
        &lab,
        &m,
        "default-deny-ingress",
        &[policy(
            "x",
            "deny-ingress",
            "  podSelector: {}\n  policyTypes: [Ingress]\n",
        )],
        &ALL_PORTS.map(|p| (p, &want)),
    );
    reset(&lab, &m);

    // deny-all (`ingress: []`) for x, then allow-all (`ingress: [{}]`) for x/a beside it: the
    // union opens x/a on every port, and an allow-all for all of x opens everything.
    let deny_all = policy("x", "deny-all", "  podSelector: {}\n  ingress: []\n");
    step(
        &lab,
        &m,
        "deny-all",
        &[deny_all],
        &ALL_PORTS.map(|p| (p, &want)),
    );
    let mut a_open = m.all(true);
    a_open.expect("*", "x/b", false).expect("*", "x/c", false);
    step(
        &lab,
        &m,
        "allow-all to x/a beside deny-all",
        &[policy(
            "x",
            "allow-all-a",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{}]\n",
        )],
        &ALL_PORTS.map(|p| (p, &a_open)),
    );
    let all = m.all(true);
    step(
        &lab,
        &m,
        "allow-all to x beside deny-all",
        &[policy(
            "x",
            "allow-all",
            "  podSelector: {}\n  ingress: [{}]\n",
        )],
        &ALL_PORTS.map(|p| (p, &all)),
    );
    reset(&lab, &m);

    // A podSelector peer selects pods of the policy's own namespace only: x/b, not y/b or z/b.
    let mut only_xb = m.all(true);
    only_xb.expect("*", "x/a", false).expect("x/b", "x/a", true);
    step(
        &lab,
        &m,
        "podSelector peer",
        &[x_a_from(
            "x-a-allows-x-b",
            "[{podSelector: {matchLabels: {pod: b}}}]",
        )],
        &ALL_PORTS.map(|p| (p, &only_xb)),
    );
    reset(&lab, &m);

    // A namespaceSelector peer: every pod of y.
    let mut from_y = m.all(true);
    from_y.expect("*", "x/a", false).expect("y/*", "x/a", true);
    step(
        &lab,
        &m,
        "namespaceSelector peer",
        &[x_a_from(
            "allow-ns-y",
            "[{namespaceSelector: {matchLabels: {ns: 'y'}}}]",
        )],
        &ALL_PORTS.map(|p| (p, &from_y)),
    );
    reset(&lab, &m);

    // Both selectors in one peer: pods b of y only. In two peers: all of y, and b of x.
    let mut y_b = m.all(true);
    y_b.expect("*", "x/a", false).expect("y/b", "x/a", true);
    step(
        &lab,
        &m,
        "namespaceSelector AND podSelector",
        &[x_a_from(
            "allow-y-b",
            "[{namespaceSelector: {matchLabels: {ns: 'y'}}, podSelector: {matchLabels: {pod: b}}}]",
        )],
        &ALL_PORTS.map(|p| (p, &y_b)),
    );
    reset(&lab, &m);
    let mut y_or_b = m.all(true);
    y_or_b
        .expect("*", "x/a", false)
        .expect("y/*", "x/a", true)
        .expect("x/b", "x/a", true);
    step(
        &lab,
        &m,
        "namespaceSelector OR podSelector",
        &[x_a_from(
            "allow-y-or-b",
            "[{namespaceSelector: {matchLabels: {ns: 'y'}}}, {podSelector: {matchLabels: {pod: b}}}]",
        )],
        &ALL_PORTS.map(|p| (p, &y_or_b)),
    );
    reset(&lab, &m);

    // matchExpressions: In and NotIn (pods b and c of namespaces other than x, by the name
    // label the API server gives every namespace) ...
    let mut bc = m.all(true);
    bc.expect("*", "x/a", false)
        .expect("y/b", "x/a", true)
        .expect("y/c", "x/a", true)
        .expect("z/b", "x/a", true)
        .expect("z/c", "x/a", true);
    step(
        &lab,
        &m,
        "matchExpressions In/NotIn",
        &[x_a_from(
            "allow-ns-y-z-pod-b-c",
            "[{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}}]",
        )],
        &ALL_PORTS.map(|p| (p, &bc)),
    );
    reset(&lab, &m);
    // ... and Exists / DoesNotExist, on a label only namespace z carries.
    lab.kubectl_ok(&["label", "ns", "z", "env=dev"]);
    let mut no_env = m.all(true);
    no_env.expect("z/*", "x/a", false);
    step(
        &lab,
        &m,
        "matchExpressions DoesNotExist",
        &[x_a_from(
            "allow-no-env",
            "[{namespaceSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}}]",
        )],
        &ALL_PORTS.map(|p| (p, &no_env)),
    );
    reset(&lab, &m);
    let mut env = m.all(true);
    env.expect("*", "x/a", false).expect("z/*", "x/a", true);
    step(
        &lab,
        &m,
        "matchExpressions Exists",
        &[x_a_from(
            "allow-env",
            "[{namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}}]",
        )],
        &ALL_PORTS.map(|p| (p, &env)),
    );
    lab.kubectl_ok(&["label", "ns", "z", "env-"]);
    reset(&lab, &m);

    // The policy's own podSelector with an expression: every pod of x but a is isolated.
    let mut not_a = m.all(true);
    not_a.expect("*", "x/b", false).expect("*", "x/c", false);
    step(
        &lab,
        &m,
        "podSelector NotIn selects the isolated pods",
        &[policy(
            "x",
            "deny-but-a",
            "  podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}\n  ingress: []\n",
        )],
        &ALL_PORTS.map(|p| (p, &not_a)),
    );
    reset(&lab, &m);
}

#[test]
fn ports_unions_and_changes() {
    let lab = Lab::new();
    let nodes = up_matrix(&lab, 2, &[]);
    let m = Matrix::new(&lab, &matrix_keys());
    m.check_all("before any policy", &ALL_PORTS, &m.all(true));
    let open = m.all(true);
    let mut x_a_closed = m.all(true);
    x_a_closed.expect("*", "x/a", false);

    // Ports by number: y may reach x/a on TCP 81 only.
    let mut y_only = m.all(true);
    y_only.expect("*", "x/a", false).expect("y/*", "x/a", true);
    step(
        &lab,
        &m,
        "ports by number",
        &[policy(
            "x",
            "allow-y-81",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: 'y'}}}], ports: [{port: 81, protocol: TCP}]}]\n",
        )],
        &[
            (tcp(81), &y_only),
            (tcp(80), &x_a_closed),
            (udp(80), &x_a_closed),
            (udp(81), &x_a_closed),
        ],
    );
    // Several policies selecting one pod: the union. Port 80 from y, and everything from x/c.
    let mut y_or_xc = y_only.clone();
    y_or_xc.expect("x/c", "x/a", true);
    let mut xc = x_a_closed.clone();
    xc.expect("x/c", "x/a", true);
    step(
        &lab,
        &m,
        "stacked policies are a union",
        &[
            policy(
                "x",
                "allow-y-80",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: 'y'}}}], ports: [{port: 80}]}]\n",
            ),
            policy(
                "x",
                "allow-x-c",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]\n",
            ),
        ],
        &[
            (tcp(81), &y_or_xc),
            (tcp(80), &y_or_xc),
            (udp(80), &xc),
            (udp(81), &xc),
        ],
    );
    reset(&lab, &m);

    // Named ports resolve on each destination pod: `web` is 80 in x and 81 in z, `web-udp`
    // likewise; each namespace allows only its `web` and `web-udp`. A name is looked up with
    // its protocol: `alt` is declared for TCP only, so `alt` over UDP opens nothing.
    let named = |ns: &str| {
        policy(
            ns,
            "allow-web",
            "  podSelector: {}\n  ingress: [{ports: [{port: web}, {port: web-udp, protocol: UDP}, {port: alt, protocol: UDP}]}]\n",
        )
    };
    let mut x_open = m.all(true);
    x_open.expect("*", "z/*", false);
    let mut z_open = m.all(true);
    z_open.expect("*", "x/*", false);
    step(
        &lab,
        &m,
        "named ports",
        &[named("x"), named("z")],
        &[
            (tcp(80), &x_open),
            (udp(80), &x_open),
            (tcp(81), &z_open),
            (udp(81), &z_open),
        ],
    );
    // A pod created now in z, with `web` on 80 unlike its neighbours, is let in on 80 only.
    let d = lab.write(
        "z-d.yaml",
        &server_pod("z", "d", &nodes[0], &[(80, "web"), (81, "alt")]),
    );
    lab.kubectl_ok(&["apply", "-f", &d]);
    lab.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/d",
        "-n",
        "z",
        "--timeout=60s",
    ]);
    let d_ip = lab
        .pods(&["-n", "z"])
        .iter()
        .find(|p| p["metadata"]["name"] == "d")
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .expect("z/d's address");
    let to_d = |on80: bool| {
        vec![
            (Probe::hostname(&d_ip, tcp(80)), on80),
            (Probe::hostname(&d_ip, udp(80)), on80),
            (Probe::hostname(&d_ip, tcp(81)), false),
            (Probe::hostname(&d_ip, udp(81)), false),
        ]
    };
    expect_probes(
        &lab,
        "named ports resolved on a new pod",
        &[
            (Source::pod("x", "a"), to_d(true)),
            (Source::pod("y", "b"), to_d(true)),
        ],
        std::time::Duration::from_secs(20),
    );
    lab.kubectl_ok(&["delete", "pod", "d", "-n", "z", "--wait=false"]);
    reset(&lab, &m);

    // endPort ranges: TCP 81-90 and UDP 70-80 to x/a.
    step(
        &lab,
        &m,
        "endPort ranges",
        &[policy(
            "x",
            "ranges",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: 81, endPort: 90}, {protocol: UDP, port: 70, endPort: 80}]}]\n",
        )],
        &[
            (tcp(81), &open),
            (udp(80), &open),
            (tcp(80), &x_a_closed),
            (udp(81), &x_a_closed),
        ],
    );
    reset(&lab, &m);

    // A UDP-only rule (every UDP port) never opens TCP.
    let mut x_closed = m.all(true);
    x_closed.expect("*", "x/*", false);
    step(
        &lab,
        &m,
        "UDP-only rule",
        &[policy(
            "x",
            "udp-only",
            "  podSelector: {}\n  ingress: [{ports: [{protocol: UDP}]}]\n",
        )],
        &[
            (udp(80), &open),
            (udp(81), &open),
            (tcp(80), &x_closed),
            (tcp(81), &x_closed),
        ],
    );
    reset(&lab, &m);

    // An SCTP-only rule (this kernel has no SCTP at all) opens neither TCP nor UDP, as
    // upstream checks: the pods are isolated all the same.
    step(
        &lab,
        &m,
        "SCTP-only rule",
        &[policy(
            "x",
            "sctp-only",
            "  podSelector: {}\n  ingress: [{ports: [{protocol: SCTP, port: 80}, {protocol: SCTP, port: 81}]}]\n",
        )],
        &ALL_PORTS.map(|p| (p, &x_closed)),
    );
    reset(&lab, &m);

    // The rules of a policy are independent: y on TCP 80 and z on TCP 81 is not y or z on
    // both (peers and ports combine within a rule only).
    let mut y80 = x_a_closed.clone();
    y80.expect("y/*", "x/a", true);
    let mut z81 = x_a_closed.clone();
    z81.expect("z/*", "x/a", true);
    step(
        &lab,
        &m,
        "rules are independent",
        &[policy(
            "x",
            "y-80-z-81",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - {from: [{namespaceSelector: {matchLabels: {ns: 'y'}}}], ports: [{port: 80}]}\n  - {from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81}]}\n",
        )],
        &[
            (tcp(80), &y80),
            (tcp(81), &z81),
            (udp(80), &x_a_closed),
            (udp(81), &x_a_closed),
        ],
    );
    reset(&lab, &m);

    // A policy updated in place: from y, then from z.
    let from = |ns: &str| {
        policy(
            "x",
            "allow-one-ns",
            &format!("  podSelector: {{matchLabels: {{pod: a}}}}\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: '{ns}'}}}}}}]}}]\n"),
        )
    };
    let from_y = y_only_all(&m);
    let mut from_z = m.all(true);
    from_z.expect("*", "x/a", false).expect("z/*", "x/a", true);
    step(
        &lab,
        &m,
        "policy before update",
        &[from("y")],
        &ALL_PORTS.map(|p| (p, &from_y)),
    );
    step(
        &lab,
        &m,
        "policy updated",
        &[from("z")],
        &ALL_PORTS.map(|p| (p, &from_z)),
    );
    reset(&lab, &m);

    // Label changes take effect with nothing restarted: peers by pod label and by namespace
    // label, and a pod's own labels deciding whether a policy selects it.
    step(
        &lab,
        &m,
        "labels: nobody matches yet",
        &[
            x_a_friends(),
            policy(
                "x",
                "locked",
                "  podSelector: {matchLabels: {locked: 'yes'}}\n  ingress: []\n",
            ),
        ],
        &[(tcp(80), &x_a_closed), (udp(81), &x_a_closed)],
    );
    lab.kubectl_ok(&["label", "pod", "-n", "y", "b", "role=friend"]);
    let mut friend = x_a_closed.clone();
    friend.expect("y/b", "x/a", true);
    m.check("pod label added", &[(tcp(80), &friend), (udp(81), &friend)]);
    lab.kubectl_ok(&["label", "ns", "z", "team=blue"]);
    let mut blue = friend.clone();
    blue.expect("z/*", "x/a", true);
    m.check(
        "namespace label added",
        &[(tcp(80), &blue), (udp(81), &blue)],
    );
    lab.kubectl_ok(&["label", "pod", "-n", "x", "c", "locked=yes"]);
    let mut locked = blue.clone();
    locked.expect("*", "x/c", false);
    m.check(
        "pod selected by a label",
        &[(tcp(80), &locked), (udp(81), &locked)],
    );
    lab.kubectl_ok(&["label", "pod", "-n", "y", "b", "role-"]);
    lab.kubectl_ok(&["label", "ns", "z", "team-"]);
    lab.kubectl_ok(&["label", "pod", "-n", "x", "c", "locked-"]);
    m.check(
        "labels removed",
        &[(tcp(80), &x_a_closed), (udp(81), &x_a_closed)],
    );
    reset(&lab, &m);
}

/// x/a open to y on every port (the "before update" table).
fn y_only_all(m: &Matrix) -> Reachability {
    let mut t = m.all(true);
    t.expect("*", "x/a", false).expect("y/*", "x/a", true);
    t
}

/// x/a open to pods labelled `role=friend` anywhere and to namespaces labelled `team=blue`.
fn x_a_friends() -> String {
    x_a_from(
        "friends",
        "[{namespaceSelector: {}, podSelector: {matchLabels: {role: friend}}}, {namespaceSelector: {matchLabels: {team: blue}}}]",
    )
}

/// Upstream's tests select namespaces by `kubernetes.io/metadata.name`, the label
/// kube-apiserver puts on every namespace. The manifests given to `weft lab up -f` go to the
/// store without the API server, so the label must come from parsing the object itself
/// (`weft_model::defaults`), or a policy naming such a namespace admits nobody.
#[test]
fn namespaces_from_lab_up_are_selected_by_name() {
    let lab = Lab::new();
    let nodes: Vec<String> = (1..=2).map(|n| format!("{}-node{n}", lab.name)).collect();
    let manifest = lab.write("matrix.yaml", &matrix_manifest(&nodes));
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "60"]);
    let m = Matrix::new(&lab, &matrix_keys());
    let mut from_y = m.all(true);
    from_y.expect("*", "x/a", false).expect("y/*", "x/a", true);
    step(
        &lab,
        &m,
        "namespaceSelector by kubernetes.io/metadata.name",
        &[x_a_from(
            "allow-ns-y-by-name",
            "[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: 'y'}}}]",
        )],
        &[(tcp(80), &from_y), (udp(80), &from_y)],
    );
}
