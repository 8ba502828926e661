//! A row of the lab's database corrupted by hand: reading that object gives one clear error
//! naming it, everything else is still served, and no lab daemon goes down. Root, real lab, the
//! real kubectl; the corruption is a raw SQL update through Python's sqlite3.

use std::process::Command;
use std::time::Duration;

use weft_testutil::{wait_for_what, Lab};

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_corrupt_row_names_itself_and_stops_nobody() {
    let lab = Lab::new();
    lab.ok(&["lab", "up", "--nodes", "1"]);
    lab.kubectl_ok(&["create", "configmap", "good", "--from-literal=a=1"]);
    lab.kubectl_ok(&["create", "configmap", "broken", "--from-literal=b=2"]);
    let db = lab.dir().join("store/store.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute(\"UPDATE objects SET json = '{{not json' WHERE kind = 'ConfigMap' AND name = 'broken'\"); c.commit()",
        db.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A fresh server reads the row from the database (a running one keeps what it parsed).
    let before = lab.daemon_pid("apiserver").expect("apiserver pid");
    // SAFETY: a signal to the lab's own API server, whose pid the lab recorded.
    unsafe { libc::kill(before as i32, libc::SIGKILL) };
    wait_for_what("the API server to come back", || {
        lab.daemon_pid("apiserver").is_some_and(|p| p != before)
            && lab.kubectl(&["get", "configmap", "good"]).status.success()
    });

    let got = lab.kubectl(&["get", "configmap", "broken"]);
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(!got.status.success());
    assert!(
        err.contains("ConfigMap default/broken") && err.contains("corrupt"),
        "the error names the object: {err}"
    );
    // The list skips the bad row and still serves the good one.
    let list = lab.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    assert!(list.contains("configmap/good"), "{list}");
    assert!(!list.contains("configmap/broken"), "{list}");
    // Writes go on, and so does every daemon.
    lab.kubectl_ok(&["create", "configmap", "after"]);
    std::thread::sleep(Duration::from_secs(3));
    for daemon in ["apiserver", "controller", "speaker"] {
        let pid = lab.daemon_pid(daemon).unwrap_or(0);
        assert!(alive(pid), "{daemon} ({pid}) is running");
    }
    let node = format!("{}-node1", lab.name);
    assert!(lab.agent_alive(&node), "the agent is running");
    // The broken object can still be deleted, which repairs the store.
    lab.kubectl_ok(&["delete", "configmap", "broken"]);
    let got = lab.kubectl(&["get", "configmap", "broken"]);
    assert!(String::from_utf8_lossy(&got.stderr).contains("NotFound"));
}
