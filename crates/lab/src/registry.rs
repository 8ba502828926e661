//! The lab's Service registry: what the Kubernetes API server does to a Service before storing
//! it. Defaults (type, protocol, targetPort, policies), validation with messages naming the field
//! (`spec.externalIPs` only inside the config's `externalIPRanges`, none by default), and
//! allocation: a cluster IP from the service CIDR and node ports from the node-port range
//! (and the `healthCheckNodePort` of a LoadBalancer with `externalTrafficPolicy: Local`). It runs
//! as the store's [`Admission`], under the store's write lock, so concurrent applies never hand
//! out one address twice; allocations live on the Service objects themselves and so persist with
//! them. Load-balancer addresses are not the API server's: `weft controller` allocates them
//! (`weft_controller::lb`), as MetalLB or a cloud controller does. (It also keeps a Pod's binding to its node when
//! the Pod is re-applied, as the API server keeps what the scheduler wrote.)

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_model::cidr::Ipv4Cidr;
use weft_model::config::ClusterConfig;
use weft_model::Object;
use weft_sources::Admission;

/// Set on a LoadBalancer Service the pool could not serve, saying why (the Service stays
/// `<pending>`, as on a cloud without capacity).
pub use weft_model::annotations::LB_PROBLEM as LB_PROBLEM_ANNOTATION;
/// Kubernetes' default session-affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

pub struct ServiceRegistry {
    service_cidr: Ipv4Cidr,
    /// Reserved for the cluster DNS Service: only handed out when asked for by name.
    dns_ip: Ipv4Addr,
    node_ports: (u16, u16),
    /// Where `spec.externalIPs` may point (the config's `externalIPRanges`; empty: nowhere).
    external_ip_ranges: Vec<Ipv4Cidr>,
}

impl ServiceRegistry {
    pub fn new(config: &ClusterConfig) -> ServiceRegistry {
        ServiceRegistry {
            service_cidr: config.service_cidr,
            dns_ip: config.dns_service_ip,
            node_ports: config.node_port_range,
            external_ip_ranges: config.external_ip_ranges.clone(),
        }
    }

