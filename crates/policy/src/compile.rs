//! The node's policy table, `ip weft_policy`, compiled from [`NodePolicies`] (pure).
//!
//! Where traffic is judged:
//! - **Egress** of this node's pods in `prerouting` (priority 0, after the Service proxy's
//!   DNAT at -100), on packets coming in from a pod interface: the destination is the one the
//!   pod's traffic really goes to (a Service's backend, not its cluster IP).
//! - **Ingress** to this node's pods in `postrouting` (priority 200, after source NAT at 100),
//!   on packets going out to a pod interface: source and destination are what the pod sees
//!   (an outside client masqueraded by the node shows as the node).
//! - The node's own traffic to its pods (kubelet probes) is always allowed: `output` marks
//!   every packet the node sends with [`PASS_MARK`], and `postrouting` lets marked packets by.
//! - So is a pod's traffic to itself through a Service (hairpin, which the proxy masquerades):
//!   `prerouting` marks packets from a pod to its own address (`local_self`), as Cilium
//!   exempts service loopback, so no pod has to allow itself.
//! - Replies and related packets of allowed connections pass (`ct state established,related`
//!   before any policy), so only a connection's first packet meets the policies.
//!
//! An isolated pod's address maps (`ingress_pods`, `egress_pods`) to its *profile*: a chain
//! per distinct set of policies isolating pods, named by a hash of that set so the name is
//! stable. A profile jumps to each policy's chain (`ingress/<ns>/<name>`), whose rules accept
//! what the policy allows and otherwise return; what no policy accepted is logged (NFLOG,
//! rate-limited, prefixed with the policies' names), counted and dropped by the profile. A
//! policy's chain exists on a node only while it selects one of the node's pods. Its pod peers
//! are address sets named by what they select (`peers/<ns>/<hash>`, `*` for a namespace
//! selector), one per distinct peer on the node, shared by every rule naming it.
//!
//! Also here, the isolation every pod gets whatever the policies say:
//! - anti-spoofing: a packet from a pod interface must have a source that routes back through
//!   that interface (each pod has a /32 route through its own veth), so a pod sends only from
//!   its own address;
//! - the overlay's VXLAN port takes packets only from node addresses (`input`), and pods may
//!   not send to it (a pod's packet to another node leaves masqueraded as this node, which
//!   the other node could not tell from real overlay traffic).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use weft_dataplane::nft::{
    ct_state, priority, Chain, ChainType, CmpOp, DataType, Elem, ElemData, Family, Field, Hook,
    Ipv4Prefix, L4Proto, MarkOp, Policy as ChainPolicy, Rule, Selector, Set, Table, Tx, Value,
    Verdict,
};
use weft_view::NsName;

use crate::resolve::{Active, Changed, NodePolicies, PeerKey, PeerSet, ResolvedRule};
use crate::spec::Direction;

pub const TABLE: &str = "weft_policy";
/// The packet mark bit of traffic no policy judges: everything the node itself sends (set in
/// `output`), and a pod's packets to itself through a Service (set in `prerouting`).
pub const PASS_MARK: u32 = 0x0001_0000;
/// The NFLOG group drops are logged to.
pub const NFLOG_GROUP: u16 = weft_dataplane::nflog::WEFT_GROUP;
/// Host interfaces of pods (`weft` + 11 hex digits, see the CNI plugin's wiring).
pub const POD_IFACE_PREFIX: &str = "weft";
/// The overlay device, which shares the prefix and is not a pod.
pub const VXLAN_IFACE: &str = "weft.vxlan";
use weft_dataplane::nflog::{LOG_BURST, LOG_RATE};
/// nft's limit on chain and set names (with the terminating NUL).
const NAME_MAX: usize = 255;
/// NFLOG's limit on a prefix.
const PREFIX_MAX: usize = 127;

