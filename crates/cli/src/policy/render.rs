//! What `weft policy` prints: a verdict in words (which policy and which of its rules decided,
//! or why nothing was judged), as text for people and as JSON for machines, and reachability
//! matrices as upstream's network policy e2e tests print their truth tables.

use serde_json::{json, Value};
use weft_dataplane::nft::sim::Outcome;
use weft_policy::spec::{Peer, Port, PortMatch, Rule};
use weft_policy::{Direction, Policy};
use weft_view::{ClusterView, NsName};

use super::ends::Member;
use super::ports::proto_name;
use super::probe::Observed;
use super::verdict::{Hop, PathVerdict, Reason};

/// `pods app=api`, `namespaces team=ops`, `10.0.0.0/8 except 10.244.0.0/16`...
fn peer_text(p: &Peer) -> String {
    let sel = |s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector| {
        let f = weft_model::selector::format(s);
        if f.is_empty() {
            "(all)".to_string()
        } else {
            f
        }
    };
    match p {
        Peer::Pods {
            namespaces: None,
            pods: Some(pods),
        } => format!("pods {}", sel(pods)),
        Peer::Pods {
            namespaces: Some(ns),
            pods: None,
        } => format!("namespaces {}", sel(ns)),
        Peer::Pods {
            namespaces: Some(ns),
            pods: Some(pods),
        } => format!("pods {} in namespaces {}", sel(pods), sel(ns)),
        Peer::Pods {
            namespaces: None,
            pods: None,
        } => "nothing".to_string(),
        Peer::Block { cidr, except } if except.is_empty() => cidr.to_string(),
        Peer::Block { cidr, except } => format!(
            "{cidr} except {}",
            except
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Peer::Nothing => "nothing".to_string(),
    }
}

fn port_text(p: &Port) -> String {
    let proto = proto_name(p.protocol);
    match &p.port {
        PortMatch::Any => format!("{proto} (every port)"),
        PortMatch::Range(a, b) if a == b => format!("{proto}/{a}"),
        PortMatch::Range(a, b) => format!("{proto}/{a}-{b}"),
        PortMatch::Named(n) => format!("{proto}/{n}"),
    }
}

/// One rule of a policy in words: `from pods app=api, namespaces team=ops; ports tcp/pg`.
pub fn rule_text(rule: &Rule, direction: Direction) -> String {
    let word = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let peers = match &rule.peers {
        None => format!("{word} anywhere"),
        Some(peers) => format!(
            "{word} {}",
            peers.iter().map(peer_text).collect::<Vec<_>>().join(", ")
        ),
    };
    let ports = match &rule.ports {
        None => "every port".to_string(),
        Some(ports) => format!(
            "ports {}",
            ports.iter().map(port_text).collect::<Vec<_>>().join(", ")
        ),
    };
    format!("{peers}; {ports}")
}

/// Rule `index` of policy `key` for `direction`, in words.
pub fn policy_rule_text(
    view: &ClusterView,
    key: &NsName,
    direction: Direction,
    index: usize,
) -> Option<String> {
    let np = view.network_policies().find(|np| {
        np.metadata.namespace.as_deref() == Some(key.namespace.as_str())
            && np.metadata.name.as_deref() == Some(key.name.as_str())
    })?;
    let policy = Policy::from_k8s(np);
    let rule = policy.rules(direction)?.get(index)?;
    Some(rule_text(rule, direction))
}

fn names(keys: &[NsName]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The decision of one direction in words.
pub fn reason_text(view: &ClusterView, v: &PathVerdict, direction: Direction) -> String {
    let (hop, this, other) = match direction {
        Direction::Egress => (&v.egress, &v.src, &v.dst),
        Direction::Ingress => (&v.ingress, &v.dst, &v.src),
    };
    let peer_word = match direction {
        Direction::Egress => "to",
        Direction::Ingress => "from",
    };
    match &hop.reason {
        Reason::NotAPod => format!(
            "{} is not a pod: no {direction} policy applies",
            this.name()
        ),
        Reason::HostNetwork => format!(
            "{} is in its node's network: NetworkPolicy does not apply to it",
            this.name()
        ),
        Reason::Loopback => "a pod's traffic to itself never leaves it: no policy applies".into(),
        Reason::NotIsolated => {
            format!(
                "not isolated: no policy selects {} for {direction}",
                this.name()
            )
        }
        Reason::Allowed {
            policy,
            rule,
            isolating,
        } => {
            let mut text = match rule {
                Some(i) => match policy_rule_text(view, policy, direction, *i) {
                    Some(r) => format!("allowed by {policy} {direction} rule {i}: {r}"),
                    None => format!("allowed by {policy} {direction} rule {i}"),
                },
                None => format!("allowed by {policy}"),
            };
            if isolating.len() > 1 {
                text.push_str(&format!(" (isolated by {})", names(isolating)));
            }
            text
        }
        Reason::Dropped { isolating } => format!(
            "isolated by {}; no rule allows {}/{} {peer_word} {}: dropped",
            names(isolating),
            proto_name(v.proto),
            v.port,
            other.name()
        ),
        Reason::Passed if v.src.pod.is_some() && v.src.pod == v.dst.pod => {
            "a pod reaching itself through a Service is never judged".into()
        }
        Reason::Passed => {
            "the node's own traffic (kubelet probes, hostNetwork pods) is always allowed".into()
        }
        Reason::Table { chain, outcome } => {
            let rule = hop
                .steps
                .last()
                .map(|(_, _, text)| format!(" (`{text}`)"))
                .unwrap_or_default();
            format!("{} by chain {chain}{rule}", outcome_word(*outcome))
        }
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Accept => "accepted",
        Outcome::Drop => "dropped",
        Outcome::Reject => "rejected",
    }
}

fn member_text(m: &Member) -> String {
    match (&m.pod, &m.node) {
        (Some(p), Some(n)) => format!("{p} ({}, node {n})", m.ip),
        (Some(p), None) => format!("{p} ({})", m.ip),
        (None, _) => m.ip.to_string(),
    }
}

/// One path in text: a headline, the two directions, and the probe if there was one.
pub fn path_text(
    view: &ClusterView,
    v: &PathVerdict,
    port_label: &str,
    probe: Option<&Observed>,
) -> String {
    let mut out = format!(
        "{} -> {} {port_label}: {}\n",
        member_text(&v.src),
        member_text(&v.dst),
        if v.allowed() { "allowed" } else { "denied" }
    );
    for (direction, hop) in [
        (Direction::Egress, &v.egress),
        (Direction::Ingress, &v.ingress),
    ] {
        let at = match &hop.node {
            Some(n) => format!(" (node {n})"),
            None => String::new(),
        };
        out.push_str(&format!(
            "  {:<7} {}{at}: {}\n",
            direction.as_str(),
            match direction {
                Direction::Egress => v.src.name(),
                Direction::Ingress => v.dst.name(),
            },
            reason_text(view, v, direction)
        ));
    }
    if let Some(p) = probe {
        let agree = match p.allowed() {
            Some(a) if a == v.allowed() => ": agrees",
            Some(_) => ": DISAGREES with the computed verdict",
            None => "",
        };
        out.push_str(&format!("  probe   {p}{agree}\n"));
    }
    out
}

fn hop_json(view: &ClusterView, v: &PathVerdict, direction: Direction, hop: &Hop) -> Value {
    let decision = match &hop.reason {
        Reason::NotAPod => json!({"kind": "not-a-pod"}),
        Reason::HostNetwork => json!({"kind": "host-network"}),
        Reason::Loopback => json!({"kind": "loopback"}),
        Reason::NotIsolated => json!({"kind": "not-isolated"}),
        Reason::Allowed {
            policy,
            rule,
            isolating,
        } => json!({"kind": "allowed", "policy": policy.to_string(), "rule": rule,
                    "isolating": isolating.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        Reason::Dropped { isolating } => json!({"kind": "dropped",
            "isolating": isolating.iter().map(ToString::to_string).collect::<Vec<_>>()}),
        Reason::Passed => json!({"kind": "passed"}),
        Reason::Table { chain, outcome } => {
            json!({"kind": "table", "chain": chain, "outcome": outcome_word(*outcome)})
        }
    };
    json!({
        "allowed": hop.allowed,
        "node": hop.node,
        "reason": reason_text(view, v, direction),
        "decision": decision,
        "trace": hop.steps.iter().map(|(c, r, t)| json!({"chain": c, "rule": r, "nft": t})).collect::<Vec<_>>(),
    })
}

fn member_json(m: &Member) -> Value {
    json!({"pod": m.pod.as_ref().map(ToString::to_string), "ip": m.ip.to_string(), "node": m.node})
}

/// One path as JSON.
pub fn path_json(
    view: &ClusterView,
    v: &PathVerdict,
    port_label: &str,
    probe: Option<&Observed>,
) -> Value {
    let mut out = json!({
        "from": member_json(&v.src),
        "to": member_json(&v.dst),
        "protocol": proto_name(v.proto),
        "port": v.port,
        "portLabel": port_label,
        "allowed": v.allowed(),
        "egress": hop_json(view, v, Direction::Egress, &v.egress),
        "ingress": hop_json(view, v, Direction::Ingress, &v.ingress),
    });
    if let Some(p) = probe {
        out["probe"] = json!({
            "result": p.word(),
            "detail": p.to_string(),
            "allowed": p.allowed(),
            "agrees": p.allowed().map(|a| a == v.allowed()),
        });
    }
    out
}

/// A truth table: tab-separated, `-` in the corner, rows from, columns to, `.` for true and
/// `X` for false (`?` where there is no value), as upstream's e2e tests print reachability.
pub fn truth_table(names: &[String], value: impl Fn(usize, usize) -> Option<bool>) -> String {
    let mut out = format!("-\t{}\n", names.join("\t"));
    for (i, from) in names.iter().enumerate() {
        let marks: Vec<&str> = (0..names.len())
            .map(|j| match value(i, j) {
                Some(true) => ".",
                Some(false) => "X",
                None => "?",
            })
            .collect();
        out.push_str(&format!("{from}\t{}\n", marks.join("\t")));
    }
    out
}
