//! weft-cni in a plugin chain with Debian's reference `loopback` and `portmap`: proves that weft
//! keeps the `prevResult` it is given (and renumbers interface indexes when it appends its own),
//! and that its result is one the reference plugins (libcni's typed parser) accept as theirs.
//! Needs root, podman, runc, iptables, busybox-static and containernetworking-plugins.

mod support;

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use support::plugin::{exec_plugin, with_prev_result, Attachment, CniCommand};
use support::podman::Podman;
use support::{first_answer, in_subnet, reference_plugin, weft_cni, weft_plugin, VETH_REAPED};
use weft_testutil::{eventually, require_tool, run, run_ok, unique_name, TestNetns};

/// An address only the test's host namespace has (on its loopback): the "node IP" the host port
/// is reached on. TEST-NET-1, never routed anywhere.
const NODE_IP: &str = "192.0.2.1";
const HOST_PORT: &str = "18080";

fn nat_rules(host: &TestNetns) -> String {
    run_ok(host.command("iptables-save").args(["-t", "nat"]))
}

#[test]
fn podman_host_port_through_portmap_chained_after_weft() {
    require_tool("iptables", "iptables");
    let host = TestNetns::new("weftpm").with_loopback_up();
    host.ip(&["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"]);
    let network = unique_name("weftpm");
    let mut podman = Podman::new(host, &network, |state| {
        vec![
            json!({ "type": "loopback" }),
            weft_plugin(&state.join("ipam")),
            json!({ "type": "portmap", "capabilities": { "portMappings": true } }),
        ]
    });

    let server = podman.start(
        "server",
        &["-p", &format!("{HOST_PORT}:8080")],
        &["nc", "-ll", "-p", "8080", "-e", "echo", "hi"],
    );
    assert!(
        in_subnet(server.ip),
        "server got {} outside the range",
        server.ip
    );

    // portmap DNATs the host port to the address it read from weft's prevResult; the reply
    // comes back through the pod's default route via weft's host-side veth.
    let reply = first_answer(|| {
        run(podman
            .host()
            .command("busybox")
            .args(["nc", "-w", "5", NODE_IP, HOST_PORT]))
    });
    assert_eq!(
        reply.trim(),
        "hi",
        "host port {HOST_PORT} did not reach the server at {}:8080; nat table:\n{}",
        server.ip,
        nat_rules(podman.host())
    );
    assert!(
        nat_rules(podman.host()).contains(&format!("--to-destination {}:8080", server.ip)),
        "portmap's DNAT does not target weft's address {}",
        server.ip
    );

    // DEL runs the chain in reverse: portmap must find its rules from the cached result.
    podman.remove(&server.name);
    let rules = nat_rules(podman.host());
    assert!(
        !rules.contains(&format!("{}:8080", server.ip)),
        "portmap rules for the removed server are still there:\n{rules}"
    );
}

/// The `ips` entries of a result pointing at interface `index`.
fn ips_of(result: &Value, index: usize) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ip| ip["interface"].as_u64() == Some(index as u64))
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .collect()
}

fn interfaces(result: &Value) -> Vec<Value> {
    result["interfaces"].as_array().cloned().unwrap_or_default()
}