pub const NODES: &str = "nodes";
pub const INGRESS_PODS: &str = "ingress_pods";
pub const EGRESS_PODS: &str = "egress_pods";
/// `address . address` for each of this node's pods: a pod's packets to itself.
pub const LOCAL_SELF: &str = "local_self";
pub const SPOOFED: &str = "drop_spoofed";
pub const VXLAN_FROM_POD: &str = "drop_vxlan_from_pod";
pub const VXLAN_FOREIGN: &str = "drop_vxlan_foreign";

/// What the table needs besides the policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// Every node's address (the overlay's peers).
    pub node_ips: BTreeSet<Ipv4Addr>,
    /// The overlay's UDP port.
    pub vxlan_port: u16,
}

/// The chain holding one policy's rules for one direction.
pub fn policy_chain(direction: Direction, key: &NsName) -> String {
    bounded(format!("{direction}/{}/{}", key.namespace, key.name))
}

/// The set of a pod peer's addresses: its namespace (`*` for a namespace selector) and a
/// hash of what it selects.
pub fn peer_set(key: &PeerKey, set: &PeerSet) -> String {
    let mut h = Fnv::new();
    h.write(key.as_str().as_bytes());
    let scope = set.sel.namespace.as_deref().unwrap_or("*");
    format!("peers/{scope}/{:016x}", h.finish())
}

/// The set of `address . protocol . port` a rule's named ports resolve to.
pub fn named_set(direction: Direction, key: &NsName, rule: usize) -> String {
    bounded(format!(
        "{direction}/{}/{}/{rule}/ports",
        key.namespace, key.name
    ))
}

/// The chain of the pods isolated by exactly `policies` (sorted) in `direction`.
pub fn profile_chain(direction: Direction, policies: &[NsName]) -> String {
    let mut h = Fnv::new();
    for p in policies {
        h.write(p.namespace.as_bytes());
        h.write(b"/");
        h.write(p.name.as_bytes());
        h.write(b",");
    }
    format!("{direction}-{:08x}", h.finish() as u32)
}

/// The NFLOG prefix of a profile's drops: `weft drop <direction> <ns/name>[,<ns/name>...]`.
pub fn drop_prefix(direction: Direction, policies: &[NsName]) -> String {
    let mut prefix = format!("weft drop {direction} ");
    for (i, p) in policies.iter().enumerate() {
        let item = format!("{}{p}", if i == 0 { "" } else { "," });
        let rest = policies.len() - i - 1;
        // Keep room for ",+N more" when cutting.
        if prefix.len() + item.len() + if rest > 0 { 12 } else { 0 } > PREFIX_MAX {
            prefix.push_str(&format!(",+{}", policies.len() - i));
            break;
        }
        prefix.push_str(&item);
    }
    prefix.truncate(PREFIX_MAX);
    prefix
}

/// Names longer than nft takes keep their start and get a hash of the whole.
fn bounded(name: String) -> String {
    if name.len() <= NAME_MAX {
        return name;
    }
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    let mut cut = NAME_MAX - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{:016x}", &name[..cut], h.finish())
}

/// FNV-1a: a hash that is the same in every process (names must be stable across restarts).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn prefix(cidr: &weft_model::cidr::Ipv4Cidr) -> Ipv4Prefix {
    Ipv4Prefix {
        addr: cidr.network(),
        len: cidr.prefix(),
    }
}

/// Rules that log (rate-limited), count and drop whatever reaches them.
fn drop_rules(log_prefix: &str) -> [Rule; 2] {
    [
        Rule::new()
            .limit_per_second(LOG_RATE, LOG_BURST)
            .log_group(NFLOG_GROUP, log_prefix),
        Rule::new().counter().drop(),
    ]
}

/// A chain of [`drop_rules`].
fn drop_chain(name: &str, log_prefix: &str) -> Chain {
    let mut chain = Chain::new(name);
    chain.rules.extend(drop_rules(log_prefix));
    chain
}

/// The whole table for one node.
pub fn compile(policies: &NodePolicies, ctx: &NodeContext) -> Table {
    Parts::of(policies).table(ctx)
}

/// What one policy contributes to the table: its chains and sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
}

