//! The EndpointSlice controller, as kube-controller-manager runs it (discovery.k8s.io/v1): for
//! every Service with a selector, the pods it selects become endpoints, grouped into slices by
//! the ports they resolve to. The proxy and DNS read these slices, never pods, so this is the one
//! place where "which pods serve this Service, on which port, and may they take traffic" is
//! decided.
//!
//! [`plan_service`] is pure (one Service, the pods of its namespace, its existing slices ->
//! what to write); [`reconcile`] runs it for every Service and writes only the differences, so a
//! controller pass over an unchanged cluster leaves the store's change log alone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

use crate::LabError;

use weft_model::annotations::ENDPOINTS_PROBLEM as PROBLEM_ANNOTATION;
use weft_model::endpoints::SERVICE_NAME_LABEL;
/// The label saying which controller owns a slice; slices without our value are never touched.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.weft.dev";
/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What one Service needs: slices to create or replace, managed slices to delete, and the text of
/// its problem annotation (None: the annotation should not be there).
#[derive(Debug, Default, PartialEq)]
pub struct ServicePlan {
    pub put: Vec<EndpointSlice>,
    pub delete: Vec<ObjectKey>,
    pub problem: Option<String>,
}

/// One resolved endpoint port; ordered, so pods can be grouped by their port set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResolvedPort {
    name: String,
    protocol: String,
    port: i32,
    app_protocol: Option<String>,
}

/// Whether this controller owns `slice`.
pub fn is_managed(slice: &EndpointSlice) -> bool {
    label(&slice.metadata, MANAGED_BY_LABEL) == Some(MANAGED_BY)
}

pub use weft_model::endpoints::service_name;

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The slices `service` should have, compared with `existing` (its slices in the store; slices
/// this controller does not manage are ignored and never deleted). `pods` are the pods of the
/// Service's namespace.
pub fn plan_service(service: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> ServicePlan {
    let (desired, problem) = desired_slices(service, pods);
    let existing: BTreeMap<&str, &EndpointSlice> = existing
        .iter()
        .filter(|s| is_managed(s))
        .filter_map(|s| s.metadata.name.as_deref().map(|n| (n, s)))
        .collect();
    let wanted: BTreeSet<&str> = desired
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    let delete = existing
        .iter()
        .filter(|(name, _)| !wanted.contains(*name))
        .map(|(name, s)| slice_key(s.metadata.namespace.as_deref(), name))
        .collect();
    let put = desired
        .into_iter()
        .filter(|d| {
            d.metadata
                .name
                .as_deref()
                .and_then(|n| existing.get(n))
                .is_none_or(|e| !same_content(e, d))
        })
        .collect();
    ServicePlan {
        put,
        delete,
        problem,
    }
}

/// The parts of a slice this controller decides; the store's own fields (uid, resourceVersion,
/// timestamps) are left out so a stored slice compares equal to a freshly computed one.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.metadata.labels == b.metadata.labels
        && a.metadata.owner_references == b.metadata.owner_references
        && a.address_type == b.address_type
        && a.endpoints == b.endpoints
        && a.ports == b.ports
}

fn slice_key(namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey::new("EndpointSlice", Some(namespace.unwrap_or("default")), name)
}

/// The full desired slice set of a Service and its problem text. Selector-less and ExternalName
/// Services get no managed slices (the former keep whatever slices the user wrote).
fn desired_slices(service: &Service, pods: &[Pod]) -> (Vec<EndpointSlice>, Option<String>) {
    let spec = service.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return (Vec::new(), None);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return (Vec::new(), None);
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            weft_model::selector::map_matches(selector, &labels)
        })
        .collect();
    let mut problems = Vec::new();
    if selected.is_empty() {
        problems.push(format!(
            "no pods match selector {}",
            weft_model::selector::format_map(selector)
        ));
    }
    let service_ports = spec.ports.clone().unwrap_or_default();
    // Pods (by name) on which a named targetPort does not resolve, per service port.
    let mut unresolved: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    for pod in selected.iter().copied().filter(|p| !is_terminal(p)) {
        let mut ports = Vec::with_capacity(service_ports.len());
        for (i, sp) in service_ports.iter().enumerate() {
            match resolve_port(pod, sp) {
                Some(port) => ports.push(port),
                None => unresolved
                    .entry(i)
                    .or_default()
                    .push(crate::kubelet::pod_name(pod).to_string()),
            }
        }
        if ports.len() != service_ports.len() {
            continue;
        }
        if let Some(endpoint) = endpoint(service, pod, publish_not_ready) {
            groups.entry(ports).or_default().push(endpoint);
        }
    }
    let candidates = selected.iter().filter(|p| !is_terminal(p)).count();
    for (i, pods) in unresolved {
        let sp = &service_ports[i];
        let target = match &sp.target_port {
            Some(IntOrString::String(name)) => name.as_str(),
            _ => "",
        };
        let port = sp.name.clone().unwrap_or_else(|| sp.port.to_string());
        let protocol = sp.protocol.as_deref().unwrap_or("TCP");
        let whom = if pods.len() == candidates {
            "any selected pod".to_string()
        } else {
            format!("pod {}", pods.join(", "))
        };
        problems.push(format!(
            "targetPort {target:?} of port {port} names no {protocol} container port of {whom}"
        ));
    }

    let name = service.metadata.name.clone().unwrap_or_default();
    let mut slices = Vec::new();
    if groups.is_empty() {
        // Like upstream: one empty placeholder, so readers can tell "no endpoints" from "not
        // processed yet".
        slices.push(slice(
            service,
            format!("{name}-{}", ports_hash(&[])),
            &[],
            Vec::new(),
        ));
    }
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| endpoint_order(a).cmp(&endpoint_order(b)));
        let base = format!("{name}-{}", ports_hash(&ports));
        for (i, chunk) in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let slice_name = if i == 0 {
                base.clone()
            } else {
                format!("{base}-{i}")
            };
            slices.push(slice(service, slice_name, &ports, chunk.to_vec()));
        }
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    (slices, problem)
}