    /// Defaults, validates and allocates one Service, given the others as stored.
    pub fn admit_service(
        &self,
        svc: &mut Service,
        stored: Option<&Service>,
        others: &[&Service],
    ) -> Result<(), String> {
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        let old = stored.and_then(|s| s.spec.as_ref());
        let ty = spec.type_.get_or_insert_with(|| "ClusterIP".into()).clone();
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty.as_str()) {
            return Err(format!(
                "spec.type: unsupported value {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ));
        }
        // Before anything else, on every type: whoever may write a Service must not get to
        // capture an outside address with it.
        self.external_ips(spec, old)?;
        if ty == "ExternalName" {
            return admit_external_name(spec);
        }
        check_ports(spec)?;
        check_policies(spec, &ty)?;
        self.cluster_ip(spec, old, others)?;
        if ty == "NodePort" || ty == "LoadBalancer" {
            self.node_ports(spec, old, others)?;
            self.health_check_node_port(spec, &ty, old, others)?;
        } else {
            for p in spec.ports.iter_mut().flatten() {
                if p.node_port.take().is_some() {
                    // Kubernetes refuses this too: only NodePort and LoadBalancer Services have them.
                    return Err(format!(
                        "spec.ports[{}].nodePort: may not be set when type is {ty:?}",
                        p.name.clone().unwrap_or_default()
                    ));
                }
            }
        }
        if ty == "LoadBalancer" {
            // The allocator's address stays (a spec write keeps the stored status); a new
            // Service starts `<pending>`.
            if stored.is_none() && svc.status.is_none() {
                svc.status = Some(ServiceStatus {
                    load_balancer: Some(LoadBalancerStatus::default()),
                    ..Default::default()
                });
            }
        } else {
            // What the API server shows for every other type; it also clears a stored address
            // when a LoadBalancer becomes something else.
            svc.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus::default()),
                ..Default::default()
            });
            remove_annotation(svc, LB_PROBLEM_ANNOTATION);
        }
        Ok(())
    }

    /// `spec.externalIPs` must be IPv4 addresses inside `externalIPRanges` (CVE-2020-8554:
    /// otherwise anyone who may create a Service can take traffic meant for any address, and
    /// the proxy on every node would DNAT it to their pods). As upstream's
    /// DenyServiceExternalIPs, an address the stored Service already has is kept, so a Service
    /// admitted under a wider config can still be updated (and its status written); the proxy
    /// serves such an address only while it is allowed.
    fn external_ips(&self, spec: &ServiceSpec, old: Option<&ServiceSpec>) -> Result<(), String> {
        let kept: BTreeSet<&str> = old
            .and_then(|o| o.external_ips.as_ref())
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for (i, text) in spec.external_ips.iter().flatten().enumerate() {
            let ip: Ipv4Addr = text.parse().map_err(|_| {
                format!("spec.externalIPs[{i}]: {text:?}: must be a valid IPv4 address")
            })?;
            if kept.contains(text.as_str())
                || self.external_ip_ranges.iter().any(|r| r.contains(ip))
            {
                continue;
            }
            let allowed = if self.external_ip_ranges.is_empty() {
                "the cluster config's externalIPRanges allows none".to_string()
            } else {
                let ranges: Vec<String> = self
                    .external_ip_ranges
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "{ip} is not in the cluster config's externalIPRanges ({})",
                    ranges.join(", ")
                )
            };
            return Err(format!(
                "spec.externalIPs[{i}]: Forbidden: use of external IP {ip} is denied by admission control: {allowed}"
            ));
        }
        Ok(())
    }

    fn cluster_ip(
        &self,
        spec: &mut ServiceSpec,
        old: Option<&ServiceSpec>,
        others: &[&Service],
    ) -> Result<(), String> {
        let old_ip = old
            .and_then(|o| o.cluster_ip.clone())
            .filter(|ip| !ip.is_empty());
        let requested = spec.cluster_ip.clone().filter(|ip| !ip.is_empty());
        let ip = match (requested, old_ip) {
            (Some(r), Some(o)) if r != o => {
                return Err(format!(
                    "spec.clusterIP: field is immutable (is {o}, asked for {r})"
                ))
            }
            (None, Some(o)) => o,
            (Some(r), _) if r == "None" => r,
            (Some(r), old) => {
                let ip: Ipv4Addr = r
                    .parse()
                    .map_err(|_| format!("spec.clusterIP: {r:?} is not an IPv4 address"))?;
                if old.is_none() {
                    if !self.service_cidr.contains(ip)
                        || ip == self.service_cidr.network()
                        || ip == self.service_cidr.broadcast()
                    {
                        return Err(format!(
                            "spec.clusterIP: {ip} is not a usable address of the service CIDR {}",
                            self.service_cidr
                        ));
                    }
                    if let Some(owner) = others.iter().find(|s| cluster_ip(s) == Some(ip)) {
                        return Err(format!(
                            "spec.clusterIP: {ip} is already allocated to service {}",
                            name(owner)
                        ));
                    }
                }
                r
            }
            (None, None) => {
                // Sequential from the bottom, skipping the DNS address: deterministic, and
                // what a reader of `weft get svc` can predict. A bitmap of the taken indexes
                // keeps this cheap with 10k Services (one pass over them, then a word scan).
                let cidr = self.service_cidr;
                let size = cidr.size();
                let network = u32::from(cidr.network());
                let mut taken = vec![0u64; size.div_ceil(64) as usize];
                let mut mark = |ip: Ipv4Addr| {
                    if let Some(n) = u32::from(ip).checked_sub(network) {
                        if u64::from(n) < size {
                            taken[(n / 64) as usize] |= 1 << (n % 64);
                        }
                    }
                };
                mark(cidr.network());
                mark(self.dns_ip);
                mark(cidr.broadcast());
                for ip in others.iter().filter_map(|s| cluster_ip(s)) {
                    mark(ip);
                }
                let free = taken
                    .iter()
                    .enumerate()
                    .find(|(_, word)| **word != u64::MAX)
                    .map(|(i, word)| i as u64 * 64 + u64::from(word.trailing_ones()))
                    .filter(|n| *n < size)
                    .and_then(|n| cidr.nth(n))
                    .ok_or_else(|| format!("no cluster IP left in the service CIDR {cidr}"))?;
                free.to_string()
            }
        };
        spec.cluster_ips = Some(vec![ip.clone()]);
        spec.cluster_ip = Some(ip);
        if spec.cluster_ip.as_deref() != Some("None") {
            spec.ip_families = Some(vec!["IPv4".into()]);
            spec.ip_family_policy
                .get_or_insert_with(|| "SingleStack".into());
        }
        Ok(())
    }

    fn node_ports(
        &self,
        spec: &mut ServiceSpec,
        old: Option<&ServiceSpec>,
        others: &[&Service],
    ) -> Result<(), String> {
        let (lo, hi) = self.node_ports;
        let mut taken = taken_node_ports(others);
        let old_ports: Vec<_> = old.and_then(|o| o.ports.clone()).unwrap_or_default();
        let ports = spec.ports.get_or_insert_with(Vec::new);
        // Requested ports first, so an automatic pick never takes one asked for later in the list.
        for p in ports.iter().filter(|p| p.node_port.is_some()) {
            let n = p.node_port.unwrap_or_default();
            let kept = old_ports.iter().any(|o| o.node_port == Some(n));
            if !kept {
                if n < i32::from(lo) || n > i32::from(hi) {
                    return Err(format!(
                        "spec.ports[{}].nodePort: {n} is outside the node port range {lo}-{hi}",
                        p.port
                    ));
                }
                if taken.contains(&n) {
                    let owner = node_port_owner(others, n);
                    return Err(format!(
                        "spec.ports[{}].nodePort: {n} is already allocated to service {owner}",
                        p.port
                    ));
                }
            }
        }
        taken.extend(ports.iter().filter_map(|p| p.node_port));
        // This Service's own health check port (asked for, or kept from before) is not free
        // for an automatic pick either.
        taken.extend(spec.health_check_node_port);
        taken.extend(old.and_then(|o| o.health_check_node_port));
        for p in ports.iter_mut().filter(|p| p.node_port.is_none()) {
            let kept = old_ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol)
                .and_then(|o| o.node_port);
            let n = match kept {
                Some(n) => n,
                None => (i32::from(lo)..=i32::from(hi))
                    .find(|n| !taken.contains(n))
                    .ok_or_else(|| format!("no node port left in the range {lo}-{hi}"))?,
            };
            taken.insert(n);
            p.node_port = Some(n);
        }
        Ok(())
    }

    /// `spec.healthCheckNodePort`, where every node's proxy tells load balancers whether it has
    /// a local endpoint: only a LoadBalancer with `externalTrafficPolicy: Local` has one (as in
    /// Kubernetes). It is allocated from the node-port range (shared with node ports), honoured
    /// when asked for and free, immutable while needed, and dropped when the Service stops
    /// needing it, which releases it; deleting the Service releases it too.
    fn health_check_node_port(
        &self,
        spec: &mut ServiceSpec,
        ty: &str,
        old: Option<&ServiceSpec>,
        others: &[&Service],
    ) -> Result<(), String> {
        let needs = |s: &ServiceSpec, ty: &str| {
            ty == "LoadBalancer" && s.external_traffic_policy.as_deref() == Some("Local")
        };
        let old_port = old
            .filter(|o| needs(o, o.type_.as_deref().unwrap_or("ClusterIP")))
            .and_then(|o| o.health_check_node_port)
            .filter(|n| *n != 0);
        let asked = spec.health_check_node_port.filter(|n| *n != 0);
        if !needs(spec, ty) {
            // Kubernetes drops the stored port when the Service stops needing it, and refuses
            // a port asked for on a Service that cannot have one.
            if asked.is_some() && asked != old_port {
                return Err("spec.healthCheckNodePort: may only be set when type is \"LoadBalancer\" and externalTrafficPolicy is \"Local\"".into());
            }
            spec.health_check_node_port = None;
            return Ok(());
        }
        let (lo, hi) = self.node_ports;
        let n = match (asked, old_port) {
            (Some(a), Some(o)) if a != o => {
                return Err(format!(
                    "spec.healthCheckNodePort: field is immutable (is {o}, asked for {a})"
                ))
            }
            (_, Some(o)) => o,
            (Some(a), None) => {
                if a < i32::from(lo) || a > i32::from(hi) {
                    return Err(format!(
                        "spec.healthCheckNodePort: {a} is outside the node port range {lo}-{hi}"
                    ));
                }
                if taken_node_ports(others).contains(&a) {
                    return Err(format!(
                        "spec.healthCheckNodePort: {a} is already allocated to service {}",
                        node_port_owner(others, a)
                    ));
                }
                a
            }
            (None, None) => {
                let mut taken = taken_node_ports(others);
                taken.extend(spec.ports.iter().flatten().filter_map(|p| p.node_port));
                (i32::from(lo)..=i32::from(hi))
                    .find(|n| !taken.contains(n))
                    .ok_or_else(|| {
                        format!(
                            "no node port left in the range {lo}-{hi} for spec.healthCheckNodePort"
                        )
                    })?
            }
        };
        if let Some(p) = spec.ports.iter().flatten().find(|p| p.node_port == Some(n)) {
            return Err(format!(
                "spec.ports[{}].nodePort: {n} is the Service's own healthCheckNodePort",
                p.port
            ));
        }
        spec.health_check_node_port = Some(n);
        Ok(())
    }
}