/// The table apart from its fixed base, in the pieces incremental updates compare: each
/// policy's fragment, the pod peers' sets, the profile chains, and the pod maps' elements
/// (address -> profile).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub fragments: BTreeMap<NsName, Fragment>,
    pub peers: BTreeMap<PeerKey, Set>,
    /// Each profile chain, and how many pods it is the profile of.
    pub profiles: BTreeMap<String, (Chain, usize)>,
    pub pods: BTreeMap<Direction, BTreeMap<Ipv4Addr, String>>,
    /// Every pod of this node taking part in policy.
    pub locals: BTreeSet<Ipv4Addr>,
}

/// The pod map of a direction.
pub fn pod_map(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => INGRESS_PODS,
        Direction::Egress => EGRESS_PODS,
    }
}

impl Parts {
    /// Every piece, from the resolved policies.
    pub fn of(policies: &NodePolicies) -> Parts {
        let mut parts = Parts::default();
        for (key, active) in &policies.active {
            parts
                .fragments
                .insert(key.clone(), fragment(key, active, policies));
        }
        for (key, set) in &policies.peers {
            parts.peers.insert(key.clone(), peer_nft_set(key, set));
        }
        parts.locals = policies.local.keys().copied().collect();
        for direction in Direction::BOTH {
            for ip in policies
                .isolated
                .get(&direction)
                .into_iter()
                .flatten()
                .map(|(ip, _)| ip)
            {
                parts.isolate(policies, direction, *ip, &mut Tx::new());
            }
        }
        parts
    }

    /// Brings the parts up to date with `policies` after [`crate::resolve::re_resolve`] made
    /// `changed`: the fragments of the policies resolved again, the peer sets resolved again,
    /// the pods whose isolation may have changed, and the node's pods that came or went.
    /// Returns the changes that turn a table of the old parts into one of the new,
    /// in time proportional to them.
    pub fn update(&mut self, policies: &NodePolicies, changed: &Changed) -> Tx {
        let mut tx = Tx::new();
        let none = Fragment::default();
        for key in &changed.policies {
            let old = self.fragments.remove(key);
            let new = policies.active.get(key).map(|a| fragment(key, a, policies));
            fragment_tx(
                old.as_ref().unwrap_or(&none),
                new.as_ref().unwrap_or(&none),
                &mut tx,
            );
            if let Some(new) = new {
                self.fragments.insert(key.clone(), new);
            }
        }
        // (The Tx orders its batch: sets before the rules naming them, deletions after.)
        for key in &changed.peers {
            let old = self.peers.remove(key);
            let new = policies.peers.get(key).map(|set| peer_nft_set(key, set));
            match (&old, &new) {
                (Some(o), Some(n)) => set_tx(o, n, &mut tx),
                (None, Some(n)) => {
                    tx.add_set(n.clone());
                }
                (Some(o), None) => {
                    tx.delete_set(o.name.clone());
                }
                (None, None) => {}
            }
            if let Some(new) = new {
                self.peers.insert(key.clone(), new);
            }
        }
        for (ip, now) in &changed.locals {
            if *now {
                self.locals.insert(*ip);
                tx.put_element(LOCAL_SELF, self_key(*ip), Elem::default());
            } else {
                self.locals.remove(ip);
                tx.delete_element(LOCAL_SELF, self_key(*ip));
            }
        }
        for (direction, ips) in &changed.pods {
            for ip in ips {
                self.isolate(policies, *direction, *ip, &mut tx);
            }
        }
        tx
    }

