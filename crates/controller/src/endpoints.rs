//! The EndpointSlice controller, as kube-controller-manager runs it (discovery.k8s.io/v1): for
//! every Service with a selector, the pods it selects become endpoints, grouped into slices by
//! the ports they resolve to. The proxy and DNS read these slices, never pods, so this is the one
//! place where "which pods serve this Service, on which port, and may they take traffic" is
//! decided.
//!
//! [`plan_service`] is pure (one Service, the pods of its namespace, its existing slices ->
//! what to write); [`EndpointsController`] runs it for the Services a change touched and writes
//! only the differences through the API, so a pass over an unchanged cluster writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_model::object::ObjectKey;
use weft_view::{Change, ClusterView, Interest, NsName, Reconciler, Shared, Wake};

use crate::writer::{Failures, WriteError, Writer};

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
pub fn plan_service<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    existing: &[EndpointSlice],
) -> ServicePlan {
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
fn desired_slices<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> (Vec<EndpointSlice>, Option<String>) {
    let spec = service.spec.clone().unwrap_or_default();
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return (Vec::new(), None);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return (Vec::new(), None);
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let selected: Vec<&Pod> = pods
        .into_iter()
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
                    .push(pod.metadata.name.clone().unwrap_or_default()),
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

/// The managed slices of a Service that no longer exists (the user's own are left alone).
pub fn orphans<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<ObjectKey> {
    slices
        .into_iter()
        .filter(|s| is_managed(s))
        .map(|s| {
            slice_key(
                s.metadata.namespace.as_deref(),
                s.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

/// The EndpointSlice controller as a reconciler of the view: a changed Service is replanned; a
/// changed pod replans the Services of its namespace (its old labels are gone from the view, so
/// which Services selected it before cannot be told); a relist replans everything.
pub struct EndpointsController {
    writer: Writer,
    dirty: BTreeSet<NsName>,
    /// Pods of these namespaces changed.
    dirty_namespaces: BTreeSet<String>,
    all: bool,
}

impl EndpointsController {
    pub fn new(writer: Writer) -> EndpointsController {
        EndpointsController {
            writer,
            dirty: BTreeSet::new(),
            dirty_namespaces: BTreeSet::new(),
            all: true,
        }
    }
}

/// One Service's writes, decided under the view's lock and made after it.
struct Writes {
    service: NsName,
    plan: ServicePlan,
    /// The problem annotation as the Service has it now.
    current_problem: Option<String>,
}

impl Reconciler for EndpointsController {
    type Error = WriteError;

    fn name(&self) -> &'static str {
        "endpointslices"
    }

    fn interest(&self) -> Interest {
        Interest {
            services: true,
            pods: true,
            ..Interest::default()
        }
    }

    fn note(&mut self, wake: Wake) {
        self.all |= wake.relisted;
        for change in wake.changes {
            match change {
                Change::Service(key) => {
                    self.dirty.insert(key);
                }
                Change::Pod(key) => {
                    self.dirty_namespaces.insert(key.namespace);
                }
                _ => {}
            }
        }
    }

    fn resync_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }

    fn sync(&mut self, shared: &Shared) -> Result<(), WriteError> {
        let writes = {
            let view = shared.read();
            let mut keys = std::mem::take(&mut self.dirty);
            let namespaces = std::mem::take(&mut self.dirty_namespaces);
            if std::mem::take(&mut self.all) {
                keys.extend(view.services().map(|(k, _)| k.clone()));
                // Slices whose Service is gone, found by the Service they name.
                keys.extend(view.slices().filter(|s| is_managed(s)).filter_map(|s| {
                    Some(NsName::new(
                        s.metadata.namespace.clone().unwrap_or_default(),
                        service_name(s)?,
                    ))
                }));
            }
            for ns in &namespaces {
                keys.extend(
                    view.services()
                        .filter(|(k, _)| &k.namespace == ns)
                        .map(|(k, _)| k.clone()),
                );
            }
            keys.into_iter()
                .map(|key| plan_in_view(&view, key))
                .collect::<Vec<_>>()
        };
        let mut failures = Failures::default();
        for w in writes {
            failures.note(self.write(w));
        }
        // After a failure, everything is looked at again on the retry.
        self.all |= failures.any();
        failures.result()
    }
}

/// The plan of the Service `key` from what the view holds (the pods it selects, its slices).
fn plan_in_view(view: &ClusterView, key: NsName) -> Writes {
    let existing: Vec<EndpointSlice> = view.slices_of(&key).cloned().collect();
    let Some(service) = view.service(&key) else {
        return Writes {
            plan: ServicePlan {
                delete: orphans(&existing),
                ..ServicePlan::default()
            },
            service: key,
            current_problem: None,
        };
    };
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let selected = if selector.is_empty() {
        Vec::new()
    } else {
        view.select_pods(
            Some(&key.namespace),
            &LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
        )
    };
    Writes {
        plan: plan_service(service, selected, &existing),
        current_problem: service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROBLEM_ANNOTATION))
            .cloned(),
        service: key,
    }
}

impl EndpointsController {
    fn write(&self, w: Writes) -> Result<(), WriteError> {
        for slice in w.plan.put {
            tracing::info!(
                "endpointslice {}/{} for service {}: {} endpoints",
                w.service.namespace,
                slice.metadata.name.as_deref().unwrap_or_default(),
                w.service,
                slice.endpoints.len()
            );
            self.writer.put(&slice)?;
        }
        for key in &w.plan.delete {
            self.writer
                .delete::<EndpointSlice>(key.namespace.as_deref(), &key.name)?;
        }
        if w.current_problem != w.plan.problem {
            // Cleared by writing it empty: the lab's API server keeps a reported problem
            // through writes that merely lack it (a re-applied manifest), and drops an empty one.
            let text = w.plan.problem.clone().unwrap_or_default();
            let patch = serde_json::json!({"metadata": {"annotations": {
                PROBLEM_ANNOTATION: text,
            }}});
            self.writer
                .patch::<Service>(Some(&w.service.namespace), &w.service.name, &patch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
