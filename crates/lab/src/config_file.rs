//! The cluster config a lab was built with, written into its state directory in the same
//! `weft.dev/v1alpha1 Cluster` form users write (JSON is YAML), so the lab's daemons read it back
//! through the one config parser.

use serde_json::json;
use weft_model::config::ClusterConfig;

pub fn render(config: &ClusterConfig) -> String {
    let doc = json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "Cluster",
        "name": config.name.as_str(),
        "nodes": config.nodes,
        "podCIDR": config.pod_cidr.to_string(),
        "nodeCIDRMaskSize": config.node_cidr_mask,
        "serviceCIDR": config.service_cidr.to_string(),
        "dnsServiceIP": config.dns_service_ip.to_string(),
        "clusterDomain": config.cluster_domain,
        "nodeNetwork": config.node_network.to_string(),
        "nodePortRange": format!("{}-{}", config.node_port_range.0, config.node_port_range.1),
        "nodeLabels": config.node_labels,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_config_parses_back_to_itself() {
        let mut config = ClusterConfig {
            nodes: 3,
            pod_cidr: "10.200.0.0/16".parse().unwrap(),
            ..ClusterConfig::default()
        };
        config.node_labels.insert(
            "weft-node2".into(),
            [("zone".to_string(), "b".to_string())].into(),
        );
        let back = ClusterConfig::from_yaml("cluster.json", &render(&config)).unwrap();
        assert_eq!(render(&back), render(&config));
        assert_eq!(back.nodes, 3);
    }
}
