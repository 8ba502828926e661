//! Resource names as users type them (`po`, `pods`, `deploy`...) mapped to kinds.

/// (kind, plural, short names) for the kinds `weft get`/`delete` know by name.
const RESOURCES: &[(&str, &str, &[&str])] = &[
    ("Pod", "pods", &["pod", "po"]),
    ("Node", "nodes", &["node", "no"]),
    ("Namespace", "namespaces", &["namespace", "ns"]),
    ("Deployment", "deployments", &["deployment", "deploy"]),
    ("Service", "services", &["service", "svc"]),
    // Endpoints are not stored: `get endpoints` derives them from the EndpointSlices.
    ("Endpoints", "endpoints", &["ep"]),
    ("EndpointSlice", "endpointslices", &["endpointslice", "eps"]),
    ("Ingress", "ingresses", &["ingress", "ing"]),
    (
        "NetworkPolicy",
        "networkpolicies",
        &["networkpolicy", "netpol"],
    ),
    ("Secret", "secrets", &["secret"]),
    ("ConfigMap", "configmaps", &["configmap", "cm"]),
];

/// The kind for what the user typed; unknown words are taken as a kind name as written
/// (so stored objects of kinds weft ignores can still be listed), matched case-insensitively.
pub fn kind_of(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    for (kind, plural, short) in RESOURCES {
        if lower == kind.to_ascii_lowercase() || lower == *plural || short.contains(&lower.as_str())
        {
            return kind.to_string();
        }
    }
    word.to_string()
}

/// kubectl's lower-case singular for messages: "pod/web created".
pub fn singular(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_plurals_map_to_kinds() {
        assert_eq!(kind_of("po"), "Pod");
        assert_eq!(kind_of("pods"), "Pod");
        assert_eq!(kind_of("Deployment"), "Deployment");
        assert_eq!(kind_of("deploy"), "Deployment");
        assert_eq!(kind_of("netpol"), "NetworkPolicy");
        assert_eq!(kind_of("Widget"), "Widget");
        assert_eq!(kind_of("svc"), "Service");
        assert_eq!(kind_of("services"), "Service");
        assert_eq!(kind_of("ep"), "Endpoints");
        assert_eq!(kind_of("endpoints"), "Endpoints");
        assert_eq!(kind_of("eps"), "EndpointSlice");
        assert_eq!(kind_of("endpointslices"), "EndpointSlice");
    }
}
