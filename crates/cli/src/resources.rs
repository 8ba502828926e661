//! Resource names as users type them (`po`, `pods`, `deploy`, `deployments.apps`...) mapped to
//! the resources an API server serves. The built-in kinds come from the lab API server's own
//! table (`weft_apiserver::resources`), which has kube-apiserver's names for them; anything else
//! (custom resources) from the server's discovery documents.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
pub use weft_apiserver::resources::Resource;
use weft_apiserver::resources::Resources;

/// weft's own extra names on top of kubectl's (kubectl has no short name for EndpointSlices).
const EXTRA_NAMES: &[(&str, &str)] = &[("eps", "endpointslices")];

/// What `get all` means: the resources in the `all` category, as in Kubernetes.
pub const ALL: &str = "all";

/// Whether `word` names `r`: its plural, singular, kind, a short name, or `plural.group`.
fn names(r: &Resource, word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    word == r.plural
        || word == r.singular
        || word == r.kind.to_ascii_lowercase()
        || r.short_names.contains(&word)
        || (!r.group.is_empty()
            && (word == format!("{}.{}", r.plural, r.group)
                || word == format!("{}.{}", r.singular, r.group)))
}

/// The built-in resource `word` names, if any.
pub fn builtin_named(word: &str) -> Option<Resource> {
    let lower = word.to_ascii_lowercase();
    let word = EXTRA_NAMES
        .iter()
        .find(|(extra, _)| *extra == lower)
        .map_or(lower.as_str(), |(_, plural)| plural);
    find_named(Resources::builtin().iter(), word)
}

/// The kind `word` names among the built-in resources, else `word` as written (the lab-local
/// tools, which read the store by kind).
pub fn kind_of(word: &str) -> String {
    builtin_named(word).map_or_else(|| word.to_string(), |r| r.kind)
}

/// The resource among `list` that `word` names.
pub fn find_named<'a>(
    list: impl IntoIterator<Item = &'a Resource>,
    word: &str,
) -> Option<Resource> {
    list.into_iter().find(|r| names(r, word)).cloned()
}

/// The built-in resource storing `api_version`/`kind`.
pub fn builtin_kind(api_version: &str, kind: &str) -> Option<Resource> {
    Resources::builtin().by_kind(api_version, kind).cloned()
}

/// The resources in the `all` category (`weft get all`): pods, services, deployments and the
/// other workload kinds, as in Kubernetes.
pub fn all_category() -> Vec<Resource> {
    Resources::builtin()
        .iter()
        .filter(|r| r.categories.iter().any(|c| c == ALL))
        .cloned()
        .collect()
}

/// The resources of one discovery document (`/api/v1`, `/apis/GROUP/VERSION`), subresources
/// left out.
pub fn from_discovery(group: &str, list: &APIResourceList) -> Vec<Resource> {
    let version = list
        .group_version
        .rsplit_once('/')
        .map_or(list.group_version.as_str(), |(_, v)| v)
        .to_string();
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| Resource {
            group: group.to_string(),
            version: version.clone(),
            kind: r.kind.clone(),
            plural: r.name.clone(),
            singular: if r.singular_name.is_empty() {
                r.kind.to_ascii_lowercase()
            } else {
                r.singular_name.clone()
            },
            namespaced: r.namespaced,
            short_names: r.short_names.clone().unwrap_or_default(),
            categories: r.categories.clone().unwrap_or_default(),
            subresources: Vec::new(),
            read_only: !r.verbs.iter().any(|v| v == "create"),
        })
        .collect()
}

/// kubectl's name for a resource in mixed listings: `pod`, `service`, `deployment.apps`.
pub fn qualified_singular(r: &Resource) -> String {
    if r.group.is_empty() {
        r.singular.clone()
    } else {
        format!("{}.{}", r.singular, r.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(word: &str) -> Option<String> {
        builtin_named(word).map(|r| r.kind)
    }

    #[test]
    fn short_names_and_plurals_map_to_kinds() {
        assert_eq!(kind("po").as_deref(), Some("Pod"));
        assert_eq!(kind("pods").as_deref(), Some("Pod"));
        assert_eq!(kind("Deployment").as_deref(), Some("Deployment"));
        assert_eq!(kind("deploy").as_deref(), Some("Deployment"));
        assert_eq!(kind("deployments.apps").as_deref(), Some("Deployment"));
        assert_eq!(kind("netpol").as_deref(), Some("NetworkPolicy"));
        assert_eq!(kind("svc").as_deref(), Some("Service"));
        assert_eq!(kind("services").as_deref(), Some("Service"));
        assert_eq!(kind("ep").as_deref(), Some("Endpoints"));
        assert_eq!(kind("endpoints").as_deref(), Some("Endpoints"));
        assert_eq!(kind("eps").as_deref(), Some("EndpointSlice"));
        assert_eq!(kind("endpointslices").as_deref(), Some("EndpointSlice"));
        assert_eq!(kind("widgets"), None);
    }

    #[test]
    fn all_is_pods_services_deployments() {
        let plurals: Vec<String> = all_category().into_iter().map(|r| r.plural).collect();
        // Kubernetes' `all` category, as the lab's API server has it (ReplicaSets, Jobs... too).
        assert_eq!(plurals[..3], ["pods", "services", "deployments"]);
        let deploy = builtin_named("deploy").unwrap();
        assert_eq!(qualified_singular(&deploy), "deployment.apps");
    }

    #[test]
    fn discovery_documents_become_resources() {
        let list: APIResourceList = serde_json::from_value(serde_json::json!({
            "groupVersion": "example.com/v1",
            "resources": [
                {"name": "widgets", "singularName": "widget", "kind": "Widget", "namespaced": true,
                 "shortNames": ["wd"], "verbs": ["create", "get", "list"]},
                {"name": "widgets/status", "singularName": "", "kind": "Widget", "namespaced": true,
                 "verbs": ["get"]},
            ],
        }))
        .unwrap();
        let found = from_discovery("example.com", &list);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].api_version(), "example.com/v1");
        assert_eq!(
            find_named(&found, "wd").map(|r| r.plural),
            Some("widgets".into())
        );
        assert_eq!(
            find_named(&found, "widgets.example.com").map(|r| r.kind),
            Some("Widget".into())
        );
    }
}
