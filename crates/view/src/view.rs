//! The objects and their indexes, and what applying one watch event changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::index::LabelIndex;
use crate::mailbox::{Interest, Mailbox};

/// A namespaced object's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsName {
    pub namespace: String,
    pub name: String,
}

impl NsName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> NsName {
        NsName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn of(meta: &ObjectMeta) -> NsName {
        NsName::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl fmt::Display for NsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What an applied event changed, in the terms reconcilers recompile by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Node(String),
    /// The Service itself or one of its EndpointSlices.
    Service(NsName),
    Pod(NsName),
    Namespace(String),
    NetworkPolicy(NsName),
    Deployment(NsName),
    DaemonSet(NsName),
    Ingress(NsName),
    /// Cluster-scoped: the namespace is empty.
    IngressClass(NsName),
    Secret(NsName),
}

impl Change {
    /// Whether a subscriber with `interest` wants this change.
    pub fn wanted_by(&self, interest: &Interest) -> bool {
        match self {
            Change::Node(_) => interest.nodes,
            Change::Service(_) => interest.services,
            Change::Pod(_) => interest.pods,
            Change::Namespace(_) => interest.namespaces,
            Change::NetworkPolicy(_) => interest.network_policies,
            Change::Deployment(_) | Change::DaemonSet(_) => interest.workloads,
            Change::Ingress(_) | Change::IngressClass(_) => interest.ingresses,
            Change::Secret(_) => interest.secrets,
        }
    }
}

/// One watch event for objects of kind `K`.
#[derive(Clone, Debug)]
pub enum Event<K> {
    Apply(K),
    Delete(K),
    /// The complete list after a (re)start of the watch: objects not in it are gone.
    Relisted(Vec<K>),
}

/// A kind the view keeps.
pub trait Watched: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Sized {
    /// Puts `new` in place of what the view holds under its key (None: removes `key`) and says
    /// what that changed.
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<Self>>) -> Vec<Change>;
    /// The keys of this kind the view holds.
    fn keys(view: &ClusterView) -> Vec<NsName>;
    /// The resourceVersion of what the view holds under `key`.
    fn version(view: &ClusterView, key: &NsName) -> Option<String>;
}

/// Every object weft's reconcilers read, with their indexes. Cluster-scoped kinds use an empty
/// namespace in their [`NsName`].
#[derive(Default)]
pub struct ClusterView {
    nodes: BTreeMap<String, Arc<Node>>,
    ready_nodes: BTreeSet<String>,
    services: BTreeMap<NsName, Arc<Service>>,
    slices: BTreeMap<NsName, Arc<EndpointSlice>>,
    /// Slice names per Service (namespace, Service name).
    slices_by_service: BTreeMap<NsName, BTreeSet<String>>,
    pods: BTreeMap<NsName, Arc<Pod>>,
    pods_by_node: BTreeMap<String, BTreeSet<NsName>>,
    pod_labels: LabelIndex<NsName>,
    namespaces: BTreeMap<String, Arc<Namespace>>,
    namespace_labels: LabelIndex<String>,
    policies: BTreeMap<NsName, Arc<NetworkPolicy>>,
    deployments: BTreeMap<NsName, Arc<Deployment>>,
    daemonsets: BTreeMap<NsName, Arc<DaemonSet>>,
    ingresses: BTreeMap<NsName, Arc<Ingress>>,
    ingress_classes: BTreeMap<NsName, Arc<IngressClass>>,
    secrets: BTreeMap<NsName, Arc<Secret>>,
    /// Kinds whose first complete list has been applied.
    listed: BTreeSet<&'static str>,
}

impl ClusterView {
    pub fn new() -> ClusterView {
        ClusterView::default()
    }

