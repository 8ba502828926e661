use super::*;

fn registry() -> ServiceRegistry {
    let config = ClusterConfig {
        load_balancer_pool: "198.51.100.0/29".parse().unwrap(),
        ..ClusterConfig::default()
    };
    ServiceRegistry::new(&config)
}

fn svc(yaml: &str) -> Service {
    serde_norway::from_str(yaml).unwrap()
}

fn admit(yaml: &str, others: &[&Service]) -> Result<Service, String> {
    let mut s = svc(yaml);
    registry().admit_service(&mut s, None, others)?;
    Ok(s)
}

const WEB: &str = "metadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";

#[test]
fn defaults_and_first_free_cluster_ip() {
    let a = admit(WEB, &[]).unwrap();
    let spec = a.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.1".to_string()]));
    let p = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(p.protocol.as_deref(), Some("TCP"));
    assert_eq!(p.target_port, Some(IntOrString::Int(80)));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(spec.external_traffic_policy, None);
    let b = admit(&WEB.replace("name: web", "name: b"), &[&a]).unwrap();
    assert_eq!(b.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.2"));
}

#[test]
fn the_dns_address_is_only_given_when_asked_for() {
    let mut taken = Vec::new();
    for i in 0..12 {
        let s = admit(
            &WEB.replace("name: web", &format!("name: s{i}")),
            &taken.iter().collect::<Vec<_>>(),
        )
        .unwrap();
        taken.push(s);
    }
    let ips: Vec<String> = taken
        .iter()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    assert!(!ips.contains(&"10.96.0.10".to_string()), "{ips:?}");
    let dns = admit(
        &WEB.replace("name: web", "name: dns")
            .replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n"),
        &[],
    )
    .unwrap();
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
}

#[test]
fn requested_cluster_ips_are_honoured_checked_and_immutable() {
    let asked = WEB.replace("spec:\n", "spec:\n  clusterIP: 10.96.5.5\n");
    let a = admit(&asked, &[]).unwrap();
    assert_eq!(
        a.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("10.96.5.5")
    );
    let err = admit(&asked.replace("name: web", "name: other"), &[&a]).unwrap_err();
    assert_eq!(
        err,
        "spec.clusterIP: 10.96.5.5 is already allocated to service default/web"
    );
    let err = admit(
        &WEB.replace("spec:\n", "spec:\n  clusterIP: 10.200.0.1\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("10.200.0.1") && err.contains("10.96.0.0/12"),
        "{err}"
    );
    let err = admit(&WEB.replace("spec:\n", "spec:\n  clusterIP: banana\n"), &[]).unwrap_err();
    assert!(err.contains("banana"), "{err}");
    // Re-applying without the field keeps the address; asking for another is refused.
    let mut again = svc(WEB);
    registry().admit_service(&mut again, Some(&a), &[]).unwrap();
    assert_eq!(
        again.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("10.96.5.5")
    );
    let mut moved = svc(&WEB.replace("spec:\n", "spec:\n  clusterIP: 10.96.6.6\n"));
    let err = registry()
        .admit_service(&mut moved, Some(&a), &[])
        .unwrap_err();
    assert!(err.contains("immutable"), "{err}");
}

#[test]
fn headless_and_external_name() {
    let h = admit(
        "metadata: {name: h}\nspec:\n  clusterIP: None\n  selector: {app: web}\n",
        &[],
    )
    .unwrap();
    assert_eq!(h.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let e = admit(
        "metadata: {name: e}\nspec:\n  type: ExternalName\n  externalName: example.com\n",
        &[],
    )
    .unwrap();
    assert_eq!(e.spec.as_ref().unwrap().cluster_ip, None);
    let err = admit("metadata: {name: e}\nspec:\n  type: ExternalName\n", &[]).unwrap_err();
    assert!(err.contains("externalName"), "{err}");
    let err = admit(
        "metadata: {name: e}\nspec:\n  type: ExternalName\n  externalName: 'bad name!'\n",
        &[],
    )
    .unwrap_err();
    assert!(err.contains("bad name!"), "{err}");
}

#[test]
fn node_ports_are_allocated_honoured_and_refused_with_reasons() {
    let np = "metadata: {name: np}\nspec:\n  type: NodePort\n  ports: [{name: http, port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]\n";
    let a = admit(np, &[]).unwrap();
    let ports = a.spec.as_ref().unwrap().ports.clone().unwrap();
    assert_eq!(ports[0].node_port, Some(30080));
    assert_eq!(ports[1].node_port, Some(30000));
    assert_eq!(
        a.spec.as_ref().unwrap().external_traffic_policy.as_deref(),
        Some("Cluster")
    );
    let err = admit(&np.replace("name: np", "name: np2"), &[&a]).unwrap_err();
    assert_eq!(
        err,
        "spec.ports[80].nodePort: 30080 is already allocated to service default/np"
    );
    let err = admit(&np.replace("30080", "80"), &[]).unwrap_err();
    assert_eq!(
        err,
        "spec.ports[80].nodePort: 80 is outside the node port range 30000-32767"
    );
    let b = admit(
        &np.replace("name: np", "name: np2")
            .replace(", nodePort: 30080", ""),
        &[&a],
    )
    .unwrap();
    let ports = b.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].node_port, ports[1].node_port),
        (Some(30001), Some(30002))
    );
    // Re-applied without nodePorts: the same ones are kept.
    let mut again = svc(&np.replace(", nodePort: 30080", ""));
    registry().admit_service(&mut again, Some(&a), &[]).unwrap();
    let ports = again.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].node_port, ports[1].node_port),
        (Some(30080), Some(30000))
    );
    let err = admit(
        "metadata: {name: c}\nspec:\n  ports: [{port: 80, nodePort: 30001}]\n",
        &[],
    )
    .unwrap_err();
    assert!(
        err.contains("nodePort") && err.contains("ClusterIP"),
        "{err}"
    );
}

