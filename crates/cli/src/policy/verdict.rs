//! The verdict on one path (a sender, a receiver, a protocol and port), computed the way the
//! kernel computes it: the nodes' `weft_policy` tables compiled from the cluster view by
//! `weft_policy` itself, and the connection's first packet run through them with
//! `weft_dataplane`'s simulator (egress in the sender's node's `prerouting`, ingress in the
//! receiver's node's `postrouting`). The trace says which rule decided; the chain names and
//! `weft_policy::explain` say which policy, and which of its rules, that was.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use weft_dataplane::nft::sim::{self, Outcome, Packet, Trace};
use weft_dataplane::nft::{CmpOp, L4Proto, Rule, Stmt, Table};
use weft_dataplane::nft::{MarkOp, Verdict};
use weft_policy::compile::{compile, NodeContext, PASS_MARK};
use weft_policy::explain::{rule_origins, ChainOrigin};
use weft_policy::resolve::resolve;
use weft_policy::Direction;
use weft_view::{ClusterView, NsName};

use super::ends::Member;

/// A host-side pod interface name as the tables see it (`weft` + 11 hex digits).
const POD_IFACE: &str = "weft00000000000";

/// One node's compiled table and what its policy chains came from.
struct NodeTable {
    table: Table,
    origins: BTreeMap<String, ChainOrigin>,
}

/// The nodes' tables, compiled on first use.
pub struct Tables<'v> {
    view: &'v ClusterView,
    ctx: NodeContext,
    nodes: BTreeMap<String, NodeTable>,
}

impl<'v> Tables<'v> {
    /// `vxlan_port` is the overlay's (the cluster config's), which the tables close to pods.
    pub fn new(view: &'v ClusterView, vxlan_port: u16) -> Tables<'v> {
        let ctx = NodeContext {
            node_ips: view
                .nodes()
                .filter_map(weft_model::node::internal_ip)
                .collect::<BTreeSet<_>>(),
            vxlan_port,
        };
        Tables {
            view,
            ctx,
            nodes: BTreeMap::new(),
        }
    }

    fn node(&mut self, node: &str) -> &NodeTable {
        let (view, ctx) = (self.view, &self.ctx);
        self.nodes.entry(node.to_string()).or_insert_with(|| {
            let policies = resolve(view, node, &Default::default());
            NodeTable {
                table: compile(&policies, ctx),
                origins: rule_origins(&policies, ctx),
            }
        })
    }

    /// The node's address, where the node masquerades traffic from.
    fn node_ip(&self, node: &str) -> Option<Ipv4Addr> {
        self.view.node(node).and_then(weft_model::node::internal_ip)
    }
}

/// What decided one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No pod of the pod network at this end: nothing is judged here.
    NotAPod,
    /// The end is a node's own address (a node, a hostNetwork pod): NetworkPolicy does not
    /// apply to it.
    HostNetwork,
    /// A pod talking to itself: the traffic never leaves the pod.
    Loopback,
    /// No policy selects the pod for this direction.
    NotIsolated,
    Allowed {
        policy: NsName,
        /// The index of the policy's rule (`spec.ingress[i]` / `spec.egress[i]`).
        rule: Option<usize>,
        isolating: Vec<NsName>,
    },
    /// Isolated, and no rule of the isolating policies allows it.
    Dropped { isolating: Vec<NsName> },
    /// Let by with the pass mark: the node's own traffic to its pods (kubelet probes,
    /// hostNetwork pods), or a pod's to itself through a Service.
    Passed,
    /// Another rule of the table decided (anti-spoofing, the overlay's port...).
    Table { chain: String, outcome: Outcome },
}

/// The verdict on one direction at one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub allowed: bool,
    /// The node whose table judged, if any did.
    pub node: Option<String>,
    pub reason: Reason,
    /// The rules that matched, in order: (chain, rule index, rule as nft prints it).
    pub steps: Vec<(String, usize, String)>,
}

impl Hop {
    fn unjudged(reason: Reason) -> Hop {
        Hop {
            allowed: true,
            node: None,
            reason,
            steps: Vec::new(),
        }
    }
}

/// One path's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathVerdict {
    pub src: Member,
    pub dst: Member,
    pub proto: L4Proto,
    pub port: u16,
    pub egress: Hop,
    pub ingress: Hop,
}

impl PathVerdict {
    pub fn allowed(&self) -> bool {
        self.egress.allowed && self.ingress.allowed
    }
}

fn packet(src: Ipv4Addr, dst: Ipv4Addr, proto: L4Proto, port: u16) -> Packet {
    Packet::new(src, dst).proto(proto, port)
}

