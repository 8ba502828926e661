//! The checks the API server would make on a manifest, so a bad manifest is refused before anything
//! is stored. Each failure names the field as a dotted path.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::names;
use crate::object::Object;
use crate::selector;

/// (field path, message).
pub(super) type RawFailure = (String, String);
/// (field path if known, message).
pub(super) type Failure = (Option<String>, String);

fn missing(path: &str, hint: &str) -> RawFailure {
    (path.to_string(), format!("required field is missing{hint}"))
}

fn require(value: &Value, path: &[&str], hint: &str) -> Result<(), RawFailure> {
    let mut current = value;
    for (i, part) in path.iter().enumerate() {
        match current.get(part) {
            Some(next) if !next.is_null() => current = next,
            _ => return Err(missing(&path[..=i].join("."), hint)),
        }
    }
    Ok(())
}

/// Required fields, checked on the raw value so the message says what is missing rather than how
/// deserialization tripped over it.
pub(super) fn check_raw(value: &Value) -> Result<(), RawFailure> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    if api_version.is_none() || api_version != Object::api_version_of(kind) {
        return Ok(()); // from_json reports those
    }
    match kind {
        "Pod" => require(value, &["spec", "containers"], ""),
        "Deployment" => {
            require(
                value,
                &["spec", "selector"],
                " (a Deployment must select its pods, e.g. matchLabels: {app: web})",
            )?;
            require(value, &["spec", "template", "spec", "containers"], "")
        }
        _ => Ok(()),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The first field of `input` (non-null) that did not survive typed parsing into `output`, i.e. a
/// field the object's type does not have.
pub(super) fn unknown_field(input: &Value, output: &Value, path: &str) -> Option<String> {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => input
            .iter()
            .filter(|(_, v)| !v.is_null())
            .find_map(|(key, value)| match output.get(key) {
                None => Some(join(path, key)),
                Some(out) => unknown_field(value, out, &join(path, key)),
            }),
        (Value::Array(input), Value::Array(output)) => input
            .iter()
            .zip(output)
            .enumerate()
            .find_map(|(i, (a, b))| unknown_field(a, b, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn check_name(object: &Object) -> Result<(), String> {
    let name = object.name();
    match object {
        Object::Namespace(_) => names::check_rfc1123_label(name),
        Object::Service(_) => names::check_rfc1035_label(name),
        Object::Other(_) => {
            // Kubernetes' path-segment rule: the name becomes part of URLs (and of store paths).
            if name == "." || name == ".." || name.contains('/') || name.contains('%') {
                Err(format!(
                    "{name:?} may not be '.' or '..' or contain '/' or '%'"
                ))
            } else {
                Ok(())
            }
        }
        _ => names::check_rfc1123_subdomain(name),
    }
}

fn check_labels(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    path: &str,
) -> Result<(), Failure> {
    for (key, value) in labels.into_iter().flatten() {
        names::check_label_key(key)
            .and(names::check_label_value(value))
            .map_err(|m| (Some(path.to_string()), m))?;
    }
    Ok(())
}

fn check_port(value: i32, path: String) -> Result<(), Failure> {
    if (1..=65535).contains(&value) {
        Ok(())
    } else {
        Err((Some(path), format!("{value} is not a valid port (1-65535)")))
    }
}

fn check_pod_spec(spec: &PodSpec, path: &str) -> Result<(), Failure> {
    if spec.containers.is_empty() {
        return Err((
            Some(format!("{path}.containers")),
            "must have at least one container".to_string(),
        ));
    }
    let mut seen = BTreeSet::new();
    let groups = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (group, containers) in groups {
        for (i, container) in containers.iter().enumerate() {
            let at = format!("{path}.{group}[{i}]");
            names::check_rfc1123_label(&container.name)
                .map_err(|m| (Some(format!("{at}.name")), m))?;
            if !seen.insert(container.name.as_str()) {
                return Err((
                    Some(format!("{at}.name")),
                    format!("duplicate container name {:?}", container.name),
                ));
            }
            for (j, port) in container.ports.iter().flatten().enumerate() {
                check_port(
                    port.container_port,
                    format!("{at}.ports[{j}].containerPort"),
                )?;
                if let Some(host_port) = port.host_port {
                    check_port(host_port, format!("{at}.ports[{j}].hostPort"))?;
                }
            }
        }
    }
    Ok(())
}

fn check_selector_and_template(
    sel: &LabelSelector,
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), Failure> {
    let field = || Some("spec.selector".to_string());
    selector::validate(sel).map_err(|m| (field(), m))?;
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    if empty {
        return Err((
            field(),
            "empty selector is invalid for a Deployment (it would select every pod)".to_string(),
        ));
    }
    let labels = template_labels.cloned().unwrap_or_default();
    if !selector::matches(sel, &labels) {
        return Err((
            field(),
            format!(
                "selector {:?} does not match the template labels {:?}",
                selector::format(sel),
                selector::format_map(&labels)
            ),
        ));
    }
    Ok(())
}

/// Object-level checks, after typed parsing and namespace defaulting.
pub(super) fn check_object(object: &Object) -> Result<(), Failure> {
    check_name(object).map_err(|m| (Some("metadata.name".to_string()), m))?;
    if let Some(ns) = object.namespace() {
        names::check_rfc1123_label(ns).map_err(|m| (Some("metadata.namespace".to_string()), m))?;
    }
    check_labels(object.metadata().labels.as_ref(), "metadata.labels")?;
    match object {
        Object::Pod(pod) => {
            if let Some(spec) = &pod.spec {
                check_pod_spec(spec, "spec")?;
            }
        }
        Object::Deployment(deployment) => {
            let Some(spec) = &deployment.spec else {
                return Err((Some("spec".into()), "required field is missing".into()));
            };
            if let Some(replicas) = spec.replicas.filter(|r| *r < 0) {
                return Err((
                    Some("spec.replicas".into()),
                    format!("{replicas} must be 0 or more"),
                ));
            }
            let template_meta = spec.template.metadata.as_ref();
            let template_labels = template_meta.and_then(|m| m.labels.as_ref());
            check_labels(template_labels, "spec.template.metadata.labels")?;
            check_selector_and_template(&spec.selector, template_labels)?;
            match &spec.template.spec {
                Some(pod_spec) => check_pod_spec(pod_spec, "spec.template.spec")?,
                None => {
                    return Err((
                        Some("spec.template.spec".into()),
                        "required field is missing".into(),
                    ))
                }
            }
        }
        Object::Service(service) => {
            let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref());
            for (i, port) in ports.unwrap_or_default().iter().enumerate() {
                check_port(port.port, format!("spec.ports[{i}].port"))?;
                if let Some(IntOrString::Int(target)) = port.target_port {
                    check_port(target, format!("spec.ports[{i}].targetPort"))?;
                }
                if let Some(node_port) = port.node_port {
                    check_port(node_port, format!("spec.ports[{i}].nodePort"))?;
                }
            }
            if let Some(sel) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) {
                check_labels(Some(sel), "spec.selector")?;
            }
        }
        _ => {}
    }
    Ok(())
}
