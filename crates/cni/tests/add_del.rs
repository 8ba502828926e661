//! ADD and DEL end to end: real binary, real namespaces, real TCP between pods.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::node::{cmd_env, Node};
use support::VETH_REAPED;
use weft_dataplane::{Family, IpNet};
use weft_testutil::{eventually, TestNetns};

fn pod_ip(result: &Value) -> IpAddr {
    let addr = result["ips"][0]["address"].as_str().unwrap();
    addr.parse::<IpNet>().unwrap().addr()
}

#[test]
fn add_wires_two_pods_that_talk_tcp_through_the_host() {
    let node = Node::new("10.244.1.0/24");
    let (a, b) = (TestNetns::new("wcni-pa"), TestNetns::new("wcni-pb"));
    let conf = node.conf("1.0.0");
    let ra = node.add(&conf, "ctr-a", &a).ok().json();
    let rb = node.add(&conf, "ctr-b", &b).ok().json();

    // Result shape (1.0.0): host veth, pod iface with sandbox, /32 via the link-local gateway.
    assert_eq!(ra["cniVersion"], "1.0.0");
    assert_eq!(ra["interfaces"].as_array().unwrap().len(), 2);
    assert!(ra["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("weft"));
    assert!(ra["interfaces"][0].get("sandbox").is_none());
    assert_eq!(ra["interfaces"][1]["name"], "eth0");
    assert_eq!(ra["interfaces"][1]["sandbox"], a.path_str());
    assert_eq!(ra["ips"][0]["address"], "10.244.1.2/32");
    assert_eq!(ra["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(ra["ips"][0]["interface"], 1);
    assert!(ra["ips"][0].get("version").is_none());
    assert_eq!(
        ra["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
    );
    assert_eq!(rb["ips"][0]["address"], "10.244.1.3/32");

    // Kernel state matches the result.
    let mut host = node.host.netlink();
    let hv = host
        .link_get(ra["interfaces"][0]["name"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert!(hv.admin_up);
    assert_eq!(hv.mtu, 1450);
    assert_eq!(hv.mac.unwrap().to_string(), ra["interfaces"][0]["mac"]);
    let mut pa = a.netlink();
    let eth0 = pa.link_get("eth0").unwrap().unwrap();
    assert_eq!(eth0.mtu, 1450);
    assert_eq!(eth0.mac.unwrap().to_string(), ra["interfaces"][1]["mac"]);
    let fwd = node
        .host
        .ns()
        .run(|| weft_dataplane::sysctl::read("net/ipv4/ip_forward"))
        .unwrap()
        .unwrap();
    assert_eq!(fwd, "1");

    // TCP from pod a to pod b, routed by the host netns.
    let (ipa, ipb) = (pod_ip(&ra), pod_ip(&rb));
    let listener = b
        .ns()
        .run(|| TcpListener::bind(SocketAddr::new(ipb, 0)))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong").unwrap();
        peer.ip()
    });
    let mut c = a
        .ns()
        .run(|| TcpStream::connect_timeout(&SocketAddr::new(ipb, port), Duration::from_secs(5)))
        .unwrap()
        .expect("pod a connects to pod b");
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(server.join().unwrap(), ipa, "no NAT: b sees a's pod IP");

    // DEL removes the route and allocation at once and the veth right after (the kernel's
    // wait for a veth deletion is left to a detached process); doing it twice is fine.
    node.del(&conf, "ctr-a", Some(a.path_str())).ok();
    node.del(&conf, "ctr-a", Some(a.path_str())).ok();
    assert!(eventually(VETH_REAPED, || pa
        .link_get("eth0")
        .unwrap()
        .is_none()));
    assert!(eventually(VETH_REAPED, || host
        .link_get(hv.name.as_str())
        .unwrap()
        .is_none()));
    assert!(!host
        .routes(Family::V4)
        .unwrap()
        .iter()
        .any(|r| r.dst == IpNet::host(ipa)));
    assert_eq!(node.allocations(), vec!["10.244.1.3".to_string()]);
    node.del(&conf, "ctr-b", Some(b.path_str())).ok();
    assert!(node.allocations().is_empty());
    assert!(eventually(VETH_REAPED, || node.host_veths().is_empty()));
}

#[test]
fn results_follow_the_requested_version() {
    let node = Node::new("10.244.2.0/24");
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let pod = TestNetns::new("wcni-ver");
        let conf = node.conf(v);
        let cid = format!("ver{i}");
        let r = node.add(&conf, &cid, &pod).ok().json();
        assert_eq!(r["cniVersion"], *v);
        let old = v.starts_with("0.");
        assert_eq!(r["ips"][0].get("version").is_some(), old, "{v}: {r}");
        if old {
            assert_eq!(r["ips"][0]["version"], "4");
        }
        let has_mtu = r["interfaces"][1].get("mtu").is_some();
        assert_eq!(has_mtu, *v == "1.1.0", "{v}: {r}");
        node.del(&conf, &cid, Some(pod.path_str())).ok();
    }
}

#[test]
fn requested_ip_and_mac_from_runtime_config_and_cni_args() {
    let node = Node::new("10.244.3.0/24");
    let (a, b) = (TestNetns::new("wcni-rq"), TestNetns::new("wcni-rq"));
    let mut conf = node.conf("1.0.0");
    conf["runtimeConfig"] = json!({"ips": ["10.244.3.50/24"], "mac": "c2:11:22:33:44:55"});
    let r = node.add(&conf, "rq-a", &a).ok().json();
    assert_eq!(r["ips"][0]["address"], "10.244.3.50/32");
    assert_eq!(r["interfaces"][1]["mac"], "c2:11:22:33:44:55");

    let conf = node.conf("1.0.0");
    let mut env = cmd_env("ADD", "rq-b", None);
    env.push(("CNI_NETNS", b.path_str()));
    env.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;IP=10.244.3.60",
    ));
    let r = node.run(&env, &conf).ok().json();
    assert_eq!(r["ips"][0]["address"], "10.244.3.60/32");

    // The same address again is refused, with the owner named, and nothing is left behind.
    let c = TestNetns::new("wcni-rq");
    let mut env = cmd_env("ADD", "rq-c", None);
    env.push(("CNI_NETNS", c.path_str()));
    env.push(("CNI_ARGS", "IP=10.244.3.60"));
    let msg = node.run(&env, &conf).err(100);
    assert_eq!(
        msg,
        "requested address 10.244.3.60 is already allocated to rq-b/eth0"
    );
    assert_eq!(node.host_veths().len(), 2);
}

#[test]
fn repeated_add_returns_the_same_address() {
    let node = Node::new("10.244.4.0/24");
    let pod = TestNetns::new("wcni-rep");
    let conf = node.conf("1.0.0");
    let r1 = node.add(&conf, "rep", &pod).ok().json();
    // A runtime retrying after a lost answer: same allocation, wiring rebuilt.
    let r2 = node.add(&conf, "rep", &pod);
    // The pod end still exists in the pod netns, so the kernel refuses a second eth0 unless
    // the stale host veth (and with it the pod end) was replaced: it is.
    let r2 = r2.ok().json();
    assert_eq!(r1["ips"], r2["ips"]);
    assert_eq!(node.allocations().len(), 1);
    assert_eq!(node.host_veths().len(), 1);
}

#[test]
fn chained_after_debian_loopback_merges_prev_result() {
    let node = Node::new("10.244.5.0/24");
    let pod = TestNetns::new("wcni-chain");
    // Debian's loopback plugin first, as podman's default conflist does.
    let lo_conf = json!({"cniVersion": "1.0.0", "name": node.network, "type": "loopback"});
    let p = pod.path_str();
    let env = cmd_env("ADD", "chain", Some(p));
    let lo = support::node::wait(
        pod.ns()
            .run(|| {
                let mut c = std::process::Command::new("/usr/lib/cni/loopback")
                    .env_clear()
                    .envs(env.iter().copied())
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(lo_conf.to_string().as_bytes())
                    .unwrap();
                c
            })
            .unwrap(),
    )
    .ok()
    .json();
    let mut conf = node.conf("1.0.0");
    conf["prevResult"] = lo.clone();
    conf["dns"] = json!({"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]});
    let r = node.add(&conf, "chain", &pod).ok().json();
    let n_prev = lo["interfaces"].as_array().map_or(0, |a| a.len());
    assert_eq!(r["interfaces"].as_array().unwrap().len(), n_prev + 2, "{r}");
    assert_eq!(r["interfaces"][n_prev + 1]["name"], "eth0");
    let ours = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ip| ip["address"].as_str().unwrap().starts_with("10.244.5."))
        .unwrap();
    assert_eq!(ours["interface"], n_prev + 1);
    assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
    // DEL accepts prevResult too.
    node.del(&conf, "chain", Some(p)).ok();
    assert!(node.allocations().is_empty());
}

#[test]
fn del_without_netns_or_with_deleted_netns_releases() {
    let node = Node::new("10.244.6.0/24");
    let conf = node.conf("1.0.0");
    let a = TestNetns::new("wcni-gone");
    node.add(&conf, "d-a", &a).ok();
    node.del(&conf, "d-a", None).ok();
    assert!(node.allocations().is_empty());
    assert!(eventually(VETH_REAPED, || node.host_veths().is_empty()));

    let mut b = TestNetns::new("wcni-gone");
    node.add(&conf, "d-b", &b).ok();
    let path = b.path_str().to_owned();
    b.delete();
    node.del(&conf, "d-b", Some(&path)).ok();
    node.del(&conf, "d-b", Some("/var/run/netns/nope")).ok();
    assert!(node.allocations().is_empty());
    assert!(eventually(VETH_REAPED, || node.host_veths().is_empty()));

    // Never seen before: fine.
    node.del(&conf, "never-added", None).ok();
}

#[test]
fn an_immediate_re_add_survives_the_previous_del() {
    let node = Node::new("10.244.7.0/24");
    let pod = TestNetns::new("wcni-pr");
    let conf = node.conf("1.1.0");
    let first = node.add(&conf, "ctr-r", &pod).ok().json();
    let veth = first["interfaces"][0]["name"].as_str().unwrap().to_string();
    node.del(&conf, "ctr-r", Some(pod.path_str())).ok();
    // Same attachment again at once: same host veth name, possibly while the old one is
    // still being deleted. The new one must be the one that stays.
    let second = node.add(&conf, "ctr-r", &pod).ok().json();
    let new_index = node
        .host
        .netlink()
        .link_get(veth.as_str())
        .unwrap()
        .expect("new veth")
        .index;
    std::thread::sleep(Duration::from_millis(300));
    let link = node
        .host
        .netlink()
        .link_get(veth.as_str())
        .unwrap()
        .expect("re-added veth survives");
    assert_eq!(link.index, new_index);
    assert!(pod.netlink().link_get("eth0").unwrap().is_some());
    assert!(second["ips"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("10.244.7."));
    node.del(&conf, "ctr-r", Some(pod.path_str())).ok();
}