/// Judges the first packet of a connection from `src` to `dst` on `proto`/`port`. `hairpin`:
/// the packet went through a Service back to its sender, so the node masquerades it.
pub fn judge(
    tables: &mut Tables<'_>,
    src: &Member,
    dst: &Member,
    proto: L4Proto,
    port: u16,
    hairpin: bool,
) -> Result<PathVerdict> {
    let is_pod = |m: &Member| m.pod.is_some() && !m.host && m.node.is_some();
    let same_pod = src.pod.is_some() && src.pod == dst.pod;
    let (egress, ingress) = if same_pod && !hairpin {
        (
            Hop::unjudged(Reason::Loopback),
            Hop::unjudged(Reason::Loopback),
        )
    } else {
        // One packet, as the kernel sees it on the way: the marks prerouting sets are still
        // there in postrouting on the same node (and gone on another).
        let mut p = packet(src.ip, dst.ip, proto, port);
        let egress = match (&src.node, is_pod(src)) {
            (Some(node), true) => {
                p = p.iif(POD_IFACE);
                run(tables, node, Direction::Egress, "prerouting", &mut p)?
            }
            _ if src.host => Hop::unjudged(Reason::HostNetwork),
            _ => Hop::unjudged(Reason::NotAPod),
        };
        let ingress = match (&dst.node, is_pod(dst)) {
            (Some(node), true) => {
                let local = src.node.as_deref() == Some(node.as_str());
                if !local {
                    p = packet(src.ip, dst.ip, proto, port);
                } else if src.host {
                    // The node sends it: its own `output` chain sees it first (and marks it).
                    let t = &tables.node(node).table;
                    sim::run(t, "output", &mut p)
                        .with_context(|| format!("simulating node {node}'s output chain"))?;
                }
                if hairpin {
                    // The proxy masquerades a pod's traffic to itself through a Service.
                    p.saddr = tables.node_ip(node).unwrap_or(src.ip);
                }
                p = p.oif(POD_IFACE);
                run(tables, node, Direction::Ingress, "postrouting", &mut p)?
            }
            _ if dst.host => Hop::unjudged(Reason::HostNetwork),
            _ => Hop::unjudged(Reason::NotAPod),
        };
        (egress, ingress)
    };
    Ok(PathVerdict {
        src: src.clone(),
        dst: dst.clone(),
        proto,
        port,
        egress,
        ingress,
    })
}

fn run(
    tables: &mut Tables<'_>,
    node: &str,
    direction: Direction,
    base: &str,
    p: &mut Packet,
) -> Result<Hop> {
    let nt = tables.node(node);
    let trace = sim::run(&nt.table, base, p)
        .with_context(|| format!("simulating node {node}'s {base} chain"))?;
    Ok(Hop {
        allowed: trace.outcome == Outcome::Accept,
        node: Some(node.to_string()),
        reason: explain(nt, direction, base, &trace),
        steps: trace
            .steps
            .iter()
            .map(|s| {
                let text = nt
                    .table
                    .chains
                    .get(&s.chain)
                    .and_then(|c| c.rules.get(s.rule))
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                (s.chain.clone(), s.rule, text)
            })
            .collect(),
    })
}

/// Reads the trace: the profile chain the pod's address sent it to (its jumps name the
/// isolating policies), and the policy chain whose rule accepted, or the drop at the profile's
/// end.
fn explain(nt: &NodeTable, direction: Direction, base: &str, trace: &Trace) -> Reason {
    let profile = trace
        .steps
        .iter()
        .map(|s| s.chain.as_str())
        .find(|c| *c != base && !nt.origins.contains_key(*c));
    let isolating = |profile: &str| -> Vec<NsName> {
        let Some(chain) = nt.table.chains.get(profile) else {
            return Vec::new();
        };
        chain
            .rules
            .iter()
            .filter_map(|r| jump_target(r))
            .filter_map(|target| nt.origins.get(target))
            .filter(|o| o.direction == direction)
            .map(|o| o.policy.clone())
            .collect()
    };
    let last = trace.steps.last();
    match (trace.outcome, last) {
        (Outcome::Accept, _) if trace.by_policy && profile.is_none() => Reason::NotIsolated,
        (Outcome::Accept, Some(step)) if nt.origins.contains_key(&step.chain) => {
            let origin = &nt.origins[&step.chain];
            Reason::Allowed {
                policy: origin.policy.clone(),
                rule: origin.rule(step.rule),
                isolating: profile.map(isolating).unwrap_or_default(),
            }
        }
        (Outcome::Accept, Some(step)) if step.chain == base && is_pass(nt, step) => Reason::Passed,
        (Outcome::Drop, Some(step)) if Some(step.chain.as_str()) == profile => {
            let isolating = isolating(&step.chain);
            if isolating.is_empty() {
                Reason::Table {
                    chain: step.chain.clone(),
                    outcome: trace.outcome,
                }
            } else {
                Reason::Dropped { isolating }
            }
        }
        (outcome, step) => Reason::Table {
            chain: step
                .map(|s| s.chain.clone())
                .unwrap_or_else(|| base.to_string()),
            outcome,
        },
    }
}

fn jump_target(rule: &Rule) -> Option<&str> {
    rule.stmts.iter().find_map(|s| match s {
        Stmt::Verdict(v) => v.chain(),
        _ => None,
    })
}

/// Whether the step is a base chain's rule that lets traffic by with the pass mark (sets it
/// and accepts, or accepts what carries it).
fn is_pass(nt: &NodeTable, step: &sim::Step) -> bool {
    let Some(rule) = nt
        .table
        .chains
        .get(&step.chain)
        .and_then(|c| c.rules.get(step.rule))
    else {
        return false;
    };
    let accepts = rule.stmts.last() == Some(&Stmt::Verdict(Verdict::Accept));
    let sets = rule
        .stmts
        .contains(&Stmt::MetaMarkSet(MarkOp::Or(PASS_MARK)));
    *rule == Rule::new().mark_bits(PASS_MARK, CmpOp::Ne, 0).accept() || (sets && accepts)
}