    /// Applies one event and returns what it changed (nothing for an object the view already
    /// holds at the same resourceVersion, as after a watch restart).
    pub fn apply<K: Watched>(&mut self, event: Event<K>) -> Vec<Change> {
        match event {
            Event::Apply(obj) => {
                let key = NsName::of(obj.metadata());
                if same_version(K::version(self, &key), obj.metadata()) {
                    return Vec::new();
                }
                K::store(self, &key, Some(Arc::new(obj)))
            }
            Event::Delete(obj) => {
                let key = NsName::of(obj.metadata());
                K::store(self, &key, None)
            }
            Event::Relisted(list) => {
                self.listed.insert(K::KIND);
                let mut changes = Vec::new();
                let listed: BTreeSet<NsName> =
                    list.iter().map(|o| NsName::of(o.metadata())).collect();
                for key in K::keys(self) {
                    if !listed.contains(&key) {
                        changes.extend(K::store(self, &key, None));
                    }
                }
                for obj in list {
                    changes.extend(self.apply(Event::Apply(obj)));
                }
                changes.sort();
                changes.dedup();
                changes
            }
        }
    }

    /// Whether every kind in `kinds` has had its first complete list applied: until then the
    /// view is partial and a reconciler must not act on it (it would remove what is missing).
    pub fn listed(&self, kinds: &[&str]) -> bool {
        kinds.iter().all(|k| self.listed.contains(k))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name).map(Arc::as_ref)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().map(Arc::as_ref)
    }

    /// Nodes whose `Ready` condition is True, by name.
    pub fn ready_nodes(&self) -> impl Iterator<Item = &Node> {
        self.ready_nodes.iter().filter_map(|n| self.node(n))
    }

    pub fn service(&self, key: &NsName) -> Option<&Service> {
        self.services.get(key).map(Arc::as_ref)
    }

    pub fn services(&self) -> impl Iterator<Item = (&NsName, &Service)> {
        self.services.iter().map(|(k, v)| (k, v.as_ref()))
    }

    /// The EndpointSlices of the Service `key` (by their `kubernetes.io/service-name` label).
    pub fn slices_of<'a>(
        &'a self,
        service: &'a NsName,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.slices_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(move |name| {
                self.slices
                    .get(&NsName::new(&service.namespace, name))
                    .map(Arc::as_ref)
            })
    }

    pub fn slices(&self) -> impl Iterator<Item = &EndpointSlice> {
        self.slices.values().map(Arc::as_ref)
    }

    pub fn pod(&self, key: &NsName) -> Option<&Pod> {
        self.pods.get(key).map(Arc::as_ref)
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.values().map(Arc::as_ref)
    }

    /// The pods bound to `node`.
    pub fn pods_on(&self, node: &str) -> impl Iterator<Item = &Pod> {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pod(k))
    }

    /// The pods of `namespace` (keys are ordered by namespace, so this is a range).
    pub fn pods_in<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .range(NsName::new(namespace, "")..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, p)| p.as_ref())
    }

    /// The pods `selector` selects, in `namespace` or (None) in every namespace.
    pub fn select_pods(&self, namespace: Option<&str>, selector: &LabelSelector) -> Vec<&Pod> {
        self.pod_labels
            .select(selector, |k| namespace.is_none_or(|ns| k.namespace == ns))
            .iter()
            .filter_map(|k| self.pod(k))
            .collect()
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name).map(Arc::as_ref)
    }

    /// The names of the namespaces `selector` selects.
    pub fn select_namespaces(&self, selector: &LabelSelector) -> Vec<String> {
        self.namespace_labels.select(selector, |_| true)
    }

    pub fn ingresses(&self) -> impl Iterator<Item = &Ingress> {
        self.ingresses.values().map(Arc::as_ref)
    }

    pub fn ingress(&self, key: &NsName) -> Option<&Ingress> {
        self.ingresses.get(key).map(Arc::as_ref)
    }

    pub fn ingress_classes(&self) -> impl Iterator<Item = &IngressClass> {
        self.ingress_classes.values().map(Arc::as_ref)
    }

    pub fn secret(&self, key: &NsName) -> Option<&Secret> {
        self.secrets.get(key).map(Arc::as_ref)
    }

    pub fn network_policy(&self, key: &NsName) -> Option<&NetworkPolicy> {
        self.policies.get(key).map(Arc::as_ref)
    }

    pub fn network_policies(&self) -> impl Iterator<Item = &NetworkPolicy> {
        self.policies.values().map(Arc::as_ref)
    }

    pub fn deployment(&self, key: &NsName) -> Option<&Deployment> {
        self.deployments.get(key).map(Arc::as_ref)
    }

    pub fn deployments(&self) -> impl Iterator<Item = (&NsName, &Deployment)> {
        self.deployments.iter().map(|(k, v)| (k, v.as_ref()))
    }

    pub fn daemonset(&self, key: &NsName) -> Option<&DaemonSet> {
        self.daemonsets.get(key).map(Arc::as_ref)
    }

    pub fn daemonsets(&self) -> impl Iterator<Item = (&NsName, &DaemonSet)> {
        self.daemonsets.iter().map(|(k, v)| (k, v.as_ref()))
    }
}

