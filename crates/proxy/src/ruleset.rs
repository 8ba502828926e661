//! Service views -> the nftables table, as data that renders two ways: a whole-table replacement
//! (one transaction: the table never exists half-built) and the transaction that turns a
//! previously loaded ruleset into this one (only the changed chains, map elements and sets).
//!
//! Packet path: the `services` chain (nat prerouting and output) looks the destination up in
//! verdict maps keyed by `address . protocol . port` (cluster IPs and external addresses) and
//! `protocol . port` (node ports, for this node's address), and jumps to that service port's
//! chain, which DNATs to an endpoint picked by `numgen random`. A lookup costs the same with 10
//! or 10,000 Services. Addresses with no endpoints are in the `no_endpoint_*` maps instead, which
//! the filter hooks use to reject new connections (connection refused, not a timeout). Every
//! cluster IP is in the `cluster_ips` set: a new connection still addressed to one in the filter
//! forward and output hooks (after DNAT) matched none of its ports, and is rejected too, as
//! kube-proxy's `cluster-ips-check` does (a client on a Service's old port is refused at once).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::view::{Endpoint, ServicePortView};
use crate::{ProxyNode, MASQUERADE_MARK};

/// The table (family ip) that holds all of it.
pub const TABLE: &str = "weft_services";

/// A compiled proxy ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The endpoints of every multi-endpoint dispatch, in one map: index -> `ip . port`. A
    /// dispatch owns the block `[base, base + n)`: it stores `numgen random mod n offset base`
    /// in the connection's mark and jumps to `backend_dnat`, the only rules that use the map.
    /// (Not a map per Service: the kernel walks a table's list of sets to name or find one, and
    /// checks every element of a data map against every rule using it, so ten thousand
    /// per-service maps, or ten thousand rules on one map, load in seconds instead of ms.)
    backends: BTreeMap<u32, String>,
    /// The fixed part (hooks, helper chains, this node's address): a change reloads everything.
    base: String,
    /// Service, external and endpoint chains: name -> rules.
    chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets: name -> timeout in seconds.
    sets: BTreeMap<String, u32>,
    /// Verdict maps: map name -> key -> verdict.
    maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// `ip . ip` of every endpoint on this node: traffic from a pod to itself through a Service.
    /// (With how many service ports share each entry, so one leaving keeps it for the others.)
    hairpin: BTreeMap<String, usize>,
    /// Every Service's cluster IP, with how many service ports have it (so the address stays
    /// while any of its ports does).
    cluster_ips: BTreeMap<String, usize>,
    /// The backends-map slot of each dispatching chain.
    slots: BTreeMap<String, u32>,
}

const MAPS: [(&str, &str); 4] = [
    ("service_ips", "ipv4_addr . inet_proto . inet_service"),
    ("service_nodeports", "inet_proto . inet_service"),
    (
        "no_endpoint_services",
        "ipv4_addr . inet_proto . inet_service",
    ),
    ("no_endpoint_nodeports", "inet_proto . inet_service"),
];

/// Endpoints one dispatch can balance over (the size of its block in the backends map).
pub const MAX_ENDPOINTS_PER_DISPATCH: usize = 4096;
const BLOCK_BITS: u32 = 12;
const SLOT_BITS: u32 = 19;

/// A multi-endpoint DNAT waiting for its block of the backends map.
struct PendingDispatch {
    chain: String,
    rule: usize,
    endpoints: Vec<Endpoint>,
}

/// Compiles the ruleset for `node` from the service views.
pub fn compile(node: &ProxyNode, views: &[ServicePortView]) -> Ruleset {
    let mut rs = Ruleset {
        base: base(node),
        ..Ruleset::default()
    };
    for (name, _) in MAPS {
        rs.maps.insert(name, BTreeMap::new());
    }
    let mut pending = Vec::new();
    for v in views {
        add_service_port(&mut rs, &mut pending, node, v);
    }
    place_dispatches(&mut rs, pending);
    rs
}

