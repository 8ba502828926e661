#!/usr/bin/env bash
# The main job: build weft, bring up the example cluster, and show its pods and nodes.
#   bash scripts/lab.sh [manifest...]     (default: examples/quickstart.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --quiet --bin weft --bin weft-cni
weft=./target/release/weft
manifests=("${@:-examples/quickstart.yaml}")
args=()
for m in "${manifests[@]}"; do args+=(-f "$m"); done
# Start from a clean slate if an earlier run left this lab up.
"$weft" lab down >/dev/null
"$weft" lab up "${args[@]}"
echo
"$weft" get nodes -o wide
echo
"$weft" get pods -A -o wide
echo
echo "Try:  $weft exec client -- curl -s http://<web pod IP>/hostname"
echo "Then: $weft lab down"
