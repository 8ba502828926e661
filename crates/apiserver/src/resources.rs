//! The resources the server knows: for each, its group, version, kind, plural, scope, short names
//! and verbs. Discovery documents, URL routing and the store's kind names all come from this one
//! table, so a resource is added in one place.

use serde_json::{json, Value};

/// One served resource (the `pods` of `v1`, the `deployments` of `apps/v1`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served besides the main resource: `status`, `scale`, `log`, `exec`...
    pub subresources: Vec<&'static str>,
    /// A view computed from other objects (Endpoints from EndpointSlices): reads only.
    pub read_only: bool,
}

impl Resource {
    /// Whether weft does with objects of this kind what Kubernetes does, beyond storing and
    /// serving them; a write of any other kind is answered with a warning saying so
    /// ([`ACTED_ON`]). Custom resources are never acted on.
    pub fn acted_on(&self) -> bool {
        ACTED_ON.contains(&(self.group.as_str(), self.kind.as_str()))
    }

    /// `v1` or `apps/v1`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as kube-apiserver names a resource in its messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.read_only {
            vec!["get", "list", "watch"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    fn resource_entry(&self) -> Value {
        json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
            "shortNames": self.short_names,
            "categories": self.categories,
            "storageVersionHash": storage_version_hash(&self.group, &self.version, &self.kind),
        })
    }

    /// The discovery entries of its subresources (`pods/log`, `deployments/scale`...).
    fn subresource_entries(&self) -> Vec<Value> {
        self.subresources
            .iter()
            .map(|sub| {
                let (kind, verbs, group, version): (&str, &[&str], &str, &str) = match *sub {
                    "status" => (&self.kind, &["get", "patch", "update"], "", ""),
                    "scale" => ("Scale", &["get", "patch", "update"], "autoscaling", "v1"),
                    "log" => ("Pod", &["get"], "", ""),
                    "binding" => ("Binding", &["create"], "", ""),
                    "exec" | "attach" | "portforward" => {
                        ("PodExecOptions", &["create", "get"], "", "")
                    }
                    other => (other, &["get"], "", ""),
                };
                let mut entry = json!({
                    "name": format!("{}/{}", self.plural, sub),
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                });
                if !group.is_empty() {
                    entry["group"] = json!(group);
                    entry["version"] = json!(version);
                }
                entry
            })
            .collect()
    }
}

/// kube-apiserver's storageVersionHash is a hash of group/version/kind; clients only compare it
/// for equality, so any stable digest of the same inputs serves.
fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{group}/{version}/{kind}").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())
}

type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

/// (group, version, kind, plural, namespaced, short names, subresources) of the built-in kinds.
const BUILTIN: &[Row] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        &["status"],
    ),
    ("", "v1", "Node", "nodes", false, &["no"], &["status"]),
    (
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &["po"],
        &["status", "log", "exec", "attach", "binding"],
    ),
    ("", "v1", "Service", "services", true, &["svc"], &["status"]),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"], &[]),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"], &[]),
    ("", "v1", "Secret", "secrets", true, &[], &[]),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        &[],
    ),
    ("", "v1", "Event", "events", true, &["ev"], &[]),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        &["status", "scale"],
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        &["status"],
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        &[],
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        &[],
    ),
    // Served for the manifests and charts that carry them; few are acted on (see ACTED_ON).
    (
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        &["status"],
    ),
    (
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        &["status"],
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        &["status"],
    ),
    ("batch", "v1", "Job", "jobs", true, &[], &["status"]),
    (
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        &["status"],
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        &["status"],
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        &["status"],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        &[],
    ),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        &["status"],
    ),
    (
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        &[],
    ),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        &["status"],
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        &[],
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        &["status"],
    ),
];

/// Resources that `kubectl get all` shows (the `all` category), as in Kubernetes.
const IN_ALL: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "replicasets",
    "daemonsets",
    "statefulsets",
    "jobs",
    "cronjobs",
    "horizontalpodautoscalers",
];

