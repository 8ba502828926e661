//! The proxy against the real kernel (root): rulesets load into a scratch namespace, updates are
//! incremental, a table changed behind the proxy's back is reloaded whole, and DNAT sends real
//! connections to the endpoints. Every namespace is the test's own, removed in Drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use weft_dataplane::{Netlink, ScopedNetNs};
use weft_proxy::{compile, view::views, Proxy, ProxyNode, SyncKind};

fn node() -> ProxyNode {
    ProxyNode {
        name: "n1".into(),
        ip: "192.0.2.1".parse().unwrap(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    }
}

fn service(name: &str, ip: &str) -> Service {
    serde_norway::from_str(&format!("metadata: {{name: {name}, namespace: default}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}")).unwrap()
}

fn slice(name: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [{ip}], nodeName: n1}}"))
        .collect();
    serde_norway::from_str(&format!(
        "metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 7070, protocol: TCP}}]\nendpoints: [{}]",
        eps.join(", ")
    ))
    .unwrap()
}

fn nft(ns: &ScopedNetNs, args: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "sh",
            "-c",
            &format!("nft {args}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn loads_updates_and_recovers_from_tampering() {
    let ns = ScopedNetNs::create_unique("wpx").unwrap();
    let mut proxy = Proxy::new();
    let n = node();
    let mut sync = |services: &[Service], slices: &[EndpointSlice]| {
        let rs = compile(&n, &views(&n, services, slices));
        ns.run(|| proxy.sync(rs)).unwrap().unwrap()
    };
    let svcs = vec![service("a", "10.96.0.1"), service("b", "10.96.0.2")];
    let mut slices = vec![
        slice("a", &["10.244.0.5", "10.244.0.6"]),
        slice("b", &["10.244.0.7"]),
    ];
    assert_eq!(sync(&svcs, &slices), SyncKind::Full);
    assert_eq!(sync(&svcs, &slices), SyncKind::Unchanged);
    slices[0] = slice("a", &["10.244.0.5", "10.244.0.6", "10.244.0.9"]);
    assert_eq!(sync(&svcs, &slices), SyncKind::Incremental);
    let table = nft(&ns, "list table ip weft_services");
    assert!(table.contains("10.244.0.9 . 7070"), "{table}");
    assert!(table.contains("numgen random mod 3"), "{table}");
    // b loses its endpoint: its address moves to the refusal map.
    slices.pop();
    assert_eq!(sync(&svcs, &slices), SyncKind::Incremental);
    let refusals = nft(&ns, "list map ip weft_services no_endpoint_services");
    assert!(
        refusals.contains("10.96.0.2 . tcp . 80 : goto reject_chain"),
        "{refusals}"
    );
    // Someone deletes a chain the proxy thinks is there: the next update is refused, the whole
    // table is reloaded instead, and the result is right.
    nft(&ns, "delete table ip weft_services");
    slices.push(slice("b", &["10.244.0.8"]));
    assert!(matches!(
        sync(&svcs, &slices),
        SyncKind::FullAfterRefusedUpdate(_)
    ));
    assert!(nft(&ns, "list map ip weft_services service_ips")
        .contains("10.96.0.2 . tcp . 80 : goto svc-default/b/tcp/80"));
}

#[test]
fn cluster_ip_connections_reach_the_endpoints() {
    // One namespace plays node and pods at once: the endpoints are local addresses, and
    // locally generated connections go through the nat output hook like a node's own.
    let ns = ScopedNetNs::create_unique("wpxt").unwrap();
    ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        nl.lo_up().unwrap();
        nl.link_add_veth("d0", "d1").execute().unwrap();
        let d0 = nl.link_get("d0").unwrap().unwrap().index;
        nl.addr_add(d0, "10.244.0.5/24".parse().unwrap())
            .execute()
            .unwrap();
        nl.addr_add(d0, "10.244.0.6/24".parse().unwrap())
            .execute()
            .unwrap();
        nl.link_set(d0).up().execute().unwrap();
        nl.link_set("d1").up().execute().unwrap();
        nl.route_add("10.96.0.0/12".parse().unwrap())
            .oif(d0)
            .execute()
            .unwrap();
    })
    .unwrap();
    let listeners: Vec<TcpListener> = ["10.244.0.5:7070", "10.244.0.6:7070"]
        .iter()
        .map(|a| ns.run(|| TcpListener::bind(a)).unwrap().unwrap())
        .collect();
    for l in listeners {
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let me = s.local_addr().unwrap().ip().to_string();
                let _ = s.write_all(me.as_bytes());
            }
        });
    }
    let n = node();
    let rs = compile(
        &n,
        &views(
            &n,
            &[service("a", "10.96.0.1"), service("none", "10.96.0.3")],
            &[slice("a", &["10.244.0.5", "10.244.0.6"])],
        ),
    );
    let mut proxy = Proxy::new();
    ns.run(|| proxy.sync(rs)).unwrap().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let addr: SocketAddr = "10.96.0.1:80".parse().unwrap();
        let mut c = ns
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        seen.insert(answer);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["10.244.0.5", "10.244.0.6"],
        "both endpoints reached"
    );
    let addr: SocketAddr = "10.96.0.3:80".parse().unwrap();
    let err = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "no endpoints: refused"
    );
}

#[test]
fn per_service_changes_load_and_match_a_whole_compile() {
    let ns = ScopedNetNs::create_unique("wpxc").unwrap();
    let n = node();
    let mut proxy = Proxy::new();
    let mut svcs: Vec<Service> = (1..=5)
        .map(|i| service(&format!("s{i}"), &format!("10.96.0.{i}")))
        .collect();
    let mut slices: Vec<EndpointSlice> = (1..=5)
        .map(|i| {
            slice(
                &format!("s{i}"),
                &[&format!("10.244.0.{i}"), &format!("10.244.1.{i}")],
            )
        })
        .collect();
    let first = views(&n, &svcs, &slices);
    assert_eq!(
        ns.run(|| proxy.sync(compile(&n, &first))).unwrap().unwrap(),
        SyncKind::Full
    );

    // s2 gains an endpoint, s3 is deleted, s6 is new.
    slices[1] = slice("s2", &["10.244.0.2", "10.244.1.2", "10.244.2.2"]);
    svcs.retain(|s| s.metadata.name.as_deref() != Some("s3"));
    slices.retain(|s| s.metadata.name.as_deref() != Some("s3-1"));
    svcs.push(service("s6", "10.96.0.6"));
    slices.push(slice("s6", &["10.244.0.6"]));
    let next = views(&n, &svcs, &slices);
    let by_id =
        |vs: &[weft_proxy::ServicePortView], id: &str| vs.iter().find(|v| v.id() == id).cloned();
    let changes: Vec<_> = [
        "default/s2/tcp/80",
        "default/s3/tcp/80",
        "default/s6/tcp/80",
    ]
    .iter()
    .map(|id| (by_id(&first, id), by_id(&next, id)))
    .collect();
    let kind = ns
        .run(|| proxy.sync_changes(&n, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(kind, Some(SyncKind::Incremental));
    // What the proxy holds is what a whole compile gives, so a whole sync finds nothing to do.
    assert_eq!(
        ns.run(|| proxy.sync(compile(&n, &next))).unwrap().unwrap(),
        SyncKind::Unchanged
    );
    let table = nft(&ns, "list table ip weft_services");
    assert!(
        table.contains("10.244.2.2 . 7070") && table.contains("10.96.0.6 . tcp . 80"),
        "{table}"
    );
    assert!(
        !table.contains("10.96.0.3 ") && !table.contains("svc-default/s3/"),
        "{table}"
    );
}
