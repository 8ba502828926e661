//! The ingress controller in a lab, as a user meets it: `weft lab up` deploys it from
//! deploy/ingress.yaml (Deployment and LoadBalancer Service in weft-system, the default
//! IngressClass `weft`); Ingresses applied with kubectl get the Service's address in their
//! status; `curl` from the lab's outside host through that address reaches the pods the rules
//! name. Modelled on the ingress-controller-conformance scenarios: host rules (exact and
//! wildcard), path rules (Exact, Prefix element by element, longest match), the default
//! backend, ingress classes (the default class, `nginx` by annotation, another controller's
//! class left alone), load balancing across endpoints, 503 without ready endpoints, the
//! forwarding headers with the client's address kept, and a changed Ingress served without a
//! restart. The backends are nginx servers, which answer every path with their pod's name, and
//! an agnhost netexec that echoes a request header (`/header?key=`). Needs root; the lab is
//! torn down in Drop.

use weft_testutil::{parsed_by_prometheus, wait_for_what, Lab, AGNHOST};

const OUTSIDE: &str = "203.0.113.10";

/// A Deployment and its Service (port `web` 80 to the container's port `http`): nginx on 80,
/// or with `agnhost` an agnhost netexec on 8080.
fn deployment(name: &str, replicas: u32, agnhost: bool) -> String {
    let container = if agnhost {
        format!("{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080, name: http}}]}}")
    } else {
        "{name: c, image: nginx:1.27, ports: [{containerPort: 80, name: http}]}".to_string()
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{container}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: web, port: 80, targetPort: http}}]\n---\n"
    )
}

