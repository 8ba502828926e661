//! kubectl-style tables: upper-case headers, columns padded to their widest cell, three spaces apart;
//! and the cells kubectl prints for Services, Endpoints and EndpointSlices, kept here as pure
//! functions so `get` and `describe` show the same words and tests can pin them down exactly.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes `prefix` before every cell of the NAME column (`pod/web` in a mixed listing).
    pub fn prefix_names(&mut self, prefix: &str) {
        let Some(col) = self.headers.iter().position(|h| h == "NAME") else {
            return;
        };
        for row in &mut self.rows {
            if let Some(cell) = row.get_mut(col) {
                cell.insert_str(0, prefix);
            }
        }
    }

    /// Each column's width: its widest cell or header.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.len());
                }
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = line(&widths, &self.headers);
        for row in &self.rows {
            out.push_str(&line(&widths, row));
        }
        out
    }

    /// The rows alone, in columns at least `min` wide: what `get --watch` prints under the
    /// table it printed first, so later rows line up with it while they fit.
    pub fn render_rows(&self, min: &[usize]) -> String {
        let mut widths = self.widths();
        for (w, m) in widths.iter_mut().zip(min) {
            *w = (*w).max(*m);
        }
        self.rows.iter().map(|row| line(&widths, row)).collect()
    }
}

fn line(widths: &[usize], cells: &[String]) -> String {
    let last = cells.len().saturating_sub(1);
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i < last {
            let width = widths.get(i).copied().unwrap_or(0);
            out.push_str(&" ".repeat(width.saturating_sub(cell.len()) + 3));
        }
    }
    out.push('\n');
    out
}

/// kubectl shows at most this many addresses in a list cell, then "+ N more...".
const LIST_LIMIT: usize = 3;

/// The label tying an EndpointSlice to its Service.
pub use weft_model::endpoints::SERVICE_NAME_LABEL;

/// `a,b,c + 2 more...`, or `empty` for no items (kubectl's truncated list cells).
pub fn truncated_list(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let shown = items[..items.len().min(LIST_LIMIT)].join(",");
    match items.len().saturating_sub(LIST_LIMIT) {
        0 => shown,
        more => format!("{shown} + {more} more..."),
    }
}

/// `spec.type`, defaulting like the API server does.
pub fn service_type(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
}

/// CLUSTER-IP: the address, `None` for a headless Service, `<none>` when there is none
/// (ExternalName, or not allocated).
pub fn cluster_ip_cell(svc: &Service) -> String {
    match svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() => ip.to_string(),
        _ => "<none>".into(),
    }
}

pub use weft_model::service::load_balancer_ingress;

