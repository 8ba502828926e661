//! What the nftables kernel tests share: a namespace of their own, `nft` run inside it, and
//! the two views of a loaded table they compare (its listing and its bytecode).

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;

use weft_dataplane::nft::{self, Table};
use weft_dataplane::ScopedNetNs;

pub fn scoped() -> ScopedNetNs {
    ScopedNetNs::create_unique("weft-nfttest").expect("create netns")
}

pub fn nft_in(ns: &ScopedNetNs, args: &[&str]) -> String {
    let out = ns
        .run(|| Command::new("nft").args(args).output())
        .unwrap()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft list table`, with what differs between two equal loads taken out: element expiry
/// times and the applier's comment.
pub fn listing(ns: &ScopedNetNs, t: &Table) -> String {
    let text = nft_in(ns, &["list", "table", t.family.as_str(), &t.name]);
    text.lines()
        .filter(|l| !l.trim_start().starts_with("comment"))
        .map(|l| {
            let mut l = l.to_string();
            while let Some(i) = l.find(" expires ") {
                let rest = &l[i + 9..];
                let end = rest.find([' ', ',', '}']).unwrap_or(rest.len());
                l = format!("{}{}", &l[..i], &rest[end..]);
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `nft --debug=netlink list table`: the kernel expressions with their registers, rule
/// handles and set numbering taken out, lines sorted (elements come in hash order).
pub fn bytecode(ns: &ScopedNetNs, t: &Table) -> Vec<String> {
    let text = nft_in(
        ns,
        &[
            "--debug=netlink",
            "list",
            "table",
            t.family.as_str(),
            &t.name,
        ],
    );
    let end = text.find("\ntable ").unwrap_or(text.len());
    let mut lines: Vec<String> = text[..end]
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // "ip t chain 12 11": the rule's own and previous handles.
            if words.len() >= 3 && words[0] == t.family.as_str() && !l.contains('[') {
                words
                    .iter()
                    .take_while(|w| !w.chars().all(|c| c.is_ascii_digit()))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                l.replace("__map0", "__map").replace("__map1", "__map")
            }
        })
        .collect();
    lines.sort();
    lines
}

pub fn p(s: &str) -> nft::Ipv4Prefix {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
