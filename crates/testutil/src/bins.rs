//! The workspace's binaries, for tests outside the crates that define them. Cargo's
//! `CARGO_BIN_EXE_<name>` exists only in the defining crate's own tests, so this looks where cargo
//! puts binaries for the profile and target directory the test executable was built with:
//! `<target>/<profile>/deps/<test>-<hash>` runs, `<target>/<profile>/<name>` is the binary. It
//! is the same file `CARGO_BIN_EXE_weft` named when the tests lived in the `weft` crate, and the
//! lab finds `weft-cni` beside it, as it always did.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// How to build what the lab tests run, for failure messages and scripts/test.sh.
pub const BUILD_HINT: &str = "cargo build -p weft -p weft-cni --bins";

/// The directory holding the workspace's binaries for this test run's profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // .../<profile>/deps/<test>-<hash> -> .../<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", exe.display()))
}

/// The binary `name` of this workspace, built with the tests' profile. Fails the test, saying
/// how to build it, when it is not there; warns (in the test's output) when some source file is
/// newer than it, since cargo does not rebuild binaries for another crate's tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: the e2e tests run the workspace's binaries, build them first with \
         `{BUILD_HINT}` (same profile and CARGO_TARGET_DIR as the tests; scripts/test.sh does)",
        path.display()
    );
    warn_if_stale(&path);
    path
}

/// The `weft` binary (the lab's daemons run it too).
pub fn weft() -> PathBuf {
    workspace_bin("weft")
}

/// The `weft-cni` plugin, which the lab looks for beside `weft`.
pub fn weft_cni() -> PathBuf {
    workspace_bin("weft-cni")
}

fn warn_if_stale(binary: &Path) {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    if let Some((newer, _)) = newest_source().filter(|(_, changed)| *changed > built) {
        eprintln!(
            "warning: {} is older than {}: run `{BUILD_HINT}` to test the current code",
            binary.display(),
            newer.display()
        );
    }
}

/// The most recently modified file under the workspace's `crates/*/src` but the tests' own
/// crates (looked up once).
fn newest_source() -> Option<(PathBuf, SystemTime)> {
    static NEWEST: OnceLock<Option<(PathBuf, SystemTime)>> = OnceLock::new();
    NEWEST
        .get_or_init(|| {
            let crates = crate::lab::workspace_root().join("crates");
            let mut newest = None;
            for krate in std::fs::read_dir(crates).into_iter().flatten().flatten() {
                // The tests' own crates are not in the binaries.
                if ["e2e", "testutil"].iter().any(|t| krate.file_name() == **t) {
                    continue;
                }
                newest_in(&krate.path().join("src"), &mut newest);
            }
            newest
        })
        .clone()
}

fn newest_in(dir: &Path, newest: &mut Option<(PathBuf, SystemTime)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            newest_in(&path, newest);
        } else if let Ok(changed) = meta.modified() {
            if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
                *newest = Some((path, changed));
            }
        }
    }
}