#[test]
fn loopback_weft_portmap_chain_keeps_prev_result_and_unwinds() {
    require_tool("iptables", "iptables");
    let host = TestNetns::new("weftchost").with_loopback_up();
    let pod = TestNetns::new("weftcpod").with_loopback_up();
    // loopback's ADD is what brings the pod's lo up.
    pod.ip(&["link", "set", "lo", "down"]);
    let state = tempfile::tempdir().expect("create IPAM dir");
    let name = unique_name("weftchain");
    let container_id = unique_name("chain-container-");
    let attachment = Attachment {
        host: &host,
        pod: &pod,
        container_id: &container_id,
        ifname: "eth0",
    };
    let entry = |mut plugin: Value| {
        plugin["cniVersion"] = json!("1.0.0");
        plugin["name"] = json!(name);
        plugin
    };
    let loopback_conf = entry(json!({ "type": "loopback" }));
    let weft_conf = entry(weft_plugin(state.path()));
    let portmap_conf = entry(json!({
        "type": "portmap",
        "capabilities": { "portMappings": true },
        "runtimeConfig": {
            "portMappings": [{ "hostPort": 18081, "containerPort": 8080, "protocol": "tcp" }]
        }
    }));
    let loopback = reference_plugin("loopback");
    let portmap = reference_plugin("portmap");
    let weft = weft_cni();

    // ADD, in conflist order, each plugin given the previous one's result.
    let lo_result =
        exec_plugin(&loopback, CniCommand::Add, &attachment, &loopback_conf).expect("loopback ADD");
    assert_eq!(
        interfaces(&lo_result).len(),
        1,
        "loopback result: {lo_result}"
    );
    let weft_result = exec_plugin(
        &weft,
        CniCommand::Add,
        &attachment,
        &with_prev_result(&weft_conf, &lo_result),
    )
    .expect("weft-cni ADD with loopback's prevResult");

    assert_eq!(
        weft_result["cniVersion"],
        json!("1.0.0"),
        "result: {weft_result}"
    );
    let ifaces = interfaces(&weft_result);
    assert_eq!(
        ifaces.first(),
        interfaces(&lo_result).first(),
        "weft dropped or changed loopback's interface 0: {weft_result}"
    );
    assert_eq!(
        ips_of(&weft_result, 0),
        ips_of(&lo_result, 0),
        "weft dropped or renumbered loopback's addresses: {weft_result}"
    );
    let pod_index = ifaces
        .iter()
        .position(|iface| {
            iface["name"] == json!("eth0") && iface["sandbox"] == json!(pod.path().to_str())
        })
        .unwrap_or_else(|| panic!("no eth0 in the pod sandbox in result: {weft_result}"));
    assert!(
        pod_index >= 1,
        "eth0 took loopback's index 0: {weft_result}"
    );
    let host_side: Vec<&Value> = ifaces
        .iter()
        .filter(|iface| {
            iface["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("weft"))
                && iface["sandbox"].as_str().is_none_or(str::is_empty)
        })
        .collect();
    assert_eq!(
        host_side.len(),
        1,
        "expected one host-side weft veth: {weft_result}"
    );
    let addresses = ips_of(&weft_result, pod_index);
    assert_eq!(
        addresses.len(),
        1,
        "eth0 should have one address: {weft_result}"
    );
    let (ip, prefix) = addresses[0]
        .split_once('/')
        .unwrap_or_else(|| panic!("address {} is not CIDR", addresses[0]));
    let ip: Ipv4Addr = ip.parse().expect("pod address is IPv4");
    assert!(in_subnet(ip) && prefix == "32", "pod address {ip}/{prefix}");
    assert_eq!(
        weft_result["ips"].as_array().map(Vec::len),
        Some(ips_of(&lo_result, 0).len() + 1),
        "unexpected extra ips entries: {weft_result}"
    );

    // The kernel agrees with the result.
    assert!(
        pod.ip(&["-o", "link", "show", "lo"]).contains("UP"),
        "loopback ADD left lo down"
    );
    assert!(
        pod.ip(&["-4", "-o", "addr", "show", "eth0"])
            .contains(&format!("{ip}/32")),
        "pod eth0 lacks {ip}/32"
    );

    // portmap parses weft's result with libcni's typed parser and passes it on unchanged.
    let final_result = exec_plugin(
        &portmap,
        CniCommand::Add,
        &attachment,
        &with_prev_result(&portmap_conf, &weft_result),
    )
    .expect("portmap ADD with weft's prevResult");
    assert_eq!(
        interfaces(&final_result),
        ifaces,
        "portmap's pass-through changed the interfaces"
    );
    assert!(
        nat_rules(&host).contains(&format!("--to-destination {ip}:8080")),
        "portmap did not map to weft's address"
    );

    // CHECK and DEL get the chain's final result as prevResult; DEL runs in reverse order.
    exec_plugin(
        &weft,
        CniCommand::Check,
        &attachment,
        &with_prev_result(&weft_conf, &final_result),
    )
    .expect("weft-cni CHECK with the chain's result");
    for (plugin, conf) in [
        (&portmap, &portmap_conf),
        (&weft, &weft_conf),
        (&loopback, &loopback_conf),
    ] {
        exec_plugin(
            plugin,
            CniCommand::Del,
            &attachment,
            &with_prev_result(conf, &final_result),
        )
        .unwrap_or_else(|e| panic!("DEL failed: {e:?}"));
    }

    // The route goes with DEL itself; the veth (and with it the pod's eth0) a moment later.
    assert!(
        !host.routes().contains(&ip.to_string()),
        "route to {ip} still there right after DEL:\n{}",
        host.routes()
    );
    assert!(
        eventually(VETH_REAPED, || !pod
            .link_names()
            .iter()
            .any(|l| l == "eth0")),
        "eth0 still in the pod after DEL"
    );
    assert!(
        eventually(VETH_REAPED, || !host
            .link_names()
            .iter()
            .any(|l| l.starts_with("weft"))),
        "host veth still there after DEL: {:?}",
        host.link_names()
    );
    assert!(
        !nat_rules(&host).contains(&ip.to_string()),
        "portmap rules still there after DEL"
    );

    // A second DEL must succeed too: runtimes retry DEL and the spec requires it to be idempotent.
    exec_plugin(
        &weft,
        CniCommand::Del,
        &attachment,
        &with_prev_result(&weft_conf, &final_result),
    )
    .expect("repeated weft-cni DEL");
}
