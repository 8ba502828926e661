use super::*;
use crate::view::views;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::fmt::Write;

fn node() -> ProxyNode {
    ProxyNode {
        name: "lab-node1".into(),
        ip: "172.20.0.2".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        external_ip_ranges: vec!["203.0.113.0/24".parse().unwrap()],
    }
}

fn docs<T: serde::de::DeserializeOwned>(yaml: &str) -> Vec<T> {
    yaml.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect()
}

/// Every kind of Service the proxy handles, with endpoints on this node and another.
pub(crate) const SERVICES: &str = "
metadata: {name: web, namespace: default}
spec: {type: ClusterIP, clusterIP: 10.96.0.1, ports: [{name: http, port: 80, protocol: TCP}]}
---
metadata: {name: dns, namespace: kube-system}
spec: {type: ClusterIP, clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]}
---
metadata: {name: np, namespace: default}
spec: {type: NodePort, clusterIP: 10.96.0.2, externalTrafficPolicy: Cluster, ports: [{port: 80, nodePort: 30080}]}
---
metadata: {name: lb-local, namespace: default}
spec: {type: LoadBalancer, clusterIP: 10.96.0.3, externalTrafficPolicy: Local, ports: [{port: 80, nodePort: 30081}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.1}]}}
---
metadata: {name: sticky, namespace: default}
spec: {clusterIP: 10.96.0.4, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}, ports: [{port: 80}]}
---
metadata: {name: empty, namespace: default}
spec: {type: NodePort, clusterIP: 10.96.0.5, externalIPs: [203.0.113.50], ports: [{port: 80, nodePort: 30082}]}
---
metadata: {name: itp, namespace: default}
spec: {clusterIP: 10.96.0.6, internalTrafficPolicy: Local, ports: [{port: 80}]}
---
metadata: {name: headless, namespace: default}
spec: {clusterIP: None, ports: [{port: 80}]}
---
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: example.com}
";

pub(crate) const SLICES: &str = "
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.0.5], nodeName: lab-node1, conditions: {ready: true}}
  - {addresses: [10.244.1.5], nodeName: lab-node2, conditions: {ready: true}}
  - {addresses: [10.244.1.6], nodeName: lab-node2, conditions: {ready: false, serving: true, terminating: true}}
---
metadata: {name: dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 5353, protocol: UDP}, {name: dns-tcp, port: 5353, protocol: TCP}]
endpoints: [{addresses: [10.244.1.9], nodeName: lab-node2}]
---
metadata: {name: np-1, namespace: default, labels: {kubernetes.io/service-name: np}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.1.7], nodeName: lab-node2, conditions: {ready: true}}]
---
metadata: {name: lb-local-1, namespace: default, labels: {kubernetes.io/service-name: lb-local}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.0.8], nodeName: lab-node1, conditions: {ready: true}}, {addresses: [10.244.1.8], nodeName: lab-node2, conditions: {ready: true}}]
---
metadata: {name: sticky-1, namespace: default, labels: {kubernetes.io/service-name: sticky}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.0.9], nodeName: lab-node1}, {addresses: [10.244.1.10], nodeName: lab-node2}]
---
metadata: {name: itp-1, namespace: default, labels: {kubernetes.io/service-name: itp}}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints: [{addresses: [10.244.1.11], nodeName: lab-node2}]
";

/// Changes `rs` for one service port and returns the transaction's nft commands against the
/// table before; checks that the transaction takes that table to exactly the new one.
fn change(
    rs: &mut Ruleset,
    old: Option<&ServicePortView>,
    new: Option<&ServicePortView>,
) -> String {
    let mut table = rs.table();
    let tx = rs.change(&node(), old, new);
    let script = tx.script(&table);
    tx.apply_to(&mut table);
    assert_eq!(
        table,
        rs.table(),
        "the transaction adds up to the new table"
    );
    script
}

fn all() -> Ruleset {
    let services: Vec<Service> = docs(SERVICES);
    let slices: Vec<EndpointSlice> = docs(SLICES);
    compile(&node(), &views(&node(), &services, &slices))
}

#[test]
fn every_service_type_snapshot() {
    insta::assert_snapshot!(all().full_script());
}

