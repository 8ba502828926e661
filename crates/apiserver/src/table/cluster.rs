//! Nodes, Namespaces, Events, Secrets, ConfigMaps and ServiceAccounts, as kube-apiserver prints
//! them (`printNode`, `printNamespace`, `printEvent`, `printSecret`, `printConfigMap`,
//! `printServiceAccount`).

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

use super::format::since;
use super::json::Json;
use super::{age, docs, name, Column, Printer, Row};

pub(super) const NODES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Status", "string", "The status of the node"),
        Column::new("Roles", "string", "The roles of the node"),
        Column::AGE,
        Column::new("Version", "string", docs::NODE_INFO_KUBELET_VERSION),
        Column::new("Internal-IP", "string", docs::NODE_STATUS_ADDRESSES).wide(),
        Column::new("External-IP", "string", docs::NODE_STATUS_ADDRESSES).wide(),
        Column::new("OS-Image", "string", docs::NODE_INFO_OS_IMAGE).wide(),
        Column::new("Kernel-Version", "string", docs::NODE_INFO_KERNEL_VERSION).wide(),
        Column::new(
            "Container-Runtime",
            "string",
            docs::NODE_INFO_CONTAINER_RUNTIME_VERSION,
        )
        .wide(),
    ],
    row: node_row,
};

fn node_row(node: Json, now: Timestamp) -> Row {
    let status = node.at("status");
    let info = status.at("nodeInfo");
    // Only the Ready condition makes the status (the last one, if a node repeats it).
    let mut state = match status
        .at("conditions")
        .items()
        .rev()
        .find(|c| c.at("type").str() == "Ready")
    {
        Some(ready) if ready.at("status").str() == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.path(&["spec", "unschedulable"]).bool() {
        state.push_str(",SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = node
        .path(&["metadata", "labels"])
        .entries()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) => Some(role).filter(|role| !role.is_empty()),
                None if key == "kubernetes.io/role" => value.non_empty(),
                None => None,
            },
        )
        .collect();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |kind: &str| {
        status
            .at("addresses")
            .items()
            .find(|a| a.at("type").str() == kind)
            .map_or("<none>", |a| a.at("address").str())
    };
    let reported = |field: &str| info.at(field).non_empty().unwrap_or("<unknown>");
    Row::new(vec![
        name(node),
        state.into(),
        roles.into(),
        age(node, now),
        info.at("kubeletVersion").str().into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        reported("osImage").into(),
        reported("kernelVersion").into(),
        reported("containerRuntimeVersion").into(),
    ])
}

pub(super) const NAMESPACES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Status", "string", "The status of the namespace"),
        Column::AGE,
    ],
    row: namespace_row,
};

fn namespace_row(namespace: Json, now: Timestamp) -> Row {
    // kube-apiserver sets Active on create and Terminating together with the deletion timestamp,
    // so a stored namespace without a phase is in the one its deletion timestamp says.
    let phase = namespace
        .path(&["status", "phase"])
        .non_empty()
        .unwrap_or_else(|| {
            if namespace.path(&["metadata", "deletionTimestamp"]).is_set() {
                "Terminating"
            } else {
                "Active"
            }
        });
    Row::new(vec![name(namespace), phase.into(), age(namespace, now)])
}

pub(super) const EVENTS: Printer = Printer {
    columns: &[
        Column::new("Last Seen", "string", docs::EVENT_LAST_TIMESTAMP),
        Column::new("Type", "string", docs::EVENT_TYPE),
        Column::new("Reason", "string", docs::EVENT_REASON),
        Column::new("Object", "string", docs::EVENT_INVOLVED_OBJECT),
        Column::new("Subobject", "string", docs::OBJECT_REFERENCE_FIELD_PATH).wide(),
        Column::new("Source", "string", docs::EVENT_SOURCE).wide(),
        Column::new("Message", "string", docs::EVENT_MESSAGE),
        Column::new("First Seen", "string", docs::EVENT_FIRST_TIMESTAMP).wide(),
        Column::new("Count", "string", docs::EVENT_COUNT).wide(),
        Column::NAME.wide(),
    ],
    row: event_row,
};

