//! 100 runtimes calling ADD at once against one range: 100 distinct addresses.

mod support;

use std::collections::HashSet;

use support::node::{cmd_env, spawn_in, wait, Node};
use weft_testutil::TestNetns;

#[test]
fn hundred_concurrent_adds_get_distinct_addresses() {
    const N: usize = 100;
    let node = Node::new("10.244.30.0/24");
    let conf = node.conf("1.0.0");
    let pods: Vec<TestNetns> = (0..N).map(|_| TestNetns::new("wcni-cc")).collect();
    let paths: Vec<String> = pods.iter().map(|p| p.path_str().to_owned()).collect();
    let cids: Vec<String> = (0..N).map(|i| format!("cc{i}")).collect();
    let stdin = conf.to_string();
    let children: Vec<_> = (0..N)
        .map(|i| {
            spawn_in(
                node.host.ns(),
                &cmd_env("ADD", &cids[i], Some(&paths[i])),
                stdin.as_bytes(),
            )
        })
        .collect();
    let mut ips = HashSet::new();
    for c in children {
        let r = wait(c).ok().json();
        ips.insert(r["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(ips.len(), N, "every pod got its own address");
    assert_eq!(node.allocations().len(), N);
    assert_eq!(node.host_veths().len(), N);

    let children: Vec<_> = (0..N)
        .map(|i| {
            spawn_in(
                node.host.ns(),
                &cmd_env("DEL", &cids[i], Some(&paths[i])),
                stdin.as_bytes(),
            )
        })
        .collect();
    for c in children {
        wait(c).ok();
    }
    assert!(node.allocations().is_empty());
    // DEL leaves the kernel's veth deletion (15-40 ms each, serialised by the kernel) to detached
    // processes: the links go shortly after the DELs return, not before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !node.host_veths().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        node.host_veths(),
        Vec::<String>::new(),
        "every host veth is gone"
    );
}