    /// Makes pod `ip`'s map element and profile in `direction` what `policies` say.
    fn isolate(
        &mut self,
        policies: &NodePolicies,
        direction: Direction,
        ip: Ipv4Addr,
        tx: &mut Tx,
    ) {
        let want = policies
            .isolated
            .get(&direction)
            .and_then(|pods| pods.get(&ip))
            .filter(|isolating| !isolating.is_empty());
        let name = want.map(|isolating| profile_chain(direction, isolating));
        let pods = self.pods.entry(direction).or_default();
        let had = pods.get(&ip).cloned();
        if had == name {
            return;
        }
        if let (Some(name), Some(isolating)) = (&name, want) {
            pods.insert(ip, name.clone());
            tx.put_element(
                pod_map(direction),
                vec![Value::Ipv4(ip)],
                Elem::data(ElemData::Verdict(Verdict::Jump(name.clone()))),
            );
            let entry = self.profiles.entry(name.clone()).or_insert_with(|| {
                let chain = profile(direction, isolating);
                tx.put_chain(chain.clone());
                (chain, 0)
            });
            entry.1 += 1;
        } else {
            pods.remove(&ip);
            tx.delete_element(pod_map(direction), vec![Value::Ipv4(ip)]);
        }
        if pods.is_empty() {
            self.pods.remove(&direction);
        }
        if let Some(had) = had {
            if let Some(entry) = self.profiles.get_mut(&had) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    self.profiles.remove(&had);
                    tx.delete_chain(had);
                }
            }
        }
    }

    /// The whole table.
    pub fn table(&self, ctx: &NodeContext) -> Table {
        let mut t = Table::new(Family::Ip, TABLE);
        base(&mut t, ctx);
        for direction in Direction::BOTH {
            let mut map =
                Set::verdict_map(pod_map(direction), vec![Field::Type(DataType::Ipv4Addr)]);
            for (ip, chain) in self.pods.get(&direction).into_iter().flatten() {
                map = map.map_element(
                    vec![Value::Ipv4(*ip)],
                    ElemData::Verdict(Verdict::Jump(chain.clone())),
                );
            }
            t.add_set(map);
        }
        let mut locals = Set::new(
            LOCAL_SELF,
            vec![
                Field::Type(DataType::Ipv4Addr),
                Field::Type(DataType::Ipv4Addr),
            ],
        );
        for ip in &self.locals {
            locals = locals.element(self_key(*ip));
        }
        t.add_set(locals);
        for (chain, _) in self.profiles.values() {
            t.add_chain(chain.clone());
        }
        for set in self.peers.values() {
            t.add_set(set.clone());
        }
        for f in self.fragments.values() {
            for set in f.sets.values() {
                t.add_set(set.clone());
            }
            for chain in f.chains.values() {
                t.add_chain(chain.clone());
            }
        }
        t
    }
}

fn self_key(ip: Ipv4Addr) -> Vec<Value> {
    vec![Value::Ipv4(ip), Value::Ipv4(ip)]
}

/// The profile chain of pods isolated by `isolating` (sorted) in `direction`.
fn profile(direction: Direction, isolating: &[NsName]) -> Chain {
    let mut chain = Chain::new(profile_chain(direction, isolating));
    for key in isolating {
        chain = chain.rule(Rule::new().jump(policy_chain(direction, key)));
    }
    chain
        .rules
        .extend(drop_rules(&drop_prefix(direction, isolating)));
    chain
}

/// A pod peer's address set.
fn peer_nft_set(key: &PeerKey, peer: &PeerSet) -> Set {
    let mut set = Set::new(peer_set(key, peer), vec![Field::Type(DataType::Ipv4Addr)]);
    for ip in &peer.members {
        set = set.element(vec![Value::Ipv4(*ip)]);
    }
    set
}

/// One policy's chains (one per direction it isolates) and named-port sets; its pod peers'
/// sets are shared and kept apart (`policies.peers`).
pub fn fragment(key: &NsName, active: &Active, policies: &NodePolicies) -> Fragment {
    let mut f = Fragment::default();
    for (direction, rules) in &active.rules {
        let mut chain = Chain::new(policy_chain(*direction, key));
        for (i, rule) in rules.iter().enumerate() {
            chain
                .rules
                .extend(rule_rules(&mut f.sets, policies, *direction, key, i, rule));
        }
        f.chains.insert(chain.name.clone(), chain);
    }
    f
}

