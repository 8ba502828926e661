//! Load-balancer address allocation, what MetalLB's controller (or a cloud's) does: every
//! `type: LoadBalancer` Service gets an address from the pool of the cluster config in
//! `status.loadBalancer.ingress`, or stays `<pending>` with the reason in its
//! [`LB_PROBLEM`] annotation. Services of another `loadBalancerClass` are some other
//! controller's and left alone.
//!
//! [`allocate`] is pure and stable: an address once given stays with its Service (unless the
//! Service asks for another with `spec.loadBalancerIP`); a requested address is honoured when it
//! is in the pool and free; the rest take the lowest free address, oldest Service first. The
//! allocations live on the Services themselves, so a restarted controller finds them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use weft_model::annotations::LB_PROBLEM;
use weft_model::cidr::Ipv4Cidr;
use weft_view::{Interest, NsName, Reconciler, Shared, Wake};

use crate::writer::{Failures, WriteError, Writer};

/// The `spec.loadBalancerClass` weft's allocator serves (besides Services with none).
pub const LOAD_BALANCER_CLASS: &str = "weft.dev/load-balancer";

/// What one LoadBalancer Service should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocation {
    Address(Ipv4Addr),
    /// None can be given: why.
    Pending(String),
}

/// Whether weft allocates for `svc`.
pub fn serves(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == LOAD_BALANCER_CLASS)
}

/// The address a Service shows now.
pub fn current(svc: &Service) -> Option<Ipv4Addr> {
    weft_model::service::load_balancer_ingress(svc)
        .first()?
        .parse()
        .ok()
}

fn requested(svc: &Service) -> Option<&str> {
    svc.spec
        .as_ref()?
        .load_balancer_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

/// The allocation of every Service weft serves among `services`.
pub fn allocate<'a>(
    services: impl IntoIterator<Item = (&'a NsName, &'a Service)>,
    pool: Ipv4Cidr,
) -> BTreeMap<NsName, Allocation> {
    let usable =
        |ip: &Ipv4Addr| pool.contains(*ip) && *ip != pool.network() && *ip != pool.broadcast();
    let mut ours: Vec<(&NsName, &Service)> =
        services.into_iter().filter(|(_, s)| serves(s)).collect();
    // Oldest first, so on a clash the Service that had an address first keeps it.
    ours.sort_by_key(|(k, s)| (s.metadata.creation_timestamp.as_ref().map(|t| t.0), *k));
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    // What is held stays held, unless the Service now asks for another address.
    for (key, svc) in &ours {
        let Some(ip) = current(svc).filter(usable) else {
            continue;
        };
        let keeps = requested(svc).is_none_or(|r| r.parse() == Ok(ip));
        if keeps && taken.insert(ip) {
            out.insert((*key).clone(), Allocation::Address(ip));
        }
    }
    for (key, svc) in &ours {
        if out.contains_key(*key) {
            continue;
        }
        let allocation = match requested(svc) {
            Some(r) => match r.parse::<Ipv4Addr>() {
                Ok(ip) if !usable(&ip) => Allocation::Pending(format!(
                    "spec.loadBalancerIP {ip} is not in the pool {pool}"
                )),
                Ok(ip) if !taken.insert(ip) => {
                    Allocation::Pending(format!("spec.loadBalancerIP {ip} is already in use"))
                }
                Ok(ip) => Allocation::Address(ip),
                Err(_) => {
                    Allocation::Pending(format!("spec.loadBalancerIP {r:?} is not an IPv4 address"))
                }
            },
            None => match (1..pool.size().saturating_sub(1))
                .filter_map(|n| pool.nth(n))
                .find(|ip| !taken.contains(ip))
            {
                Some(ip) => {
                    taken.insert(ip);
                    Allocation::Address(ip)
                }
                None => Allocation::Pending(format!(
                    "the load-balancer pool {pool} is exhausted ({} addresses in use)",
                    taken.len()
                )),
            },
        };
        out.insert((*key).clone(), allocation);
    }
    out
}

/// The allocator as a reconciler of the view.
pub struct Allocator {
    writer: Writer,
    pool: Ipv4Cidr,
}

impl Allocator {
    pub fn new(writer: Writer, pool: Ipv4Cidr) -> Allocator {
        Allocator { writer, pool }
    }
}

/// A write one Service needs.
struct Fix {
    key: NsName,
    /// The status to set, if it differs.
    status: Option<serde_json::Value>,
    /// The problem annotation to set (Some(None): remove), if it differs.
    problem: Option<Option<String>>,
}

impl Reconciler for Allocator {
    type Error = WriteError;