const INGRESSES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: hosts}
spec:
  rules:
    - host: a.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
    - host: b.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-b, port: {name: web}}}}]}
    - host: "*.wild.example.com"
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
    - host: headers.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: headers, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: paths
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  defaultBackend: {service: {name: echo-b, port: {number: 80}}}
  rules:
    - host: paths.example.com
      http:
        paths:
          - {path: /exact, pathType: Exact, backend: {service: {name: echo-b, port: {number: 80}}}}
          - {path: /foo, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}
          - {path: /empty, pathType: Prefix, backend: {service: {name: empty, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: theirs}
spec:
  ingressClassName: traefik
  rules:
    - host: theirs.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
"#;

struct Ingress {
    lab: Lab,
    lb: String,
}

impl Ingress {
    /// `curl` from the outside host to `http://host/path` through the controller's address:
    /// (HTTP status, body). Status 0 when curl failed.
    fn get(&self, host: &str, path: &str) -> (u16, String) {
        let resolve = format!("{host}:80:{}", self.lb);
        let url = format!("http://{host}{path}");
        let (text, _) = outside_curl(
            &self.lab,
            &["--resolve", &resolve, "-w", "\n%{http_code}", &url],
        );
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `STATUS APP` of the nginx pod that answered `host/path`.
    fn who(&self, host: &str, path: &str) -> String {
        let (code, body) = self.get(host, path);
        format!("{code} {}", app_of(&body))
    }
}

/// `echo-a` for a pod named `echo-a-<hash>-<id>`; the body otherwise.
fn app_of(body: &str) -> String {
    match body.split('-').collect::<Vec<_>>().as_slice() {
        [app, which, _, _] => format!("{app}-{which}"),
        _ => body.trim().to_string(),
    }
}

fn up() -> Ingress {
    let lab = Lab::new();
    let apps = deployment("echo-a", 2, false)
        + &deployment("echo-b", 1, false)
        + &deployment("empty", 0, false)
        + &deployment("headers", 1, true);
    let file = lab.write("apps.yaml", &apps);
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &file, "--wait", "120"]);
    let ingresses = lab.write("ingresses.yaml", INGRESSES);
    lab.kubectl_ok(&["apply", "-f", &ingresses]);
    let lb = lab.lb_ip_in("weft-system", "weft-ingress");
    Ingress { lab, lb }
}

#[test]
fn ingresses_are_served_by_host_path_and_class() {
    let ing = up();
    // Status: the controller's address on every Ingress it serves, none on another's.
    wait_for_what("the served Ingresses' status", || {
        let out = ing.lab.kubectl_ok(&["get", "ingress"]);
        out.lines().filter(|l| l.contains(&ing.lb)).count() == 2
    });
    let listing = ing.lab.kubectl_ok(&["get", "ingress"]);
    // An Ingress created without a class gets the default one (DefaultIngressClass admission).
    let hosts = listing.lines().find(|l| l.starts_with("hosts")).unwrap();
    assert!(hosts.split_whitespace().nth(1) == Some("weft"), "{listing}");
    let theirs = listing.lines().find(|l| l.starts_with("theirs")).unwrap();
    assert!(!theirs.contains(&ing.lb), "{listing}");
    assert!(
        listing.contains("a.example.com,b.example.com,*.wild.example.com"),
        "{listing}"
    );

    // Host rules, exact and wildcard (one label only); a port by name.
    let cases = [
        ("a.example.com", "/", "200 echo-a"),
        ("A.EXAMPLE.COM", "/hostname", "200 echo-a"),
        ("b.example.com", "/", "200 echo-b"),
        ("x.wild.example.com", "/", "200 echo-a"),
        // Not one label more: no rule of its own, so the default backend.
        ("x.y.wild.example.com", "/", "200 echo-b"),
        ("wild.example.com", "/", "200 echo-b"),
        // Path rules (class nginx by the legacy annotation): Exact only itself, Prefix by
        // element, and what matches nothing to the default backend.
        ("paths.example.com", "/exact", "200 echo-b"),
        ("paths.example.com", "/exact/more", "200 echo-b"),
        ("paths.example.com", "/foo", "200 echo-a"),
        ("paths.example.com", "/foo/", "200 echo-a"),
        ("paths.example.com", "/foo/bar?q=1", "200 echo-a"),
        ("paths.example.com", "/foobar", "200 echo-b"),
        // Another controller's class: not served here (the default backend answers).
        ("theirs.example.com", "/", "200 echo-b"),
    ];
    let mut wrong = Vec::new();
    for (host, path, want) in cases {
        let got = ing.who(host, path);
        if got != want {
            wrong.push(format!("{host}{path}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A Service without ready endpoints: 503.
    let (code, _) = ing.get("paths.example.com", "/empty/x");
    assert_eq!(code, 503);

    // Load balancing: both echo-a pods answer.
    let mut pods = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (code, body) = ing.get("a.example.com", "/");
        assert_eq!(code, 200, "{body}");
        pods.insert(body);
    }
    assert_eq!(pods.len(), 2, "{pods:?}");

    // Headers: the client's own address (externalTrafficPolicy Local keeps it), Host kept.
    let header = |key: &str| {
        ing.get("headers.example.com", &format!("/header?key={key}"))
            .1
    };
    assert_eq!(header("X-Forwarded-For"), OUTSIDE);
    assert_eq!(header("X-Real-IP"), OUTSIDE);
    assert_eq!(header("X-Forwarded-Proto"), "http");
    assert_eq!(header("X-Forwarded-Host"), "headers.example.com");
    assert_eq!(header("Host"), "headers.example.com");

    // The metrics, read as Prometheus's own parser reads them: the requests above by Ingress,
    // Service and status.
    let pod = ing.lab.pods(&["-n", "weft-system"])[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let metrics = ing.lab.ok(&[
        "exec",
        "-n",
        "weft-system",
        &pod,
        "--",
        "curl",
        "-sS",
        "http://127.0.0.1:10254/metrics",
    ]);
    let parsed = parsed_by_prometheus(&metrics);
    let served_a = parsed
        .lines()
        .find(|l| {
            l.starts_with("counter weft_ingress_requests_total ")
                && l.contains("('ingress', 'hosts')")
                && l.contains("('service', 'echo-a')")
                && l.contains("('status', '200')")
        })
        .unwrap_or_else(|| panic!("no count of echo-a's 200s:\n{parsed}"));
    let count: f64 = served_a.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 12.0, "{served_a}");
    assert!(
        parsed.lines().any(|l| l
            .starts_with("histogram weft_ingress_request_duration_seconds_count ")
            && l.contains("('ingress', 'paths')")),
        "{parsed}"
    );

    // A changed Ingress is served without a restart.
    let changed = INGRESSES.replace(
        "host: b.example.com\n      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-b",
        "host: b.example.com\n      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a",
    );
    assert_ne!(changed, INGRESSES);
    let file = ing.lab.write("changed.yaml", &changed);
    ing.lab.kubectl_ok(&["apply", "-f", &file]);
    wait_for_what("b.example.com served by echo-a", || {
        ing.who("b.example.com", "/") == "200 echo-a"
    });
}

/// `curl -sS` from the outside host with `args` (the URL last): (stdout, exit code).
fn outside_curl(lab: &Lab, args: &[&str]) -> (String, i32) {
    let mut all = vec!["lab", "outside", "--", "curl", "-sS", "--max-time", "5"];
    all.extend_from_slice(args);
    let out = lab.weft(&all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn tls_from_a_secret_http2_and_the_https_redirect() {
    let ing = up();
    // A certificate for secure.example.com, made with openssl, stored with kubectl.
    let dir = ing.lab.write("keep", "");
    let dir = std::path::Path::new(&dir).parent().unwrap().to_path_buf();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=secure.example.com"])
        .args(["-addext", "subjectAltName=DNS:secure.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (crt, key) = (
        crt.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    ing.lab.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        "--cert",
        &crt,
        "--key",
        &key,
    ]);
    let secure = ing.lab.write(
        "secure.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: secure}\nspec:\n  tls: [{hosts: [secure.example.com], secretName: secure-tls}]\n  rules:\n    - host: secure.example.com\n      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}\n",
    );
    ing.lab.kubectl_ok(&["apply", "-f", &secure]);
    let resolve = format!("secure.example.com:443:{}", ing.lb);
    let resolve80 = format!("secure.example.com:80:{}", ing.lb);
    // Verified against the Secret's own certificate, over HTTP/2 (ALPN) and TLS 1.2.
    let mut last = String::new();
    wait_for_what("secure.example.com over HTTPS", || {
        let (out, _) = outside_curl(
            &ing.lab,
            &[
                "--cacert",
                &crt,
                "--resolve",
                &resolve,
                "--http2",
                "-w",
                " %{http_version}",
                "https://secure.example.com/",
            ],
        );
        last = out.clone();
        out.starts_with("echo-a-") && out.ends_with(" 2")
    });
    let (out, code) = outside_curl(
        &ing.lab,
        &[
            "--cacert",
            &crt,
            "--resolve",
            &resolve,
            "--tls-max",
            "1.2",
            "--http1.1",
            "https://secure.example.com/",
        ],
    );
    assert_eq!(code, 0, "TLS 1.2: {out} (last HTTP/2 answer {last})");
    assert!(out.starts_with("echo-a-"), "{out}");
    // h2load, HTTP/2's own load generator, completes its requests.
    let h2 = ing.lab.weft(&[
        "lab",
        "outside",
        "--",
        "h2load",
        "-n",
        "100",
        "-c",
        "2",
        "--connect-to",
        &format!("{}:443", ing.lb),
        "https://secure.example.com/",
    ]);
    let h2 = String::from_utf8_lossy(&h2.stdout).into_owned();
    assert!(h2.contains("100 succeeded"), "{h2}");
    // Plain HTTP to a TLS host: 308 to HTTPS.
    let (out, _) = outside_curl(
        &ing.lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "--resolve",
            &resolve80,
            "http://secure.example.com/a?b=c",
        ],
    );
    assert_eq!(out, "308 https://secure.example.com/a?b=c");
    // A name without a certificate gets the default one.
    let (out, code) = outside_curl(
        &ing.lab,
        &[
            "-k",
            "-v",
            "--resolve",
            &format!("other.example.com:443:{}", ing.lb),
            "https://other.example.com/",
        ],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn problems_are_described_and_recorded_as_events() {
    let ing = up();
    let broken = ing.lab.write(
        "broken.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: broken\n  annotations: {nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers x', nginx.ingress.kubernetes.io/proxy-body-size: lots}\nspec:\n  rules:\n    - host: broken.example.com\n      http:\n        paths:\n          - {path: /, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}\n          - {path: /ok, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}\n",
    );
    ing.lab.kubectl_ok(&["apply", "-f", &broken]);
    // The rest keeps working: its good path, and every other Ingress.
    wait_for_what("broken.example.com/ok served", || {
        ing.who("broken.example.com", "/ok") == "200 echo-a"
    });
    assert_eq!(ing.get("broken.example.com", "/").0, 503);
    assert_eq!(ing.who("a.example.com", "/"), "200 echo-a");
    let described = ing.lab.ok(&["describe", "ingress", "broken"]);
    for want in [
        "Ingress Class:",
        "weft (served by weft)",
        "broken.example.com",
        "/ok (Prefix)  ->  default/echo-a:80 -> [",
        "backend default/nope:80: the Service does not exist",
        "proxy-body-size: \"lots\" is not a size",
        "Not served (annotations weft ignores):\n  nginx.ingress.kubernetes.io/configuration-snippet",
    ] {
        assert!(described.contains(want), "{want:?} in:\n{described}");
    }
    let theirs = ing.lab.ok(&["describe", "ingress", "theirs"]);
    assert!(
        theirs.contains("traefik (not weft's: left alone)"),
        "{theirs}"
    );
    // The problems are Warning events on the Ingress, where kubectl describe shows them.
    wait_for_what("the problem as an event", || {
        let out = ing.lab.kubectl_ok(&["describe", "ingress", "broken"]);
        out.contains("IngressProblem") && out.contains("the Service does not exist")
    });
}

#[test]
fn a_cert_manager_issuer_annotation_gets_a_certificate_from_the_lab_ca() {
    let ing = up();
    let manifest = ing.lab.write(
        "issued.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: issued\n  annotations: {cert-manager.io/cluster-issuer: lab-ca}\nspec:\n  tls: [{hosts: [issued.example.com], secretName: issued-tls}]\n  rules:\n    - host: issued.example.com\n      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}\n",
    );
    ing.lab.kubectl_ok(&["apply", "-f", &manifest]);
    // The controller creates the Secret, a kubernetes.io/tls one.
    wait_for_what("the issued Secret", || {
        ing.lab
            .kubectl(&["get", "secret", "issued-tls", "-o", "jsonpath={.type}"])
            .stdout
            == b"kubernetes.io/tls"
    });
    // Verified against the lab's CA, as `weft lab ca` prints it.
    let ca = ing.lab.ok(&["lab", "ca"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let ca_file = ing.lab.write("lab-ca.crt", &ca);
    let resolve = format!("issued.example.com:443:{}", ing.lb);
    wait_for_what("issued.example.com verified by the lab CA", || {
        let (out, _) = outside_curl(
            &ing.lab,
            &[
                "--cacert",
                &ca_file,
                "--resolve",
                &resolve,
                "https://issued.example.com/",
            ],
        );
        out.starts_with("echo-a-")
    });
    // Issued once: a resync leaves it as it is.
    let version = |lab: &Lab| {
        lab.kubectl_ok(&[
            "get",
            "secret",
            "issued-tls",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = version(&ing.lab);
    ing.lab
        .kubectl_ok(&["annotate", "ingress", "issued", "touched=1"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(version(&ing.lab), before);
}

/// A cluster whose config says `ingressNginxClass: false` (an ingress-nginx of its own serves
/// class nginx): weft leaves those Ingresses alone, by annotation or by name. And an Ingress
/// without a class among `lab up -f`'s manifests gets the default class, as one created
/// through the API after weft was installed does.
#[test]
fn the_cluster_config_leaves_class_nginx_alone_and_lab_up_ingresses_get_the_default_class() {
    let lab = Lab::new();
    let config = lab.write(
        "cluster.yaml",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nname: {}\nnodes: 1\ningressNginxClass: false\n",
            lab.name
        ),
    );
    let ingresses = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bare}
spec:
  rules:
    - host: bare.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: legacy
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  rules:
    - host: legacy.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: named}
spec:
  ingressClassName: nginx
  rules:
    - host: named.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: echo-a, port: {number: 80}}}}]}
"#;
    let file = lab.write(
        "apps.yaml",
        &(deployment("echo-a", 1, false) + ingresses.trim_start()),
    );
    lab.ok(&[
        "lab", "up", "--config", &config, "-f", &file, "--wait", "120",
    ]);
    let lb = lab.lb_ip_in("weft-system", "weft-ingress");
    let ing = Ingress { lab, lb };
    wait_for_what("bare served", || {
        ing.who("bare.example.com", "/") == "200 echo-a"
    });
    let listing = ing.lab.kubectl_ok(&["get", "ingress"]);
    let row = |name: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{listing}"))
            .to_string()
    };
    assert_eq!(
        row("bare").split_whitespace().nth(1),
        Some("weft"),
        "{listing}"
    );
    assert!(row("bare").contains(&ing.lb), "{listing}");
    for name in ["legacy", "named"] {
        assert!(!row(name).contains(&ing.lb), "{listing}");
        let (code, body) = ing.get(&format!("{name}.example.com"), "/");
        assert_eq!((code, body.trim()), (404, "default backend - 404"));
        let described = ing.lab.ok(&["describe", "ingress", name]);
        assert!(
            described.contains("nginx (not weft's: left alone)"),
            "{described}"
        );
    }
}
