//! The cluster DNS as pods meet it: weft's DNS pods behind the `kube-dns` Service at the
//! config's DNS address (deploy/dns.yaml), answering through the pods' resolv.conf (search path,
//! ndots:5) for `getent`, `nslookup`, `curl` and `dig`, from pods on two nodes, and following a
//! scale; and names outside the cluster forwarded to the lab's outside host, where a real DNS
//! server (Knot) answers. Needs root; the lab is torn down in Drop.

use weft_testutil::{client_pod, wait_for_what, Lab, AGNHOST};

const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: AGNHOST, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: peers}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n";

#[test]
fn pods_resolve_services_by_name_through_the_search_path() {
    let lab = Lab::new();
    let nodes: Vec<String> = (1..=2).map(|n| format!("{}-node{n}", lab.name)).collect();
    let manifest = lab.write(
        "app.yaml",
        &[
            APP.replace("AGNHOST", AGNHOST),
            client_pod("c1", &nodes[0]),
            client_pod("c2", &nodes[1]),
        ]
        .join("---\n"),
    );
    // The query log on and a TTL of 7 s, as a user sets them in the cluster config.
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 2\ndnsQueryLog: true\ndnsTTL: 7\n",
            lab.name
        ),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &manifest, "--wait", "60",
    ]);
    let web_ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let dns = lab.service_in("kube-system", "kube-dns");
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10", "{dns}");
    for c in ["c1", "c2"] {
        // The search path: every short form resolves to the Service's address.
        for name in [
            "web",
            "web.default",
            "web.default.svc",
            "web.default.svc.cluster.local",
        ] {
            let out = lab.ok(&["exec", c, "--", "getent", "hosts", name]);
            assert!(out.starts_with(&web_ip), "{c}: getent hosts {name}: {out}");
        }
        let out = lab.ok(&["exec", c, "--", "nslookup", "web.default.svc.cluster.local"]);
        assert!(out.contains(&web_ip), "{out}");
        let host = lab.ok(&[
            "exec",
            c,
            "--",
            "curl",
            "-s",
            "--max-time",
            "5",
            "http://web/hostname",
        ]);
        assert!(host.starts_with("web-"), "{host}");
        // wget (Debian's) resolves through the same resolv.conf.
        let host = lab.ok(&[
            "exec",
            c,
            "--",
            "wget",
            "-qO-",
            "-T",
            "5",
            "http://web/hostname",
        ]);
        assert!(host.starts_with("web-"), "wget: {host}");
        // And as the user types it: the real kubectl, exec into the pod.
        let host = lab.kubectl_ok(&[
            "exec",
            c,
            "--",
            "curl",
            "-s",
            "--max-time",
            "5",
            "web/hostname",
        ]);
        assert!(host.starts_with("web-"), "kubectl exec: {host}");
    }
    // The TTL is the config's.
    let out = lab.ok(&[
        "exec",
        "c1",
        "--",
        "dig",
        "+noall",
        "+answer",
        "web.default.svc.cluster.local",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.get(1), Some(&"7"), "{out}");
    // A name that does not exist: NXDOMAIN, at once (no 5-second wait for a server).
    let out = lab.weft(&[
        "exec",
        "c1",
        "--",
        "dig",
        "+time=2",
        "+tries=1",
        "nothere.default.svc.cluster.local",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    // The headless Service lists its ready pods; a scale follows.
    let peers = |lab: &Lab| -> usize {
        let out = lab.weft(&[
            "exec",
            "c1",
            "--",
            "dig",
            "+short",
            "peers.default.svc.cluster.local",
        ]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    wait_for_what("two headless answers", || peers(&lab) == 2);
    lab.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    wait_for_what("three headless answers after the scale", || {
        peers(&lab) == 3
    });

    // Observable: the questions are in the DNS pods' logs, and counted on :9153.
    let logs = lab.kubectl_ok(&[
        "logs",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "--tail=-1",
    ]);
    assert!(
        logs.contains("name=nothere.default.svc.cluster.local.") && logs.contains("rcode=NXDOMAIN"),
        "{logs}"
    );
    let dns_pods = lab.pods(&["-n", "kube-system", "-l", "k8s-app=kube-dns"]);
    let mut total = 0;
    for p in &dns_pods {
        let ip = weft_testutil::pod_ip(p);
        let url = format!("http://{ip}:9153/metrics");
        let metrics = lab.ok(&["exec", "c1", "--", "curl", "-s", "--max-time", "5", &url]);
        assert!(
            metrics.contains("# TYPE weft_dns_requests_total counter"),
            "{metrics}"
        );
        total += metrics
            .lines()
            .filter(|l| l.starts_with("weft_dns_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    assert!(total >= 10, "the questions above were counted: {total}");
}

/// Names outside the cluster: the DNS pods (dnsPolicy Default) forward them to the node's
/// resolver, the lab's outside host, where Knot serves `example.org` and the outside network's
/// reverse zone. Pods resolve them by name and reach the outside host's web server by name.
#[test]
fn names_outside_the_cluster_resolve_through_the_outside_hosts_dns_server() {
    let lab = Lab::new();
    let manifest = lab.write(
        "client.yaml",
        &client_pod("c1", &format!("{}-node1", lab.name)),
    );
    lab.ok(&["lab", "up", "--nodes", "1", "-f", &manifest, "--wait", "60"]);
    // The outside host's own server answers for its names.
    let out = lab.ok(&[
        "lab",
        "outside",
        "--",
        "dig",
        "+short",
        "outside.example.org",
    ]);
    assert_eq!(out.trim(), "203.0.113.10", "{out}");

    // From a pod, through the cluster DNS.
    let out = lab.ok(&["exec", "c1", "--", "getent", "hosts", "www.example.org"]);
    assert!(out.starts_with("203.0.113.10"), "{out}");
    let out = lab.ok(&["exec", "c1", "--", "nslookup", "203.0.113.10"]);
    assert!(out.contains("outside.example.org"), "{out}");
    let body = lab.ok(&[
        "exec",
        "c1",
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        "http://www.example.org/hostname",
    ]);
    assert_eq!(body.trim(), "outside", "{body}");
    // The flow log names the connection by the name the pod looked up (weft observe).
    let mut flows = String::new();
    wait_for_what("the connection to www.example.org in the flow log", || {
        flows = lab.ok(&[
            "observe",
            "--last",
            "100",
            "--to",
            "www.example.org",
            "-o",
            "json",
        ]);
        flows.contains("\"dns\":\"www.example.org\"")
    });
    assert!(
        flows.contains("\"destination\":\"world\"") && flows.contains("\"dst\":\"203.0.113.10\""),
        "{flows}"
    );
    let dig = |args: &[&str]| -> String {
        let mut all = vec!["exec", "c1", "--", "dig", "+time=3", "+tries=1"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&lab.weft(&all).stdout).into_owned()
    };
    let out = dig(&["web.example.org"]);
    assert!(
        out.contains("CNAME") && out.contains("203.0.113.10"),
        "{out}"
    );
    assert!(
        out.contains(" ra") || out.contains(" ra;"),
        "recursion available: {out}"
    );
    let out = dig(&["MX", "example.org"]);
    assert!(out.contains("10 mail.example.org."), "{out}");
    let out = dig(&["nope.example.org"]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("SOA"),
        "{out}"
    );
    // Names nobody serves: the outside server refuses them, and weft passes that on.
    let out = dig(&["www.kubernetes.io"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    // No recursion asked: weft answers only for the cluster.
    let out = dig(&["+norecurse", "www.example.org"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(&["+norecurse", "kubernetes.default.svc.cluster.local"]);
    assert!(out.contains("status: NOERROR"), "{out}");

    // The forwarding and the cache are counted on :9153. Two DNS pods share the queries at
    // random, so one of them is asked the same name twice: the second answer is a cache hit.
    let dns_pods = lab.pods(&["-n", "kube-system", "-l", "k8s-app=kube-dns"]);
    let first = format!("@{}", weft_testutil::pod_ip(&dns_pods[0]));
    for _ in 0..2 {
        let out = lab.ok(&["exec", "c1", "--", "dig", &first, "mail.example.org"]);
        assert!(out.contains("status: NOERROR"), "{out}");
    }
    let mut forwarded = 0;
    let mut hits = 0;
    for p in dns_pods {
        let url = format!("http://{}:9153/metrics", weft_testutil::pod_ip(&p));
        let metrics = lab.ok(&["exec", "c1", "--", "curl", "-s", "--max-time", "5", &url]);
        let sum = |prefix: &str| -> u64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        forwarded += sum("weft_dns_forward_requests_total{to=\"203.0.113.10:53\"}");
        hits += sum("weft_dns_cache_hits_total{");
    }
    assert!(forwarded >= 5, "forwarded to the outside host: {forwarded}");
    assert!(hits >= 1, "cache hits: {hits}");
}
