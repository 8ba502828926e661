use super::*;

fn with(f: impl FnOnce(&mut ClusterConfig)) -> ClusterConfig {
    let mut config = ClusterConfig::default();
    f(&mut config);
    config
}

fn invalid(config: &ClusterConfig) -> String {
    config.validate().unwrap_err().to_string()
}

#[test]
fn defaults_are_kubernetes_defaults_and_valid() {
    let c = ClusterConfig::default();
    c.validate().unwrap();
    assert_eq!(c.name.as_str(), "weft");
    assert_eq!(c.pod_cidr.to_string(), "10.244.0.0/16");
    assert_eq!(c.service_cidr.to_string(), "10.96.0.0/12");
    assert_eq!(c.node_network.to_string(), "172.20.0.0/24");
    assert_eq!(c.node_name(0), "weft-node1");
    assert_eq!(c.node_name(1), "weft-node2");
    assert_eq!(c.node_index("weft-node1"), Some(0));
    assert_eq!(c.node_index("weft-node2"), None);
    assert_eq!(c.node_index("weft-node0"), None);
    assert_eq!(c.node_pod_cidr(0).unwrap().to_string(), "10.244.0.0/24");
    assert_eq!(c.node_pod_cidr(3).unwrap().to_string(), "10.244.3.0/24");
    assert_eq!(c.node_pod_cidr(256), None);
    assert_eq!(c.node_ip(0), Some(Ipv4Addr::new(172, 20, 0, 2)));
    assert_eq!(c.node_gateway_ip(), Ipv4Addr::new(172, 20, 0, 1));
}

#[test]
fn reads_a_full_document() {
    let text = r#"
apiVersion: weft.dev/v1alpha1
kind: Cluster
name: lab2
nodes: 3
podCIDR: 10.200.0.0/16
nodeCIDRMaskSize: 25
serviceCIDR: 10.100.0.0/16
dnsServiceIP: 10.100.0.53
clusterDomain: example.internal
nodeNetwork: 172.31.5.0/28
nodePortRange: "31000-31999"
nodeLabels:
  lab2-node2:
    zone: b
"#;
    let c = ClusterConfig::from_yaml("lab.yaml", text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.name.as_str(), "lab2");
    assert_eq!(c.nodes, 3);
    assert_eq!(c.node_cidr_mask, 25);
    assert_eq!(c.node_pod_cidr(1).unwrap().to_string(), "10.200.0.128/25");
    assert_eq!(c.dns_service_ip, Ipv4Addr::new(10, 100, 0, 53));
    assert_eq!(c.node_port_range, (31000, 31999));
    assert_eq!(c.node_labels["lab2-node2"]["zone"], "b");
    assert_eq!(c.cluster_domain, "example.internal");
}

#[test]
fn minimal_and_empty_documents_take_defaults() {
    let c = ClusterConfig::from_yaml("c.yaml", "apiVersion: weft.dev/v1alpha1\nkind: Cluster\n")
        .unwrap();
    assert_eq!(c, ClusterConfig::default());
    assert_eq!(
        ClusterConfig::from_yaml("c.yaml", "").unwrap(),
        ClusterConfig::default()
    );
}

