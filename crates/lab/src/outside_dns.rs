//! The outside host's DNS server: Debian's Knot (`knotd`, authoritative only, so it never asks
//! anyone else), serving the outside world's names. It is the lab's upstream resolver: the lab's
//! nodes have it in their resolv.conf, so the cluster DNS, whose pods use the node's resolvers
//! (dnsPolicy Default), forwards every name outside the cluster to it, as CoreDNS forwards to a
//! node's resolvers on a real cluster.
//!
//! The zones: `example.org` (the outside host's own name `outside.example.org`, `www` on the
//! outside host's web server, a CNAME, MX and TXT) and the reverse zone of the outside network.
//! Any other name is REFUSED, which is what a resolver with no way to the Internet can say.

use std::fmt::Write;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::layout::Layout;
use crate::topology::{OUTSIDE_GATEWAY, OUTSIDE_HOST};
use crate::LabError;

/// The outside world's example zone.
pub const EXAMPLE_ZONE: &str = "example.org";
/// The outside host's own name.
pub const OUTSIDE_NAME: &str = "outside.example.org";

/// The reverse zone of the outside network (a /24).
fn reverse_zone(host: Ipv4Addr) -> String {
    let o = host.octets();
    format!("{}.{}.{}.in-addr.arpa", o[2], o[1], o[0])
}

/// The example zone's master file.
pub fn example_zone_file() -> String {
    let host = OUTSIDE_HOST;
    let gateway = OUTSIDE_GATEWAY;
    format!(
        "$ORIGIN {EXAMPLE_ZONE}.\n$TTL 300\n\
         @        SOA   ns hostmaster 1 3600 600 86400 60\n\
         @        NS    ns\n\
         ns       A     {host}\n\
         outside  A     {host}\n\
         gateway  A     {gateway}\n\
         www      A     {host}\n\
         web      CNAME www\n\
         @        MX    10 mail\n\
         mail     A     {host}\n\
         @        TXT   \"the lab's outside world\"\n"
    )
}

/// The outside network's reverse zone: the outside host and its gateway.
pub fn reverse_zone_file() -> String {
    let mut out = format!(
        "$ORIGIN {}.\n$TTL 300\n@ SOA ns.{EXAMPLE_ZONE}. hostmaster.{EXAMPLE_ZONE}. 1 3600 600 86400 60\n@ NS ns.{EXAMPLE_ZONE}.\n",
        reverse_zone(OUTSIDE_HOST)
    );
    for (ip, name) in [(OUTSIDE_HOST, "outside"), (OUTSIDE_GATEWAY, "gateway")] {
        let _ = writeln!(out, "{} PTR {name}.{EXAMPLE_ZONE}.", ip.octets()[3]);
    }
    out
}

/// knotd's config: both zones from `dir`, answering on the outside host's address and loopback.
pub fn knot_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "server:\n    rundir: \"{d}\"\n    listen: [ {OUTSIDE_HOST}@53, 127.0.0.1@53 ]\n    \
         udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{d}\"\n\
         log:\n  - target: stderr\n    any: info\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    journal-content: none\n    zonefile-sync: -1\n\
         zone:\n  - domain: {EXAMPLE_ZONE}\n    file: {EXAMPLE_ZONE}.zone\n  - domain: {reverse}\n    file: reverse.zone\n",
        reverse = reverse_zone(OUTSIDE_HOST),
    )
}

/// The resolv.conf of the lab's nodes (and so of pods with dnsPolicy Default, and of the outside
/// host itself): the outside host's DNS server.
pub fn node_resolv_conf() -> String {
    format!("nameserver {OUTSIDE_HOST}\n")
}

/// Writes the zones and config under the lab's directory and starts knotd in the outside
/// namespace, detached (the lab's `down` stops every process in its namespaces).
pub fn start(layout: &Layout) -> Result<(), LabError> {
    let dir = layout.dir().join("outside-dns");
    let io = |what: &str| {
        let what = format!("{what} in {}", dir.display());
        move |e| LabError::io(what, e)
    };
    fs::create_dir_all(&dir).map_err(io("creating"))?;
    fs::write(
        dir.join(format!("{EXAMPLE_ZONE}.zone")),
        example_zone_file(),
    )
    .map_err(io("writing the example zone"))?;
    fs::write(dir.join("reverse.zone"), reverse_zone_file())
        .map_err(io("writing the reverse zone"))?;
    fs::write(dir.join("knot.conf"), knot_conf(&dir)).map_err(io("writing knot.conf"))?;
    let knotd = crate::container::find_program("knotd").ok_or_else(|| {
        LabError::Invalid(
            "knotd not found: the lab's outside host runs Debian's knot (scripts/deps.sh installs it)"
                .into(),
        )
    })?;
    crate::lab::spawn_outside(
        layout,
        knotd,
        vec!["-c".into(), dir.join("knot.conf").display().to_string()],
        "outside-dns",
        "the outside host's DNS server (knotd)",
    )
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// `knotc zone-check`: each zone of `conf` loads as knotd would load it.
    fn check_zones(conf: &Path) -> Result<(), String> {
        let out = Command::new("knotc")
            .arg("-c")
            .arg(conf)
            .arg("zone-check")
            .output()
            .map_err(|e| format!("running knotc: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[test]
    fn the_zones_are_what_knot_loads() {
        let dir = std::env::temp_dir().join(format!("weft-outside-dns-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("{EXAMPLE_ZONE}.zone")),
            example_zone_file(),
        )
        .unwrap();
        fs::write(dir.join("reverse.zone"), reverse_zone_file()).unwrap();
        fs::write(dir.join("knot.conf"), knot_conf(&dir)).unwrap();
        let checked = check_zones(&dir.join("knot.conf"));
        let _ = fs::remove_dir_all(&dir);
        checked.unwrap();
        assert!(reverse_zone_file().contains("10 PTR outside.example.org."));
        assert!(example_zone_file().contains("outside  A     203.0.113.10"));
    }
}
