//! Services, Endpoints, EndpointSlices, Ingresses, IngressClasses and NetworkPolicies.

use serde_json::{json, Value};

use super::{check, meta, DAY, HOUR, MINUTE};

fn service(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, 2 * DAY), "spec": spec, "status": status})
}

#[test]
fn services() {
    let services = [
        service(
            "kubernetes",
            json!({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                   "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
            json!({}),
        ),
        service(
            "web",
            json!({"type": "ClusterIP", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
                   "selector": {"app": "web", "tier": "frontend"},
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}),
            json!({}),
        ),
        // Written without the fields kube-apiserver defaults: type, clusterIPs, protocol.
        service(
            "defaults",
            json!({"clusterIP": "10.96.0.20", "selector": {"app": "defaults"}, "ports": [{"port": 8080}]}),
            Value::Null,
        ),
        service(
            "node-port",
            json!({"type": "NodePort", "clusterIP": "10.96.40.2", "clusterIPs": ["10.96.40.2"], "selector": {"app": "web"},
                   "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
            json!({}),
        ),
        service(
            "lb-pending",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.50.5", "clusterIPs": ["10.96.50.5"], "selector": {"app": "web"},
                   "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31080}]}),
            json!({"loadBalancer": {}}),
        ),
        service(
            "lb-assigned",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.50.6", "clusterIPs": ["10.96.50.6"], "selector": {"app": "web"},
                   "ports": [{"port": 80, "protocol": "TCP", "nodePort": 31081}, {"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.201", "ipMode": "VIP"}]}}),
        ),
        service(
            "lb-many",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.50.7", "clusterIPs": ["10.96.50.7"], "externalIPs": ["203.0.113.7"],
                   "ports": [{"port": 443, "protocol": "TCP", "nodePort": 32443}]}),
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "172.18.255.202"}, {"ip": "172.18.255.202"}]}}),
        ),
        service(
            "headless",
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"},
                   "ports": [{"port": 5432, "protocol": "TCP"}]}),
            json!({}),
        ),
        service(
            "external-name",
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        ),
        service(
            "external-ips",
            json!({"type": "ClusterIP", "clusterIP": "10.96.60.1", "clusterIPs": ["10.96.60.1", "fd00:10:96::6001"],
                   "externalIPs": ["203.0.113.10", "203.0.113.11"], "ports": [{"port": 8443, "protocol": "SCTP"}]}),
            json!({}),
        ),
    ];
    check("services", "services", &services);
}

#[test]
fn endpoints() {
    let endpoints = |name: &str, subsets: Value| json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta(name, HOUR), "subsets": subsets});
    let addresses = |ips: &[&str]| ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>();
    let list = [
        endpoints(
            "kubernetes",
            json!([{"addresses": addresses(&["172.18.0.2"]), "ports": [{"name": "https", "port": 6443}]}]),
        ),
        endpoints(
            "web",
            json!([{"addresses": addresses(&["10.244.1.5", "10.244.2.7"]), "ports": [{"port": 80}]}]),
        ),
        endpoints(
            "many",
            json!([
                {"addresses": addresses(&["10.244.1.5", "10.244.2.7"]), "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
                {"addresses": addresses(&["10.244.3.9"]), "notReadyAddresses": addresses(&["10.244.3.10"]), "ports": [{"port": 80}]},
            ]),
        ),
        endpoints(
            "headless-no-ports",
            json!([{"addresses": addresses(&["10.244.1.5", "fd00:10:244::5"])}]),
        ),
        endpoints(
            "ipv6",
            json!([{"addresses": addresses(&["fd00:10:244::5"]), "ports": [{"port": 8080}]}]),
        ),
        endpoints(
            "only-not-ready",
            json!([{"notReadyAddresses": addresses(&["10.244.1.9"]), "ports": [{"port": 80}]}]),
        ),
        endpoints("none", Value::Null),
    ];
    check("endpoints", "endpoints", &list);
}

#[test]
fn endpoint_slices() {
    let slice = |name: &str, address_type: &str, ports: Value, endpoints: Value| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta(name, 20 * MINUTE),
            "addressType": address_type, "ports": ports, "endpoints": endpoints,
        })
    };
    let endpoint = |ips: &[&str]| json!({"addresses": ips, "conditions": {"ready": true}});
    let slices = [
        slice(
            "web-abc12",
            "IPv4",
            json!([{"name": "http", "port": 80, "protocol": "TCP"}]),
            json!([endpoint(&["10.244.1.5"]), endpoint(&["10.244.2.7"])]),
        ),
        slice(
            "many-xyz89",
            "IPv4",
            json!([{"port": 80}, {"port": 443}, {"name": "metrics", "port": 9090}, {"port": 9443}]),
            json!([
                endpoint(&["10.244.1.5"]),
                endpoint(&["10.244.2.7"]),
                endpoint(&["10.244.3.9"]),
                endpoint(&["10.244.4.2"]),
                endpoint(&["10.244.5.1"])
            ]),
        ),
        slice(
            "headless-q7w2e",
            "IPv6",
            json!([{"name": "", "protocol": "TCP"}, {"protocol": "TCP"}]),
            json!([endpoint(&["fd00:10:244::5"])]),
        ),
        slice("empty-r4t5y", "IPv4", Value::Null, Value::Null),
    ];
    check("endpointslices", "endpointslices", &slices);
}

#[test]
fn ingresses() {
    let ingress = |name: &str, spec: Value, status: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta(name, 6 * HOUR), "spec": spec, "status": status});
    let rule = |host: Option<&str>| {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}})
    };
    let ingresses = [
        ingress(
            "web",
            json!({"ingressClassName": "weft", "rules": [rule(Some("web.example.com"))]}),
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}),
        ),
        ingress(
            "tls",
            json!({"ingressClassName": "weft", "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                              "rules": [rule(Some("a.example.com")), rule(Some("b.example.com"))]}),
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}, {"hostname": "ingress.example.com"}]}}),
        ),
        ingress(
            "many-hosts",
            json!({"rules": [rule(Some("a.example.com")), rule(None), rule(Some("b.example.com")),
                                                rule(Some("c.example.com")), rule(Some("d.example.com"))]}),
            json!({}),
        ),
        ingress(
            "catch-all",
            json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}, "rules": [rule(None)]}),
            Value::Null,
        ),
    ];
    check("ingresses", "ingresses", &ingresses);
}

#[test]
fn ingress_classes() {
    let class = |name: &str, spec: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": name, "creationTimestamp": super::ago(DAY)}, "spec": spec});
    let classes = [
        class("weft", json!({"controller": "weft.dev/ingress"})),
        class(
            "with-params",
            json!({"controller": "example.com/ingress",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb", "scope": "Cluster"}}),
        ),
        class(
            "core-params",
            json!({"controller": "example.com/ingress",
            "parameters": {"kind": "ConfigMap", "name": "ingress-config", "namespace": "ingress", "scope": "Namespace"}}),
        ),
    ];
    check("ingressclasses", "ingressclasses", &classes);
}

#[test]
fn network_policies() {
    let policy = |name: &str, pod_selector: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name, 4 * DAY),
               "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"]}})
    };
    let policies = [
        policy("default-deny", json!({})),
        policy("web-allow", json!({"matchLabels": {"app": "web"}})),
        policy(
            "db",
            json!({"matchLabels": {"app": "db"}, "matchExpressions": [
                {"key": "role", "operator": "NotIn", "values": ["replica", "backup"]},
                {"key": "debug", "operator": "DoesNotExist"},
            ]}),
        ),
    ];
    check("networkpolicies", "networkpolicies", &policies);
}