/// EXTERNAL-IP as kubectl prints it: the ExternalName's name; for a LoadBalancer its ingress
/// addresses and external IPs, or `<pending>` while it has none; otherwise the external IPs
/// or `<none>`.
pub fn external_ip_cell(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external_ips = spec.external_ips.unwrap_or_default();
    match service_type(svc) {
        "ExternalName" => spec.external_name.unwrap_or_else(|| "<none>".into()),
        "LoadBalancer" => {
            let mut all = load_balancer_ingress(svc);
            all.extend(external_ips);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        _ if external_ips.is_empty() => "<none>".into(),
        _ => external_ips.join(","),
    }
}

/// One service port as kubectl writes it: `80/TCP`, or `80:30080/TCP` with a node port.
pub fn service_port_word(port: &ServicePort) -> String {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.node_port {
        Some(node_port) if node_port > 0 => format!("{}:{node_port}/{protocol}", port.port),
        _ => format!("{}/{protocol}", port.port),
    }
}

/// PORT(S): every port, comma-separated, `<none>` without ports.
pub fn ports_cell(svc: &Service) -> String {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let words: Vec<String> = ports.into_iter().flatten().map(service_port_word).collect();
    if words.is_empty() {
        "<none>".into()
    } else {
        words.join(",")
    }
}

/// The selector as `app=web,tier=db`, `<none>` without one.
pub fn selector_cell(selector: Option<&BTreeMap<String, String>>) -> String {
    match selector {
        Some(s) if !s.is_empty() => weft_model::selector::format_map(s),
        _ => "<none>".into(),
    }
}

/// `ip:port` with IPv6 addresses in brackets (Go's `net.JoinHostPort`, which kubectl uses).
pub fn host_port(ip: &str, port: i32) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

pub use weft_model::endpoints::is_ready as endpoint_ready;

/// The ready `ip:port` pairs of a Service's slices, the way its Endpoints object lists them;
/// with `port_name`, only the slice ports of that name (one service port's endpoints).
pub fn ready_endpoints(slices: &[&EndpointSlice], port_name: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for slice in slices {
        let ports: Vec<i32> = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| port_name.is_none_or(|n| p.name.as_deref().unwrap_or("") == n))
            .filter_map(|p| p.port)
            .collect();
        for endpoint in slice.endpoints.iter().filter(|e| endpoint_ready(e)) {
            for ip in &endpoint.addresses {
                if ports.is_empty() && port_name.is_none() {
                    out.push(ip.clone());
                }
                out.extend(ports.iter().map(|port| host_port(ip, *port)));
            }
        }
    }
    out
}

/// ENDPOINTS of `get endpoints`: ready pairs, truncated, `<none>` when empty.
pub fn endpoints_cell(slices: &[&EndpointSlice]) -> String {
    truncated_list(&ready_endpoints(slices, None), "<none>")
}

/// PORTS of `get endpointslices`: the port numbers, `<unset>` for a port without a number or a
/// slice without ports.
pub fn slice_ports_cell(slice: &EndpointSlice) -> String {
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| p.port.map_or_else(|| "<unset>".into(), |n| n.to_string()))
        .collect();
    truncated_list(&ports, "<unset>")
}

/// ENDPOINTS of `get endpointslices`: every address, ready or not (as kubectl shows slices).
pub fn slice_endpoints_cell(slice: &EndpointSlice) -> String {
    let addresses: Vec<String> = slice
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().cloned())
        .collect();
    truncated_list(&addresses, "<unset>")
}