fn endpoint_order(e: &Endpoint) -> (Option<&str>, &[String]) {
    (
        e.target_ref.as_ref().and_then(|r| r.name.as_deref()),
        &e.addresses,
    )
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(weft_model::pod::phase(pod), "Succeeded" | "Failed")
}

/// The port one pod serves a Service port on: a number as is, a name looked up in the pod's
/// containers' ports with the same protocol (as upstream's `FindPort`).
fn resolve_port(pod: &Pod, sp: &ServicePort) -> Option<ResolvedPort> {
    let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
    let port = match &sp.target_port {
        None => sp.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })?
                .container_port
        }
    };
    Some(ResolvedPort {
        name: sp.name.clone().unwrap_or_default(),
        protocol,
        port,
        app_protocol: sp.app_protocol.clone(),
    })
}

/// A pod as an endpoint; None when it has no IP yet.
fn endpoint(service: &Service, pod: &Pod, publish_not_ready: bool) -> Option<Endpoint> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())?;
    let serving = weft_model::pod::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let spec = pod.spec.as_ref();
    // A pod is reachable by `<hostname>.<service>` when its subdomain names this Service.
    let hostname = spec
        .filter(|s| s.subdomain.is_some() && s.subdomain == service.metadata.name)
        .and_then(|s| s.hostname.clone());
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            // Never ready while terminating, unless the Service wants not-ready pods too.
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn slice(
    service: &Service,
    name: String,
    ports: &[ResolvedPort],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (SERVICE_NAME_LABEL.to_string(), service_name.clone()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]);
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(
                service
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: service_name,
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(
            ports
                .iter()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone()),
                    protocol: Some(p.protocol.clone()),
                    port: Some(p.port),
                    app_protocol: p.app_protocol.clone(),
                })
                .collect(),
        ),
    }
}