#[test]
fn document_errors_name_file_and_field() {
    let head = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\n";
    let cases = [
        (
            format!("{head}podCIDR: 10.244.0.1/16\n"),
            "c.yaml: podCIDR: 10.244.0.1/16 has host bits set; did you mean 10.244.0.0/16?",
        ),
        (
            format!("{head}nodes: many\n"),
            "c.yaml: nodes: invalid type: string \"many\", expected u32",
        ),
        (
            format!("{head}nodePortRange: \"30000\"\n"),
            "c.yaml: nodePortRange: \"30000\" is not a port range like \"30000-32767\"",
        ),
        (
            format!("{head}name: Weft\n"),
            "c.yaml: name: invalid cluster name \"Weft\": may only contain a-z, 0-9 and '-'",
        ),
        (
            "apiVersion: v1\nkind: Cluster\n".to_string(),
            "c.yaml: apiVersion: \"v1\" is not \"weft.dev/v1alpha1\"",
        ),
        (
            "apiVersion: weft.dev/v1alpha1\n".to_string(),
            "c.yaml: kind: missing (expected \"Cluster\")",
        ),
    ];
    for (text, want) in cases {
        let err = ClusterConfig::from_yaml("c.yaml", &text).unwrap_err();
        // serde_norway adds " at line L column C" to its own errors.
        assert!(err.to_string().starts_with(want), "for {text}: {err}");
    }
    let err = ClusterConfig::from_yaml("c.yaml", &format!("{head}podCidr: 10.0.0.0/8\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("c.yaml: podCidr: unknown field `podCidr`, expected one of"),
        "{err}"
    );
    let err = ClusterConfig::from_yaml("c.yaml", "nodes: [1").unwrap_err();
    assert!(err.to_string().starts_with("c.yaml: "), "{err}");
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn cluster_names() {
    for ok in ["weft", "a", "lab-2", "abcdefghijkl"] {
        assert!(ok.parse::<ClusterName>().is_ok(), "{ok}");
    }
    for bad in ["", "2lab", "abcdefghijklm", "lab_2", "lab-", "Lab"] {
        assert!(bad.parse::<ClusterName>().is_err(), "{bad}");
    }
}

#[test]
fn validation_names_what_is_wrong() {
    let cidr = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
    assert_eq!(
        invalid(&with(|c| c.service_cidr = cidr("10.244.128.0/17"))),
        "pod CIDR 10.244.0.0/16 overlaps service CIDR 10.244.128.0/17"
    );
    assert_eq!(
        invalid(&with(|c| c.node_network = cidr("10.96.1.0/24"))),
        "service CIDR 10.96.0.0/12 overlaps node network 10.96.1.0/24"
    );
    assert_eq!(
        invalid(&with(|c| {
            c.pod_cidr = cidr("10.244.0.0/23");
            c.nodes = 3;
        })),
        "pod CIDR 10.244.0.0/23 has room for 2 /24 node ranges, cluster has 3 nodes"
    );
    assert_eq!(
        invalid(&with(|c| c.node_cidr_mask = 8)),
        "node CIDR mask /8 must be between the pod CIDR's prefix /16 and /30"
    );
    assert_eq!(
        invalid(&with(|c| c.node_cidr_mask = 31)),
        "node CIDR mask /31 must be between the pod CIDR's prefix /16 and /30"
    );
    assert_eq!(
        invalid(&with(|c| {
            c.node_network = cidr("172.20.0.0/30");
            c.nodes = 2;
        })),
        "node network 172.20.0.0/30 has room for 1 nodes (after the network, gateway and broadcast \
         addresses), cluster has 2 nodes"
    );
    assert_eq!(
        invalid(&with(|c| c.dns_service_ip = Ipv4Addr::new(10, 0, 0, 10))),
        "DNS service IP 10.0.0.10 is outside the service CIDR 10.96.0.0/12"
    );
    assert!(
        invalid(&with(|c| c.cluster_domain = "cluster..local".into()))
            .starts_with("cluster domain is not a valid DNS name")
    );
    assert_eq!(
        invalid(&with(|c| c.node_port_range = (32767, 30000))),
        "NodePort range 32767-30000 must lie within 1-65535 with the low port first"
    );
    assert_eq!(
        invalid(&with(|c| c.nodes = 0)),
        "cluster must have at least 1 node (nodes: 0)"
    );
    assert_eq!(
        invalid(&with(|c| {
            c.node_labels.insert(
                "weft-node9".into(),
                BTreeMap::from([("a".into(), "b".into())]),
            );
        })),
        "nodeLabels names node \"weft-node9\", but the cluster's nodes are weft-node1..weft-node1"
    );
    let ok = with(|c| {
        c.nodes = 253;
        c.pod_cidr = cidr("10.128.0.0/9");
    });
    ok.validate().unwrap();
}

#[test]
fn to_yaml_round_trips() {
    let config = with(|c| {
        c.name = "lab2".parse().unwrap();
        c.nodes = 3;
        c.pod_cidr = "10.200.0.0/16".parse().unwrap();
        c.node_port_range = (31000, 31999);
        c.node_labels.insert(
            "lab2-node2".into(),
            BTreeMap::from([("zone".into(), "b".into())]),
        );
    });
    let text = config.to_yaml();
    assert!(
        text.starts_with("apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: lab2\n"),
        "{text}"
    );
    assert_eq!(
        ClusterConfig::from_yaml("rendered.yaml", &text).unwrap(),
        config
    );
    let default = ClusterConfig::default();
    assert_eq!(
        ClusterConfig::from_yaml("d.yaml", &default.to_yaml()).unwrap(),
        default
    );
}

#[test]
fn network_mode_fields_read_validate_and_set_the_pod_mtu() {
    let c = ClusterConfig::default();
    assert_eq!(c.network_mode, NetworkMode::Vxlan);
    assert_eq!((c.vxlan_vni, c.vxlan_port, c.underlay_mtu), (1, 4789, 1500));
    assert_eq!(c.pod_mtu(), 1450);

    let text = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nnetworkMode: direct\nvxlanVNI: 42\nvxlanPort: 8472\nunderlayMTU: 9000\n";
    let c = ClusterConfig::from_yaml("c.yaml", text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.network_mode, NetworkMode::Direct);
    assert_eq!(
        (c.vxlan_vni, c.vxlan_port, c.underlay_mtu),
        (42, 8472, 9000)
    );
    assert_eq!(c.pod_mtu(), 9000, "no overlay, no overhead");
    // Written out and read back, nothing is lost.
    let again = ClusterConfig::from_yaml("again.yaml", &c.to_yaml()).unwrap();
    assert_eq!(again, c);

    let err = ClusterConfig::from_yaml("c.yaml", "kind: Cluster\nnetworkMode: host-gw\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.yaml") && err.contains("networkMode") && err.contains("host-gw"),
        "{err}"
    );
    assert_eq!(
        invalid(&with(|c| c.vxlan_vni = 0)),
        "vxlanVNI 0 must be between 1 and 16777215"
    );
    assert_eq!(
        invalid(&with(|c| c.vxlan_vni = 1 << 24)),
        "vxlanVNI 16777216 must be between 1 and 16777215"
    );
    assert_eq!(
        invalid(&with(|c| c.vxlan_port = 0)),
        "vxlanPort must not be 0"
    );
    assert_eq!(
        invalid(&with(|c| c.underlay_mtu = 1000)),
        "underlayMTU 1000 must be between 1280 and 9216"
    );
}

#[test]
fn load_balancer_announcement_is_routes_unless_asked_for_arp() {
    let base = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: t\n";
    let default = ClusterConfig::from_yaml("t", base).unwrap();
    assert_eq!(default.load_balancer_announcement, Announcement::Routes);
    let arp =
        ClusterConfig::from_yaml("t", &format!("{base}loadBalancerAnnouncement: arp\n")).unwrap();
    assert_eq!(arp.load_balancer_announcement, Announcement::Arp);
    assert_eq!(ClusterConfig::from_yaml("t", &arp.to_yaml()).unwrap(), arp);
    let bad = ClusterConfig::from_yaml("t", &format!("{base}loadBalancerAnnouncement: bgp\n"))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("loadBalancerAnnouncement"), "{bad}");
}

