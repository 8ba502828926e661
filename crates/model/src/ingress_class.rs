//! kube-apiserver's DefaultIngressClass admission, for the lab's API and for the Ingresses a lab
//! starts with: an Ingress created without a class (no `spec.ingressClassName`, no legacy
//! `kubernetes.io/ingress.class` annotation) gets the IngressClass marked
//! `ingressclass.kubernetes.io/is-default-class: "true"`, the newest should several be, so
//! `kubectl get ingress` shows it.

use serde_json::Value;

/// The annotation that marks an IngressClass as the cluster's default.
pub const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// The name of the default class among `classes` (IngressClass objects as JSON).
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    fn created(v: &Value) -> &str {
        v["metadata"]["creationTimestamp"].as_str().unwrap_or("")
    }
    classes
        .into_iter()
        .filter(|c| c["metadata"]["annotations"][IS_DEFAULT_CLASS] == "true")
        .max_by(|a, b| created(a).cmp(created(b)))
        .and_then(|c| c["metadata"]["name"].as_str().map(str::to_string))
}

/// Gives `ingress` (JSON) the class `default` if it names none; whether it did.
pub fn admit(ingress: &mut Value, default: Option<&str>) -> bool {
    let has_class = ingress["spec"]["ingressClassName"].is_string()
        || ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].is_string();
    let Some(name) = default.filter(|_| !has_class) else {
        return false;
    };
    if !ingress["spec"].is_object() {
        ingress["spec"] = Value::Object(Default::default());
    }
    ingress["spec"]["ingressClassName"] = Value::String(name.to_string());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, default: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {(IS_DEFAULT_CLASS): if default { "true" } else { "false" }}}})
    }

    #[test]
    fn the_newest_default_class_is_given_to_ingresses_without_one() {
        let classes = [
            class("old", true, "2026-01-01T00:00:00Z"),
            class("new", true, "2026-02-01T00:00:00Z"),
            class("other", false, "2026-03-01T00:00:00Z"),
        ];
        let default = default_class(&classes);
        assert_eq!(default.as_deref(), Some("new"));

        let mut bare = json!({"metadata": {"name": "a"}});
        assert!(admit(&mut bare, default.as_deref()));
        assert_eq!(bare["spec"]["ingressClassName"], "new");

        let mut named = json!({"metadata": {"name": "b"}, "spec": {"ingressClassName": "x"}});
        let mut legacy = json!({"metadata": {"name": "c",
            "annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {}});
        assert!(!admit(&mut named, default.as_deref()));
        assert!(!admit(&mut legacy, default.as_deref()));
        assert_eq!(named["spec"]["ingressClassName"], "x");
        assert!(legacy["spec"].get("ingressClassName").is_none());
    }

    #[test]
    fn without_a_default_class_nothing_changes() {
        let classes = [class("only", false, "2026-01-01T00:00:00Z")];
        let mut bare = json!({"metadata": {"name": "a"}, "spec": {}});
        assert!(!admit(&mut bare, default_class(&classes).as_deref()));
        assert_eq!(bare, json!({"metadata": {"name": "a"}, "spec": {}}));
    }
}