#[test]
fn views_pick_ready_endpoints_and_fall_back_to_terminating_ones() {
    let services: Vec<Service> = docs(SERVICES);
    let mut slices: Vec<EndpointSlice> = docs(SLICES);
    let vs = views(&node(), &services, &slices);
    let web = vs.iter().find(|v| v.name == "web").unwrap();
    let ips: Vec<String> = web.endpoints.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(
        ips,
        ["10.244.0.5", "10.244.1.5"],
        "the terminating one is out while others are ready"
    );
    assert_eq!(web.local_endpoints.len(), 1);
    // Only the terminating endpoint left: it still serves.
    slices[0].endpoints.truncate(0);
    slices[0].endpoints.push(serde_norway::from_str("{addresses: [10.244.1.6], conditions: {ready: false, serving: true, terminating: true}}").unwrap());
    let vs = views(&node(), &services, &slices);
    let web = vs.iter().find(|v| v.name == "web").unwrap();
    assert_eq!(web.endpoints.len(), 1);
    assert!(
        vs.iter().all(|v| v.name != "headless" && v.name != "ext"),
        "nothing to proxy for those"
    );
}

#[test]
fn updates_touch_only_what_changed() {
    let mut rs = all();
    let services: Vec<Service> = docs(SERVICES);
    let mut slices: Vec<EndpointSlice> = docs(SLICES);
    let before = views(&node(), &services, &slices);
    let web = before.iter().find(|v| v.name == "web").unwrap();
    assert_eq!(change(&mut rs, Some(web), Some(web)), "");
    // One web endpoint goes away.
    slices[0].endpoints.remove(1);
    let after = views(&node(), &services, &slices);
    let web2 = after.iter().find(|v| v.name == "web").unwrap();
    let script = change(&mut rs, Some(web), Some(web2));
    insta::assert_snapshot!(script);
    assert_eq!(rs, compile(&node(), &after));
    // The np Service is deleted: its elements and chains go, nothing else.
    let np = after.iter().find(|v| v.name == "np").unwrap();
    let gone = change(&mut rs, Some(np), None);
    assert!(
        gone.contains("delete element ip weft_services service_ips { 10.96.0.2 . tcp . 80 }"),
        "{gone}"
    );
    assert!(
        gone.contains("delete element ip weft_services service_nodeports { tcp . 30080 }"),
        "{gone}"
    );
    assert!(
        gone.contains("delete element ip weft_services backends"),
        "{gone}"
    );
    assert!(
        !gone.contains("chain") && !gone.contains("goto"),
        "a Service without affinity is only data elements: {gone}"
    );
    assert!(!gone.contains("web"), "{gone}");
    // A different node address changes the fixed part: only a full reload will do.
    let mut moved = node();
    moved.ip = "172.20.0.9".parse().unwrap();
    assert!(rs.base_for(&node()));
    assert!(!rs.base_for(&moved));
}

#[test]
fn map_lookups_do_not_grow_with_services() {
    // 1000 services compile to 1000 map elements and one shared pick chain (all have one
    // endpoint), and still 2 lookups per packet in the `services` chain: the base part is the
    // same text whatever the count.
    let mut services = String::new();
    let mut slices = String::new();
    for i in 0..1000 {
        let _ = write!(
            services,
            "metadata: {{name: s{i}, namespace: default}}\nspec: {{clusterIP: 10.96.{}.{}, ports: [{{port: 80}}]}}\n---\n",
            i / 250,
            i % 250 + 1
        );
        let _ = write!(
            slices,
            "metadata: {{name: s{i}-1, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints: [{{addresses: [10.244.{}.{}]}}]\n---\n",
            i / 250,
            i % 250 + 1
        );
    }
    let rs = compile(&node(), &views(&node(), &docs(&services), &docs(&slices)));
    assert_eq!(rs.chain_count(), 1, "pick_1");
    assert_eq!(rs.marks["service_ips"].len(), 1000);
    assert_eq!(rs.frontend_count(), 1000);
    assert_eq!(rs.base, all().base);
}