/// The nft rules of one policy rule: one per form of peer (any, the pod set, each block) and
/// form of port (any, each protocol or range, the named ports), each counting and accepting.
fn rule_rules(
    sets: &mut BTreeMap<String, Set>,
    policies: &NodePolicies,
    direction: Direction,
    key: &NsName,
    index: usize,
    rule: &ResolvedRule,
) -> Vec<Rule> {
    if !rule.allows_something() {
        return Vec::new();
    }
    // The peer is the source of ingress and the destination of egress; named ports are
    // always the destination's.
    let peer_field = match direction {
        Direction::Ingress => Selector::IpSaddr,
        Direction::Egress => Selector::IpDaddr,
    };
    let mut peer_forms: Vec<Rule> = Vec::new();
    if rule.any_peer {
        peer_forms.push(Rule::new());
    }
    for peer in &rule.pod_peers {
        let Some(set) = policies.peers.get(peer) else {
            // Not resolved: only when compiling a policy apart (see `explain`).
            continue;
        };
        peer_forms.push(Rule::new().in_set(&[peer_field], peer_set(peer, set)));
    }
    for (cidr, except) in &rule.blocks {
        let mut r = match peer_field {
            Selector::IpSaddr => Rule::new().ip_saddr(prefix(cidr)),
            _ => Rule::new().ip_daddr(prefix(cidr)),
        };
        for e in except {
            r = match peer_field {
                Selector::IpSaddr => r.ip_saddr_ne(prefix(e)),
                _ => r.ip_daddr_ne(prefix(e)),
            };
        }
        peer_forms.push(r);
    }
    let mut port_forms: Vec<Vec<PortMatch>> = Vec::new();
    if rule.any_port {
        port_forms.push(Vec::new());
    }
    for (proto, range) in &rule.ports {
        let mut m = vec![PortMatch::Proto(*proto)];
        if let Some((a, b)) = range {
            m.push(PortMatch::Range(*a, *b));
        }
        port_forms.push(m);
    }
    if !rule.named.is_empty() {
        let name = named_set(direction, key, index);
        let mut set = Set::new(
            &name,
            vec![
                Field::Type(DataType::Ipv4Addr),
                Field::Type(DataType::InetProto),
                Field::Type(DataType::InetService),
            ],
        );
        for (ip, proto, port) in &rule.named {
            set = set.element(vec![
                Value::Ipv4(*ip),
                Value::Proto(*proto),
                Value::Port(*port),
            ]);
        }
        sets.insert(name.clone(), set);
        port_forms.push(vec![PortMatch::Named(name)]);
    }
    let mut out = Vec::new();
    for peer in &peer_forms {
        for ports in &port_forms {
            let mut r = peer.clone();
            for m in ports {
                r = match m {
                    PortMatch::Proto(p) => r.l4proto(*p),
                    PortMatch::Range(a, b) => r.th_dport_range(*a, *b),
                    PortMatch::Named(set) => r.in_set(
                        &[Selector::IpDaddr, Selector::MetaL4proto, Selector::ThDport],
                        set.clone(),
                    ),
                };
            }
            out.push(r.counter().accept());
        }
    }
    out
}

enum PortMatch {
    Proto(L4Proto),
    Range(u16, u16),
    Named(String),
}