#[test]
fn the_dns_ttl_is_30_seconds_unless_set() {
    let base = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: t\n";
    assert_eq!(ClusterConfig::from_yaml("t", base).unwrap().dns_ttl, 30);
    let short = ClusterConfig::from_yaml("t", &format!("{base}dnsTTL: 5\n")).unwrap();
    assert_eq!(short.dns_ttl, 5);
    assert_eq!(
        ClusterConfig::from_yaml("t", &short.to_yaml()).unwrap(),
        short
    );
}

#[test]
fn upstream_dns_servers_take_port_53_unless_given() {
    let base = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\n";
    let default = ClusterConfig::from_yaml("t", base).unwrap();
    assert!(default.upstream_dns.is_empty());
    assert_eq!(default.dns_cache_size, 10_000);
    let set = ClusterConfig::from_yaml(
        "t",
        &format!("{base}upstreamDNS: [\"203.0.113.10\", \"10.0.0.2:5353\", \"[fd00::2]:53\"]\ndnsCacheSize: 50\n"),
    )
    .unwrap();
    let servers: Vec<String> = set.upstream_dns.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        servers,
        ["203.0.113.10:53", "10.0.0.2:5353", "[fd00::2]:53"]
    );
    assert_eq!(set.dns_cache_size, 50);
    // Written out and read back, the config is the same.
    assert_eq!(ClusterConfig::from_yaml("t", &set.to_yaml()).unwrap(), set);
    let bad = ClusterConfig::from_yaml("t", &format!("{base}upstreamDNS: [\"dns.example\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("upstreamDNS") && bad.contains("dns.example"),
        "{bad}"
    );
}

