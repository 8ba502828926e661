//! The tables `weft get` prints, one per kind, with kubectl's columns; and the Endpoints view
//! weft derives from a Service's EndpointSlices (its table cell, its `-o json` form and the hint
//! when it has no ready endpoints). Pure: objects in, text out.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_model::object::Object;

use crate::table::{self as cells, Table};

/// The table for objects of `kind` (`Endpoints`: the Services, with `slices` for their cells).
pub fn table_for(
    kind: &str,
    objects: &[Object],
    slices: &[EndpointSlice],
    wide: bool,
    all: bool,
) -> Table {
    match kind {
        "Pod" => pod_table(objects, wide, all),
        "Node" => node_table(objects, wide),
        "Deployment" => deployment_table(objects, all),
        "Namespace" => generic_table(objects, false, &["STATUS"], |_| vec!["Active".into()]),
        "Service" => service_table(objects, wide, all),
        "Endpoints" => generic_table(objects, all, &["ENDPOINTS"], |o| match o {
            Object::Service(svc) => vec![cells::endpoints_cell(&slices_of(slices, svc))],
            _ => vec![String::new()],
        }),
        "EndpointSlice" => generic_table(
            objects,
            all,
            &["ADDRESSTYPE", "PORTS", "ENDPOINTS"],
            |o| match o {
                Object::EndpointSlice(s) => vec![
                    s.address_type.clone(),
                    cells::slice_ports_cell(s),
                    cells::slice_endpoints_cell(s),
                ],
                _ => vec![String::new(); 3],
            },
        ),
        _ => generic_table(objects, all, &[], |_| vec![]),
    }
}

fn with_namespace(all: bool, o: &Object, mut cells: Vec<String>) -> Vec<String> {
    if all {
        cells.insert(0, o.metadata().namespace.clone().unwrap_or_default());
    }
    cells
}

fn headers<'a>(all: bool, rest: &[&'a str]) -> Vec<&'a str> {
    let mut h = Vec::new();
    if all {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(rest);
    h
}

fn created(o: &Object) -> String {
    match &o.metadata().creation_timestamp {
        Some(t) => weft_model::time::format_age(t, &weft_model::time::now()),
        None => "<unknown>".into(),
    }
}

pub fn pod_table(objects: &[Object], wide: bool, all: bool) -> Table {
    let mut cols = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        cols.extend(["IP", "NODE"]);
    }
    let mut t = Table::new(&headers(all, &cols));
    for o in objects {
        let Object::Pod(p) = o else { continue };
        let (ready, total) = weft_model::pod::containers_ready(p);
        let restarts: i32 = p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .sum();
        let mut cells = vec![
            p.metadata.name.clone().unwrap_or_default(),
            format!("{ready}/{total}"),
            pod_status_word(p),
            restarts.to_string(),
            created(o),
        ];
        if wide {
            let status = p.status.as_ref();
            cells.push(
                status
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
            cells.push(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
        }
        t.row(with_namespace(all, o, cells));
    }
    t
}

/// kubectl's STATUS column: the phase, unless a container waits for a reason worth showing.
fn pod_status_word(p: &Pod) -> String {
    let status = p.status.as_ref();
    let waiting = status.and_then(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
    });
    let unschedulable = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
    });
    match (waiting, unschedulable) {
        (_, true) => "Pending".into(),
        (Some(reason), _) => reason,
        (None, _) => weft_model::pod::phase(p).to_string(),
    }
}

fn node_table(objects: &[Object], wide: bool) -> Table {
    let mut cols = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        cols.extend(["INTERNAL-IP", "POD-CIDR"]);
    }
    let mut t = Table::new(&cols);
    for o in objects {
        let Object::Node(n) = o else { continue };
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let roles: Vec<&str> = labels
            .keys()
            .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
            .collect();
        let status = n.status.as_ref();
        let mut cells = vec![
            n.metadata.name.clone().unwrap_or_default(),
            if weft_model::node::is_ready(n) {
                "Ready".into()
            } else {
                "NotReady".into()
            },
            if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            },
            created(o),
            status
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default(),
        ];
        if wide {
            cells.push(
                status
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .map(|a| a.address.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
            cells.push(
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .unwrap_or_else(|| "<none>".into()),
            );
        }
        t.row(cells);
    }
    t
}

fn deployment_table(objects: &[Object], all: bool) -> Table {
    let mut t = Table::new(&headers(
        all,
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
    ));
    for o in objects {
        let Object::Deployment(d) = o else { continue };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let cells = vec![
            d.metadata.name.clone().unwrap_or_default(),
            format!("{}/{want}", s.ready_replicas.unwrap_or(0)),
            s.updated_replicas.unwrap_or(0).to_string(),
            s.available_replicas.unwrap_or(0).to_string(),
            created(o),
        ];
        t.row(with_namespace(all, o, cells));
    }
    t
}

