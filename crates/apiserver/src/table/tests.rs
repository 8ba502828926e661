//! Snapshot tests of the generated tables. Each resource's table is snapshotted twice: as kubectl
//! would print it with `-o wide` (for review), and as the JSON kubectl receives (column
//! descriptions left out there; `columns.snap` holds them once).

mod cluster;
mod network;
mod pods;
mod workloads;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::{printer, table, IncludeObject, UnknownIncludeObject};

/// The clock every test's ages are counted to.
pub(super) const NOW: &str = "2025-06-01T12:00:00Z";

pub(super) fn now() -> Time {
    Time(NOW.parse().expect("NOW is RFC 3339"))
}

/// The RFC 3339 time `seconds` before [`NOW`].
pub(super) fn ago(seconds: i64) -> String {
    Timestamp::from_second(now().0.as_second() - seconds)
        .expect("test times are in range")
        .to_string()
}

pub(super) const MINUTE: i64 = 60;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// Metadata of an object in `default` created `created` seconds before [`NOW`].
pub(super) fn meta(name: &str, created: i64) -> Value {
    json!({
        "name": name,
        "namespace": "default",
        "uid": format!("uid-{name}"),
        "resourceVersion": "7",
        "creationTimestamp": ago(created),
    })
}

/// Snapshots `items`' table as `snapshot_wide` (kubectl's `-o wide` text) and `snapshot` (the
/// JSON, without column descriptions).
pub(super) fn check(snapshot: &str, resource: &str, items: &[Value]) {
    let table = table(
        resource,
        items,
        IncludeObject::None,
        &now(),
        json!({"resourceVersion": "42"}),
    );
    assert_cells_match_columns(&table);
    let mut settings = insta::Settings::clone_current();
    // Names stay the same whichever crate path runs the tests.
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(format!("{snapshot}_wide"), render(&table));
        insta::assert_yaml_snapshot!(snapshot, without_descriptions(table));
    });
}

fn assert_cells_match_columns(table: &Value) {
    let columns = table["columnDefinitions"].as_array().map_or(0, Vec::len);
    for row in table["rows"].as_array().into_iter().flatten() {
        assert_eq!(
            row["cells"].as_array().map(Vec::len),
            Some(columns),
            "{row}"
        );
    }
}

/// The table as `kubectl get -o wide` lays it out: upper-case headers, columns three spaces apart.
fn render(table: &Value) -> String {
    let header: Vec<String> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or("").to_uppercase())
        .collect();
    let mut lines = vec![header];
    for row in table["rows"].as_array().into_iter().flatten() {
        lines.push(
            row["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|cell| match cell {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|line| {
            line.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn without_descriptions(mut table: Value) -> Value {
    for column in table["columnDefinitions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        column.as_object_mut().map(|c| c.remove("description"));
    }
    table
}

const RESOURCES: [&str; 16] = [
    "pods",
    "deployments",
    "replicasets",
    "services",
    "endpoints",
    "endpointslices",
    "ingresses",
    "ingressclasses",
    "networkpolicies",
    "nodes",
    "namespaces",
    "events",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "leases",
];

/// Every resource's column definitions, descriptions included: the contract with kubectl.
#[test]
fn columns() {
    let mut text = String::new();
    for resource in RESOURCES {
        text.push_str(&format!("{resource}:\n"));
        for column in printer(resource).columns {
            text.push_str(&format!(
                "  {:?} type={} format={:?} priority={}\n    {:?}\n",
                column.name, column.kind, column.format, column.priority, column.description
            ));
        }
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("columns", text));
}

/// An object with nothing but a name (or nothing at all) still gets a full row, of the zero
/// values kube-apiserver would print.
#[test]
fn bare_objects_get_full_rows() {
    let bare = [json!({}), json!({"metadata": {"name": "x"}}), json!(null)];
    for resource in RESOURCES {
        let table = table(
            resource,
            &bare,
            IncludeObject::Metadata,
            &now(),
            Value::Null,
        );
        assert_cells_match_columns(&table);
        assert_eq!(
            table["rows"].as_array().map(Vec::len),
            Some(3),
            "{resource}"
        );
    }
}

#[test]
fn other_resources_get_the_default_columns() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "node-a", "namespace": "kube-node-lease", "creationTimestamp": "2025-05-31T08:30:15.5Z"},
        "spec": {"holderIdentity": "node-a"},
    });
    let unset =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    check("default_convertor", "leases", &[lease, unset]);
}

#[test]
fn empty_lists_have_columns_and_no_rows() {
    let table = table("pods", &[], IncludeObject::Metadata, &now(), Value::Null);
    assert_eq!(table["rows"], json!([]));
    assert_eq!(table["metadata"], json!({}));
    // A single object without a resourceVersion: left out, as Go's omitempty does.
    let meta = json!({"resourceVersion": null, "continue": "c"});
    let table = super::table("pods", &[], IncludeObject::Metadata, &now(), meta);
    assert_eq!(table["metadata"], json!({"continue": "c"}));
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
}

fn include_object_table(include: IncludeObject) -> Value {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("web-0", 90),
        "spec": {"containers": [{"name": "web", "image": "nginx"}], "nodeName": "node-a"},
        "status": {"phase": "Pending"},
    });
    let mut table = table(
        "pods",
        &[pod],
        include,
        &now(),
        json!({"resourceVersion": "42", "continue": "next-page", "remainingItemCount": 3}),
    );
    table["columnDefinitions"] = json!("(see columns.snap)");
    table
}

#[test]
fn include_object_variants() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for (snapshot, include) in [
            ("include_metadata", IncludeObject::Metadata),
            ("include_object", IncludeObject::Object),
            ("include_none", IncludeObject::None),
        ] {
            let table = include_object_table(include);
            let json = serde_json::to_string_pretty(&table).expect("a table is JSON");
            insta::assert_snapshot!(snapshot, json);
        }
    });
}

#[test]
fn include_object_from_query() {
    assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
    assert_eq!(
        IncludeObject::from_query(Some("")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::from_query(Some("Metadata")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(
        IncludeObject::from_query(Some("Object")),
        Ok(IncludeObject::Object)
    );
    assert_eq!(
        IncludeObject::from_query(Some("None")),
        Ok(IncludeObject::None)
    );
    let refused = IncludeObject::from_query(Some("object"));
    assert_eq!(refused, Err(UnknownIncludeObject("object".to_string())));
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("unrecognized includeObject value: \"object\"".to_string())
    );
}