impl Admission for ServiceRegistry {
    fn admit(
        &self,
        incoming: &mut Object,
        stored: Option<&Object>,
        existing: &[Object],
    ) -> Result<(), String> {
        if let (Some(pod), Some(old)) = (incoming.as_pod_mut(), stored.and_then(Object::as_pod)) {
            // The binding is the scheduler's write, not the user's: re-applying a manifest
            // without nodeName must not unbind (and so move) a running pod.
            let bound = old.spec.as_ref().and_then(|s| s.node_name.clone());
            if let (Some(spec), Some(node)) = (pod.spec.as_mut(), bound) {
                spec.node_name.get_or_insert(node);
            }
            return Ok(());
        }
        let Some(svc) = incoming.as_service_mut() else {
            return Ok(());
        };
        let others: Vec<&Service> = existing
            .iter()
            .filter_map(Object::as_service)
            .filter(|s| {
                s.metadata.namespace != svc.metadata.namespace
                    || s.metadata.name != svc.metadata.name
            })
            .collect();
        let stored = stored.and_then(Object::as_service);
        // What the endpoints controller reported stays until it says otherwise: re-applying an
        // unchanged manifest (a PUT without the annotation) is then "unchanged", not a flicker
        // of the annotation. The controller says otherwise by writing it empty, which removes it.
        let key = weft_model::annotations::ENDPOINTS_PROBLEM;
        let reported = stored
            .and_then(|s| s.metadata.annotations.as_ref())
            .and_then(|a| a.get(key))
            .cloned();
        let annotations = svc
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        match annotations.get(key).map(String::as_str) {
            Some("") => {
                annotations.remove(key);
            }
            Some(_) => {}
            None => {
                if let Some(problem) = reported {
                    annotations.insert(key.to_string(), problem);
                }
            }
        }
        if annotations.is_empty() {
            svc.metadata.annotations = None;
        }
        self.admit_service(svc, stored, &others)
    }
}