#[test]
fn external_ip_ranges_are_empty_unless_set_and_may_not_overlap_other_ranges() {
    let base = "apiVersion: weft.dev/v1alpha1\nkind: Cluster\n";
    let default = ClusterConfig::from_yaml("t", base).unwrap();
    assert!(
        default.external_ip_ranges.is_empty(),
        "no externalIPs allowed unless asked for"
    );
    let set = ClusterConfig::from_yaml(
        "t",
        &format!("{base}externalIPRanges: [192.0.2.0/24, 198.18.0.0/15]\n"),
    )
    .unwrap();
    set.validate().unwrap();
    let ranges: Vec<String> = set
        .external_ip_ranges
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ranges, ["192.0.2.0/24", "198.18.0.0/15"]);
    // Written out and read back (the lab's state file, the weft-config ConfigMap): the same.
    assert!(
        set.to_yaml().contains("externalIPRanges:"),
        "{}",
        set.to_yaml()
    );
    assert_eq!(ClusterConfig::from_yaml("t", &set.to_yaml()).unwrap(), set);
    assert_eq!(
        ClusterConfig::from_yaml("t", &default.to_yaml()).unwrap(),
        default
    );

    // Parse errors name the file, the field and the entry.
    let err = |text: &str| {
        ClusterConfig::from_yaml("c.yaml", &format!("{base}{text}"))
            .unwrap_err()
            .to_string()
    };
    let host_bits = err("externalIPRanges: [192.0.2.1/24]\n");
    assert!(
        host_bits.starts_with(
            "c.yaml: externalIPRanges[0]: 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?"
        ),
        "{host_bits}"
    );
    let not_cidr = err("externalIPRanges: [192.0.2.0/24, \"192.0.2.300\"]\n");
    assert!(
        not_cidr.starts_with("c.yaml: externalIPRanges[1]: ") && not_cidr.contains("192.0.2.300"),
        "{not_cidr}"
    );
    let not_list = err("externalIPRanges: 192.0.2.0/24\n");
    assert!(
        not_list.starts_with("c.yaml: externalIPRanges: "),
        "{not_list}"
    );

    // Overlaps with the cluster's own ranges, the outside network and each other are refused,
    // both ranges named.
    let cidr = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
    let cases = [
        (
            "10.244.7.0/24",
            "pod CIDR 10.244.0.0/16 overlaps external IP range 10.244.7.0/24",
        ),
        (
            "10.96.0.0/24",
            "service CIDR 10.96.0.0/12 overlaps external IP range 10.96.0.0/24",
        ),
        (
            "172.20.0.0/16",
            "node network 172.20.0.0/24 overlaps external IP range 172.20.0.0/16",
        ),
        (
            "198.51.100.128/25",
            "load-balancer pool 198.51.100.0/24 overlaps external IP range 198.51.100.128/25",
        ),
        (
            "203.0.113.10/32",
            "outside network 203.0.113.0/24 overlaps external IP range 203.0.113.10/32",
        ),
        (
            "0.0.0.0/0",
            "pod CIDR 10.244.0.0/16 overlaps external IP range 0.0.0.0/0",
        ),
    ];
    for (range, want) in cases {
        assert_eq!(
            invalid(&with(|c| c.external_ip_ranges = vec![cidr(range)])),
            want
        );
    }
    assert_eq!(
        invalid(&with(|c| {
            c.external_ip_ranges = vec![cidr("192.0.2.0/24"), cidr("192.0.2.64/26")];
        })),
        "external IP range 192.0.2.0/24 overlaps external IP range 192.0.2.64/26"
    );
}
