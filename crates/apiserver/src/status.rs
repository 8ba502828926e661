//! API errors as `Status` objects, worded as kube-apiserver words them: clients match on `reason`
//! and `code`, and users read `message` (kubectl prints it after "Error from server (Reason): ").

use serde_json::{json, Value};

use crate::resources::Resource;

/// One field-level cause of an `Invalid` error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueDuplicate`...
    pub reason: &'static str,
    /// The path, as `spec.ports[0].port`.
    pub field: String,
    pub message: String,
}

/// A request that failed, ready to be sent as a Status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details`: name, group, kind and causes, as the reason calls for.
    pub details: Option<Value>,
}

fn details(resource: &Resource, name: &str) -> Value {
    json!({"name": name, "group": resource.group, "kind": resource.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// A path the server does not serve.
    pub fn no_route() -> ApiError {
        ApiError {
            details: Some(json!({})),
            ..ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource.qualified()),
            )
        }
    }

    pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified()),
            )
        }
    }

    pub fn conflict(resource: &Resource, name: &str) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.qualified()
                ),
            )
        }
    }

    /// `Service "web" is invalid: spec.ports[0].port: Invalid value: 70000: must be ...`.
    pub fn invalid(resource: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let listed: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let message = match listed.as_slice() {
            [one] => format!("{} \"{name}\" is invalid: {one}", resource.kind),
            many => format!(
                "{} \"{name}\" is invalid: [{}]",
                resource.kind,
                many.join(", ")
            ),
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        ApiError {
            details: Some(json!({
                "name": name,
                "group": resource.group,
                "kind": resource.kind,
                "causes": causes,
            })),
            ..ApiError::new(422, "Invalid", message)
        }
    }

    /// A watch or list from a revision that compaction has dropped.
    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn forbidden(resource: &Resource, name: &str, why: impl Into<String>) -> ApiError {
        ApiError {
            details: Some(details(resource, name)),
            ..ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: {}",
                    resource.qualified(),
                    why.into()
                ),
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let mut details = details.clone();
            // kube's StatusDetails omits empty strings: no "group" for the core group.
            if let Value::Object(map) = &mut details {
                map.retain(|_, v| v.as_str() != Some(""));
            }
            status["details"] = details;
        }
        status
    }
}

/// The Status a successful delete of a collection or some subresources returns.
pub fn success(details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    #[test]
    fn wording_matches_kube_apiserver() {
        let r = Resources::builtin();
        let deploy = r.find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            ApiError::not_found(deploy, "web").message,
            "deployments.apps \"web\" not found"
        );
        let svc = r.find("", "v1", "services").unwrap();
        let e = ApiError::invalid(
            svc,
            "web",
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "spec.ports[0].port".into(),
                message: "Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
            }],
        );
        assert_eq!(e.message, "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive");
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "spec.ports[0].port"
        );
        assert_eq!(e.to_status()["code"], 422);
    }
}
