//! Server-side `Table`s (meta.k8s.io/v1) for `kubectl get`: kube-apiserver's columns per resource.
//!
//! kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints what the server
//! sends: the column names, their order, which ones only `-o wide` shows (priority 1) and every
//! cell's text come from here, so they follow kube-apiserver v1.34's printers
//! (`pkg/printers/internalversion`) to the character: ages like `5m12s`, `<none>`, `<pending>`,
//! pod STATUS reasons, `80:30080/TCP`. Like kube-apiserver, every row carries its wide cells
//! (the server prints with `Wide: true`; kubectl drops the priority-1 columns itself), and
//! resources without a printer get the default convertor's `Name` and `Created At`.
//!
//! The printers read the stored JSON through [`json::Json`], a view with Go's zero values, so an
//! object prints exactly as kube-apiserver would print the same object, field by field.
//! A few fields that kube-apiserver always defaults on write (pod phase, Service type, port
//! protocol, replicas) are defaulted here too, so an object stored without them still prints as
//! it would in a real cluster.

mod cluster;
mod docs;
mod format;
mod json;
mod network;
mod workloads;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

use json::Json;

/// What each row's `object` carries (the `includeObject` query parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object (`"object": null`).
    None,
    /// A `PartialObjectMetadata` with the object's metadata: kubectl's default, which it needs
    /// for the NAMESPACE column, `--show-labels` and `-L`.
    #[default]
    Metadata,
    /// The whole object as stored.
    Object,
}

/// An `includeObject` value kube-apiserver would refuse with 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized includeObject value: {0:?}")]
pub struct UnknownIncludeObject(pub String);

impl IncludeObject {
    /// From the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn from_query(value: Option<&str>) -> Result<Self, UnknownIncludeObject> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(UnknownIncludeObject(other.to_string())),
        }
    }
}

/// The `Table` kube-apiserver sends for `items` of `resource` (the plural name, e.g. "pods"):
/// `items` are the objects' JSON as stored (apiVersion and kind set), `now` the time ages are
/// counted to, `list_meta` the list's `metadata` (resourceVersion, continue, remainingItemCount).
/// For a single GET, pass the one object and its own resourceVersion.
pub fn table(
    resource: &str,
    items: &[Value],
    include: IncludeObject,
    now: &Time,
    list_meta: Value,
) -> Value {
    let printer = printer(resource);
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let Row { cells, conditions } = (printer.row)(Json::new(item), now.0);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(conditions) = conditions {
                row.insert("conditions".into(), conditions);
            }
            row.insert("object".into(), row_object(item, include));
            Value::Object(row)
        })
        .collect();
    // ListMeta's fields are all omitempty in Go: a missing resourceVersion is left out, not null.
    let metadata: Map<String, Value> = match list_meta {
        Value::Object(meta) => meta.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": printer.columns.iter().copied().map(Column::to_json).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The row's `object`, as kube-apiserver's `asTable` fills it in.
fn row_object(item: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => item.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": item.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// One `columnDefinitions` entry.
#[derive(Clone, Copy, Debug)]
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

impl Column {
    const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Column {
            name,
            kind,
            format: "",
            description,
            priority: 0,
        }
    }

    /// Every printer's first column: the object's name, which kubectl formats as `kind/name`.
    const NAME: Column = Column::new("Name", "string", docs::OBJECT_NAME).format("name");

    /// The creation timestamp as an age.
    const AGE: Column = Column::new("Age", "string", docs::OBJECT_CREATION_TIMESTAMP);

    const fn format(self, format: &'static str) -> Self {
        Column { format, ..self }
    }

    /// Only shown by `kubectl get -o wide`.
    const fn wide(self) -> Self {
        Column {
            priority: 1,
            ..self
        }
    }

    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// One row's cells (one per column, wide ones included) and its conditions.
struct Row {
    cells: Vec<Value>,
    /// `[{type: Completed, ...}]` for pods that have finished, which kubectl uses to tell them
    /// apart.
    conditions: Option<Value>,
}

impl Row {
    fn new(cells: Vec<Value>) -> Self {
        Row {
            cells,
            conditions: None,
        }
    }
}

/// A resource's columns and how to fill one row of them.
struct Printer {
    columns: &'static [Column],
    row: fn(Json, Timestamp) -> Row,
}

/// The printer for a resource, by plural name; the default convertor for the rest.
fn printer(resource: &str) -> Printer {
    match resource {
        "pods" => workloads::PODS,
        "deployments" => workloads::DEPLOYMENTS,
        "replicasets" => workloads::REPLICA_SETS,
        "daemonsets" => workloads::DAEMON_SETS,
        "services" => network::SERVICES,
        "endpoints" => network::ENDPOINTS,
        "endpointslices" => network::ENDPOINT_SLICES,
        "ingresses" => network::INGRESSES,
        "ingressclasses" => network::INGRESS_CLASSES,
        "networkpolicies" => network::NETWORK_POLICIES,
        "nodes" => cluster::NODES,
        "namespaces" => cluster::NAMESPACES,
        "events" => cluster::EVENTS,
        "secrets" => cluster::SECRETS,
        "configmaps" => cluster::CONFIG_MAPS,
        "serviceaccounts" => cluster::SERVICE_ACCOUNTS,
        _ => DEFAULT,
    }
}

/// apiserver's `DefaultTableConvertor` (`pkg/registry/rest/table.go`): name and creation time.
const DEFAULT: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Created At", "date", docs::OBJECT_CREATION_TIMESTAMP),
    ],
    row: default_row,
};

fn default_row(item: Json, _now: Timestamp) -> Row {
    // Go formats a zero time as year 1, and drops fractions of a second (RFC3339, UTC).
    let created = item
        .path(&["metadata", "creationTimestamp"])
        .time()
        .map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    Row::new(vec![name(item), created.into()])
}

/// The `metadata.name` cell.
fn name(item: Json) -> Value {
    item.path(&["metadata", "name"]).str().into()
}

/// The `Age` cell.
fn age(item: Json, now: Timestamp) -> Value {
    format::since(item.path(&["metadata", "creationTimestamp"]).time(), now).into()
}
