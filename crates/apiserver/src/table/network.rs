//! Services, Endpoints, EndpointSlices, Ingresses, IngressClasses and NetworkPolicies, as
//! kube-apiserver prints them (`printService`, `printEndpoints`, `printEndpointSlice`,
//! `printIngress`, `printIngressClass`, `printNetworkPolicy`).

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

use super::format::{format_label_selector, join_host_port, label_map, list_with_more};
use super::json::Json;
use super::{age, docs, name, Column, Printer, Row};

pub(super) const SERVICES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Type", "string", docs::SERVICE_SPEC_TYPE),
        Column::new("Cluster-IP", "string", docs::SERVICE_SPEC_CLUSTER_IP),
        Column::new("External-IP", "string", docs::SERVICE_SPEC_EXTERNAL_IPS),
        Column::new("Port(s)", "string", docs::SERVICE_SPEC_PORTS),
        Column::AGE,
        Column::new("Selector", "string", docs::SERVICE_SPEC_SELECTOR).wide(),
    ],
    row: service_row,
};

fn service_row(service: Json, now: Timestamp) -> Row {
    let spec = service.at("spec");
    // kube-apiserver defaults the type to ClusterIP when a Service is created.
    let kind = spec.at("type").non_empty().unwrap_or("ClusterIP");
    // `clusterIPs[0]` is what kube-apiserver prints; it always mirrors `clusterIP` there, which is
    // read too for Services written with only the older field. Headless ones show `None`.
    let cluster_ip = spec
        .at("clusterIPs")
        .items()
        .next()
        .map(Json::str)
        .or_else(|| spec.at("clusterIP").non_empty())
        .unwrap_or("<none>");
    let ports: Vec<String> = spec
        .at("ports")
        .items()
        .map(|port| {
            // The protocol defaults to TCP on write.
            let protocol = port.at("protocol").non_empty().unwrap_or("TCP");
            match port.at("nodePort").int() {
                node_port if node_port > 0 => {
                    format!("{}:{node_port}/{protocol}", port.at("port").int())
                }
                _ => format!("{}/{protocol}", port.at("port").int()),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    Row::new(vec![
        name(service),
        kind.into(),
        cluster_ip.into(),
        external_ip(service, kind).into(),
        ports.into(),
        age(service, now),
        label_map(spec.at("selector")).into(),
    ])
}

/// `getServiceExternalIP`: external IPs, load-balancer addresses (`<pending>` until assigned), or
/// the name an ExternalName Service aliases.
fn external_ip(service: Json, kind: &str) -> String {
    let external_ips: Vec<&str> = service
        .path(&["spec", "externalIPs"])
        .items()
        .map(Json::str)
        .collect();
    match kind {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(service.path(&["status", "loadBalancer"]));
            addresses.extend(external_ips.iter().map(|ip| ip.to_string()));
            if addresses.is_empty() {
                "<pending>".to_string()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => service.path(&["spec", "externalName"]).str().to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// A load balancer's ingress points (IP, else hostname), sorted and without duplicates. Never
/// clipped: the server prints wide, and the 16-character clipping is for narrow client output.
fn load_balancer_addresses(status: Json) -> Vec<String> {
    status
        .at("ingress")
        .items()
        .filter_map(|ingress| {
            ingress
                .at("ip")
                .non_empty()
                .or_else(|| ingress.at("hostname").non_empty())
        })
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

pub(super) const ENDPOINTS: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("Endpoints", "string", docs::ENDPOINTS_SUBSETS),
        Column::AGE,
    ],
    row: endpoints_row,
};

fn endpoints_row(endpoints: Json, now: Timestamp) -> Row {
    Row::new(vec![
        name(endpoints),
        format_endpoints(endpoints.at("subsets")).into(),
        age(endpoints, now),
    ])
}

/// `formatEndpoints`: up to three `ip:port` (just `ip` in a subset without ports, as headless
/// Services have), then ` + N more...`; `<none>` without subsets.
fn format_endpoints(subsets: Json) -> String {
    const MAX: usize = 3;
    if subsets.len() == 0 {
        return "<none>".to_string();
    }
    let mut shown = Vec::with_capacity(MAX);
    let mut count = 0;
    for subset in subsets.items() {
        let addresses = subset.at("addresses");
        let ports = subset.at("ports");
        if ports.len() == 0 {
            count += addresses.len();
            shown.extend(
                addresses
                    .items()
                    .map(|a| a.at("ip").str().to_string())
                    .take(MAX - shown.len()),
            );
            continue;
        }
        for port in ports.items() {
            count += addresses.len();
            let port = port.at("port").int();
            shown.extend(
                addresses
                    .items()
                    .map(|a| join_host_port(a.at("ip").str(), port))
                    .take(MAX - shown.len()),
            );
        }
    }
    let list = shown.join(",");
    // Unlike the other lists, an Endpoints whose subsets hold no address prints empty.
    if count > MAX {
        format!("{list} + {} more...", count - MAX)
    } else {
        list
    }
}

pub(super) const ENDPOINT_SLICES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new("AddressType", "string", docs::ENDPOINT_SLICE_ADDRESS_TYPE),
        Column::new("Ports", "string", docs::ENDPOINT_SLICE_PORTS),
        Column::new("Endpoints", "string", docs::ENDPOINT_SLICE_ENDPOINTS),
        Column::AGE,
    ],
    row: endpoint_slice_row,
};

fn endpoint_slice_row(slice: Json, now: Timestamp) -> Row {
    // A port without a number matches every port of the pod: `*`, or its name when it has one.
    let ports = slice.at("ports").items().map(|port| {
        match (port.at("port").opt_int(), port.at("name").value()) {
            (Some(number), _) => number.to_string(),
            (None, Some(_)) => port.at("name").str().to_string(),
            (None, None) => "*".to_string(),
        }
    });
    let addresses = slice
        .at("endpoints")
        .items()
        .flat_map(|endpoint| endpoint.at("addresses").items())
        .map(|address| address.str().to_string());
    Row::new(vec![
        name(slice),
        slice.at("addressType").str().into(),
        list_with_more(ports, 3).into(),
        list_with_more(addresses, 3).into(),
        age(slice, now),
    ])
}

pub(super) const INGRESSES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional \
             configuration",
        ),
        Column::new(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        Column::new(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        Column::new("Ports", "string", "Ports of TLS configurations that open"),
        Column::AGE,
    ],
    row: ingress_row,
};

fn ingress_row(ingress: Json, now: Timestamp) -> Row {
    let spec = ingress.at("spec");
    let ports = if spec.at("tls").len() == 0 {
        "80"
    } else {
        "80, 443"
    };
    Row::new(vec![
        name(ingress),
        spec.at("ingressClassName")
            .value()
            .map_or("<none>", |_| spec.at("ingressClassName").str())
            .into(),
        format_hosts(spec.at("rules")).into(),
        load_balancer_addresses(ingress.path(&["status", "loadBalancer"]))
            .join(",")
            .into(),
        ports.into(),
        age(ingress, now),
    ])
}

/// `formatHosts`: the first three rules' hosts, ` + N more...` counting every further rule, `*`
/// when no rule names a host.
fn format_hosts(rules: Json) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::with_capacity(MAX);
    let mut more = false;
    for rule in rules.items() {
        if hosts.len() == MAX {
            more = true;
        }
        if let Some(host) = rule.at("host").non_empty().filter(|_| !more) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let list = hosts.join(",");
    if more {
        // Go subtracts from the number of rules, host or not; so does this.
        format!("{list} + {} more...", rules.len().saturating_sub(MAX))
    } else {
        list
    }
}

pub(super) const INGRESS_CLASSES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        Column::new(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        Column::AGE,
    ],
    row: ingress_class_row,
};

fn ingress_class_row(class: Json, now: Timestamp) -> Row {
    let spec = class.at("spec");
    let parameters = spec.at("parameters");
    let parameters = if parameters.is_set() {
        let kind = parameters.at("kind").str();
        let group = match parameters.at("apiGroup").value() {
            Some(_) => format!(".{}", parameters.at("apiGroup").str()),
            None => String::new(),
        };
        format!("{kind}{group}/{}", parameters.at("name").str())
    } else {
        "<none>".to_string()
    };
    Row::new(vec![
        name(class),
        spec.at("controller").str().into(),
        parameters.into(),
        age(class, now),
    ])
}

pub(super) const NETWORK_POLICIES: Printer = Printer {
    columns: &[
        Column::NAME,
        Column::new(
            "Pod-Selector",
            "string",
            docs::NETWORK_POLICY_SPEC_POD_SELECTOR,
        ),
        Column::AGE,
    ],
    row: network_policy_row,
};

fn network_policy_row(policy: Json, now: Timestamp) -> Row {
    Row::new(vec![
        name(policy),
        format_label_selector(policy.path(&["spec", "podSelector"])).into(),
        age(policy, now),
    ])
}