    fn name(&self) -> &'static str {
        "load-balancer"
    }

    fn interest(&self) -> Interest {
        Interest {
            services: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, _wake: Wake) {
        // Every pass decides from all LoadBalancer Services: an allocation depends on the others.
    }

    fn resync_period(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), WriteError> {
        let fixes: Vec<Fix> = {
            let view = shared.read();
            let plan = allocate(view.services(), self.pool);
            plan.into_iter()
                .filter_map(|(key, allocation)| {
                    let svc = view.service(&key)?;
                    let (ip, problem) = match allocation {
                        Allocation::Address(ip) => (Some(ip), None),
                        Allocation::Pending(why) => (None, Some(why)),
                    };
                    let has_problem = svc
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(LB_PROBLEM))
                        .cloned();
                    let status = (current(svc) != ip).then(|| match ip {
                        Some(ip) => json!({"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}),
                        None => json!({"loadBalancer": {"ingress": null}}),
                    });
                    let problem = (has_problem != problem).then_some(problem);
                    (status.is_some() || problem.is_some()).then_some(Fix {
                        key,
                        status,
                        problem,
                    })
                })
                .collect()
        };
        let mut failures = Failures::default();
        for fix in fixes {
            let ns = Some(fix.key.namespace.as_str());
            if let Some(problem) = &fix.problem {
                let patch = json!({"metadata": {"annotations": {LB_PROBLEM: problem}}});
                failures.note(self.writer.patch::<Service>(ns, &fix.key.name, &patch));
            }
            if let Some(status) = &fix.status {
                let result = self
                    .writer
                    .patch_status::<Service>(ns, &fix.key.name, status);
                if result.is_ok() {
                    tracing::info!("service {}: load-balancer {status}", fix.key);
                }
                failures.note(result);
            }
        }
        failures.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Ipv4Cidr {
        "198.51.100.0/29".parse().unwrap()
    }

    /// A Service from YAML, created at second `age` (older ones first).
    fn svc(name: &str, age: i64, extra: &str) -> (NsName, Service) {
        let mut s: Service = serde_norway::from_str(&format!(
            "metadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n{extra}"
        ))
        .unwrap();
        s.metadata.creation_timestamp =
            Some(weft_model::time::from_unix_seconds(1_700_000_000 + age));
        (NsName::new("default", name), s)
    }

    fn with_ip(mut s: (NsName, Service), ip: &str) -> (NsName, Service) {
        s.1.status =
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": ip}]}})).unwrap();
        s
    }

    fn show(plan: &BTreeMap<NsName, Allocation>) -> Vec<String> {
        plan.iter()
            .map(|(k, a)| match a {
                Allocation::Address(ip) => format!("{} {ip}", k.name),
                Allocation::Pending(why) => format!("{} pending: {why}", k.name),
            })
            .collect()
    }

    fn run(services: &[(NsName, Service)]) -> Vec<String> {
        show(&allocate(services.iter().map(|(k, s)| (k, s)), pool()))
    }

    #[test]
    fn addresses_from_the_pool_until_it_runs_out_oldest_first() {
        let services: Vec<_> = (0..7).map(|i| svc(&format!("lb{i}"), 10 - i, "")).collect();
        insta::assert_yaml_snapshot!(run(&services), @r#"
        - "lb0 pending: the load-balancer pool 198.51.100.0/29 is exhausted (6 addresses in use)"
        - lb1 198.51.100.6
        - lb2 198.51.100.5
        - lb3 198.51.100.4
        - lb4 198.51.100.3
        - lb5 198.51.100.2
        - lb6 198.51.100.1
        "#);
    }

    #[test]
    fn held_addresses_stay_and_requests_are_honoured_when_free() {
        let services = [
            with_ip(svc("held", 0, ""), "198.51.100.1"),
            svc("asks", 1, "  loadBalancerIP: 198.51.100.3\n"),
            svc("asks-taken", 2, "  loadBalancerIP: 198.51.100.1\n"),
            svc("asks-outside", 3, "  loadBalancerIP: 10.0.0.1\n"),
            svc("asks-junk", 4, "  loadBalancerIP: x\n"),
            svc("any", 5, ""),
            // A clash (two Services showing one address): the older one keeps it.
            with_ip(svc("clash", 6, ""), "198.51.100.1"),
            // Moving: it asks for another address than the one it has.
            with_ip(
                svc("moves", 7, "  loadBalancerIP: 198.51.100.6\n"),
                "198.51.100.5",
            ),
        ];
        insta::assert_yaml_snapshot!(run(&services), @r#"
        - any 198.51.100.2
        - asks 198.51.100.3
        - "asks-junk pending: spec.loadBalancerIP \"x\" is not an IPv4 address"
        - "asks-outside pending: spec.loadBalancerIP 10.0.0.1 is not in the pool 198.51.100.0/29"
        - "asks-taken pending: spec.loadBalancerIP 198.51.100.1 is already in use"
        - clash 198.51.100.4
        - held 198.51.100.1
        - moves 198.51.100.6
        "#);
    }

    #[test]
    fn other_classes_and_types_are_left_alone() {
        let mut cluster_ip = svc("plain", 0, "");
        cluster_ip.1.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        let services = [
            cluster_ip,
            svc("cloud", 1, "  loadBalancerClass: example.com/cloud\n"),
            svc("ours", 2, "  loadBalancerClass: weft.dev/load-balancer\n"),
        ];
        assert_eq!(run(&services), ["ours 198.51.100.1"]);
    }
}