/// Gives each dispatch its block: the slot its chain name hashes to, or the next free one. Done
/// in name order, so the same services always get the same blocks, and a service's block only
/// moves when a new one lands on it first (then both are rewritten).
fn place_dispatches(rs: &mut Ruleset, mut pending: Vec<PendingDispatch>) {
    pending.sort_by(|a, b| a.chain.cmp(&b.chain));
    let mut taken: BTreeSet<u32> = rs.slots.values().copied().collect();
    for d in pending {
        let slot = match rs.slots.get(&d.chain) {
            Some(slot) => *slot,
            None => {
                let mut slot = home_slot(&d.chain);
                while !taken.insert(slot) {
                    slot = slot % ((1 << SLOT_BITS) - 1) + 1;
                }
                rs.slots.insert(d.chain.clone(), slot);
                slot
            }
        };
        let base = slot << BLOCK_BITS;
        let eps = &d.endpoints[..d.endpoints.len().min(MAX_ENDPOINTS_PER_DISPATCH)];
        for (i, e) in eps.iter().enumerate() {
            rs.backends
                .insert(base + i as u32, format!("{} . {}", e.ip, e.port));
        }
        let rule = format!(
            "ct mark set numgen random mod {} offset {base} goto backend_dnat",
            eps.len()
        );
        if let Some(r) = rs
            .chains
            .get_mut(&d.chain)
            .and_then(|rules| rules.get_mut(d.rule))
        {
            *r = rule;
        }
    }
}