#[test]
fn changes_one_service_at_a_time_equal_a_whole_compile() {
    let services: Vec<Service> = docs(SERVICES);
    let slices: Vec<EndpointSlice> = docs(SLICES);
    let all = views(&node(), &services, &slices);
    // Build up from nothing, one service port at a time.
    let mut rs = compile(&node(), &[]);
    for v in &all {
        let script = change(&mut rs, None, Some(v));
        assert!(!script.is_empty());
    }
    assert_eq!(rs, compile(&node(), &all));
    assert_eq!(rs.full_script(), all_script());

    // Endpoints change (web loses one, sticky gains one), a policy changes, a service goes.
    let mut slices2 = slices.clone();
    slices2[0].endpoints.remove(1);
    slices2[4]
        .endpoints
        .push(serde_norway::from_str("{addresses: [10.244.0.20], nodeName: lab-node1}").unwrap());
    let mut services2 = services.clone();
    services2.retain(|s| s.metadata.name.as_deref() != Some("np"));
    let lb = services2
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("lb-local"))
        .unwrap();
    lb.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
    let next = views(&node(), &services2, &slices2);
    let ids: BTreeSet<String> = all.iter().chain(&next).map(|v| v.id()).collect();
    let mut touched = 0;
    for id in ids {
        let old = all.iter().find(|v| v.id() == id);
        let new = next.iter().find(|v| v.id() == id);
        if old != new {
            touched += 1;
            let script = change(&mut rs, old, new);
            assert!(
                !script.contains("svc-default/dns") && !script.contains("itp"),
                "only the changed ports: {script}"
            );
        }
    }
    assert_eq!(touched, 4, "web, sticky, lb-local, np");
    assert_eq!(rs, compile(&node(), &next));

    // And down to nothing again.
    for v in &next {
        change(&mut rs, Some(v), None);
    }
    assert_eq!(rs, compile(&node(), &[]));
}

fn all_script() -> String {
    all().full_script()
}

#[test]
fn cluster_ips_set_follows_services_through_changes() {
    let services: Vec<Service> = docs(SERVICES);
    let slices: Vec<EndpointSlice> = docs(SLICES);
    let all = views(&node(), &services, &slices);
    let rs = compile(&node(), &all);
    // Every proxied Service's address, with or without endpoints; headless and ExternalName
    // Services have none. dns has two ports on one address.
    assert_eq!(
        rs.cluster_ips
            .iter()
            .map(|(k, n)| format!("{k}x{n}"))
            .collect::<Vec<_>>(),
        [
            "10.96.0.1x1",
            "10.96.0.2x1",
            "10.96.0.3x1",
            "10.96.0.4x1",
            "10.96.0.5x1",
            "10.96.0.6x1",
            "10.96.0.10x2",
        ]
    );
    let script = rs.full_script();
    assert!(
        script.contains("chain cluster_ips_check {\n    ip daddr @cluster_ips limit rate 10/second burst 20 packets log prefix \"weft reject no such port\" group 87\n    ip daddr @cluster_ips reject\n  }"),
        "{script}"
    );

    // One of dns's ports goes: the address stays for the other one.
    let mut inc = rs.clone();
    let dns_udp = all
        .iter()
        .find(|v| v.id() == "kube-system/dns/udp/dns")
        .unwrap();
    let dns_tcp = all
        .iter()
        .find(|v| v.id() == "kube-system/dns/tcp/dns-tcp")
        .unwrap();
    let script = change(&mut inc, Some(dns_udp), None);
    assert!(!script.contains("cluster_ips"), "{script}");
    // The other one goes too: now the address leaves the set.
    let script = change(&mut inc, Some(dns_tcp), None);
    assert!(
        script.contains("delete element ip weft_services cluster_ips { 10.96.0.10 }"),
        "{script}"
    );
    let without_dns: Vec<ServicePortView> =
        all.iter().filter(|v| v.name != "dns").cloned().collect();
    assert_eq!(inc, compile(&node(), &without_dns));

    // A Service's address changes: the old one out, the new one in, in one update.
    let web = all.iter().find(|v| v.name == "web").unwrap();
    let mut moved = web.clone();
    moved.cluster_ip = Some("10.96.0.77".parse().unwrap());
    let script = change(&mut inc, Some(web), Some(&moved));
    assert!(
        script.contains("delete element ip weft_services cluster_ips { 10.96.0.1 }")
            && script.contains("add element ip weft_services cluster_ips { 10.96.0.77 }"),
        "{script}"
    );
    let next: Vec<ServicePortView> = without_dns
        .iter()
        .map(|v| {
            if v.name == "web" {
                moved.clone()
            } else {
                v.clone()
            }
        })
        .collect();
    assert_eq!(inc, compile(&node(), &next));
    assert_eq!(inc.table(), compile(&node(), &next).table());
    let set = &inc.table().sets["cluster_ips"];
    assert!(set
        .elements
        .contains_key(&vec![weft_dataplane::nft::Value::Ipv4(
            "10.96.0.77".parse().unwrap()
        )]));
    assert_eq!(set.elements.len(), 6, "{set:?}");
}