fn same_version(held: Option<String>, new: &ObjectMeta) -> bool {
    held.is_some() && held == new.resource_version
}

impl Watched for Node {
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<Node>>) -> Vec<Change> {
        let name = key.name.clone();
        view.ready_nodes.remove(&name);
        match new {
            Some(n) => {
                if weft_model::node::is_ready(&n) {
                    view.ready_nodes.insert(name.clone());
                }
                view.nodes.insert(name.clone(), n);
            }
            None => {
                if view.nodes.remove(&name).is_none() {
                    return Vec::new();
                }
            }
        }
        vec![Change::Node(name)]
    }

    fn keys(view: &ClusterView) -> Vec<NsName> {
        view.nodes.keys().map(|n| NsName::new("", n)).collect()
    }

    fn version(view: &ClusterView, key: &NsName) -> Option<String> {
        view.nodes.get(&key.name)?.metadata.resource_version.clone()
    }
}

impl Watched for Service {
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<Service>>) -> Vec<Change> {
        let had = match new {
            Some(s) => {
                view.services.insert(key.clone(), s);
                true
            }
            None => view.services.remove(key).is_some(),
        };
        if had {
            vec![Change::Service(key.clone())]
        } else {
            Vec::new()
        }
    }

    fn keys(view: &ClusterView) -> Vec<NsName> {
        view.services.keys().cloned().collect()
    }

    fn version(view: &ClusterView, key: &NsName) -> Option<String> {
        view.services.get(key)?.metadata.resource_version.clone()
    }
}

impl Watched for EndpointSlice {
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<EndpointSlice>>) -> Vec<Change> {
        let owner = |s: &EndpointSlice| {
            weft_model::endpoints::service_name(s).map(|svc| NsName::new(&key.namespace, svc))
        };
        let old = match &new {
            Some(s) => view.slices.insert(key.clone(), s.clone()),
            None => view.slices.remove(key),
        };
        let mut changes = Vec::new();
        if let Some(svc) = old.as_deref().and_then(owner) {
            if let Some(set) = view.slices_by_service.get_mut(&svc) {
                set.remove(&key.name);
                if set.is_empty() {
                    view.slices_by_service.remove(&svc);
                }
            }
            changes.push(Change::Service(svc));
        }
        if let Some(svc) = new.as_deref().and_then(owner) {
            view.slices_by_service
                .entry(svc.clone())
                .or_default()
                .insert(key.name.clone());
            if !changes.contains(&Change::Service(svc.clone())) {
                changes.push(Change::Service(svc));
            }
        }
        changes
    }

    fn keys(view: &ClusterView) -> Vec<NsName> {
        view.slices.keys().cloned().collect()
    }

    fn version(view: &ClusterView, key: &NsName) -> Option<String> {
        view.slices.get(key)?.metadata.resource_version.clone()
    }
}