/// The slot a dispatching chain's name hashes to (1..2^19).
fn home_slot(chain: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(chain.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % ((1 << SLOT_BITS) - 1) + 1
}

/// The contribution of one service port alone: its chains, sets, map elements and hairpin
/// entries, and its dispatches still to be placed.
fn part(node: &ProxyNode, v: &ServicePortView) -> (Ruleset, Vec<PendingDispatch>) {
    let mut rs = Ruleset::default();
    for (name, _) in MAPS {
        rs.maps.insert(name, BTreeMap::new());
    }
    let mut pending = Vec::new();
    add_service_port(&mut rs, &mut pending, node, v);
    (rs, pending)
}

impl Ruleset {
    /// Replaces one service port's contribution (`old` -> `new`; None for none) in this
    /// ruleset and returns the nft statements that make the same change in the kernel: only
    /// that service port's chains, sets and elements are compiled, compared and written, so a
    /// change costs the same with 10 or 10,000 Services. The result equals a whole `compile`
    /// of the new views, except that a dispatch keeps its slot where a whole compile might
    /// have ordered a hash collision the other way.
    pub fn change(
        &mut self,
        node: &ProxyNode,
        old: Option<&ServicePortView>,
        new: Option<&ServicePortView>,
    ) -> String {
        let (old_part, old_pending) = old.map(|v| part(node, v)).unwrap_or_default();
        let (new_part, new_pending) = new.map(|v| part(node, v)).unwrap_or_default();
        // Everything either side touches, for the before/after comparison.
        let chains: BTreeSet<String> = old_part
            .chains
            .keys()
            .chain(new_part.chains.keys())
            .cloned()
            .collect();
        let sets: BTreeSet<String> = old_part
            .sets
            .keys()
            .chain(new_part.sets.keys())
            .cloned()
            .collect();
        let mut elements: BTreeSet<(&'static str, String)> = BTreeSet::new();
        for p in [&old_part, &new_part] {
            for (map, entries) in &p.maps {
                elements.extend(entries.keys().map(|k| (*map, k.clone())));
            }
        }
        let hairpin: BTreeSet<String> = old_part
            .hairpin
            .keys()
            .chain(new_part.hairpin.keys())
            .cloned()
            .collect();
        let cluster_ips: BTreeSet<String> = old_part
            .cluster_ips
            .keys()
            .chain(new_part.cluster_ips.keys())
            .cloned()
            .collect();
        let mut blocks: BTreeSet<u32> = BTreeSet::new();
        for d in &old_pending {
            blocks.extend(self.slots.get(&d.chain));
        }
        let before = self.subset(&chains, &sets, &elements, &hairpin, &cluster_ips, &blocks);

        // Take the old contribution out.
        for c in old_part.chains.keys() {
            self.chains.remove(c);
        }
        for name in old_part.sets.keys() {
            self.sets.remove(name);
        }
        for (map, entries) in &old_part.maps {
            if let Some(m) = self.maps.get_mut(map) {
                for k in entries.keys() {
                    m.remove(k);
                }
            }
        }
        uncount(&mut self.hairpin, &old_part.hairpin);
        uncount(&mut self.cluster_ips, &old_part.cluster_ips);
        let kept: BTreeSet<String> = new_pending.iter().map(|d| d.chain.clone()).collect();
        for d in &old_pending {
            let slot = if kept.contains(&d.chain) {
                self.slots.get(&d.chain).copied()
            } else {
                self.slots.remove(&d.chain)
            };
            if let Some(slot) = slot {
                let base = slot << BLOCK_BITS;
                let stale: Vec<u32> = self
                    .backends
                    .range(base..base + (1 << BLOCK_BITS))
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    self.backends.remove(&k);
                }
            }
        }
        // Put the new one in.
        for (c, rules) in new_part.chains {
            self.chains.insert(c, rules);
        }
        self.sets.extend(new_part.sets);
        for (map, entries) in new_part.maps {
            self.maps.entry(map).or_default().extend(entries);
        }
        for (k, n) in new_part.hairpin {
            *self.hairpin.entry(k).or_default() += n;
        }
        for (k, n) in new_part.cluster_ips {
            *self.cluster_ips.entry(k).or_default() += n;
        }
        place_dispatches(self, new_pending);
        for c in &kept {
            blocks.extend(self.slots.get(c));
        }
        let after = self.subset(&chains, &sets, &elements, &hairpin, &cluster_ips, &blocks);
        after.update_script(&before).unwrap_or_default()
    }

    /// Whether this ruleset was compiled for `node` (its fixed part matches).
    pub fn base_for(&self, node: &ProxyNode) -> bool {
        self.base == base(node)
    }

    /// A ruleset holding only the given parts of this one (same base), to diff a change.
    fn subset(
        &self,
        chains: &BTreeSet<String>,
        sets: &BTreeSet<String>,
        elements: &BTreeSet<(&'static str, String)>,
        hairpin: &BTreeSet<String>,
        cluster_ips: &BTreeSet<String>,
        blocks: &BTreeSet<u32>,
    ) -> Ruleset {
        let mut sub = Ruleset {
            base: self.base.clone(),
            ..Ruleset::default()
        };
        for (name, _) in MAPS {
            sub.maps.insert(name, BTreeMap::new());
        }
        for c in chains {
            if let Some(rules) = self.chains.get(c) {
                sub.chains.insert(c.clone(), rules.clone());
            }
        }
        for name in sets {
            if let Some(t) = self.sets.get(name) {
                sub.sets.insert(name.clone(), *t);
            }
        }
        for (map, key) in elements {
            if let Some(v) = self.maps.get(map).and_then(|m| m.get(key)) {
                sub.maps
                    .entry(map)
                    .or_default()
                    .insert(key.clone(), v.clone());
            }
        }
        for k in hairpin {
            if let Some(n) = self.hairpin.get(k) {
                sub.hairpin.insert(k.clone(), *n);
            }
        }
        for k in cluster_ips {
            if let Some(n) = self.cluster_ips.get(k) {
                sub.cluster_ips.insert(k.clone(), *n);
            }
        }
        for slot in blocks {
            let base = slot << BLOCK_BITS;
            for (k, v) in self.backends.range(base..base + (1 << BLOCK_BITS)) {
                sub.backends.insert(*k, v.clone());
            }
        }
        sub
    }
}

/// Takes `gone`'s counts off `counts`, dropping the keys nothing holds any more.
fn uncount(counts: &mut BTreeMap<String, usize>, gone: &BTreeMap<String, usize>) {
    for (k, n) in gone {
        if let Some(count) = counts.get_mut(k) {
            *count = count.saturating_sub(*n);
            if *count == 0 {
                counts.remove(k);
            }
        }
    }
}

fn base(node: &ProxyNode) -> String {
    let mark = format!("{MASQUERADE_MARK:#x}");
    let mut b = String::new();
    let _ = writeln!(
        b,
        "  set nodeport_ips {{ type ipv4_addr; elements = {{ {} }}; }}",
        node.ip
    );
    for (name, key) in MAPS {
        let _ = writeln!(b, "  map {name} {{ type {key} : verdict; }}");
    }
    b.push_str("  set hairpin { type ipv4_addr . ipv4_addr; }\n");
    b.push_str("  set cluster_ips { type ipv4_addr; }\n");
    b.push_str("  map backends { typeof ct mark : ip daddr . tcp dport; }\n");
    let chains = [
        ("nat_prerouting", "type nat hook prerouting priority dstnat; policy accept; jump services;".to_string()),
        ("nat_output", "type nat hook output priority -100; policy accept; jump services;".to_string()),
        ("nat_postrouting", "type nat hook postrouting priority srcnat; policy accept; jump masquerading;".to_string()),
        (
            "masquerading",
            format!(
                "ip saddr . ip daddr @hairpin masquerade fully-random; meta mark & {mark} == 0 return; meta mark set meta mark ^ {mark}; masquerade fully-random;"
            ),
        ),
        ("mark_for_masquerade", format!("meta mark set meta mark | {mark};")),
        (
            "services",
            "ip daddr . meta l4proto . th dport vmap @service_ips; ip daddr @nodeport_ips meta l4proto . th dport vmap @service_nodeports;"
                .to_string(),
        ),
        (
            "filter_input",
            "type filter hook input priority filter; policy accept; ct state new jump endpoints_check; ct state new ip daddr @nodeport_ips meta l4proto . th dport vmap @no_endpoint_nodeports;".to_string(),
        ),
        // After DNAT: a new connection still addressed to a cluster IP matched none of its
        // ports (or none of its endpoints: endpoints_check has refused those already).
        ("filter_forward", "type filter hook forward priority filter; policy accept; ct state new jump endpoints_check; ct state new jump cluster_ips_check;".to_string()),
        (
            "filter_output",
            "type filter hook output priority filter; policy accept; ct state new jump endpoints_check; ct state new ip daddr @nodeport_ips meta l4proto . th dport vmap @no_endpoint_nodeports; ct state new jump cluster_ips_check;".to_string(),
        ),
        ("endpoints_check", "ip daddr . meta l4proto . th dport vmap @no_endpoint_services;".to_string()),
        ("cluster_ips_check", "ip daddr @cluster_ips reject;".to_string()),
        ("reject_chain", "reject;".to_string()),
        (
            "backend_dnat",
            "meta l4proto tcp dnat ip to ct mark map @backends; meta l4proto udp dnat ip to ct mark map @backends; meta l4proto sctp dnat ip to ct mark map @backends;"
                .to_string(),
        ),
    ];
    for (name, body) in chains {
        let _ = writeln!(b, "  chain {name} {{ {body} }}");
    }
    b
}

fn add_service_port(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    node: &ProxyNode,
    v: &ServicePortView,
) {
    let id = v.id();
    let proto = v.protocol.nft();
    let svc_chain = format!("svc-{id}");
    let ext_chain = format!("ext-{id}");
    let has_external = v.node_port.is_some() || !v.external_ips.is_empty();
    if let Some(ip) = v.cluster_ip {
        *rs.cluster_ips.entry(ip.to_string()).or_default() += 1;
    }

    if v.endpoints.is_empty() {
        // Nothing serves it anywhere: refuse new connections instead of blackholing them.
        let reject = "goto reject_chain".to_string();
        let map = rs.maps.get_mut("no_endpoint_services").expect("declared");
        for ip in v.cluster_ip.iter().chain(&v.external_ips) {
            map.insert(format!("{ip} . {proto} . {}", v.port), reject.clone());
        }
        if let Some(np) = v.node_port {
            rs.maps
                .get_mut("no_endpoint_nodeports")
                .expect("declared")
                .insert(format!("{proto} . {np}"), reject);
        }
        return;
    }

    for ep in v.local_endpoints.iter() {
        *rs.hairpin
            .entry(format!("{} . {}", ep.ip, ep.ip))
            .or_default() += 1;
    }

    // Traffic to the cluster IP: from pods, or masqueraded when it comes from anywhere else (the
    // node itself), so replies come back through this node.
    let mut rules = vec![format!(
        "ip saddr != {} jump mark_for_masquerade",
        node.cluster_cidr
    )];
    rules.extend(dispatch(
        rs,
        pending,
        &svc_chain,
        rules.len(),
        v,
        v.internal_endpoints(),
    ));
    rs.chains.insert(svc_chain.clone(), rules);
    if let Some(ip) = v.cluster_ip {
        rs.maps.get_mut("service_ips").expect("declared").insert(
            format!("{ip} . {proto} . {}", v.port),
            format!("goto {svc_chain}"),
        );
    }

    if has_external {
        let mut rules = Vec::new();
        if v.external_local {
            // Pods and the node itself get cluster-wide behaviour; outside clients keep their
            // address and reach only this node's endpoints (none here: dropped, as kube-proxy does).
            rules.push(format!("ip saddr {} goto {svc_chain}", node.cluster_cidr));
            rules.push("fib saddr type local jump mark_for_masquerade".to_string());
            rules.push(format!("fib saddr type local goto {svc_chain}"));
        } else {
            rules.push("jump mark_for_masquerade".to_string());
        }
        let at = rules.len();
        rules.extend(dispatch(
            rs,
            pending,
            &ext_chain,
            at,
            v,
            v.external_endpoints(),
        ));
        rs.chains.insert(ext_chain.clone(), rules);
        let map = rs.maps.get_mut("service_ips").expect("declared");
        for ip in &v.external_ips {
            map.insert(
                format!("{ip} . {proto} . {}", v.port),
                format!("goto {ext_chain}"),
            );
        }
        if let Some(np) = v.node_port {
            rs.maps
                .get_mut("service_nodeports")
                .expect("declared")
                .insert(format!("{proto} . {np}"), format!("goto {ext_chain}"));
        }
    }
}

/// The rules that pick one of `eps` and DNAT to it (or drop, when a local policy leaves none).
/// They start at index `at` of `chain`; a multi-endpoint DNAT is left as a placeholder there
/// until [`place_dispatches`] gives it its block of the backends map.
fn dispatch(
    rs: &mut Ruleset,
    pending: &mut Vec<PendingDispatch>,
    chain: &str,
    at: usize,
    v: &ServicePortView,
    eps: &[Endpoint],
) -> Vec<String> {
    let proto = v.protocol.nft();
    if eps.is_empty() {
        return vec!["drop".to_string()];
    }
    let Some(timeout) = v.affinity_timeout else {
        if let [ep] = eps {
            return vec![format!(
                "meta l4proto {proto} dnat ip to {}:{}",
                ep.ip, ep.port
            )];
        }
        pending.push(PendingDispatch {
            chain: chain.to_string(),
            rule: at,
            endpoints: eps.to_vec(),
        });
        return vec![String::new()];
    };
    // Session affinity: one chain and one timed set of client addresses per endpoint; a client
    // found in an endpoint's set goes back to it, and each packet refreshes the timer.
    let mut rules = Vec::new();
    let mut targets = Vec::new();
    for ep in eps {
        let key = format!("{}__{}/{}", v.id(), ep.ip, ep.port);
        let (chain, set) = (format!("ep-{key}"), format!("aff-{key}"));
        rs.sets.insert(set.clone(), timeout);
        rs.chains.insert(
            chain.clone(),
            vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat ip to {}:{}", ep.ip, ep.port),
            ],
        );
        rules.push(format!("ip saddr @{set} goto {chain}"));
        targets.push(chain);
    }
    let arms: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} : goto {c}"))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        targets.len(),
        arms.join(", ")
    ));
    rules
}