/// The base chains, the pod maps' users, and the pod network's own isolation.
fn base(t: &mut Table, ctx: &NodeContext) {
    let mut nodes = Set::new(NODES, vec![Field::Type(DataType::Ipv4Addr)]);
    for ip in &ctx.node_ips {
        nodes = nodes.element(vec![Value::Ipv4(*ip)]);
    }
    t.add_set(nodes);
    let established = ct_state::ESTABLISHED | ct_state::RELATED;
    t.add_chain(
        Chain::base(
            "prerouting",
            ChainType::Filter,
            Hook::Prerouting,
            priority::FILTER,
            ChainPolicy::Accept,
        )
        .rule(Rule::new().iifname(VXLAN_IFACE).accept())
        .rule(
            Rule::new()
                .iifname_prefix(POD_IFACE_PREFIX)
                .fib_saddr_iif_oif_missing()
                .goto(SPOOFED),
        )
        .rule(Rule::new().ct_state(established).accept())
        // After the stateful pass (a packet this drops never makes a connection, so no
        // established one can reach the port), to spare every established packet the lookup.
        .rule(
            Rule::new()
                .iifname_prefix(POD_IFACE_PREFIX)
                .in_set(&[Selector::IpDaddr], NODES)
                .l4proto(L4Proto::Udp)
                .th_dport(ctx.vxlan_port)
                .goto(VXLAN_FROM_POD),
        )
        .rule(
            Rule::new()
                .iifname_prefix(POD_IFACE_PREFIX)
                .in_set(&[Selector::IpSaddr, Selector::IpDaddr], LOCAL_SELF)
                .mark_set(MarkOp::Or(PASS_MARK))
                .accept(),
        )
        .rule(
            Rule::new()
                .iifname_prefix(POD_IFACE_PREFIX)
                .vmap(&[Selector::IpSaddr], EGRESS_PODS),
        ),
    );
    t.add_chain(
        Chain::base(
            "output",
            ChainType::Filter,
            Hook::Output,
            priority::FILTER,
            ChainPolicy::Accept,
        )
        .rule(Rule::new().mark_set(MarkOp::Or(PASS_MARK))),
    );
    t.add_chain(
        Chain::base(
            "postrouting",
            ChainType::Filter,
            Hook::Postrouting,
            POSTROUTING_PRIORITY,
            ChainPolicy::Accept,
        )
        .rule(Rule::new().oifname(VXLAN_IFACE).accept())
        .rule(Rule::new().ct_state(established).accept())
        .rule(Rule::new().mark_bits(PASS_MARK, CmpOp::Ne, 0).accept())
        .rule(
            Rule::new()
                .oifname_prefix(POD_IFACE_PREFIX)
                .vmap(&[Selector::IpDaddr], INGRESS_PODS),
        ),
    );
    t.add_chain(
        Chain::base(
            "input",
            ChainType::Filter,
            Hook::Input,
            priority::FILTER,
            ChainPolicy::Accept,
        )
        .rule(
            Rule::new()
                .l4proto(L4Proto::Udp)
                .th_dport(ctx.vxlan_port)
                .not_in_set(&[Selector::IpSaddr], NODES)
                .goto(VXLAN_FOREIGN),
        ),
    );
    t.add_chain(drop_chain(SPOOFED, "weft drop spoofed source"));
    t.add_chain(drop_chain(VXLAN_FROM_POD, "weft drop pod to overlay port"));
    t.add_chain(drop_chain(VXLAN_FOREIGN, "weft drop overlay from non-node"));
}

/// After source NAT (100), so ingress sees the source the pod will see.
pub const POSTROUTING_PRIORITY: i32 = 200;

/// The changes from one set to another of the same name: its elements' changes if declared
/// the same, the set itself otherwise.
fn set_tx(old: &Set, set: &Set, tx: &mut Tx) {
    if old.key == set.key && old.data == set.data {
        for (k, e) in &set.elements {
            if old.elements.get(k) != Some(e) {
                tx.put_element(set.name.clone(), k.clone(), e.clone());
            }
        }
        for k in old
            .elements
            .keys()
            .filter(|k| !set.elements.contains_key(*k))
        {
            tx.delete_element(set.name.clone(), k.clone());
        }
    } else {
        tx.add_set(set.clone());
    }
}

/// The changes from one fragment to another: element changes for a set declared the same,
/// the set itself otherwise; a chain whose rules changed is rewritten.
fn fragment_tx(old: &Fragment, new: &Fragment, tx: &mut Tx) {
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            Some(o) => set_tx(o, set, tx),
            None => {
                tx.add_set(set.clone());
            }
        }
    }
    for (name, chain) in &new.chains {
        if old.chains.get(name) != Some(chain) {
            tx.put_chain(chain.clone());
        }
    }
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        tx.delete_chain(name.clone());
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        tx.delete_set(name.clone());
    }
}
