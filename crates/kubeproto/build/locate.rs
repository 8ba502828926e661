//! Finds the unpacked sources of k8s-pb and k8s-openapi. A build script cannot ask cargo where a
//! dependency's sources are, so this looks where cargo puts them: the registry under
//! `$CARGO_HOME` (default `~/.cargo`), at the version Cargo.lock resolved. An environment variable
//! per crate overrides the search (vendored builds, offline mirrors).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// One crate to find: its name, the version requirement's prefix we accept, and the override.
pub struct Wanted {
    pub name: &'static str,
    /// `"0.9."` accepts 0.9.x; must agree with Cargo.toml.
    pub version_prefix: &'static str,
    pub override_var: &'static str,
}

pub fn find(wanted: &Wanted) -> PathBuf {
    println!("cargo:rerun-if-env-changed={}", wanted.override_var);
    if let Some(dir) = env::var_os(wanted.override_var) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("src").is_dir(),
            "{}={} has no src/ directory",
            wanted.override_var,
            dir.display()
        );
        return dir;
    }
    let locked = locked_version(wanted);
    let mut candidates = Vec::new();
    for root in registry_roots() {
        let Ok(indexes) = fs::read_dir(&root) else {
            continue;
        };
        for index in indexes.flatten() {
            let Ok(crates) = fs::read_dir(index.path()) else {
                continue;
            };
            for krate in crates.flatten() {
                let file_name = krate.file_name();
                let Some(dir_name) = file_name.to_str() else {
                    continue;
                };
                let Some(version) = dir_name.strip_prefix(&format!("{}-", wanted.name)) else {
                    continue;
                };
                if version.starts_with(wanted.version_prefix) && krate.path().join("src").is_dir() {
                    candidates.push((version.to_string(), krate.path()));
                }
            }
        }
    }
    if let Some(locked) = &locked {
        if let Some((_, dir)) = candidates.iter().find(|(v, _)| v == locked) {
            return dir.clone();
        }
    }
    // Without a lock entry (or its directory), the newest matching release: the generated
    // sources' shape is stable within a minor version.
    candidates.sort_by_key(|c| version_key(&c.0));
    match candidates.pop() {
        Some((_, dir)) => dir,
        None => panic!(
            "weft-kubeproto's build reads the sources of {name} {prefix}x from cargo's registry \
             ($CARGO_HOME/registry/src/*/{name}-*), but found none (Cargo.lock has {locked:?}). \
             Run `cargo fetch`, or set {var} to the crate's unpacked directory.",
            name = wanted.name,
            prefix = wanted.version_prefix,
            var = wanted.override_var,
        ),
    }
}

fn registry_roots() -> Vec<PathBuf> {
    println!("cargo:rerun-if-env-changed=CARGO_HOME");
    let mut homes = Vec::new();
    if let Some(home) = env::var_os("CARGO_HOME") {
        homes.push(PathBuf::from(home));
    }
    if let Some(home) = env::var_os("HOME") {
        homes.push(Path::new(&home).join(".cargo"));
    }
    homes
        .into_iter()
        .map(|h| h.join("registry").join("src"))
        .collect()
}

/// The version of `wanted` in the Cargo.lock above this crate, if there is exactly one that
/// matches the prefix.
fn locked_version(wanted: &Wanted) -> Option<String> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let lock = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(lock).ok()?;
    let name_line = format!("name = \"{}\"", wanted.name);
    let mut lines = text.lines();
    let mut found = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
            {
                if version.starts_with(wanted.version_prefix) {
                    found.push(version.to_string());
                }
            }
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

fn version_key(version: &str) -> Vec<u64> {
    version
        .split(['.', '-', '+'])
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}
