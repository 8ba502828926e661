//! The Kubernetes DNS-Based Service Discovery specification (1.1.0), point by point, as pods on
//! two nodes meet it: `dig` over UDP and TCP and the resolver library (`getent`) against a lab
//! whose cluster domain comes from its config (`weft.test`), with a ClusterIP Service backed by
//! a Deployment, headless Services with ready and not-ready pods (one publishing not-ready
//! addresses), pods with `hostname` + `subdomain`, an ExternalName Service pointing at the
//! outside host's `www.example.org`, and a selector-less headless Service whose hand-written
//! EndpointSlice has 100 addresses (too many for one UDP answer). Needs root; the lab is torn
//! down in Drop.

use std::collections::BTreeSet;

use weft_testutil::{name_of, pod_ip, wait_for_what, Lab};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// The cluster domain, from the lab's config: nothing below is under `cluster.local`.
const DOMAIN: &str = "weft.test";
/// The answer of the outside host's DNS server for `www.example.org` (crates/lab/src/outside_dns.rs).
const OUTSIDE_IP: &str = "203.0.113.10";
/// How many addresses the selector-less Service's EndpointSlice lists.
const MANY: usize = 100;

/// A pod on `node`: a client that sleeps, or with `app` a server (agnhost, HTTP on 80, whose
/// `/hostname` says the hostname it runs under); optionally `hostname` + `subdomain`, and a
/// readiness probe that never passes (nothing listens on port 1).
struct PodSpec<'a> {
    name: &'a str,
    node: &'a str,
    app: Option<&'a str>,
    host: Option<(&'a str, &'a str)>,
    never_ready: bool,
}

impl PodSpec<'_> {
    fn yaml(&self) -> String {
        let labels = self
            .app
            .map(|a| format!("\n  labels: {{app: {a}}}"))
            .unwrap_or_default();
        let image = match self.app {
            Some(_) => format!("image: {AGNHOST}, ports: [{{containerPort: 80}}]"),
            None => "image: busybox, command: [sleep, \"3600\"]".to_string(),
        };
        let host = self
            .host
            .map(|(h, s)| format!("  hostname: {h}\n  subdomain: {s}\n"))
            .unwrap_or_default();
        let probe = if self.never_ready {
            ", readinessProbe: {tcpSocket: {port: 1}, periodSeconds: 1}"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}{labels}\nspec:\n  nodeName: {}\n{host}  containers: [{{name: c, {image}{probe}}}]\n",
            self.name, self.node
        )
    }
}

fn pod<'a>(name: &'a str, node: &'a str) -> PodSpec<'a> {
    PodSpec {
        name,
        node,
        app: None,
        host: None,
        never_ready: false,
    }
}

/// The web Deployment behind a ClusterIP Service with a TCP and a UDP named port; the `db`
/// headless Service and the `db-all` one that publishes not-ready addresses (both select
/// app=db); the ExternalName Service; and `many`, headless without a selector.
const SERVICES: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: AGNHOST, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: echo, port: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db-all}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: db}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: www.example.org
---
apiVersion: v1
kind: Service
metadata: {name: many}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
";

/// The hand-written slice of `many`: 10.244.250.1 to .100, all ready.
fn many_slice() -> String {
    let endpoints: String = (1..=MANY)
        .map(|i| format!("  - addresses: [{}]\n", many_ip(i)))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-1\n  labels: {{kubernetes.io/service-name: many}}\naddressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints:\n{endpoints}"
    )
}

fn many_ip(i: usize) -> String {
    format!("10.244.250.{i}")
}

/// `name` under the cluster domain, absolute.
fn fqdn(name: &str) -> String {
    format!("{name}.{DOMAIN}.")
}

/// An address as the spec names it in a label (`10-244-1-5`).
fn dashed(ip: &str) -> String {
    ip.replace('.', "-")
}

/// One resource record as dig prints it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    name: String,
    rtype: String,
    data: String,
}

/// dig's reply, parsed from its default output.
#[derive(Debug)]
struct Reply {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    text: String,
}