impl Ruleset {
    /// The whole table, replacing any previous one in one transaction.
    pub fn full_script(&self) -> String {
        let mut s = String::with_capacity(256 + self.chains.len() * 200);
        let _ = writeln!(
            s,
            "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{"
        );
        s.push_str(&self.base);
        for (name, timeout) in &self.sets {
            let _ = writeln!(s, "  {}", set_decl(name, *timeout));
        }
        for (name, rules) in &self.chains {
            let _ = writeln!(s, "  chain {name} {{\n    {}\n  }}", rules.join("\n    "));
        }
        s.push_str("}\n");
        for (map, elements) in &self.maps {
            add_elements(
                &mut s,
                map,
                elements.iter().map(|(k, v)| format!("{k} : {v}")),
            );
        }
        add_elements(&mut s, "hairpin", self.hairpin.keys().cloned());
        add_elements(&mut s, "cluster_ips", self.cluster_ips.keys().cloned());
        add_elements(
            &mut s,
            "backends",
            self.backends.iter().map(|(k, v)| format!("{k} : {v}")),
        );
        s
    }

    /// The transaction turning `old` (what is loaded) into `self`, or None when the fixed part
    /// differs and only a full reload will do. Empty when nothing changed.
    pub fn update_script(&self, old: &Ruleset) -> Option<String> {
        if self.base != old.base {
            return None;
        }
        let mut s = String::new();
        for (name, timeout) in &self.sets {
            if old.sets.get(name) != Some(timeout) {
                if old.sets.contains_key(name) {
                    // A new timeout needs a new set; the chains using it are rewritten below.
                    let _ = writeln!(s, "flush chain ip {TABLE} ep-{}", &name[4..]);
                    let _ = writeln!(s, "delete set ip {TABLE} {name}");
                }
                let _ = writeln!(
                    s,
                    "add {}",
                    set_decl(name, *timeout).replacen("set ", &format!("set ip {TABLE} "), 1)
                );
            }
        }
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            let _ = writeln!(s, "add chain ip {TABLE} {name}");
        }
        for (name, rules) in &self.chains {
            let before = old.chains.get(name);
            if before == Some(rules) && !self.sets_changed_for(name, old) {
                continue;
            }
            if before.is_some() {
                let _ = writeln!(s, "flush chain ip {TABLE} {name}");
            }
            for r in rules {
                let _ = writeln!(s, "add rule ip {TABLE} {name} {r}");
            }
        }
        for (map, elements) in &self.maps {
            let empty = BTreeMap::new();
            let before = old.maps.get(map).unwrap_or(&empty);
            let gone: Vec<String> = before
                .iter()
                .filter(|(k, v)| elements.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            delete_elements(&mut s, map, gone);
            let new: Vec<String> = elements
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, v)| format!("{k} : {v}"))
                .collect();
            add_elements(&mut s, map, new.into_iter());
        }
        set_update(&mut s, "hairpin", &old.hairpin, &self.hairpin);
        set_update(&mut s, "cluster_ips", &old.cluster_ips, &self.cluster_ips);
        let gone: Vec<String> = old
            .backends
            .iter()
            .filter(|(k, v)| self.backends.get(*k) != Some(v))
            .map(|(k, _)| k.to_string())
            .collect();
        delete_elements(&mut s, "backends", gone);
        add_elements(
            &mut s,
            "backends",
            self.backends
                .iter()
                .filter(|(k, v)| old.backends.get(*k) != Some(v))
                .map(|(k, v)| format!("{k} : {v}")),
        );
        // Chains and sets nobody refers to any more go last: first emptied (dropping their own
        // jumps), then deleted.
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|n| !self.chains.contains_key(*n))
            .collect();
        for name in &gone {
            let _ = writeln!(s, "flush chain ip {TABLE} {name}");
        }
        for name in &gone {
            let _ = writeln!(s, "delete chain ip {TABLE} {name}");
        }
        for name in old.sets.keys().filter(|n| !self.sets.contains_key(*n)) {
            let _ = writeln!(s, "delete set ip {TABLE} {name}");
        }
        Some(s)
    }

    /// An endpoint chain whose affinity set was recreated must be rewritten to refer to it.
    fn sets_changed_for(&self, chain: &str, old: &Ruleset) -> bool {
        chain
            .strip_prefix("ep-")
            .map(|key| format!("aff-{key}"))
            .is_some_and(|set| {
                old.sets.contains_key(&set) && old.sets.get(&set) != self.sets.get(&set)
            })
    }

    /// How many service-port, external and endpoint chains the ruleset holds.
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }
}

/// The statements turning a counted set's keys from `old` into `new` (counts are ours alone).
fn set_update(
    s: &mut String,
    set: &str,
    old: &BTreeMap<String, usize>,
    new: &BTreeMap<String, usize>,
) {
    let gone = old.keys().filter(|k| !new.contains_key(*k)).cloned();
    delete_elements(s, set, gone.collect());
    add_elements(
        s,
        set,
        new.keys().filter(|k| !old.contains_key(*k)).cloned(),
    );
}

fn set_decl(name: &str, timeout: u32) -> String {
    format!("set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}")
}

/// Element statements in chunks, so one statement never grows without bound.
fn add_elements(s: &mut String, set: &str, elements: impl Iterator<Item = String>) {
    let all: Vec<String> = elements.collect();
    for chunk in all.chunks(1000) {
        let _ = writeln!(s, "add element ip {TABLE} {set} {{ {} }}", chunk.join(", "));
    }
}

fn delete_elements(s: &mut String, set: &str, keys: Vec<String>) {
    for chunk in keys.chunks(1000) {
        let _ = writeln!(
            s,
            "delete element ip {TABLE} {set} {{ {} }}",
            chunk.join(", ")
        );
    }
}

#[cfg(test)]
mod tests;
