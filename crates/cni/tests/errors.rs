//! Bad input: each error is spec JSON with the right code, and nothing is left behind.

mod support;

use serde_json::json;
use support::node::{cmd_env, Node};
use weft_testutil::TestNetns;

fn assert_clean(node: &Node) {
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    assert!(node.host_veths().is_empty(), "{:?}", node.host_veths());
}

#[test]
fn missing_env_and_bad_config() {
    let node = Node::new("10.244.20.0/24");
    let pod = TestNetns::new("wcni-bad");
    let p = pod.path_str();
    let conf = node.conf("1.0.0");

    let msg = node
        .run(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "x"),
                ("CNI_IFNAME", "eth0"),
            ],
            &conf,
        )
        .err(4);
    assert_eq!(msg, "missing environment variable CNI_NETNS");
    let msg = node.run(&[], &conf).err(4);
    assert_eq!(msg, "missing environment variable CNI_COMMAND");

    let mut bad = conf.clone();
    bad["ipam"]["subnet"] = json!("10.244.1.0/33");
    let msg = node.add(&bad, "x", &pod).err(7);
    assert_eq!(
        msg,
        "network config: ipam.subnet \"10.244.1.0/33\" is not a CIDR"
    );

    let mut v = conf.clone();
    v["cniVersion"] = json!("0.2.0");
    let out = node.add(&v, "x", &pod);
    let msg = out.err(1);
    assert!(
        msg.starts_with("incompatible CNI version \"0.2.0\""),
        "{msg}"
    );

    let r = node.run_raw(&cmd_env("ADD", "x", Some(p)), b"{not json");
    let msg = r.err(6);
    assert!(
        msg.starts_with("decoding network config from stdin"),
        "{msg}"
    );

    let mut args = cmd_env("ADD", "x", Some(p));
    args.push(("CNI_ARGS", "FOO=bar"));
    node.run(&args, &conf).err(4);

    let mut t = conf.clone();
    t["ipam"]["type"] = json!("host-local");
    node.add(&t, "x", &pod).err(2);
    assert_clean(&node);
}

#[test]
fn add_with_missing_netns_allocates_nothing() {
    let node = Node::new("10.244.21.0/24");
    let conf = node.conf("1.0.0");
    let r = node.run(&cmd_env("ADD", "x", Some("/var/run/netns/nope")), &conf);
    assert_eq!(r.err(3), "netns /var/run/netns/nope does not exist");
    assert_clean(&node);
}

#[test]
fn add_failing_midway_undoes_veth_and_allocation() {
    let node = Node::new("10.244.22.0/24");
    let conf = node.conf("1.0.0");
    let pod = TestNetns::new("wcni-mid");
    // A default route already in the pod makes our last step (default via 169.254.1.1) fail
    // after the veth, addresses and neighbour were created.
    // (veth rather than dummy: this kernel has no dummy driver.)
    pod.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    pod.ip(&["link", "set", "d0", "up"]);
    pod.ip(&["route", "add", "default", "dev", "d0"]);
    let msg = node.add(&conf, "mid", &pod).err(102);
    assert!(
        msg.contains("adding route 0.0.0.0/0 via 169.254.1.1"),
        "{msg}"
    );
    assert!(msg.contains("File exists"), "{msg}");
    assert_clean(&node);
    assert!(pod.netlink().link_get("eth0").unwrap().is_none());

    // And an interface name already taken in the pod fails early, also cleanly.
    let pod2 = TestNetns::new("wcni-mid");
    pod2.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "d1"]);
    let msg = node.add(&conf, "mid2", &pod2).err(102);
    assert!(msg.contains("creating veth"), "{msg}");
    assert_clean(&node);
}