impl Reply {
    fn parse(text: &str) -> Reply {
        let mut reply = Reply {
            status: String::new(),
            flags: Vec::new(),
            answer: Vec::new(),
            authority: Vec::new(),
            text: text.to_string(),
        };
        let mut section = "";
        for line in text.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                reply.status = rest.split(',').next().unwrap_or_default().to_string();
            }
            if let Some(rest) = line.strip_prefix(";; flags: ") {
                let flags = rest.split(';').next().unwrap_or_default();
                reply.flags = flags.split_whitespace().map(str::to_string).collect();
            }
            if line.starts_with(";; ") && line.ends_with(" SECTION:") {
                section = line.trim_start_matches(";; ").trim_end_matches(" SECTION:");
                continue;
            }
            if line.trim().is_empty() || line.starts_with(';') {
                if line.trim().is_empty() {
                    section = "";
                }
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 5 {
                continue;
            }
            let rr = Rr {
                name: words[0].to_string(),
                rtype: words[3].to_string(),
                data: words[4..].join(" "),
            };
            match section {
                "ANSWER" => reply.answer.push(rr),
                "AUTHORITY" => reply.authority.push(rr),
                _ => {}
            }
        }
        reply
    }

    /// The data of the answer's records of `rtype`, sorted.
    fn data(&self, rtype: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        out.sort();
        out
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// A negative answer: `status`, nothing answered, the zone's SOA in the authority section.
    fn assert_negative(&self, status: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(self.answer.is_empty(), "{}", self.text);
        assert!(
            self.authority
                .iter()
                .any(|r| r.rtype == "SOA" && r.name == format!("{DOMAIN}.")),
            "SOA of {DOMAIN} in the authority section: {}",
            self.text
        );
    }
}

/// The client pods, one per node.
const CLIENTS: [&str; 2] = ["c1", "c2"];

struct Dig<'a> {
    lab: &'a Lab,
}

impl Dig<'_> {
    /// `dig ARGS` in `pod`, over TCP when `tcp`.
    fn once(&self, pod: &str, tcp: bool, args: &[&str]) -> Reply {
        let mut all = vec!["exec", pod, "--", "dig", "+time=3", "+tries=2"];
        all.push(if tcp { "+tcp" } else { "+notcp" });
        all.extend_from_slice(args);
        let out = self.lab.weft(&all);
        Reply::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// `dig ARGS` from both clients (two nodes), over UDP and over TCP: the four replies agree
    /// on status and answer; the first is returned.
    fn everywhere(&self, args: &[&str]) -> Reply {
        let mut replies = Vec::new();
        for pod in CLIENTS {
            for tcp in [false, true] {
                replies.push((pod, tcp, self.once(pod, tcp, args)));
            }
        }
        let (_, _, first) = &replies[0];
        let sorted = |r: &Reply| {
            let mut a = r.answer.clone();
            a.sort();
            a
        };
        for (pod, tcp, r) in &replies[1..] {
            let how = if *tcp { "TCP" } else { "UDP" };
            assert_eq!(
                (r.status.as_str(), sorted(r)),
                (first.status.as_str(), sorted(first)),
                "dig {args:?} from {pod} over {how} differs from c1 over UDP:\n{}\n---\n{}",
                r.text,
                first.text
            );
            assert!(!r.status.is_empty(), "dig {args:?} from {pod}: {}", r.text);
        }
        replies.swap_remove(0).2
    }
}