fn admit_external_name(spec: &mut ServiceSpec) -> Result<(), String> {
    let target = spec.external_name.clone().unwrap_or_default();
    if target.is_empty() {
        return Err("spec.externalName: required when type is \"ExternalName\"".into());
    }
    weft_model::names::check_rfc1123_subdomain(target.trim_end_matches('.'))
        .map_err(|e| format!("spec.externalName {target:?}: {e}"))?;
    if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
        return Err("spec.clusterIP: must be empty for type \"ExternalName\"".into());
    }
    Ok(())
}

fn check_ports(spec: &mut ServiceSpec) -> Result<(), String> {
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.get_or_insert_with(Vec::new);
    if ports.is_empty() && !headless {
        return Err(
            "spec.ports: at least one port is required (only headless Services may have none)"
                .into(),
        );
    }
    let many = ports.len() > 1;
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let protocol = p.protocol.get_or_insert_with(|| "TCP".into()).clone();
        if !["TCP", "UDP", "SCTP"].contains(&protocol.as_str()) {
            return Err(format!("spec.ports[{i}].protocol: unsupported value {protocol:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""));
        }
        if !(1..=65535).contains(&p.port) {
            return Err(format!(
                "spec.ports[{i}].port: {}: must be between 1 and 65535, inclusive",
                p.port
            ));
        }
        if !seen.insert((p.port, protocol.clone())) {
            return Err(format!(
                "spec.ports[{i}]: duplicate port {}/{protocol}",
                p.port
            ));
        }
        match p.name.as_deref() {
            Some(n) if !n.is_empty() => {
                weft_model::names::check_rfc1123_label(n)
                    .map_err(|e| format!("spec.ports[{i}].name {n:?}: {e}"))?;
                if !names.insert(n.to_string()) {
                    return Err(format!("spec.ports[{i}].name: duplicate name {n:?}"));
                }
            }
            _ if many => {
                return Err(format!(
                    "spec.ports[{i}].name: required when a Service has more than one port"
                ))
            }
            _ => {}
        }
        match p.target_port.get_or_insert(IntOrString::Int(p.port)) {
            IntOrString::Int(t) if !(1..=65535).contains(t) => {
                return Err(format!(
                    "spec.ports[{i}].targetPort: {t}: must be between 1 and 65535, inclusive"
                ))
            }
            IntOrString::String(name) => check_port_name(name)
                .map_err(|e| format!("spec.ports[{i}].targetPort {name:?}: {e}"))?,
            IntOrString::Int(_) => {}
        }
    }
    Ok(())
}

/// An IANA service name, as a named container port must be: 1-15 characters, lowercase letters,
/// digits and '-', at least one letter, no leading/trailing or double '-'.
fn check_port_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 15 {
        return Err("must be 1 to 15 characters".into());
    }
    if !ok_chars || !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("must be lowercase letters, digits and '-', with at least one letter".into());
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err("must not start or end with '-' or contain \"--\"".into());
    }
    Ok(())
}

