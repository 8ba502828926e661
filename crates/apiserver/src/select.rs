//! `labelSelector` and `fieldSelector`: which objects a list, a watch or a collection delete
//! concerns. Label selection is the model's one matcher; fields are read from the object's JSON
//! by their dotted path (`spec.nodeName`, `status.phase`, `metadata.name`), a missing field
//! reading as the empty string, as kube-apiserver's field sets do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;
use weft_model::selector;

use crate::request::Query;
use crate::status::ApiError;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    labels: Option<LabelSelector>,
    /// (path, wanted equal, value)
    fields: Vec<(String, bool, String)>,
}

impl Filter {
    pub fn from_query(query: &Query) -> Result<Filter, ApiError> {
        let labels =
            match query.get("labelSelector").filter(|s| !s.trim().is_empty()) {
                Some(text) => Some(selector::parse(text).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let mut fields = Vec::new();
        for part in query
            .get("fieldSelector")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            fields.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Filter { labels, fields })
    }

    /// Refuses fields kube-apiserver cannot select `kind` by, with its words: a selector on a
    /// field it does not index (`spec.bogus`, `status.hostIP`) is a 400 there, not an empty list.
    /// Custom resources' fields pass (their CRDs may declare selectableFields).
    pub fn check_fields(&self, group: &str, kind: &str) -> Result<(), ApiError> {
        let builtin = group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io");
        if !builtin {
            return Ok(());
        }
        for (path, _, _) in &self.fields {
            match selectable_fields(kind) {
                Some(fields) if !fields.contains(&path.as_str()) => {
                    return Err(ApiError::bad_request(format!(
                        "field label not supported: {path}"
                    )))
                }
                None if !["metadata.name", "metadata.namespace"].contains(&path.as_str()) => {
                    return Err(ApiError::bad_request(format!(
                        "{path:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(sel) = &self.labels {
            let labels: BTreeMap<String, String> = object["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect();
            if !selector::matches(sel, &labels) {
                return false;
            }
        }
        self.fields.iter().all(|(path, equal, value)| {
            let mut at = object;
            for part in path.split('.') {
                at = &at[part];
            }
            let actual = match at {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// The kinds kube-apiserver registers field label conversions for, and the fields each takes;
/// every other kind takes only `metadata.name` and `metadata.namespace`.
fn selectable_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "Node" => &["metadata.name", "spec.unschedulable"],
        "Namespace" => &["metadata.name", "status.phase"],
        "Secret" => &["metadata.name", "metadata.namespace", "type"],
        "Service" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
        "ReplicationController" | "ReplicaSet" => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        "Job" => &["metadata.name", "metadata.namespace", "status.successful"],
        "CertificateSigningRequest" => &["metadata.name", "spec.signerName"],
        "Event" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_by_labels_and_fields() {
        let pod = json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = |q: &str| Filter::from_query(&Query::parse(Some(q))).unwrap();
        assert!(f("labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1").matches(&pod));
        assert!(!f("fieldSelector=spec.nodeName%3Dn2").matches(&pod));
        assert!(f("fieldSelector=spec.nodeName!%3Dn2,status.phase%3DRunning").matches(&pod));
        assert!(f("fieldSelector=spec.missing%3D").matches(&pod));
        assert!(!f("labelSelector=app!%3Dweb").matches(&pod));
        assert!(Filter::from_query(&Query::parse(Some("fieldSelector=nonsense"))).is_err());
        assert!(Filter::from_query(&Query::parse(Some("labelSelector=a+in+(b"))).is_err());
    }

    #[test]
    fn refuses_fields_kube_cannot_select_by() {
        let check = |q: &str, group: &str, kind: &str| {
            Filter::from_query(&Query::parse(Some(q)))
                .unwrap()
                .check_fields(group, kind)
                .map_err(|e| e.message)
        };
        assert!(check(
            "fieldSelector=status.phase%3DRunning,spec.nodeName%3Dn1",
            "",
            "Pod"
        )
        .is_ok());
        assert_eq!(
            check("fieldSelector=spec.bogus%3Dx", "", "Pod"),
            Err("field label not supported: spec.bogus".to_string())
        );
        assert!(check("fieldSelector=metadata.name%3Da", "", "ConfigMap").is_ok());
        assert_eq!(
            check("fieldSelector=data.x%3Dy", "", "ConfigMap"),
            Err(r#""data.x" is not a known field selector: only "metadata.name", "metadata.namespace""#.to_string())
        );
        assert!(check("fieldSelector=spec.anything%3Dy", "example.com", "Widget").is_ok());
    }
}