/// Eight hex digits naming a port set, so the same ports always give the same slice name.
fn ports_hash(ports: &[ResolvedPort]) -> String {
    let text: String = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{};",
                p.name,
                p.protocol,
                p.port,
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    let hash = text.bytes().fold(0x811c_9dc5u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

/// The whole cluster's plan: one [`ServicePlan`] per Service (keyed by namespace and name), plus
/// the managed slices whose Service is gone.
pub fn plan(
    services: &[Service],
    pods: &[Pod],
    slices: &[EndpointSlice],
) -> (Vec<(ObjectKey, ServicePlan)>, Vec<ObjectKey>) {
    let ns_of = |m: &ObjectMeta| m.namespace.clone().unwrap_or_else(|| "default".into());
    let mut pods_by_ns: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for p in pods {
        pods_by_ns
            .entry(ns_of(&p.metadata))
            .or_default()
            .push(p.clone());
    }
    let mut slices_by_service: BTreeMap<(String, String), Vec<EndpointSlice>> = BTreeMap::new();
    for s in slices.iter().filter(|s| is_managed(s)) {
        let owner = service_name(s).unwrap_or_default().to_string();
        slices_by_service
            .entry((ns_of(&s.metadata), owner))
            .or_default()
            .push(s.clone());
    }
    let mut plans = Vec::new();
    for svc in services {
        let ns = ns_of(&svc.metadata);
        let name = svc.metadata.name.clone().unwrap_or_default();
        let existing = slices_by_service
            .remove(&(ns.clone(), name.clone()))
            .unwrap_or_default();
        let ns_pods = pods_by_ns.get(&ns).map(Vec::as_slice).unwrap_or_default();
        let plan = plan_service(svc, ns_pods, &existing);
        plans.push((ObjectKey::new("Service", Some(&ns), name), plan));
    }
    // What is left belongs to Services that no longer exist.
    let orphans = slices_by_service
        .into_values()
        .flatten()
        .map(|s| {
            slice_key(
                s.metadata.namespace.as_deref(),
                s.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    (plans, orphans)
}

/// One controller pass: computes [`plan`] and writes what differs (slices, deletions, the
/// problem annotation on each Service).
pub fn reconcile(
    store: &Store,
    services: &[Service],
    pods: &[Pod],
    slices: &[EndpointSlice],
) -> Result<(), LabError> {
    let (plans, orphans) = plan(services, pods, slices);
    let mut delete = orphans;
    for (service_key, plan) in plans {
        for slice in plan.put {
            tracing::info!(
                "endpointslice {}/{} for service {service_key}: {} endpoints",
                slice.metadata.namespace.as_deref().unwrap_or("default"),
                slice.metadata.name.as_deref().unwrap_or_default(),
                slice.endpoints.len()
            );
            store.put(Object::EndpointSlice(slice))?;
        }
        delete.extend(plan.delete);
        set_problem(store, services, &service_key, plan.problem)?;
    }
    if !delete.is_empty() {
        store.delete(&delete)?;
    }
    Ok(())
}

/// Sets or removes the problem annotation, writing only when it differs from what is stored.
fn set_problem(
    store: &Store,
    services: &[Service],
    key: &ObjectKey,
    problem: Option<String>,
) -> Result<(), LabError> {
    let current = services
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(key.name.as_str())
                && s.metadata.namespace.as_deref().unwrap_or("default")
                    == key.namespace.as_deref().unwrap_or("default")
        })
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(PROBLEM_ANNOTATION));
    if current == problem.as_ref() {
        return Ok(());
    }
    store.update(key, |o| {
        let meta = o.metadata_mut();
        let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
        match &problem {
            Some(text) => {
                annotations.insert(PROBLEM_ANNOTATION.to_string(), text.clone());
            }
            None => {
                annotations.remove(PROBLEM_ANNOTATION);
            }
        }
        if annotations.is_empty() {
            meta.annotations = None;
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
