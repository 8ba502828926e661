//! The command line of `weft policy`, and its verdicts explained on a small cluster (no lab:
//! the view is built from objects, the tables compiled and simulated as the command does).

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use weft_dataplane::nft::L4Proto;
use weft_policy::Direction;
use weft_view::{ClusterView, Event};

use super::ends::{parse_end, Spec};
use super::ports::{parse_port, PortRef, PortSpec};
use super::render::{reason_text, truth_table};
use super::verdict::Reason;
use super::*;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: PolicyCommand,
}

fn parse(args: &[&str]) -> Result<PolicyCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("policy").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn check_and_matrix_take_their_arguments() {
    let Ok(PolicyCommand::Check(c)) =
        parse(&["check", "x/a", "svc/web", "53/udp", "-o", "json", "--probe"])
    else {
        panic!("check did not parse");
    };
    assert_eq!((c.from.as_str(), c.to.as_str()), ("x/a", "svc/web"));
    assert_eq!(
        c.port,
        Some(PortSpec {
            port: PortRef::Number(53),
            proto: Some(L4Proto::Udp)
        })
    );
    assert!(c.probe && c.output.as_deref() == Some("json"));
    let Ok(PolicyCommand::Check(c)) = parse(&["check", "a", "b"]) else {
        panic!("check without a port did not parse");
    };
    assert_eq!(c.port, None);
    let Ok(PolicyCommand::Matrix(m)) = parse(&[
        "matrix", "-n", "x,y", "-n", "z", "--port", "80", "--port", "81/TCP",
    ]) else {
        panic!("matrix did not parse");
    };
    assert_eq!(m.namespaces, ["x", "y", "z"]);
    assert_eq!(m.ports.len(), 2);
    // Bad ports are refused by the parser, naming what was wrong.
    let e = parse(&["check", "a", "b", "80/icmp"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("bad port \"80/icmp\": the protocol is tcp, udp or sctp"),
        "{e}"
    );
    let e = parse(&["matrix", "-n", "x", "--port", "0"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("a port number is 1 to 65535"), "{e}");
    assert!(parse(&["matrix"]).is_err(), "matrix needs -n");
    assert!(parse(&["check", "a"]).is_err(), "check needs TO");
    assert!(matrix_ports(&[parse_port("http").unwrap()]).is_err());
    assert_eq!(matrix_ports(&[]).unwrap(), vec![(L4Proto::Tcp, 80)]);
}

#[test]
fn ends_and_ports_parse_or_say_what_is_wrong() {
    let pod = |ns: Option<&str>, n: &str| Spec::Pod {
        namespace: ns.map(str::to_string),
        name: n.into(),
    };
    let svc = |ns: Option<&str>, n: &str| Spec::Service {
        namespace: ns.map(str::to_string),
        name: n.into(),
    };
    assert_eq!(parse_end("a").unwrap(), vec![pod(None, "a")]);
    assert_eq!(parse_end("x/a").unwrap(), vec![pod(Some("x"), "a")]);
    assert_eq!(
        parse_end("svc/web").unwrap(),
        vec![svc(None, "web"), pod(Some("svc"), "web")]
    );
    assert_eq!(parse_end("x/svc/web").unwrap(), vec![svc(Some("x"), "web")]);
    assert_eq!(parse_end("x/pod/a").unwrap(), vec![pod(Some("x"), "a")]);
    assert_eq!(
        parse_end("10.0.0.1").unwrap(),
        vec![Spec::Addr("10.0.0.1".parse().unwrap())]
    );
    for (bad, why) in [
        ("", "empty"),
        ("10.0.0.300", "not an IPv4 address"),
        ("fd00::1", "IPv6"),
        ("x/", "an empty name"),
        ("x/deploy/web", "unknown kind \"deploy\""),
        ("a/b/c/d", "too many parts"),
    ] {
        let e = parse_end(bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert_eq!(
        parse_port("dns/UDP").unwrap(),
        PortSpec {
            port: PortRef::Name("dns".into()),
            proto: Some(L4Proto::Udp)
        }
    );
    assert_eq!(parse_port("8080").unwrap().port, PortRef::Number(8080));
    for bad in ["", "/tcp", "70000", "80/", "Http", "a_b"] {
        assert!(parse_port(bad).is_err(), "{bad:?} parsed");
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn pod(ns: &str, name: &str, node: &str, ip: &str, app: &str, ports: Value) -> Pod {
    obj(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": ports}]},
        "status": {"podIP": ip, "phase": "Running"}
    }))
}

/// Nodes n1, n2; namespaces x, y, default, and svc (to make `svc/web` ambiguous); a deny-all
/// ingress policy and a db policy in default, an egress policy for x's app=a pods.
fn snapshot() -> Snapshot {
    let node = |name: &str, ip: &str| -> Node {
        obj(json!({"metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}))
    };
    let ns = |name: &str| -> Namespace {
        obj(json!({"metadata": {"name": name, "labels": {"ns": name}}}))
    };
    let mut host: Pod = pod("default", "h", "n2", "172.18.0.11", "h", json!([]));
    if let Some(spec) = host.spec.as_mut() {
        spec.host_network = Some(true);
    }
    let pods = vec![
        pod("x", "a", "n1", "10.244.1.2", "a", json!([])),
        pod(
            "x",
            "b",
            "n2",
            "10.244.2.2",
            "b",
            json!([{"name": "http", "containerPort": 80}]),
        ),
        pod("y", "a", "n1", "10.244.1.3", "a", json!([])),
        pod(
            "default",
            "db",
            "n2",
            "10.244.2.5",
            "db",
            json!([{"name": "pg", "containerPort": 5432}]),
        ),
        pod(
            "default",
            "web-1",
            "n1",
            "10.244.1.7",
            "web",
            json!([{"name": "http", "containerPort": 8080}]),
        ),
        pod(
            "default",
            "web-2",
            "n2",
            "10.244.2.7",
            "web",
            json!([{"name": "http", "containerPort": 8080}]),
        ),
        pod("svc", "web", "n1", "10.244.1.9", "other", json!([])),
        host,
    ];
    let policies: Vec<NetworkPolicy> = vec![
        obj(
            json!({"metadata": {"namespace": "default", "name": "deny-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        ),
        obj(json!({"metadata": {"namespace": "default", "name": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
            {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": "pg"}]},
            {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 5432}]}
        ]}})),
        obj(json!({"metadata": {"namespace": "x", "name": "egress-b"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}], "ports": [{"port": 80}]}]}})),
    ];
    let service: Service = obj(json!({"metadata": {"namespace": "default", "name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
    let slice: EndpointSlice = obj(json!({
    "metadata": {"namespace": "default", "name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4",
    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    "endpoints": [
        {"addresses": ["10.244.1.7"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"}},
        {"addresses": ["10.244.2.7"], "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2"}},
        {"addresses": ["10.244.2.8"], "conditions": {"ready": false}}
    ]}));
    let mut view = ClusterView::new();
    view.apply(Event::Relisted(vec![
        node("n1", "172.18.0.10"),
        node("n2", "172.18.0.11"),
    ]));
    view.apply(Event::Relisted(
        ["x", "y", "default", "svc"].map(ns).to_vec(),
    ));
    view.apply(Event::Relisted(pods));
    view.apply(Event::Relisted(policies));
    view.apply(Event::Relisted(vec![service]));
    view.apply(Event::Relisted(vec![slice]));
    Snapshot {
        view,
        vxlan_port: 4789,
        config: weft_model::ClusterConfig::default(),
    }
}

fn check(s: &Snapshot, from: &str, to: &str, port: Option<&str>) -> anyhow::Result<Checked> {
    let port = port.map(|p| parse_port(p).unwrap());
    compute_check(s, from, to, port.as_ref(), "default", false)
}

/// (allowed, egress in words, ingress in words) of a check's only path.
fn only(s: &Snapshot, from: &str, to: &str, port: Option<&str>) -> (bool, String, String) {
    let c = check(s, from, to, port).unwrap();
    assert_eq!(c.paths.len(), 1, "{from} -> {to}");
    let v = &c.paths[0].verdict;
    (
        v.allowed(),
        reason_text(&s.view, v, Direction::Egress),
        reason_text(&s.view, v, Direction::Ingress),
    )
}

#[test]
fn verdicts_name_the_policy_and_rule_that_decide() {
    let s = snapshot();
    // Isolated at both ends: each says by whom, and what it did not allow.
    let (allowed, egress, ingress) = only(&s, "x/a", "db", Some("5432"));
    assert!(!allowed);
    assert_eq!(
        egress,
        "isolated by x/egress-b; no rule allows tcp/5432 to default/db: dropped"
    );
    assert_eq!(
        ingress,
        "isolated by default/db, default/deny-all; no rule allows tcp/5432 from x/a: dropped"
    );
    // Allowed by the db policy's first rule (a named port), though deny-all isolates too.
    let (allowed, egress, ingress) = only(&s, "y/a", "default/db", Some("pg"));
    assert!(allowed);
    assert_eq!(egress, "not isolated: no policy selects y/a for egress");
    assert_eq!(
        ingress,
        "allowed by default/db ingress rule 0: from namespaces ns=y; ports tcp/pg (isolated by default/db, default/deny-all)"
    );
    // From outside the cluster: the ipBlock rule, the second.
    let (allowed, egress, ingress) = only(&s, "203.0.113.10", "db", Some("5432/tcp"));
    assert!(allowed);
    assert_eq!(
        egress,
        "203.0.113.10 is not a pod: no egress policy applies"
    );
    assert!(
        ingress.starts_with(
            "allowed by default/db ingress rule 1: from 203.0.113.0/24; ports tcp/5432"
        ),
        "{ingress}"
    );
    // Egress allowed by x's policy; the destination not isolated.
    let (allowed, egress, ingress) = only(&s, "x/a", "x/b", Some("http"));
    assert!(allowed);
    assert_eq!(
        egress,
        "allowed by x/egress-b egress rule 0: to pods app=b; ports tcp/80"
    );
    assert_eq!(ingress, "not isolated: no policy selects x/b for ingress");
    // The node's own traffic (a hostNetwork pod on db's node) always reaches its pods; the
    // other node's address is just a source the policies do not allow.
    let (allowed, egress, ingress) = only(&s, "default/h", "db", Some("5432"));
    assert!(allowed);
    assert_eq!(
        egress,
        "default/h is in its node's network: NetworkPolicy does not apply to it"
    );
    assert_eq!(
        ingress,
        "the node's own traffic (kubelet probes, hostNetwork pods) is always allowed"
    );
    let (allowed, _, ingress) = only(&s, "172.18.0.10", "db", Some("5432"));
    assert!(!allowed);
    assert!(ingress.ends_with("from 172.18.0.10: dropped"), "{ingress}");
    // A pod to itself never meets a policy.
    let (allowed, egress, _) = only(&s, "x/a", "x/a", Some("80"));
    assert!(allowed && egress.contains("never leaves it"), "{egress}");
}

#[test]
fn a_service_is_its_ready_endpoints_on_their_target_ports() {
    let s = snapshot();
    let c = check(&s, "x/b", "default/svc/web", None).unwrap();
    assert_eq!(c.to.label, "svc/default/web");
    let to: Vec<String> = c.paths.iter().map(|p| p.verdict.dst.name()).collect();
    assert_eq!(
        to,
        ["default/web-1", "default/web-2"],
        "the unready endpoint is left out"
    );
    for p in &c.paths {
        assert_eq!(p.port_label, "svc port 80/tcp (http) -> 8080");
        assert_eq!(p.verdict.port, 8080);
        assert!(
            matches!(&p.verdict.ingress.reason, Reason::Dropped { isolating } if isolating.len() == 1)
        );
    }
    // The trace names the rules that matched, as nft prints them.
    let steps = &c.paths[0].verdict.ingress.steps;
    assert_eq!(steps.first().map(|s| s.0.as_str()), Some("postrouting"));
    assert!(
        steps.last().is_some_and(|s| s.2.contains("drop")),
        "{steps:?}"
    );
}

#[test]
fn errors_name_what_was_wrong() {
    let s = snapshot();
    let err = |from: &str, to: &str, port: Option<&str>| {
        check(&s, from, to, port)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        err("nope", "db", Some("80")),
        "unknown pod \"nope\" in namespace default"
    );
    assert_eq!(
        err("x/a", "svc/nope", Some("80")),
        "unknown Service \"nope\" in namespace default"
    );
    // Pod a is in x and in y: the bare name is ambiguous; b is only in x, so it is found.
    assert!(err("a", "db", Some("80"))
        .starts_with("ambiguous name \"a\": no pod a in namespace default, and pods x/a, y/a"));
    assert!(check(&s, "b", "db", Some("5432")).is_ok());
    // svc/web is Service default/web and pod web of namespace svc.
    assert!(err("x/a", "svc/web", Some("80"))
        .starts_with("ambiguous name \"svc/web\": it is svc/default/web and svc/web"));
    assert_eq!(
        err("x/a", "db", Some("http")),
        "pod default/db declares no port named \"http\""
    );
    assert_eq!(
        err("x/a", "x/a", None),
        "pod x/a declares no container ports: give PORT[/PROTO], e.g. 80/tcp"
    );
    assert_eq!(
        err("x/a", "default/svc/web", Some("81")),
        "Service default/web has no port 81; its ports: 80/tcp (http)"
    );
    assert_eq!(
        err("x/a", "203.0.113.10", None),
        "give PORT[/PROTO] for traffic to 203.0.113.10"
    );
    // With -n given, a bare name is looked for only there.
    let explicit = compute_check(&s, "b", "db", None, "default", true)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        explicit.as_deref(),
        Some("unknown pod \"b\" in namespace default")
    );
}

#[test]
fn the_matrix_prints_like_upstreams_truth_tables() {
    let s = snapshot();
    let (members, skipped) = matrix_members(&s.view, &["x".into(), "y".into()]).unwrap();
    assert!(skipped.is_empty());
    let names: Vec<String> = members.iter().map(|m| m.name()).collect();
    let cells = compute_matrix(&s, &members, L4Proto::Tcp, 80).unwrap();
    let table = truth_table(&names, |i, j| Some(cells[i][j].allowed()));
    // x/a may only send to app=b pods on 80 (x/b), and to itself.
    assert_eq!(
        table,
        "-\tx/a\tx/b\ty/a\nx/a\t.\t.\tX\nx/b\t.\t.\t.\ny/a\t.\t.\t.\n"
    );
    let e = matrix_members(&s.view, &["nope".into()])
        .err()
        .map(|e| e.to_string());
    assert_eq!(e.as_deref(), Some("unknown namespace \"nope\""));
    let (_, skipped) = matrix_members(&s.view, &["default".into()]).unwrap();
    assert_eq!(
        skipped,
        ["default/h: in its node's network (NetworkPolicy does not apply)"]
    );
}

#[test]
fn a_pod_reaching_itself_through_a_service_is_never_judged() {
    let s = snapshot();
    let c = check(&s, "default/web-1", "default/svc/web", Some("80")).unwrap();
    let hairpin = &c.paths[0].verdict;
    assert_eq!(hairpin.dst.name(), "default/web-1");
    assert!(hairpin.allowed());
    assert_eq!(
        reason_text(&s.view, hairpin, Direction::Ingress),
        "a pod reaching itself through a Service is never judged"
    );
    // Its neighbour behind the same Service is isolated by deny-all.
    assert!(!c.paths[1].verdict.allowed());
}