fn generic_table(
    objects: &[Object],
    all: bool,
    extra: &[&str],
    cells: impl Fn(&Object) -> Vec<String>,
) -> Table {
    let mut cols = vec!["NAME"];
    cols.extend_from_slice(extra);
    cols.push("AGE");
    let mut t = Table::new(&headers(all, &cols));
    for o in objects {
        let mut row = vec![o.metadata().name.clone().unwrap_or_default()];
        row.extend(cells(o));
        row.push(created(o));
        t.row(with_namespace(all, o, row));
    }
    t
}

fn service_table(objects: &[Object], wide: bool, all: bool) -> Table {
    let mut cols = vec![
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ];
    if wide {
        cols.push("SELECTOR");
    }
    let mut t = Table::new(&headers(all, &cols));
    for o in objects {
        let Object::Service(svc) = o else { continue };
        let mut row = vec![
            svc.metadata.name.clone().unwrap_or_default(),
            cells::service_type(svc).to_string(),
            cells::cluster_ip_cell(svc),
            cells::external_ip_cell(svc),
            cells::ports_cell(svc),
            created(o),
        ];
        if wide {
            row.push(cells::selector_cell(
                svc.spec.as_ref().and_then(|s| s.selector.as_ref()),
            ));
        }
        t.row(with_namespace(all, o, row));
    }
    t
}

pub fn slices_of<'a>(slices: &'a [EndpointSlice], svc: &Service) -> Vec<&'a EndpointSlice> {
    slices
        .iter()
        .filter(|s| s.metadata.namespace == svc.metadata.namespace)
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(cells::SERVICE_NAME_LABEL))
                == svc.metadata.name.as_ref()
        })
        .collect()
}

/// The `Endpoints` object the slices stand for (one subset per slice), for `-o json|yaml`.
pub fn endpoints_json(svc: &Service, slices: &[&EndpointSlice]) -> serde_json::Value {
    use serde_json::json;
    let address = |e: &k8s_openapi::api::discovery::v1::Endpoint, ip: &String| {
        let mut a = json!({ "ip": ip });
        if let Some(node) = &e.node_name {
            a["nodeName"] = json!(node);
        }
        if let Some(target) = &e.target_ref {
            a["targetRef"] =
                json!({"kind": target.kind, "name": target.name, "namespace": target.namespace});
        }
        a
    };
    let subsets: Vec<serde_json::Value> = slices
        .iter()
        .filter(|s| !s.endpoints.is_empty())
        .map(|s| {
            let (ready, not_ready): (Vec<_>, Vec<_>) =
                s.endpoints.iter().partition(|e| cells::endpoint_ready(e));
            let list = |es: Vec<&k8s_openapi::api::discovery::v1::Endpoint>| {
                es.into_iter()
                    .flat_map(|e| e.addresses.iter().map(move |ip| address(e, ip)))
                    .collect::<Vec<_>>()
            };
            let ports: Vec<_> = s
                .ports
                .iter()
                .flatten()
                .map(|p| json!({"name": p.name, "port": p.port, "protocol": p.protocol}))
                .collect();
            json!({"addresses": list(ready), "notReadyAddresses": list(not_ready), "ports": ports})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": svc.metadata.name,
            "namespace": svc.metadata.namespace,
            "creationTimestamp": svc.metadata.creation_timestamp,
        },
        "subsets": subsets,
    })
}

/// Why a Service shows no ready endpoints, when it has none: the endpoints controller's own
/// diagnosis, else what its selector (or the lack of one) implies.
pub fn no_endpoints_hint(svc: &Service, slices: &[&EndpointSlice]) -> Option<String> {
    if !cells::ready_endpoints(slices, None).is_empty()
        || cells::service_type(svc) == "ExternalName"
    {
        return None;
    }
    let name = svc.metadata.name.clone().unwrap_or_default();
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty());
    let problem = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::describe::ENDPOINTS_PROBLEM_ANNOTATION));
    Some(match (selector, problem) {
        (Some(_), Some(problem)) => format!("service {name} has no ready endpoints: {problem}"),
        (Some(selector), None) => format!(
            "service {name} has no ready endpoints: no ready pods match its selector {}",
            weft_model::selector::format_map(selector)
        ),
        (None, _) => format!(
            "service {name} has no selector, so nothing makes its endpoints: create EndpointSlices \
             by hand, labelled {}={name}",
            cells::SERVICE_NAME_LABEL
        ),
    })
}
