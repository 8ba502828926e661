#!/usr/bin/env bash
# The tests: unit tests, and root integration tests in namespaces the tests create themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo test --workspace --quiet -- --test-threads=2
