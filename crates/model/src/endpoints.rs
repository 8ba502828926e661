//! EndpointSlices as every consumer reads them: which Service a slice belongs to, and whether an
//! endpoint counts as ready (the discovery API's rules, in one place).

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service (in the slice's own namespace) a slice belongs to, from its
/// `kubernetes.io/service-name` label.
pub fn service_name(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

/// An endpoint counts as ready unless its conditions say otherwise: an unset `ready` means
/// ready, as the discovery API defines it.
pub fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// Whether the endpoint may take traffic while its pod terminates (`serving`, which defaults
/// to `ready` when unset).
pub fn is_serving(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.serving)
        .unwrap_or_else(|| is_ready(endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_and_readiness() {
        let s: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.5"]},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false, "serving": true}}]
        }))
        .unwrap();
        assert_eq!(service_name(&s), Some("web"));
        let ready: Vec<bool> = s.endpoints.iter().map(is_ready).collect();
        assert_eq!(ready, [true, false, false]);
        let serving: Vec<bool> = s.endpoints.iter().map(is_serving).collect();
        assert_eq!(serving, [true, false, true]);
        assert_eq!(service_name(&EndpointSlice::default()), None);
    }
}