fn check_policies(spec: &mut ServiceSpec, ty: &str) -> Result<(), String> {
    let affinity = spec
        .session_affinity
        .get_or_insert_with(|| "None".into())
        .clone();
    match affinity.as_str() {
        "None" => spec.session_affinity_config = None,
        "ClientIP" => {
            let cfg = spec.session_affinity_config.get_or_insert_with(Default::default);
            let client = cfg.client_ip.get_or_insert_with(Default::default);
            let t = *client.timeout_seconds.get_or_insert(DEFAULT_AFFINITY_TIMEOUT);
            if !(1..=86400).contains(&t) {
                return Err(format!(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds: {t} must be between 1 and 86400"
                ));
            }
        }
        other => return Err(format!("spec.sessionAffinity: unsupported value {other:?}: supported values: \"ClientIP\", \"None\"")),
    }
    let external = ty == "NodePort"
        || ty == "LoadBalancer"
        || spec.external_ips.as_ref().is_some_and(|e| !e.is_empty());
    match spec.external_traffic_policy.as_deref() {
        None if external => spec.external_traffic_policy = Some("Cluster".into()),
        None => {}
        Some("Cluster") | Some("Local") if external => {}
        Some(p @ ("Cluster" | "Local")) => {
            return Err(format!(
                "spec.externalTrafficPolicy: may only be set for NodePort or LoadBalancer Services or with externalIPs (is {p:?})"
            ))
        }
        Some(p) => return Err(format!("spec.externalTrafficPolicy: unsupported value {p:?}: supported values: \"Cluster\", \"Local\"")),
    }
    match spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into()).as_str() {
        "Cluster" | "Local" => {}
        p => return Err(format!("spec.internalTrafficPolicy: unsupported value {p:?}: supported values: \"Cluster\", \"Local\"")),
    }
    Ok(())
}

/// Every node port the other Services hold: their ports' and their health check ports.
fn taken_node_ports(others: &[&Service]) -> BTreeSet<i32> {
    let mut taken = BTreeSet::new();
    for spec in others.iter().filter_map(|s| s.spec.as_ref()) {
        taken.extend(spec.ports.iter().flatten().filter_map(|p| p.node_port));
        taken.extend(spec.health_check_node_port);
    }
    taken
}

/// `namespace/name` of the other Service holding node port `n` (as a port or health check port).
fn node_port_owner(others: &[&Service], n: i32) -> String {
    others
        .iter()
        .find(|s| {
            s.spec.iter().any(|sp| {
                sp.health_check_node_port == Some(n)
                    || sp.ports.iter().flatten().any(|q| q.node_port == Some(n))
            })
        })
        .map(|s| name(s))
        .unwrap_or_default()
}

fn cluster_ip(s: &Service) -> Option<Ipv4Addr> {
    s.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()
}

fn name(s: &Service) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or("default"),
        s.metadata.name.as_deref().unwrap_or_default()
    )
}

fn remove_annotation(svc: &mut Service, key: &str) {
    if let Some(a) = svc.metadata.annotations.as_mut() {
        a.remove(key);
        if a.is_empty() {
            svc.metadata.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests;
