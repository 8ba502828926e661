//! weft-cni driven by a real runtime: Debian's podman 4.3 (runc, CNI network backend) with a
//! conflist whose plugin is weft-cni. Podman runs inside a test-owned network namespace that plays
//! the node, so the host-side veths, /32 routes and ip_forward stay out of the root namespace.
//! Needs root, podman, runc, busybox-static and containernetworking-plugins.

mod support;

use support::podman::{Container, Podman};
use support::{first_answer, in_subnet, weft_plugin, VETH_REAPED};
use weft_testutil::{eventually, unique_name, TestNetns};

/// Answers every TCP connection on 8080 with "hi" (busybox nc; -ll keeps listening).
const SERVER: &[&str] = &["nc", "-ll", "-p", "8080", "-e", "echo", "hi"];
const IDLE: &[&str] = &["sleep", "600"];

fn weft_podman(prefix: &str) -> Podman {
    let host = TestNetns::new(prefix).with_loopback_up();
    let network = unique_name(prefix);
    Podman::new(host, &network, |state| {
        vec![weft_plugin(&state.join("ipam"))]
    })
}

/// The lines of the host namespace's routing table that point at `container` over a weft veth.
fn host_routes_to(podman: &Podman, container: &Container) -> Vec<String> {
    let prefix = format!("{} dev weft", container.ip);
    podman
        .host()
        .routes()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn weft_links(podman: &Podman) -> Vec<String> {
    podman
        .host()
        .link_names()
        .into_iter()
        .filter(|name| name.starts_with("weft"))
        .collect()
}

fn exec_stdout(podman: &Podman, container: &Container, argv: &[&str]) -> String {
    let output = podman.exec(&container.name, argv);
    assert!(
        output.status.success(),
        "podman exec {} {argv:?} failed ({}): {}",
        container.name,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn two_containers_get_distinct_addresses_and_reach_each_other() {
    let mut podman = weft_podman("weftpod");
    let server = podman.start("server", &[], SERVER);
    let client = podman.start("client", &[], IDLE);

    for container in [&server, &client] {
        assert!(
            in_subnet(container.ip),
            "{} got {} outside the configured range",
            container.name,
            container.ip
        );
    }
    assert_ne!(server.ip, client.ip, "both containers got the same address");

    let reply = first_answer(|| {
        podman.exec(
            &client.name,
            &["nc", "-w", "5", &server.ip.to_string(), "8080"],
        )
    });
    assert_eq!(
        reply.trim(),
        "hi",
        "client {} could not talk to server {}",
        client.ip,
        server.ip
    );

    // What weft promises inside the pod: the address as a /32 and a default route through the
    // link-local gateway that the host side answers for.
    for container in [&server, &client] {
        let addr = exec_stdout(
            &podman,
            container,
            &["ip", "-4", "-o", "addr", "show", "eth0"],
        );
        assert!(
            addr.contains(&format!("inet {}/32", container.ip)),
            "{}: eth0 does not carry {}/32: {addr}",
            container.name,
            container.ip
        );
        let routes = exec_stdout(&podman, container, &["ip", "-4", "route", "show"]);
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0"),
            "{}: no default route via 169.254.1.1: {routes}",
            container.name
        );
        // podman read weft's result (libcni's typed parser) and reports what the kernel has.
        let reported = podman.inspect(
            &container.name,
            "{{range .NetworkSettings.Networks}}{{.Gateway}} {{.IPPrefixLen}} {{.MacAddress}}{{end}}",
        );
        let mac = exec_stdout(&podman, container, &["cat", "/sys/class/net/eth0/address"]);
        assert_eq!(
            reported,
            format!("169.254.1.1 32 {}", mac.trim()),
            "{}: podman's view of weft's result (gateway, prefix, mac) is off",
            container.name
        );
        assert_eq!(
            host_routes_to(&podman, container).len(),
            1,
            "host namespace has no single /32 route to {} over a weft veth:\n{}",
            container.ip,
            podman.host().routes()
        );
    }
    assert_eq!(
        weft_links(&podman).len(),
        2,
        "expected one host veth per container"
    );
    assert_eq!(podman.host().sysctl("net.ipv4.ip_forward"), "1");
}

#[test]
fn removing_a_container_removes_only_its_host_side() {
    let mut podman = weft_podman("weftrm");
    let keep = podman.start("keep", &[], IDLE);
    let gone = podman.start("gone", &[], IDLE);
    assert_eq!(
        weft_links(&podman).len(),
        2,
        "expected one host veth per container"
    );

    podman.remove(&gone.name);

    assert!(
        host_routes_to(&podman, &gone).is_empty(),
        "route to removed container {} is still there:\n{}",
        gone.ip,
        podman.host().routes()
    );
    assert!(
        eventually(VETH_REAPED, || weft_links(&podman).len() == 1),
        "the removed container's host veth is still there: {:?}",
        weft_links(&podman)
    );
    assert_eq!(
        host_routes_to(&podman, &keep).len(),
        1,
        "the other container lost its route"
    );

    // A new container after the removal still gets a fresh, unique address from the range.
    let next = podman.start("next", &[], IDLE);
    assert!(in_subnet(next.ip), "next got {} outside the range", next.ip);
    assert_ne!(
        next.ip, keep.ip,
        "address of a live container handed out twice"
    );
}

#[test]
fn containers_started_concurrently_get_distinct_addresses() {
    const COUNT: usize = 6;
    let mut podman = weft_podman("weftpar");
    // Several `podman run`s at once: each runs weft-cni ADD, racing on the IPAM store.
    let names: Vec<String> = (0..COUNT).map(|i| format!("par{i}")).collect();
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let podman = &podman;
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(move || {
                    let network = podman.network().to_owned();
                    let mut args = vec!["run", "-d", "--name", name.as_str(), "--network"];
                    args.push(&network);
                    args.push(support::podman::IMAGE);
                    args.extend_from_slice(IDLE);
                    podman.output(&args)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("podman thread"))
            .collect()
    });
    let containers: Vec<Container> = names
        .iter()
        .zip(outputs)
        .map(|(name, output)| {
            podman.adopt(name);
            assert!(
                output.status.success(),
                "concurrent podman run {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            podman.container(name)
        })
        .collect();

    let mut ips: Vec<_> = containers.iter().map(|c| c.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), COUNT, "addresses handed out twice: {ips:?}");
    for container in &containers {
        assert!(
            in_subnet(container.ip),
            "{} outside the range",
            container.ip
        );
        assert_eq!(
            host_routes_to(&podman, container).len(),
            1,
            "no host route to {}",
            container.ip
        );
    }
    assert_eq!(
        weft_links(&podman).len(),
        COUNT,
        "expected one host veth per container"
    );
}

#[test]
fn restarted_container_is_wired_again() {
    let mut podman = weft_podman("weftrs");
    let server = podman.start("server", &[], SERVER);
    let client = podman.start("client", &[], IDLE);

    // A restart tears the network down (DEL) and sets it up again (ADD) in a new namespace.
    podman.ok(&["restart", "--time", "0", &server.name]);
    // New processes and namespace: let Drop know about them too.
    podman.adopt(&server.name);
    let restarted = podman.container(&server.name);
    assert!(
        in_subnet(restarted.ip),
        "restarted server got {}",
        restarted.ip
    );
    assert_ne!(
        restarted.ip, client.ip,
        "restart reused a live container's address"
    );
    assert!(
        eventually(VETH_REAPED, || weft_links(&podman).len() == 2),
        "expected exactly one host veth per container after the restart: {:?}",
        weft_links(&podman)
    );
    let reply = first_answer(|| {
        podman.exec(
            &client.name,
            &["nc", "-w", "5", &restarted.ip.to_string(), "8080"],
        )
    });
    assert_eq!(
        reply.trim(),
        "hi",
        "client cannot reach the restarted server"
    );
}
