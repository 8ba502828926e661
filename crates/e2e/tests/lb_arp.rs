//! LoadBalancer addresses announced by ARP (`loadBalancerAnnouncement: arp`), the way a real
//! cluster without a router to tell gets them: the fabric only has the pool on-link on the node
//! network, each address is held by exactly one node's agent (a /32 on its uplink, so its kernel
//! answers ARP), a `Local` Service's address by a node with an endpoint, and traffic from outside
//! reaches the pods. Needs root; the lab is torn down in Drop.

use weft_testutil::{wait_for_what, Lab};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: web, image: {AGNHOST}, ports: [{{containerPort: 80}}]}}]\n"
    )
}

fn service(name: &str, policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: {policy}\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
    )
}

/// The nodes whose uplink holds `ip`.
fn holders(lab: &Lab, ip: &str, nodes: &[String]) -> Vec<String> {
    nodes
        .iter()
        .filter(|node| {
            lab.in_node(node, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
                .contains(&format!("inet {ip}/32"))
        })
        .cloned()
        .collect()
}

#[test]
fn each_address_is_held_by_one_node_and_reached_from_outside() {
    let lab = Lab::new();
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 2\nloadBalancerAnnouncement: arp\n",
            lab.name
        ),
    );
    let nodes: Vec<String> = (1..=2).map(|n| format!("{}-node{n}", lab.name)).collect();
    let manifest = lab.write(
        "app.yaml",
        &[
            pod("web-1", &nodes[1]),
            service("cluster", "Cluster"),
            service("local", "Local"),
        ]
        .join("---\n"),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &manifest, "--wait", "60",
    ]);
    let (cluster, local) = (lab.lb_ip("cluster"), lab.lb_ip("local"));
    // No speaker routes: the fabric asks the node network by ARP.
    let fabric = std::process::Command::new("ip")
        .args(["-n", &format!("weft_{}_fabric", lab.name), "route"])
        .output()
        .unwrap();
    let fabric = String::from_utf8_lossy(&fabric.stdout);
    assert!(fabric.contains("198.51.100.0/24 dev br0"), "{fabric}");
    assert!(!fabric.contains(&format!("{cluster} ")), "{fabric}");
    for (ip, name) in [(&cluster, "cluster"), (&local, "local")] {
        wait_for_what(&format!("one node holding {name}'s {ip}"), || {
            holders(&lab, ip, &nodes).len() == 1
        });
        let url = format!("http://{ip}/hostname");
        wait_for_what(&format!("{url} from outside"), || {
            lab.outside_curl(&url, 3).1.trim() == "web-1"
        });
    }
    // The Local Service's address is on the node with its endpoint.
    assert_eq!(holders(&lab, &local, &nodes), [nodes[1].clone()]);
}