#[test]
fn pods_on_two_nodes_see_every_record_of_the_dns_spec() {
    let lab = Lab::new();
    let node = |n: usize| format!("{}-node{n}", lab.name);
    let (n1, n2) = (node(1), node(2));
    let pods = [
        pod("c1", &n1),
        pod("c2", &n2),
        // Named apart from their hostnames, to tell which one DNS and the pod itself use.
        PodSpec {
            app: Some("db"),
            host: Some(("db-0", "db")),
            ..pod("db-a", &n1)
        },
        PodSpec {
            app: Some("db"),
            host: Some(("db-1", "db")),
            ..pod("db-b", &n2)
        },
        // Ready, without a hostname: its name is its address, dashed.
        PodSpec {
            app: Some("db"),
            ..pod("db-x", &n1)
        },
    ];
    let mut docs = vec![SERVICES.replace("AGNHOST", AGNHOST), many_slice()];
    docs.extend(pods.iter().map(PodSpec::yaml));
    let manifest = lab.write("spec.yaml", &docs.join("---\n"));
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 2\nclusterDomain: {DOMAIN}\n",
            lab.name
        ),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &manifest, "--wait", "60",
    ]);
    // Never ready, so applied after `lab up` (which waits for readiness): a hostname in the
    // `db` subdomain, selected by both headless Services.
    let late = lab.write(
        "late.yaml",
        &PodSpec {
            app: Some("db"),
            host: Some(("late", "db")),
            never_ready: true,
            ..pod("late", &n2)
        }
        .yaml(),
    );
    lab.kubectl_ok(&["apply", "-f", &late]);
    let ip_of = |name: &str| -> String {
        let mut ip = String::new();
        wait_for_what(&format!("an address for pod {name}"), || {
            ip = lab
                .pods(&[])
                .iter()
                .find(|p| name_of(p) == name)
                .map(pod_ip)
                .unwrap_or_default();
            !ip.is_empty()
        });
        ip
    };
    let [db0, db1, dbx, late, c2] = ["db-a", "db-b", "db-x", "late", "c2"].map(ip_of);
    let web_ip = lab.service("web")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();

    // The kubelet's resolv.conf: the cluster DNS, the config's domain in the search path.
    let resolv = lab.ok(&["exec", "c1", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!(
            "search default.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}"
        )) && resolv.contains("nameserver 10.96.0.10")
            && resolv.contains("ndots:5"),
        "{resolv}"
    );

    let dig = Dig { lab: &lab };
    let svc = |name: &str| fqdn(&format!("{name}.default.svc"));
    // The endpoints controller and each DNS pod follow the pods: wait until every DNS pod's
    // zone shows the ready pods of `db`, the not-ready one in `db-all`, and the hand-written
    // slice, so that whichever pod the Service picks answers alike.
    let dns_pods: Vec<String> = lab
        .pods(&["-n", "kube-system", "-l", "k8s-app=kube-dns"])
        .iter()
        .map(pod_ip)
        .collect();
    assert_eq!(dns_pods.len(), 2, "{dns_pods:?}");
    let addresses = |server: &str, name: &str, tcp: bool| {
        dig.once("c1", tcp, &[&format!("@{server}"), &svc(name)])
            .data("A")
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let ready = sorted(vec![db0.clone(), db1.clone(), dbx.clone()]);
    let all = sorted(vec![db0.clone(), db1.clone(), dbx.clone(), late.clone()]);
    for server in &dns_pods {
        wait_for_what(
            &format!("db's three ready pods, db-all's four and many's 100 at {server}"),
            || {
                addresses(server, "db", false) == ready
                    && addresses(server, "db-all", false) == all
                    && addresses(server, "many", true).len() == MANY
            },
        );
    }

    // A ClusterIP Service: its cluster IP; case does not matter.
    let r = dig.everywhere(&[&svc("web")]);
    assert_eq!(r.data("A"), [web_ip.as_str()], "{}", r.text);
    assert_eq!(r.status, "NOERROR");
    let r = dig.everywhere(&[&format!("WEB.Default.SVC.{}", DOMAIN.to_uppercase())]);
    assert_eq!(r.data("A"), [web_ip.as_str()], "{}", r.text);
    // SRV per named port, targeting the Service's name.
    let r = dig.everywhere(&["SRV", &format!("_http._tcp.{}", svc("web"))]);
    assert_eq!(
        r.data("SRV"),
        [format!("0 100 80 {}", svc("web"))],
        "{}",
        r.text
    );
    let r = dig.everywhere(&["SRV", &format!("_echo._udp.{}", svc("web"))]);
    assert_eq!(
        r.data("SRV"),
        [format!("0 100 8081 {}", svc("web"))],
        "{}",
        r.text
    );
    // PTR of the cluster IP.
    let r = dig.everywhere(&["-x", &web_ip]);
    assert_eq!(r.data("PTR"), [svc("web")], "{}", r.text);
    // An IPv4-only Service has no AAAA: NOERROR, no data, the SOA.
    dig.everywhere(&["AAAA", &svc("web")])
        .assert_negative("NOERROR");
    // The domain is the config's: cluster.local is not the cluster's (forwarded, and the
    // outside server does not know it).
    let r = dig.once("c1", false, &["web.default.svc.cluster.local"]);
    assert!(
        r.data("A").is_empty() && r.status != "NOERROR",
        "{}",
        r.text
    );

    // Headless: one A per ready endpoint; the not-ready pod only where not-ready addresses are
    // published.
    let r = dig.everywhere(&[&svc("db")]);
    assert_eq!(r.data("A"), ready, "{}", r.text);
    let r = dig.everywhere(&[&svc("db-all")]);
    assert_eq!(r.data("A"), all, "{}", r.text);
    // hostname.subdomain for pods whose subdomain names the Service, the dashed address for the
    // others; the not-ready pod has no name in `db`.
    for (name, ip) in [
        ("db-0.db".to_string(), &db0),
        ("db-1.db".to_string(), &db1),
        (format!("{}.db", dashed(&dbx)), &dbx),
        (format!("{}.db-all", dashed(&late)), &late),
        (format!("{}.db-all", dashed(&db0)), &db0),
    ] {
        let r = dig.everywhere(&[&svc(&name)]);
        assert_eq!(r.data("A"), [ip.as_str()], "{name}: {}", r.text);
    }
    dig.everywhere(&[&svc("late.db")])
        .assert_negative("NXDOMAIN");
    dig.everywhere(&[&svc(&format!("{}.db", dashed(&late)))])
        .assert_negative("NXDOMAIN");
    // A hostname belongs to its subdomain's Service only.
    dig.everywhere(&[&svc("db-0.db-all")])
        .assert_negative("NXDOMAIN");
    // SRV: one per endpoint, targeting the endpoint's own name.
    let r = dig.everywhere(&["SRV", &format!("_http._tcp.{}", svc("db"))]);
    let targets: BTreeSet<String> = r
        .data("SRV")
        .iter()
        .map(|d| {
            let words: Vec<&str> = d.split_whitespace().collect();
            assert_eq!(words.get(2), Some(&"80"), "{d}");
            words.last().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = [
        svc("db-0.db"),
        svc("db-1.db"),
        svc(&format!("{}.db", dashed(&dbx))),
    ]
    .into();
    assert_eq!(targets, expected, "{}", r.text);
    let r = dig.everywhere(&["SRV", &format!("_http._tcp.{}", svc("db-all"))]);
    assert_eq!(r.data("SRV").len(), 4, "{}", r.text);
    // PTR of headless endpoints: back to their names.
    let r = dig.everywhere(&["-x", &db0]);
    assert!(r.data("PTR").contains(&svc("db-0.db")), "{}", r.text);
    let r = dig.everywhere(&["-x", &dbx]);
    assert!(
        r.data("PTR")
            .contains(&svc(&format!("{}.db", dashed(&dbx)))),
        "{}",
        r.text
    );
    let r = dig.everywhere(&["-x", &late]);
    assert_eq!(
        r.data("PTR"),
        [svc(&format!("{}.db-all", dashed(&late)))],
        "{}",
        r.text
    );

    // ExternalName: a CNAME to the external name (which the outside host's server answers).
    let r = dig.everywhere(&[&svc("ext")]);
    assert_eq!(r.status, "NOERROR", "{}", r.text);
    assert_eq!(r.data("CNAME"), ["www.example.org."], "{}", r.text);
    let r = dig.everywhere(&["CNAME", &svc("ext")]);
    assert_eq!(r.data("CNAME"), ["www.example.org."], "{}", r.text);

    // The schema version, pod records, and a name that does not exist.
    let r = dig.everywhere(&["TXT", &fqdn("dns-version")]);
    assert_eq!(r.data("TXT"), ["\"1.1.0\""], "{}", r.text);
    let r = dig.everywhere(&[&fqdn(&format!("{}.default.pod", dashed(&c2)))]);
    assert_eq!(r.data("A"), [c2.as_str()], "{}", r.text);
    dig.everywhere(&[&svc("nothere")])
        .assert_negative("NXDOMAIN");

    // 100 addresses do not fit in a UDP answer: truncated there, all of them over TCP.
    let many = svc("many");
    for pod in CLIENTS {
        for extra in [&[][..], &["+noedns"][..]] {
            let mut args = vec!["+ignore", many.as_str()];
            args.extend_from_slice(extra);
            let udp = dig.once(pod, false, &args);
            assert!(udp.has_flag("tc"), "{pod} {extra:?}: {}", udp.text);
            assert!(udp.answer.len() < MANY, "{pod}: {}", udp.text);
        }
        let tcp = dig.once(pod, true, &[&many]);
        let expected: Vec<String> = sorted((1..=MANY).map(many_ip).collect());
        assert_eq!(tcp.data("A"), expected, "{pod}: {}", tcp.text);
        assert!(!tcp.has_flag("tc"), "{pod}: {}", tcp.text);
    }

    // The resolver library (glibc, through the search path and ndots:5), from both nodes.
    let getent = |pod: &str, db: &str, name: &str| -> String {
        lab.ok(&["exec", pod, "--", "getent", db, name])
    };
    let addresses_in = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    for pod in CLIENTS {
        let out = getent(pod, "hosts", "web");
        assert!(out.starts_with(&format!("{web_ip} ")), "{pod}: {out}");
        let out = getent(pod, "ahosts", "web.default");
        assert_eq!(addresses_in(&out), [web_ip.clone()].into(), "{pod}: {out}");
        let out = getent(pod, "ahosts", "db");
        assert_eq!(
            addresses_in(&out),
            ready.iter().cloned().collect(),
            "{pod}: {out}"
        );
        let out = getent(pod, "hosts", "db-1.db");
        assert!(out.starts_with(&format!("{db1} ")), "{pod}: {out}");
        // The reverse name of the cluster IP, through PTR.
        let out = getent(pod, "hosts", &web_ip);
        assert!(
            out.contains(&format!("web.default.svc.{DOMAIN}")),
            "{pod}: {out}"
        );
        // The truncated UDP answer is retried over TCP by the library.
        let out = getent(pod, "ahosts", &many);
        assert_eq!(addresses_in(&out).len(), MANY, "{pod}: {out}");
        // A pod found by `hostname.subdomain` is that host: it runs under its `spec.hostname`.
        for (name, host) in [("db-0.db", "db-0"), ("db-1.db", "db-1")] {
            let body = lab.curl(pod, &format!("http://{name}/hostname"));
            assert_eq!(body.trim(), host, "{pod}: {name}");
        }
        let body = lab.curl(pod, &format!("http://{}.db/hostname", dashed(&dbx)));
        assert_eq!(body.trim(), "db-x", "{pod}");
    }
    // Commands in the pod see the same hostname.
    let out = lab.ok(&["exec", "db-a", "--", "hostname"]);
    assert_eq!(out.trim(), "db-0");
    let out = lab.ok(&["exec", "db-b", "--", "printenv", "HOSTNAME"]);
    assert_eq!(out.trim(), "db-1");
}

/// An ExternalName's CNAME leads to the outside host's `www.example.org`, and one may name
/// another Service inside the cluster: pods resolve both through the resolver library and
/// reach them by name. glibc and musl do not chase a CNAME by asking again (they take the
/// chain from one answer, as from any recursive resolver); CoreDNS appends the target's
/// records, resolved through its upstream or its own zone.
#[test]
fn external_name_chains_resolve_through_the_resolver_library() {
    let lab = Lab::new();
    let manifest = lab.write(
        "ext.yaml",
        &[
            "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: www.example.org}\n".to_string(),
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: inside}}\nspec: {{type: ExternalName, externalName: kubernetes.default.svc.{DOMAIN}}}\n"),
            pod("c1", &format!("{}-node1", lab.name)).yaml(),
        ]
        .join("---\n"),
    );
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 1\nclusterDomain: {DOMAIN}\n",
            lab.name
        ),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &manifest, "--wait", "60",
    ]);
    let kubernetes = lab.service("kubernetes")["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let dig = Dig { lab: &lab };
    for (name, target, ip) in [
        ("ext", "www.example.org.".to_string(), OUTSIDE_IP),
        (
            "inside",
            fqdn("kubernetes.default.svc"),
            kubernetes.as_str(),
        ),
    ] {
        let qname = fqdn(&format!("{name}.default.svc"));
        for tcp in [false, true] {
            let r = dig.once("c1", tcp, &[&qname]);
            assert_eq!(r.data("CNAME"), [target.as_str()], "{}", r.text);
            assert_eq!(r.data("A"), [ip.to_string()], "{}", r.text);
        }
        let out = lab.ok(&["exec", "c1", "--", "getent", "hosts", name]);
        assert!(out.starts_with(&format!("{ip} ")), "{name}: {out}");
    }
    let body = lab.curl("c1", "http://ext/hostname");
    assert_eq!(body.trim(), "outside", "{body}");
}