#[test]
fn load_balancers_start_pending_and_keep_the_allocators_address() {
    let lb = "metadata: {name: lb}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n";
    let made = admit(lb, &[]).unwrap();
    assert!(made.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .is_some());
    // No address from the API server: `weft controller` allocates them.
    let ingress = |s: &Service| weft_model::service::load_balancer_ingress(s);
    assert!(ingress(&made).is_empty());
    // The allocator wrote one; a user's later spec write (no status) keeps it.
    let mut allocated = made.clone();
    allocated.status = serde_json::from_value(
        serde_json::json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}),
    )
    .unwrap();
    let mut again = svc(lb);
    registry()
        .admit_service(&mut again, Some(&allocated), &[])
        .unwrap();
    assert_eq!(again.status, None, "the stored status stays as it is");
    // Becoming a ClusterIP Service clears the address and the allocator's problem note.
    let mut back = svc("metadata: {name: lb, annotations: {loadbalancer.weft.dev/problem: x}}\nspec:\n  ports: [{port: 80}]\n");
    registry()
        .admit_service(&mut back, Some(&allocated), &[])
        .unwrap();
    assert!(ingress(&back).is_empty());
    assert_eq!(back.metadata.annotations, None);
}

#[test]
fn bad_ports_and_policies_name_the_field() {
    let cases = [
        ("ports: [{port: 0}]", "spec.ports[0].port: 0: must be between 1 and 65535, inclusive"),
        ("ports: [{port: 80, targetPort: 70000}]", "spec.ports[0].targetPort: 70000: must be between 1 and 65535, inclusive"),
        ("ports: [{port: 80, targetPort: Not_A_Name}]", "spec.ports[0].targetPort \"Not_A_Name\""),
        ("ports: [{port: 80, protocol: ICMP}]", "spec.ports[0].protocol: unsupported value \"ICMP\""),
        ("ports: [{port: 80}, {port: 81}]", "spec.ports[0].name: required"),
        ("ports: [{name: a, port: 80}, {name: a, port: 81}]", "duplicate name \"a\""),
        ("ports: [{name: a, port: 80}, {name: b, port: 80}]", "duplicate port 80/TCP"),
        ("ports: []", "at least one port"),
        ("type: Bogus\n  ports: [{port: 80}]", "spec.type: unsupported value \"Bogus\""),
        ("externalTrafficPolicy: Local\n  ports: [{port: 80}]", "externalTrafficPolicy: may only be set"),
        ("sessionAffinity: Sticky\n  ports: [{port: 80}]", "spec.sessionAffinity: unsupported value \"Sticky\""),
        (
            "sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]",
            "timeoutSeconds: 0",
        ),
    ];
    for (spec, expected) in cases {
        let err = admit(&format!("metadata: {{name: x}}\nspec:\n  {spec}\n"), &[]).unwrap_err();
        assert!(err.contains(expected), "{spec}: {err}");
    }
    let ok = admit("metadata: {name: x}\nspec:\n  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: http}]\n", &[]).unwrap();
    let spec = ok.spec.unwrap();
    assert_eq!(
        spec.session_affinity_config
            .unwrap()
            .client_ip
            .unwrap()
            .timeout_seconds,
        Some(10800)
    );
    assert_eq!(
        spec.ports.unwrap()[0].target_port,
        Some(IntOrString::String("http".into()))
    );
}