impl Watched for Pod {
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<Pod>>) -> Vec<Change> {
        let old = match &new {
            Some(p) => view.pods.insert(key.clone(), p.clone()),
            None => view.pods.remove(key),
        };
        if old.is_none() && new.is_none() {
            return Vec::new();
        }
        if let Some(node) = old.as_deref().and_then(weft_model::pod::node_name) {
            if let Some(set) = view.pods_by_node.get_mut(node) {
                set.remove(key);
                if set.is_empty() {
                    view.pods_by_node.remove(node);
                }
            }
        }
        if let Some(node) = new.as_deref().and_then(weft_model::pod::node_name) {
            view.pods_by_node
                .entry(node.to_string())
                .or_default()
                .insert(key.clone());
        }
        let empty = BTreeMap::new();
        let labels = new
            .as_deref()
            .map(|p| p.metadata.labels.as_ref().unwrap_or(&empty));
        view.pod_labels.set(key, labels);
        vec![Change::Pod(key.clone())]
    }

    fn keys(view: &ClusterView) -> Vec<NsName> {
        view.pods.keys().cloned().collect()
    }

    fn version(view: &ClusterView, key: &NsName) -> Option<String> {
        view.pods.get(key)?.metadata.resource_version.clone()
    }
}

impl Watched for Namespace {
    fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<Namespace>>) -> Vec<Change> {
        let name = key.name.clone();
        let empty = BTreeMap::new();
        let labels = new
            .as_deref()
            .map(|n| n.metadata.labels.as_ref().unwrap_or(&empty));
        view.namespace_labels.set(&name, labels);
        let had = match new {
            Some(n) => {
                view.namespaces.insert(name.clone(), n);
                true
            }
            None => view.namespaces.remove(&name).is_some(),
        };
        if had {
            vec![Change::Namespace(name)]
        } else {
            Vec::new()
        }
    }

    fn keys(view: &ClusterView) -> Vec<NsName> {
        view.namespaces.keys().map(|n| NsName::new("", n)).collect()
    }

    fn version(view: &ClusterView, key: &NsName) -> Option<String> {
        view.namespaces
            .get(&key.name)?
            .metadata
            .resource_version
            .clone()
    }
}

/// Kinds kept in one map by namespace and name, with no index of their own.
macro_rules! keyed {
    ($kind:ty, $field:ident, $change:ident) => {
        impl Watched for $kind {
            fn store(view: &mut ClusterView, key: &NsName, new: Option<Arc<$kind>>) -> Vec<Change> {
                let had = match new {
                    Some(o) => {
                        view.$field.insert(key.clone(), o);
                        true
                    }
                    None => view.$field.remove(key).is_some(),
                };
                if had {
                    vec![Change::$change(key.clone())]
                } else {
                    Vec::new()
                }
            }

            fn keys(view: &ClusterView) -> Vec<NsName> {
                view.$field.keys().cloned().collect()
            }

            fn version(view: &ClusterView, key: &NsName) -> Option<String> {
                view.$field.get(key)?.metadata.resource_version.clone()
            }
        }
    };
}

keyed!(NetworkPolicy, policies, NetworkPolicy);
keyed!(Deployment, deployments, Deployment);
keyed!(DaemonSet, daemonsets, DaemonSet);
keyed!(Ingress, ingresses, Ingress);
keyed!(IngressClass, ingress_classes, IngressClass);
keyed!(Secret, secrets, Secret);

/// The view shared by the watch tasks that write it and the reconcilers that read it, with the
/// reconcilers' mailboxes.
#[derive(Default)]
pub struct Shared {
    view: RwLock<ClusterView>,
    mailboxes: Mutex<Vec<Arc<Mailbox>>>,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    /// A mailbox that will receive the changes `interest` covers from now on.
    pub fn subscribe(&self, interest: Interest) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::new(interest));
        lock(&self.mailboxes).push(mailbox.clone());
        mailbox
    }

    /// Applies `event` and delivers what it changed to every interested mailbox.
    pub fn apply<K: Watched>(&self, event: Event<K>) {
        let relisted = matches!(event, Event::Relisted(_));
        let changes = {
            let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
            view.apply(event)
        };
        if changes.is_empty() && !relisted {
            return;
        }
        for mailbox in lock(&self.mailboxes).iter() {
            mailbox.deliver(&changes, relisted);
        }
    }

    /// Delivers changes that did not come from a watch (a pod's address announced by the CNI
    /// plugin before the pod's status has it) to every interested mailbox.
    pub fn notify(&self, changes: &[Change]) {
        for mailbox in lock(&self.mailboxes).iter() {
            mailbox.deliver(changes, false);
        }
    }

    /// Reads the view (a read lock: hold it for a compile, not across I/O).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ClusterView> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