/// The kinds weft acts on, by group and kind: an allow-list, because what it guards is a claim.
/// A kind missing from it (a built-in added to [`BUILTIN`] later, any custom resource) is then
/// reported as stored only, a warning someone will correct; a list of exceptions instead
/// claimed enforcement for every kind it forgot, as it did for Ingress and IngressClass with no
/// ingress controller, and would for any new group. So a kind is added here when weft does its
/// job, not when it is served.
const ACTED_ON: &[(&str, &str)] = &[
    // The lab's namespaces, nodes and kubelets (pods, their volumes and env from ConfigMaps and
    // Secrets); Services through the registry, the proxy and the DNS; Endpoints is a read-only
    // view of the EndpointSlices the controller keeps.
    ("", "Namespace"),
    ("", "Node"),
    ("", "Pod"),
    ("", "Service"),
    ("", "Endpoints"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("discovery.k8s.io", "EndpointSlice"),
    // The lab's controllers (controller::workloads).
    ("apps", "Deployment"),
    ("apps", "DaemonSet"),
    // Enforced by the agent's policy reconciler.
    ("networking.k8s.io", "NetworkPolicy"),
    // Served by the ingress controller (deploy/ingress.yaml, in every lab).
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "IngressClass"),
    // The definitions weft serves new resources from.
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    // Records whose whole meaning is to be stored and read back: an Event is what `kubectl
    // describe` shows; a Lease is taken and renewed by its holders through the API's
    // resourceVersion checks, which weft's store keeps.
    ("", "Event"),
    ("coordination.k8s.io", "Lease"),
    // Not here, though served: ServiceAccount (every pod gets the lab's one token, whatever
    // its account), RBAC (any authenticated client may do anything), ReplicaSet,
    // StatefulSet, Job, CronJob, PDB, HPA, PVC,
    // LimitRange, ResourceQuota, StorageClass, PriorityClass.
];

/// The resources served now: the built-in ones and those of stored CustomResourceDefinitions.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    list: Vec<Resource>,
}

impl Resources {
    pub fn builtin() -> Resources {
        let list = BUILTIN
            .iter()
            .map(
                |(group, version, kind, plural, namespaced, short, subs)| Resource {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                    singular: kind.to_ascii_lowercase(),
                    namespaced: *namespaced,
                    short_names: short.iter().map(|s| s.to_string()).collect(),
                    categories: if IN_ALL.contains(plural) {
                        vec!["all".to_string()]
                    } else {
                        Vec::new()
                    },
                    subresources: subs.to_vec(),
                    read_only: *kind == "Endpoints",
                },
            )
            .collect();
        Resources { list }
    }

    /// The built-in resources plus one per served version of each CustomResourceDefinition (the
    /// CRDs' JSON as stored), so custom kinds are stored and listed like any other.
    pub fn with_crds(crds: &[Value]) -> Resources {
        let mut resources = Resources::builtin();
        for crd in crds {
            let spec = &crd["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let singular = spec["names"]["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_ascii_lowercase());
            let short_names = string_list(&spec["names"]["shortNames"]);
            let categories = string_list(&spec["names"]["categories"]);
            for version in spec["versions"].as_array().into_iter().flatten() {
                if version["served"].as_bool() == Some(false) {
                    continue;
                }
                let Some(name) = version["name"].as_str() else {
                    continue;
                };
                let status = version["subresources"].get("status").is_some();
                resources.list.push(Resource {
                    group: group.to_string(),
                    version: name.to_string(),
                    kind: kind.to_string(),
                    plural: plural.to_string(),
                    singular: singular.clone(),
                    namespaced: spec["scope"].as_str() != Some("Cluster"),
                    short_names: short_names.clone(),
                    categories: categories.clone(),
                    subresources: if status { vec!["status"] } else { Vec::new() },
                    read_only: false,
                });
            }
        }
        resources
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.list.iter()
    }

    /// The resource at `/api/v1/<plural>` or `/apis/<group>/<version>/<plural>`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.list
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource that stores objects of `apiVersion`/`kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        self.list
            .iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
    }

    /// Groups with their versions, in the order discovery lists them (core first).
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.list {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => {
                    versions.push(r.version.clone())
                }
                Some(_) => {}
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    /// `GET /api`: the core group's versions.
    pub fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    /// `GET /apis`: every named group.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(group, versions)| group_entry(&group, &versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`.
    pub fn group(&self, group: &str) -> Option<Value> {
        let (_, versions) = self.groups().into_iter().find(|(g, _)| g == group)?;
        let mut entry = group_entry(group, &versions);
        entry["kind"] = json!("APIGroup");
        entry["apiVersion"] = json!("v1");
        Some(entry)
    }

    /// `GET /api/v1` or `/apis/<group>/<version>`: the resources of one group version.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let members: Vec<&Resource> = self
            .list
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect();
        if members.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for r in members {
            resources.push(r.resource_entry());
            resources.extend(r.subresource_entries());
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }

    /// The aggregated discovery document (`apidiscovery.k8s.io/v2`), which kubectl 1.34 asks for
    /// first: every resource of every group in one response. `core` chooses `/api` or `/apis`.
    pub fn aggregated(&self, core: bool) -> Value {
        let items: Vec<Value> = self
            .groups()
            .into_iter()
            .filter(|(g, _)| g.is_empty() == core)
            .map(|(group, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|version| {
                        let resources: Vec<Value> = self
                            .list
                            .iter()
                            .filter(|r| r.group == group && &r.version == version)
                            .map(|r| {
                                let subresources: Vec<Value> = r
                                    .subresource_entries()
                                    .into_iter()
                                    .map(|e| {
                                        let name = e["name"]
                                            .as_str()
                                            .and_then(|n| n.split_once('/'))
                                            .map(|(_, s)| s.to_string())
                                            .unwrap_or_default();
                                        let mut sub = json!({
                                            "subresource": name,
                                            "responseKind": {"group": e.get("group").cloned().unwrap_or(json!("")), "version": e.get("version").cloned().unwrap_or(json!(version)), "kind": e["kind"]},
                                            "verbs": e["verbs"],
                                        });
                                        if sub["responseKind"]["version"].as_str() == Some("") {
                                            sub["responseKind"]["version"] = json!(version);
                                        }
                                        sub
                                    })
                                    .collect();
                                json!({
                                    "resource": r.plural,
                                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": r.singular,
                                    "verbs": r.verbs(),
                                    "shortNames": r.short_names,
                                    "categories": r.categories,
                                    "subresources": subresources,
                                })
                            })
                            .collect();
                        json!({"version": version, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        })
    }
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resources_by_path_and_by_kind() {
        let r = Resources::builtin();
        assert_eq!(
            r.find("", "v1", "pods").map(|r| r.kind.as_str()),
            Some("Pod")
        );
        assert_eq!(
            r.by_kind("apps/v1", "Deployment").map(|r| r.qualified()),
            Some("deployments.apps".to_string())
        );
        assert!(r.find("apps", "v1", "pods").is_none());
        assert!(r.find("", "v1", "endpoints").is_some_and(|r| r.read_only));
        assert!(r.find("", "v1", "services").unwrap().acted_on());
        let role = r
            .find("rbac.authorization.k8s.io", "v1", "clusterroles")
            .unwrap();
        assert!(!role.acted_on() && !role.namespaced);
    }

    #[test]
    fn only_kinds_weft_acts_on_are_said_to_be_acted_on() {
        let r = Resources::builtin();
        let acted: Vec<String> = r
            .list
            .iter()
            .filter(|res| res.acted_on())
            .map(|res| res.qualified())
            .collect();
        assert_eq!(
            acted,
            [
                "namespaces",
                "nodes",
                "pods",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "events",
                "deployments.apps",
                "endpointslices.discovery.k8s.io",
                "ingresses.networking.k8s.io",
                "ingressclasses.networking.k8s.io",
                "networkpolicies.networking.k8s.io",
                "daemonsets.apps",
                "leases.coordination.k8s.io",
                "customresourcedefinitions.apiextensions.k8s.io",
            ],
            "a kind joins this list when weft does its job"
        );
        // The ingress controller serves Ingresses (deploy/ingress.yaml, in every lab).
        for plural in ["ingresses", "ingressclasses"] {
            assert!(r
                .find("networking.k8s.io", "v1", plural)
                .unwrap()
                .acted_on());
        }
        // Every pod gets the lab's one token, and nothing is authorized by RBAC.
        assert!(!r.find("", "v1", "serviceaccounts").unwrap().acted_on());
        // Every entry names a served kind (a typo would silently warn about a real one).
        for (group, kind) in ACTED_ON {
            assert!(
                r.list
                    .iter()
                    .any(|res| res.group == *group && res.kind == *kind),
                "{group}/{kind}"
            );
        }
    }

    #[test]
    fn crds_add_resources() {
        let crd = json!({"spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true}, {"name": "v0", "served": false}]}});
        let r = Resources::with_crds(&[crd]);
        let w = r.find("example.com", "v1", "widgets").unwrap();
        assert_eq!(w.singular, "widget");
        assert!(!w.acted_on());
        assert!(r.find("example.com", "v0", "widgets").is_none());
        assert!(r.group("example.com").is_some());
        let list = r.resource_list("example.com", "v1").unwrap();
        assert_eq!(list["resources"][0]["shortNames"][0], "wd");
    }

    #[test]
    fn discovery_lists_subresources() {
        let r = Resources::builtin();
        let core = r.resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert!(names.contains(&"pods/exec"));
        assert!(names.contains(&"pods/log"));
        let apps = r.resource_list("apps", "v1").unwrap();
        assert!(apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "deployments/scale" && e["group"] == "autoscaling"));
        let agg = r.aggregated(false);
        assert!(agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["metadata"]["name"] != ""));
    }
}
