//! The agent's problems as Events on its Node, read with the real kubectl: another process takes
//! the node's policy table from the agent (deletes it and creates one of its own, owned by its
//! netlink socket, which the kernel lets no one else touch), the agent's next sync fails, and a
//! `PolicySyncFailed` Warning names the node; once that process lets go, the agent loads its
//! table again and says so (`PolicySynced`). Needs root; the lab is torn down in Drop.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;
use weft_testutil::{wait_for_what, Lab};

/// The events about node `node`: (type, reason, message).
fn node_events(lab: &Lab, node: &str) -> Vec<(String, String, String)> {
    let text = lab.kubectl_ok(&["get", "events", "-n", "default", "-o", "json"]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["kind"] == "Node" && e["involvedObject"]["name"] == node)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("type"), s("reason"), s("message"))
        })
        .collect()
}

#[test]
fn a_sync_the_kernel_refuses_becomes_an_event_on_the_node() {
    let lab = Lab::new();
    let node = format!("{}-node1", lab.name);
    lab.ok(&["lab", "up", "--nodes", "1", "--wait", "90"]);
    let netns = format!("weft_{}_{node}", lab.name);
    let listed = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns, "nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for_what("the agent's policy table", || {
        listed().contains("table ip weft_policy")
    });

    // Another process takes the table: `nft -i` keeps its socket, and so owns the table.
    let mut squatter = Command::new("ip")
        .args(["netns", "exec", &netns, "nft", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nft -i");
    {
        let stdin = squatter.stdin.as_mut().unwrap();
        stdin
            .write_all(b"delete table ip weft_policy\nadd table ip weft_policy { flags owner; }\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    let mut seen = Vec::new();
    wait_for_what("a PolicySyncFailed event on the node", || {
        seen = node_events(&lab, &node);
        seen.iter()
            .any(|(t, r, _)| t == "Warning" && r == "PolicySyncFailed")
    });
    let (_, _, message) = seen
        .iter()
        .find(|(_, r, _)| r == "PolicySyncFailed")
        .unwrap();
    assert!(message.contains("weft_policy"), "{message}");
    // kubectl shows it as users read events.
    let table = lab.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(
        table.contains("PolicySyncFailed") && table.contains(&format!("node/{node}")),
        "{table}"
    );

    // The other process lets go: its table goes with its socket, and the agent loads its own.
    drop(squatter.stdin.take());
    let _ = squatter.kill();
    let _ = squatter.wait();
    wait_for_what("a PolicySynced event on the node", || {
        node_events(&lab, &node)
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "PolicySynced")
    });
    wait_for_what("the agent's policy table back", || {
        listed().contains("table ip weft_policy")
    });
}
