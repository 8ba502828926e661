//! nftables: a typed model of a table ([`Table`], [`Chain`], [`Set`], [`Rule`]), its
//! rendering to nft script text, and an [`Applier`] that loads it whole or sends only the
//! difference as an nf_tables netlink batch of weft's own (`wire`, `encode`, `linearize`,
//! `expr`), after checking every rule for values nft or the kernel would refuse
//! ([`Table::check`]). [`counters`] reads the rules' counters back; [`sim`] evaluates a
//! packet through a table without a kernel, for compilers' tests.
//!
//! The text interface stays for whole loads through the tool ([`WholeLoad::Tool`]), tests and
//! benchmarks: [`apply`] loads nft script through the `nft` tool (`nft -f -`, one transaction).
//! Everything runs in the network namespace of the calling thread.

mod applier;
mod check;
mod dump;
mod encode;
mod expr;
mod linearize;
mod model;
mod render;
mod rule;
pub mod sim;
pub mod stats;
mod tx;
mod wire;

pub use applier::{load, Applied, Applier, WholeLoad, DIGEST_SET};
pub use check::{IFNAME_MAX, LOG_PREFIX_MAX};
pub use dump::{counters, Counter};
pub use model::{
    priority, BaseChain, Chain, ChainType, DataType, Elem, ElemData, Family, Field, Hook,
    Ipv4Prefix, Key, L4Proto, MapData, Policy, Set, Table, Value, Verdict,
};
pub use rule::{ct_state, CmpOp, Dnat, MarkOp, Match, Rule, Selector, Stmt};
pub use tx::Tx;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Where to find `nft`: `WEFT_NFT` overrides the search of `PATH` (and the usual sbin dirs,
/// which a non-login root shell may lack).
fn nft_program() -> String {
    if let Ok(p) = std::env::var("WEFT_NFT") {
        return p;
    }
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/nft");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    "nft".to_string()
}

fn run(args: &[&str], stdin: Option<&str>, op: &str) -> Result<String> {
    let mut child = Command::new(nft_program())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::os(format!("{op}: running nft"), e))?;
    if let Some(text) = stdin {
        // Dropping the handle after the write closes nft's stdin.
        let mut input = child.stdin.take().expect("stdin was piped");
        input
            .write_all(text.as_bytes())
            .map_err(|e| Error::os(format!("{op}: writing to nft"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::os(format!("{op}: waiting for nft"), e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            op: op.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads `ruleset` (nft script syntax) as one transaction.
pub fn apply(ruleset: &str) -> Result<()> {
    run(&["-f", "-"], Some(ruleset), "loading an nftables ruleset")?;
    Ok(())
}

/// The text of table `family name` (`nft list table`), or `None` when it does not exist.
pub fn table(family: &str, name: &str) -> Result<Option<String>> {
    match run(
        &["list", "table", family, name],
        None,
        &format!("listing table {family} {name}"),
    ) {
        Ok(text) => Ok(Some(text)),
        Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes table `family name` if it exists (in one transaction, so it is never an error).
pub fn delete_table(family: &str, name: &str) -> Result<()> {
    apply(&format!(
        "table {family} {name}\ndelete table {family} {name}\n"
    ))
}