#[test]
fn re_applying_a_bound_pod_keeps_its_node() {
    let pod = |yaml: &str| {
        Object::from_json(
            serde_json::to_value(serde_norway::from_str::<serde_norway::Value>(yaml).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let stored = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec: {nodeName: n2, containers: [{name: c, image: busybox}]}");
    let mut again = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec: {containers: [{name: c, image: nginx}]}");
    registry().admit(&mut again, Some(&stored), &[]).unwrap();
    assert_eq!(
        again
            .as_pod()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .as_deref(),
        Some("n2")
    );
    // A new pod is left for the scheduler.
    let mut fresh = pod("apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: default}\nspec: {containers: [{name: c, image: busybox}]}");
    registry().admit(&mut fresh, None, &[]).unwrap();
    assert_eq!(
        fresh.as_pod().unwrap().spec.as_ref().unwrap().node_name,
        None
    );
}

#[test]
fn local_load_balancers_get_a_health_check_node_port_released_with_the_policy() {
    let local = |n: &str, extra: &str| {
        format!("metadata: {{name: {n}}}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n{extra}  ports: [{{port: 80}}]\n")
    };
    let hc = |s: &Service| s.spec.as_ref().unwrap().health_check_node_port;
    let node_port = |s: &Service| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port;
    // From the node-port range, after the Service's own node ports.
    let a = admit(&local("a", ""), &[]).unwrap();
    assert_eq!((node_port(&a), hc(&a)), (Some(30000), Some(30001)));
    // Shared with node ports: the next Service's picks skip it.
    let b = admit(&local("b", ""), &[&a]).unwrap();
    assert_eq!((node_port(&b), hc(&b)), (Some(30002), Some(30003)));
    let np = admit(
        "metadata: {name: np}\nspec:\n  type: NodePort\n  ports: [{port: 80}]\n",
        &[&a],
    )
    .unwrap();
    assert_eq!(node_port(&np), Some(30002));
    // Cluster policy, NodePort and ClusterIP Services have none.
    let cluster = admit(
        "metadata: {name: c}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n",
        &[],
    )
    .unwrap();
    assert_eq!(hc(&cluster), None);
    assert_eq!(hc(&np), None);
    // Asked for: honoured when free, refused when taken or out of range or not needed.
    let asked = admit(&local("x", "  healthCheckNodePort: 31000\n"), &[&a]).unwrap();
    assert_eq!(hc(&asked), Some(31000));
    assert_eq!(
        admit(&local("x", "  healthCheckNodePort: 30001\n"), &[&a]).unwrap_err(),
        "spec.healthCheckNodePort: 30001 is already allocated to service default/a"
    );
    assert_eq!(
        admit(&local("x", "  healthCheckNodePort: 30000\n"), &[&a]).unwrap_err(),
        "spec.healthCheckNodePort: 30000 is already allocated to service default/a"
    );
    assert!(admit(&local("x", "  healthCheckNodePort: 80\n"), &[])
        .unwrap_err()
        .contains("outside the node port range"));
    assert!(admit(
        "metadata: {name: c}\nspec:\n  type: LoadBalancer\n  healthCheckNodePort: 31000\n  ports: [{port: 80}]\n",
        &[],
    )
    .unwrap_err()
    .contains("may only be set when type is \"LoadBalancer\" and externalTrafficPolicy is \"Local\""));
    // Re-applied without it: kept; changed: immutable.
    let mut again = svc(&local("a", ""));
    registry().admit_service(&mut again, Some(&a), &[]).unwrap();
    assert_eq!(hc(&again), Some(30001));
    let mut moved = svc(&local("a", "  healthCheckNodePort: 31001\n"));
    assert_eq!(
        registry()
            .admit_service(&mut moved, Some(&a), &[])
            .unwrap_err(),
        "spec.healthCheckNodePort: field is immutable (is 30001, asked for 31001)"
    );
    // Switching to Cluster policy releases it (even when the stored value is sent back).
    let mut to_cluster = a.clone();
    to_cluster.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
    registry()
        .admit_service(&mut to_cluster, Some(&a), &[])
        .unwrap();
    assert_eq!(hc(&to_cluster), None);
    let reuse = admit(&local("d", ""), &[&to_cluster]).unwrap();
    assert_eq!(
        (node_port(&reuse), hc(&reuse)),
        (Some(30001), Some(30002)),
        "the released port is free again"
    );
}

#[test]
fn a_reported_endpoints_problem_survives_a_reapply_and_is_cleared_by_writing_it_empty() {
    let key = weft_model::annotations::ENDPOINTS_PROBLEM;
    let stored = Object::Service(svc(&WEB.replace(
        "metadata: {name: web, namespace: default}",
        &format!("metadata: {{name: web, namespace: default, annotations: {{{key}: no pods}}}}"),
    )));
    let admit_over = |yaml: &str| {
        let mut incoming = Object::Service(svc(yaml));
        registry()
            .admit(&mut incoming, Some(&stored), std::slice::from_ref(&stored))
            .unwrap();
        incoming.as_service().unwrap().metadata.annotations.clone()
    };
    // The user's manifest, re-applied without it: kept.
    let kept = admit_over(WEB).unwrap();
    assert_eq!(kept[key], "no pods");
    // The controller's clearing write: gone.
    let cleared = admit_over(&WEB.replace(
        "metadata: {name: web, namespace: default}",
        &format!("metadata: {{name: web, namespace: default, annotations: {{{key}: ''}}}}"),
    ));
    assert_eq!(cleared, None);
}

/// A registry whose cluster config allows external IPs from `ranges`.
fn allowing(ranges: &[&str]) -> ServiceRegistry {
    ServiceRegistry::new(&ClusterConfig {
        external_ip_ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
        ..ClusterConfig::default()
    })
}

fn with_external_ips(name: &str, ips: &str) -> Object {
    Object::Service(svc(&format!(
        "metadata: {{name: {name}, namespace: default}}\nspec:\n  externalIPs: [{ips}]\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
    )))
}

#[test]
fn external_ips_are_refused_unless_in_the_configured_ranges() {
    // The default config allows none: the outside host's address is the classic capture.
    let mut incoming = with_external_ips("ext", "203.0.113.10");
    let err = registry().admit(&mut incoming, None, &[]).unwrap_err();
    assert_eq!(
        err,
        "spec.externalIPs[0]: Forbidden: use of external IP 203.0.113.10 is denied by admission \
         control: the cluster config's externalIPRanges allows none"
    );
    // ExternalName Services are no exception.
    let mut named = Object::Service(svc(
        "metadata: {name: en}\nspec:\n  type: ExternalName\n  externalName: example.com\n  externalIPs: [192.0.2.5]\n",
    ));
    assert!(registry()
        .admit(&mut named, None, &[])
        .unwrap_err()
        .starts_with("spec.externalIPs[0]: Forbidden: "));

    // Inside a range: admitted (and defaulted like any Service with externalIPs).
    let allow = allowing(&["192.0.2.0/24", "198.18.0.0/15"]);
    let mut inside = with_external_ips("ext", "192.0.2.50, 198.19.1.1");
    allow.admit(&mut inside, None, &[]).unwrap();
    let spec = inside.as_service().unwrap().spec.clone().unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));

    // One address outside is enough to refuse the whole Service, naming that entry.
    let mut mixed = with_external_ips("ext", "192.0.2.50, 203.0.113.10");
    assert_eq!(
        allow.admit(&mut mixed, None, &[]).unwrap_err(),
        "spec.externalIPs[1]: Forbidden: use of external IP 203.0.113.10 is denied by admission \
         control: 203.0.113.10 is not in the cluster config's externalIPRanges (192.0.2.0/24, \
         198.18.0.0/15)"
    );
    let mut bad = with_external_ips("ext", "\"192.0.2.x\"");
    assert_eq!(
        allow.admit(&mut bad, None, &[]).unwrap_err(),
        "spec.externalIPs[0]: \"192.0.2.x\": must be a valid IPv4 address"
    );
}

#[test]
fn an_update_may_not_add_a_forbidden_external_ip_but_keeps_the_stored_ones() {
    let allow = allowing(&["192.0.2.0/24"]);
    let mut stored = with_external_ips("ext", "192.0.2.50");
    allow.admit(&mut stored, None, &[]).unwrap();
    let existing = std::slice::from_ref(&stored);

    // Adding an address outside the ranges to a stored Service (apply, patch, edit): refused.
    let mut update = with_external_ips("ext", "192.0.2.50, 203.0.113.10");
    let err = allow
        .admit(&mut update, Some(&stored), existing)
        .unwrap_err();
    assert!(
        err.starts_with("spec.externalIPs[1]: Forbidden: use of external IP 203.0.113.10"),
        "{err}"
    );
    // A Service without any, gaining one: refused too.
    let mut plain = Object::Service(svc(WEB));
    allow.admit(&mut plain, None, &[]).unwrap();
    let mut gains = with_external_ips("web", "198.51.100.7");
    assert!(allow
        .admit(&mut gains, Some(&plain), std::slice::from_ref(&plain))
        .is_err());

    // Admitted under a wider config, then the config narrowed: the address it already has is
    // kept (as upstream's DenyServiceExternalIPs), so its other fields and status can still be
    // written; a new one still is not.
    let narrow = registry();
    let mut again = with_external_ips("ext", "192.0.2.50");
    narrow.admit(&mut again, Some(&stored), existing).unwrap();
    let mut more = with_external_ips("ext", "192.0.2.50, 192.0.2.51");
    assert!(narrow.admit(&mut more, Some(&stored), existing).is_err());
}
