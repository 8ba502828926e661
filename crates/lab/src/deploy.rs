//! weft's own components in the lab come from `deploy/`, the manifests that install weft on a
//! real cluster: the agent DaemonSet, the controller Deployment, the cluster DNS (the `kube-dns`
//! Service at the config's DNS address and its Deployment), the ingress controller (its
//! Deployment and LoadBalancer Service in weft-system, the default IngressClass), their RBAC
//! and the `weft-config` ConfigMap. The lab fills the
//! ConfigMap with its own cluster config and the API server's fabric address (the agent is a
//! hostNetwork pod: it cannot use the `kubernetes` Service before a proxy has programmed it,
//! which is the agent's own job), and its kubelets run weft's image from the lab's binaries.
//! So every `weft lab up` exercises the real-cluster path.

use weft_model::config::ClusterConfig;
use weft_model::Object;

use crate::LabError;

/// The common name of each lab's cluster CA (`weft lab ca` prints its certificate).
pub const CLUSTER_CA_NAME: &str = "weft lab cluster CA";

/// The manifests, in the order a user would apply them.
const MANIFESTS: [(&str, &str); 6] = [
    (
        "deploy/namespace-rbac.yaml",
        include_str!("../../../deploy/namespace-rbac.yaml"),
    ),
    (
        "deploy/config.yaml",
        include_str!("../../../deploy/config.yaml"),
    ),
    (
        "deploy/agent.yaml",
        include_str!("../../../deploy/agent.yaml"),
    ),
    (
        "deploy/controller.yaml",
        include_str!("../../../deploy/controller.yaml"),
    ),
    ("deploy/dns.yaml", include_str!("../../../deploy/dns.yaml")),
    (
        "deploy/ingress.yaml",
        include_str!("../../../deploy/ingress.yaml"),
    ),
];

/// The deploy objects for this lab, the ConfigMap filled in, and the cluster CA (certificate
/// and key PEM) as the Secret the ingress controller issues certificates from.
pub fn objects(
    config: &ClusterConfig,
    cluster_ca: Option<(&str, &str)>,
) -> Result<Vec<Object>, LabError> {
    let mut out = Vec::new();
    if let Some((cert, key)) = cluster_ca {
        let (ns, name) = weft_ingress::issuer::CA_SECRET;
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": ns,
                    "annotations": {(weft_ingress::issuer::CA_NAME): CLUSTER_CA_NAME}},
                "type": "kubernetes.io/tls",
                "stringData": {},
            }))
            .map_err(|e| LabError::Invalid(format!("the cluster CA Secret: {e}")))?;
        let mut secret = secret;
        secret.data = Some(std::collections::BTreeMap::from([
            (
                "tls.crt".to_string(),
                k8s_openapi::ByteString(cert.as_bytes().to_vec()),
            ),
            (
                "tls.key".to_string(),
                k8s_openapi::ByteString(key.as_bytes().to_vec()),
            ),
        ]));
        out.push(Object::Secret(secret));
    }
    for (source, text) in MANIFESTS {
        out.extend(
            weft_model::manifest::parse(source, text)
                .map_err(|e| LabError::Invalid(format!("weft's own manifests: {e}")))?,
        );
    }
    for object in &mut out {
        // The cluster DNS Service sits at the config's DNS address, where the kubelets point
        // every pod.
        if let Object::Service(svc) = object {
            if svc.metadata.name.as_deref() == Some("kube-dns") {
                if let Some(spec) = svc.spec.as_mut() {
                    spec.cluster_ip = Some(config.dns_service_ip.to_string());
                }
            }
        }
        if let Object::ConfigMap(cm) = object {
            if cm.metadata.name.as_deref() == Some("weft-config") {
                let data = cm.data.get_or_insert_default();
                data.insert("cluster.yaml".into(), config.to_yaml());
                data.insert("apiServerHost".into(), config.node_gateway_ip().to_string());
                data.insert(
                    "apiServerPort".into(),
                    crate::apiserver::FABRIC_PORT.to_string(),
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_a_valid_cluster_config() {
        let objects = weft_model::manifest::parse("config", MANIFESTS[1].1).unwrap();
        let cm = objects.iter().find_map(Object::as_config_map).unwrap();
        let text = &cm.data.as_ref().unwrap()["cluster.yaml"];
        ClusterConfig::from_yaml("deploy/config.yaml", text).unwrap();
    }

    #[test]
    fn the_lab_deploys_the_agent_daemonset_with_its_own_config() {
        let config = ClusterConfig::from_yaml(
            "t",
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: t\n",
        )
        .unwrap();
        let objects = objects(&config, None).unwrap();
        let kinds: Vec<&str> = objects.iter().map(Object::kind).collect();
        assert!(kinds.contains(&"DaemonSet"), "{kinds:?}");
        assert!(kinds.contains(&"Deployment"), "{kinds:?}");
        let cm = objects
            .iter()
            .find_map(Object::as_config_map)
            .expect("the weft-config ConfigMap");
        let data = cm.data.as_ref().unwrap();
        assert_eq!(data["apiServerHost"], config.node_gateway_ip().to_string());
        let back = ClusterConfig::from_yaml("cm", &data["cluster.yaml"]).unwrap();
        assert_eq!(back.pod_cidr, config.pod_cidr);
    }
}
