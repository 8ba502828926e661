//! What a pod network owes its tenants, met through the real kubectl: a Service cannot claim an
//! outside address unless the cluster config allows its range (CVE-2020-8554), on create or on
//! any update; the lab's state and the pods' address maps are root only; and writes of a kind
//! weft does not act on say so, every time. Needs root; each lab is torn down in Drop.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use weft_testutil::{wait_for, Lab, AGNHOST};

/// The lab allows external IPs from 192.0.2.0/24 (TEST-NET-1) only; the outside host is
/// 203.0.113.10, the address a tenant would like to capture.
const CONFIG: &str =
    "apiVersion: weft.dev/v1alpha1\nkind: Cluster\nexternalIPRanges: [192.0.2.0/24]\n";

fn service(name: &str, external_ips: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  externalIPs: [{external_ips}]\n  selector: {{app: web}}\n  ports: [{{port: 8080, targetPort: 80}}]\n"
    )
}

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  containers: [{name: web, image: AGNHOST, ports: [{containerPort: 80}]}]\n";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn external_ips_outside_the_allowed_ranges_are_refused_on_create_and_update() {
    let lab = Lab::new();
    let config = lab.write("cluster.yaml", CONFIG);
    let web = lab.write("web.yaml", &WEB.replace("AGNHOST", AGNHOST));
    lab.ok(&["lab", "up", "--config", &config, "-f", &web, "--wait", "60"]);

    // The outside host's address: refused, with the Service, the field and the address named,
    // and nothing stored.
    let capture = lab.write("capture.yaml", &service("capture", "203.0.113.10"));
    let out = lab.kubectl(&["apply", "-f", &capture]);
    assert!(!out.status.success(), "applied: {}", stderr(&out));
    let want =
        "The Service \"capture\" is invalid: spec.externalIPs[0]: Forbidden: use of external \
                IP 203.0.113.10 is denied by admission control: 203.0.113.10 is not in the cluster \
                config's externalIPRanges (192.0.2.0/24)";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));
    let get = lab.kubectl(&["get", "svc", "capture"]);
    assert!(
        stderr(&get).contains("services \"capture\" not found"),
        "{}",
        stderr(&get)
    );

    // Inside the allowed range: admitted, and served from outside the cluster.
    let ext = lab.write("ext.yaml", &service("ext", "192.0.2.60"));
    assert_eq!(
        lab.kubectl_ok(&["apply", "-f", &ext]),
        "service/ext created\n"
    );
    let url = "http://192.0.2.60:8080/hostname";
    wait_for(|| lab.outside_curl(url, 5).0 == 0);
    assert_eq!(lab.outside_curl(url, 5).1, "web");

    // Every way of updating it to add the outside address is refused the same way, and the
    // stored Service is untouched.
    let version = |lab: &Lab| {
        lab.kubectl_ok(&[
            "get",
            "svc",
            "ext",
            "-o",
            "jsonpath={.metadata.resourceVersion} {.spec.externalIPs}",
        ])
    };
    let before = version(&lab);
    let widened = lab.write("widened.yaml", &service("ext", "192.0.2.60, 203.0.113.10"));
    let patch = r#"{"spec":{"externalIPs":["192.0.2.60","203.0.113.10"]}}"#;
    let attempts: [&[&str]; 4] = [
        &["apply", "-f", &widened],
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &widened,
        ],
        &["replace", "-f", &widened],
        &["patch", "svc", "ext", "--type", "merge", "-p", patch],
    ];
    for args in attempts {
        let out = lab.kubectl(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&out).contains(
                "Service \"ext\" is invalid: spec.externalIPs[1]: Forbidden: use of external IP \
                 203.0.113.10 is denied by admission control"
            ),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(version(&lab), before);
    assert!(before.ends_with(r#"["192.0.2.60"]"#), "{before}");
    assert_eq!(lab.outside_curl(url, 5).1, "web");

    // On a real cluster the API server is not weft's: an agent whose cluster config allows no
    // external IPs does not serve the Service's, though the API holds them (what this agent
    // would program, read from the same API).
    let kubeconfig = lab.kubeconfig();
    let node = format!("{}-node1", lab.name);
    let plan = |config: &str| {
        lab.ok(&[
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "agent",
            "--node",
            &node,
            "--config",
            config,
            "--plan",
        ])
    };
    assert!(plan(&config).contains("192.0.2.60 . tcp . 8080"));
    let none = lab.write(
        "none.yaml",
        "apiVersion: weft.dev/v1alpha1\nkind: Cluster\n",
    );
    let narrow = plan(&none);
    assert!(narrow.contains("10.96.0.1"), "{narrow}");
    assert!(!narrow.contains("192.0.2.60"), "{narrow}");

    // The lab's state (keys, tokens, objects) and the node's pod address map are root only.
    assert_eq!(mode(&lab.dir()), 0o700);
    let ipam = lab.dir().join(format!("nodes/{}-node1/ipam", lab.name));
    assert_eq!(mode(&ipam), 0o700);
    let networks: Vec<_> = std::fs::read_dir(&ipam)
        .expect("the node's IPAM store")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!networks.is_empty(), "{}", ipam.display());
    for network in networks {
        assert_eq!(mode(&network), 0o700, "{}", network.display());
    }
}

#[test]
fn writes_of_kinds_weft_does_not_act_on_are_answered_with_a_warning_every_time() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--wait", "60"]);
    let warning = "Warning: weft stores limitranges objects but does not act on them\n";
    let limits = |cpu: &str| {
        format!(
            "apiVersion: v1\nkind: LimitRange\nmetadata: {{name: web}}\nspec:\n  limits: [{{type: Container, default: {{cpu: {cpu}}}}}]\n"
        )
    };
    let first = lab.write("limits.yaml", &limits("100m"));
    let second = lab.write("limits2.yaml", &limits("200m"));
    let third = lab.write("limits3.yaml", &limits("300m"));
    // Created (POST), configured by a client-side apply (PATCH), by a server-side apply (PATCH
    // apply-patch), replaced (PUT): each time the same warning.
    let writes: [(&[&str], &str); 4] = [
        (&["apply", "-f", &first], "limitrange/web created\n"),
        (&["apply", "-f", &second], "limitrange/web configured\n"),
        (
            &["apply", "--server-side", "--force-conflicts", "-f", &third],
            "limitrange/web serverside-applied\n",
        ),
        (&["replace", "-f", &first], "limitrange/web replaced\n"),
    ];
    for (args, want) in writes {
        let out = lab.kubectl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{args:?}");
        assert_eq!(stderr(&out), warning, "{args:?}");
    }
    let class = lab.write(
        "class.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );
    let out = lab.kubectl(&["apply", "-f", &class]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "Warning: weft stores priorityclasses.scheduling.k8s.io objects but does not act on them\n"
    );
    // Kinds weft acts on (NetworkPolicy and Ingress among them) say nothing.
    let ingress = lab.write(
        "ingress.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n    - host: a.example.org\n      http:\n        paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]\n",
    );
    let out = lab.kubectl(&["apply", "-f", &ingress]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    // Kinds weft acts on (NetworkPolicy among them) say nothing.
    let policy = lab.write(
        "policy.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: none}\nspec:\n  podSelector: {matchLabels: {app: nothing}}\n  policyTypes: [Ingress]\n",
    );
    let out = lab.kubectl(&["apply", "-f", &policy]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}
