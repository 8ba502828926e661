//! CHECK, STATUS, GC and VERSION against real namespaces.

mod support;

use serde_json::json;
use support::node::{cmd_env, Node};
use weft_testutil::TestNetns;

#[test]
fn check_passes_then_fails_when_address_or_route_is_gone() {
    let node = Node::new("10.244.10.0/24");
    let pod = TestNetns::new("wcni-chk");
    let conf = node.conf("1.0.0");
    let result = node.add(&conf, "chk", &pod).ok().json();
    let p = pod.path_str();
    let env = cmd_env("CHECK", "chk", Some(p));
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = result.clone();
    let out = node.run(&env, &check_conf).ok();
    assert!(out.stdout.is_empty());

    // CHECK needs prevResult.
    let msg = node.run(&env, &conf).err(7);
    assert!(msg.contains("CHECK needs prevResult"), "{msg}");
    // CHECK is not part of 0.3.x.
    let mut old = check_conf.clone();
    old["cniVersion"] = json!("0.3.1");
    let msg = node.run(&env, &old).err(1);
    assert!(msg.contains("does not allow CHECK"), "{msg}");

    pod.ip(&["route", "del", "default"]);
    let msg = node.run(&env, &check_conf).err(101);
    assert!(
        msg.contains("default route via 169.254.1.1 dev eth0 is missing"),
        "{msg}"
    );

    pod.ip(&[
        "addr",
        "del",
        result["ips"][0]["address"].as_str().unwrap(),
        "dev",
        "eth0",
    ]);
    let msg = node.run(&env, &check_conf).err(101);
    assert!(
        msg.contains("does not have address 10.244.10.2/32"),
        "{msg}"
    );

    pod.ip(&["link", "del", "eth0"]);
    let msg = node.run(&env, &check_conf).err(101);
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn gc_releases_stale_attachments_and_their_veths() {
    let node = Node::new("10.244.11.0/24");
    let conf = node.conf("1.1.0");
    let pods: Vec<TestNetns> = (0..3).map(|_| TestNetns::new("wcni-gc")).collect();
    for (i, p) in pods.iter().enumerate() {
        node.add(&conf, &format!("gc{i}"), p).ok();
    }
    assert_eq!(node.host_veths().len(), 3);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "gc1", "ifname": "eth0"}]);
    node.run(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")], &gc)
        .ok();
    assert_eq!(node.allocations(), vec!["10.244.11.3".to_string()]);
    assert_eq!(node.host_veths().len(), 1);
    assert!(pods[1].netlink().link_get("eth0").unwrap().is_some());
    assert!(pods[0].netlink().link_get("eth0").unwrap().is_none());
    // GC is a 1.1 command, and needs the list.
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    node.run(&[("CNI_COMMAND", "GC")], &old).err(1);
    node.run(&[("CNI_COMMAND", "GC")], &conf).err(7);
}

#[test]
fn status_reports_usable_full_and_broken_stores() {
    let node = Node::new("10.244.12.0/30");
    let conf = node.conf("1.1.0");
    let status = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")];
    node.run(&status, &conf).ok();
    // A /30 has exactly one pod address.
    let pod = TestNetns::new("wcni-st");
    node.add(&conf, "st", &pod).ok();
    let msg = node.run(&status, &conf).err(50);
    assert_eq!(
        msg,
        "no free address in 10.244.12.0/30 (range .2-.2): 1 of 1 allocated"
    );
    // The exhausted ADD itself fails with our code and leaves nothing.
    let pod2 = TestNetns::new("wcni-st");
    let msg = node.add(&conf, "st2", &pod2).err(100);
    assert!(
        msg.starts_with("no free address in 10.244.12.0/30"),
        "{msg}"
    );
    assert_eq!(node.host_veths().len(), 1);

    // A data dir that cannot be created.
    let file = node.data.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let mut broken = conf.clone();
    broken["ipam"]["dataDir"] = json!(file.join("sub"));
    let msg = node.run(&status, &broken).err(50);
    assert!(msg.starts_with("IPAM data dir is not usable"), "{msg}");

    let mut old = conf.clone();
    old["cniVersion"] = json!("1.0.0");
    node.run(&status, &old).err(1);
}

#[test]
fn version_lists_supported_versions() {
    let node = Node::new("10.244.13.0/24");
    let out = node
        .run(
            &[("CNI_COMMAND", "VERSION")],
            &json!({"cniVersion": "1.0.0"}),
        )
        .ok()
        .json();
    assert_eq!(
        out,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}
