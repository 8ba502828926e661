//! `weft ui` in a real browser: Debian's headless Chromium loads the page from a lab's `weft ui`
//! and the test reads the DOM Chromium built (its JavaScript run): the lab's nodes and pods,
//! the Service with its endpoint, and, once a policy blocks the client, the dropped flow with
//! the policy's name; then the reachability view. A screenshot of each is kept in cargo's
//! target/tmp/weft-ui (printed). Needs root and chromium (scripts/deps.sh).

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use weft_testutil::{client_pod, deny_ingress, wait_for_what, web_pod, Lab};

/// The `weft ui` process, stopped when the test ends.
struct Ui(std::process::Child);

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium(args: &[&str], url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=3000",
            "--window-size=1400,1000",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_live_map_shows_the_cluster_and_a_dropped_flow_in_a_browser() {
    let lab = Lab::new();
    let (node1, node2) = (format!("{}-node1", lab.name), format!("{}-node2", lab.name));
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
    let manifest = lab.write(
        "app.yaml",
        &[
            web_pod("web", &node1),
            client_pod("client", &node2),
            service.to_string(),
        ]
        .join("---\n"),
    );
    lab.ok(&["lab", "up", "--nodes", "2", "-f", &manifest, "--wait", "90"]);
    let mut child = lab
        .weft_cmd(&["ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft ui");
    let stdout = child.stdout.take().unwrap();
    let _ui = Ui(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("weft ui: ")
        .unwrap_or_else(|| panic!("weft ui printed {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The map: both nodes, both pods, the Service and its endpoint.
    let dom = chromium(&["--dump-dom"], &url);
    for want in [
        format!("id=\"node-{node1}\""),
        format!("id=\"node-{node2}\""),
        "default/web".to_string(),
        "default/client".to_string(),
    ] {
        assert!(dom.contains(&want), "{want} not in the page:\n{dom}");
    }
    assert!(
        dom.contains("<td>default/web</td>"),
        "the Service row:\n{dom}"
    );

    // A policy closes web; the client's tries are dropped, and the page shows the drop.
    let policy = lab.write("deny.yaml", &deny_ingress("web"));
    lab.kubectl_ok(&["apply", "-f", &policy]);
    let web_ip = weft_testutil::pod_ip(
        lab.pods(&[])
            .iter()
            .find(|p| p["metadata"]["name"] == "web")
            .unwrap(),
    );
    let url_web = format!("http://{web_ip}/");
    wait_for_what("the client's connection dropped", || {
        lab.pod_curl("client", &url_web, 1).0 == 28
    });
    let mut dom = String::new();
    wait_for_what("the dropped flow on the page", || {
        lab.pod_curl("client", &url_web, 1);
        dom = chromium(&["--dump-dom"], &url);
        dom.contains("class=\"flow DROPPED\"")
    });
    let row = dom
        .split("<tr class=\"flow DROPPED\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains("default/client"), "{row}");
    assert!(row.contains("default/web"), "{row}");
    assert!(row.contains("ingress default/deny-web"), "{row}");
    // The policy, and the pod it isolates.
    assert!(dom.contains("default/deny-web"), "{dom}");
    assert!(dom.contains("pod isolated"), "{dom}");
    // A red line between the two pods on the map.
    assert!(
        dom.contains("<line") && dom.contains("class=\"DROPPED\""),
        "{dom}"
    );

    // The screenshots, kept with the test's output (cargo's target/tmp).
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-ui");
    std::fs::create_dir_all(&out_dir).unwrap();
    let map = out_dir.join("map.png");
    chromium(&[&format!("--screenshot={}", map.display())], &url);
    assert!(std::fs::metadata(&map)
        .map(|m| m.len() > 10_000)
        .unwrap_or(false));
    // The reachability view of default: client cannot reach web.
    let dom = chromium(&["--dump-dom"], &format!("{url}#matrix"));
    assert!(dom.contains("class=\"no\""), "no denied cell:\n{dom}");
    assert!(dom.contains("class=\"yes\""), "no allowed cell:\n{dom}");
    let matrix = out_dir.join("matrix.png");
    chromium(
        &[&format!("--screenshot={}", matrix.display())],
        &format!("{url}#matrix"),
    );
    eprintln!("screenshots: {} and {}", map.display(), matrix.display());
}