/// TargetPort as describe prints it: `8080/TCP`, `http/TCP`; the port itself when unset.
pub fn target_port_word(port: &ServicePort) -> String {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        Some(IntOrString::Int(n)) => format!("{n}/{protocol}"),
        Some(IntOrString::String(name)) => format!("{name}/{protocol}"),
        None => format!("{}/{protocol}", port.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["NAME", "READY"]);
        t.row(vec!["web-abc".into(), "1/1".into()]);
        t.row(vec!["x".into(), "0/2".into()]);
        assert_eq!(
            t.render(),
            "NAME      READY\nweb-abc   1/1\nx         0/2\n"
        );
    }

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        let mut v = v;
        v["addressType"] = "IPv4".into();
        v["metadata"] = serde_json::json!({"name": "s"});
        serde_json::from_value(v).expect("an EndpointSlice")
    }

    /// (TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)) of a Service.
    fn cells(s: &Service) -> [String; 4] {
        [
            service_type(s).to_string(),
            cluster_ip_cell(s),
            external_ip_cell(s),
            ports_cell(s),
        ]
    }

    #[test]
    fn cluster_ip_service() {
        let s = svc(serde_json::json!({"spec": {
            "clusterIP": "10.96.0.10",
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
        }}));
        assert_eq!(
            cells(&s),
            ["ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP"]
        );
    }

    #[test]
    fn cluster_ip_with_external_ips() {
        let s = svc(serde_json::json!({"spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.11",
            "externalIPs": ["192.0.2.1", "192.0.2.2"], "ports": [{"port": 443}],
        }}));
        assert_eq!(
            cells(&s),
            ["ClusterIP", "10.96.0.11", "192.0.2.1,192.0.2.2", "443/TCP"]
        );
    }

    #[test]
    fn headless_service() {
        let s = svc(serde_json::json!({"spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}));
        assert_eq!(cells(&s), ["ClusterIP", "None", "<none>", "5432/TCP"]);
    }

    #[test]
    fn node_port_service() {
        let s = svc(serde_json::json!({"spec": {
            "type": "NodePort", "clusterIP": "10.96.0.12",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081, "protocol": "SCTP"}],
        }}));
        assert_eq!(
            cells(&s),
            [
                "NodePort",
                "10.96.0.12",
                "<none>",
                "80:30080/TCP,81:30081/SCTP"
            ]
        );
    }

    #[test]
    fn load_balancer_pending_and_served() {
        let mut v = serde_json::json!({"spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.0.13",
            "ports": [{"port": 80, "nodePort": 31000}],
        }});
        assert_eq!(
            cells(&svc(v.clone())),
            ["LoadBalancer", "10.96.0.13", "<pending>", "80:31000/TCP"]
        );
        v["status"] = serde_json::json!({"loadBalancer": {"ingress": [
            {"ip": "172.18.255.1"}, {"hostname": "lb.example"}
        ]}});
        assert_eq!(external_ip_cell(&svc(v.clone())), "172.18.255.1,lb.example");
        v["spec"]["externalIPs"] = serde_json::json!(["192.0.2.9"]);
        assert_eq!(
            external_ip_cell(&svc(v)),
            "172.18.255.1,lb.example,192.0.2.9"
        );
    }

    #[test]
    fn external_name_service() {
        let s = svc(
            serde_json::json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        );
        assert_eq!(
            cells(&s),
            ["ExternalName", "<none>", "db.example.com", "<none>"]
        );
    }

    #[test]
    fn selector_and_target_ports() {
        let sel = BTreeMap::from([
            ("tier".to_string(), "db".to_string()),
            ("app".into(), "x".into()),
        ]);
        assert_eq!(selector_cell(Some(&sel)), "app=x,tier=db");
        assert_eq!(selector_cell(None), "<none>");
        let port: ServicePort = serde_json::from_value(serde_json::json!(
            {"port": 80, "targetPort": "http"}
        ))
        .unwrap();
        assert_eq!(target_port_word(&port), "http/TCP");
        let port: ServicePort = serde_json::from_value(serde_json::json!({"port": 80})).unwrap();
        assert_eq!(target_port_word(&port), "80/TCP");
    }

    #[test]
    fn endpoints_are_ready_pairs_truncated_like_kubectl() {
        let s = slice(serde_json::json!({
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.0.1"]},
                {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.4"]},
                {"addresses": ["10.244.0.5"]},
                {"addresses": ["fd00::6"]},
            ],
        }));
        assert_eq!(
            ready_endpoints(&[&s], None),
            [
                "10.244.0.1:8080",
                "10.244.0.2:8080",
                "10.244.0.4:8080",
                "10.244.0.5:8080",
                "[fd00::6]:8080"
            ]
        );
        assert_eq!(
            endpoints_cell(&[&s]),
            "10.244.0.1:8080,10.244.0.2:8080,10.244.0.4:8080 + 2 more..."
        );
        assert_eq!(
            ready_endpoints(&[&s], Some("metrics")),
            Vec::<String>::new()
        );
        assert_eq!(ready_endpoints(&[&s], Some("http")).len(), 5);
        assert_eq!(slice_ports_cell(&s), "8080");
        assert_eq!(
            slice_endpoints_cell(&s),
            "10.244.0.1,10.244.0.2,10.244.0.3 + 3 more..."
        );
        let empty = slice(serde_json::json!({"endpoints": []}));
        assert_eq!(endpoints_cell(&[&empty]), "<none>");
        assert_eq!(slice_ports_cell(&empty), "<unset>");
        assert_eq!(slice_endpoints_cell(&empty), "<unset>");
    }
}
