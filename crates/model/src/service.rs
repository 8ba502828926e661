//! Reading a Service's addresses, the way every consumer needs them (the proxy, the lab's
//! load-balancer speaker, the CLI's tables), so they agree on what counts.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

/// The addresses a LoadBalancer's status publishes, as written (IP, else hostname, per ingress).
pub fn load_balancer_ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

/// Every IPv4 address the Service is reached at from outside the cluster: `spec.externalIPs` and
/// the load-balancer ingress IPs, sorted, without duplicates.
pub fn external_ipv4s(svc: &Service) -> Vec<Ipv4Addr> {
    let spec_ips = svc
        .spec
        .iter()
        .flat_map(|s| s.external_ips.iter().flatten());
    let mut out: Vec<Ipv4Addr> = spec_ips
        .cloned()
        .chain(load_balancer_ingress(svc))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_come_from_spec_and_status() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "spec": {"externalIPs": ["192.0.2.5", "not-an-ip"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "lb.example.com"}, {"ip": "192.0.2.5"}]}}
        }))
        .unwrap();
        assert_eq!(
            load_balancer_ingress(&svc),
            ["198.51.100.1", "lb.example.com", "192.0.2.5"]
        );
        let ips: Vec<String> = external_ipv4s(&svc)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["192.0.2.5", "198.51.100.1"]);
    }
}
