#!/usr/bin/env bash
# The tests: unit tests, and root integration tests in namespaces the tests create themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The end-to-end tests (crates/e2e) run the workspace's binaries, which cargo builds only for the
# tests of the crate that defines them: build them first, with the profile the tests use.
cargo build --quiet -p weft -p weft-cni --bins
cargo test --workspace --quiet -- --test-threads=2