/// An Event's fields under their core/v1 names: events.k8s.io/v1 Events are the same objects
/// with renamed fields, and kube-apiserver prints both through the core type.
struct EventFields<'a> {
    involved: Json<'a>,
    message: &'a str,
    source: Json<'a>,
    first: Json<'a>,
    last: Json<'a>,
    count: i64,
    reporting_controller: &'a str,
}

impl<'a> EventFields<'a> {
    fn of(event: Json<'a>) -> Self {
        if event.at("apiVersion").str().starts_with("events.k8s.io/") {
            EventFields {
                involved: event.at("regarding"),
                message: event.at("note").str(),
                source: event.at("deprecatedSource"),
                first: event.at("deprecatedFirstTimestamp"),
                last: event.at("deprecatedLastTimestamp"),
                count: event.at("deprecatedCount").int(),
                reporting_controller: event.at("reportingController").str(),
            }
        } else {
            EventFields {
                involved: event.at("involvedObject"),
                message: event.at("message").str(),
                source: event.at("source"),
                first: event.at("firstTimestamp"),
                last: event.at("lastTimestamp"),
                count: event.at("count").int(),
                reporting_controller: event.at("reportingComponent").str(),
            }
        }
    }
}

fn event_row(event: Json, now: Timestamp) -> Row {
    let fields = EventFields::of(event);
    // Events from the newer API carry eventTime and a series instead of first/last/count.
    let first_seen = since(
        fields.first.time().or_else(|| event.at("eventTime").time()),
        now,
    );
    let series = event.at("series");
    let (last_seen, count) = if series.is_set() {
        (
            since(series.at("lastObservedTime").time(), now),
            series.at("count").int(),
        )
    } else {
        let last_seen = match fields.last.time() {
            Some(last) => since(Some(last), now),
            None => first_seen.clone(),
        };
        // Singleton events of the newer API have no count.
        (last_seen, if fields.count == 0 { 1 } else { fields.count })
    };
    let kind = fields.involved.at("kind").str().to_lowercase();
    let object = match fields.involved.at("name").non_empty() {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let component = fields
        .source
        .at("component")
        .non_empty()
        .unwrap_or(fields.reporting_controller);
    let instance = fields
        .source
        .at("host")
        .non_empty()
        .unwrap_or(event.at("reportingInstance").str());
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    Row::new(vec![
        last_seen.into(),
        event.at("type").str().into(),
        event.at("reason").str().into(),
        object.into(),
        fields.involved.at("fieldPath").str().into(),
        source.into(),
        fields.message.trim().into(),
        first_seen.into(),
        count.into(),
        name(event),
    ])
}

pub(super) const SECRETS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Type", "string", docs::SECRET_TYPE),
        Column::new("Data", "string", docs::SECRET_DATA),
        Column::AGE,
    ],
    row: secret_row,
};

fn secret_row(secret: Json, now: Timestamp) -> Row {
    // kube-apiserver merges stringData into data and defaults the type to Opaque on write; count
    // and name them the same for a Secret stored as written.
    let keys: BTreeSet<&str> = secret
        .at("data")
        .entries()
        .chain(secret.at("stringData").entries())
        .map(|(key, _)| key)
        .collect();
    let kind = secret.at("type").non_empty().unwrap_or("Opaque");
    Row::new(vec![
        name(secret),
        kind.into(),
        keys.len().into(),
        age(secret, now),
    ])
}

pub(super) const CONFIG_MAPS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Data", "string", docs::CONFIG_MAP_DATA),
        Column::AGE,
    ],
    row: config_map_row,
};

fn config_map_row(config_map: Json, now: Timestamp) -> Row {
    let entries = config_map.at("data").len() + config_map.at("binaryData").len();
    Row::new(vec![name(config_map), entries.into(), age(config_map, now)])
}

pub(super) const SERVICE_ACCOUNTS: Printer = Printer {
    columns: &[Column::NAME, Column::AGE],
    row: service_account_row,
};

fn service_account_row(account: Json, now: Timestamp) -> Row {
    Row::new(vec![name(account), age(account, now)])
}
