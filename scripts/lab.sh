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
# One request across the pod network, as the README's tour does it.
web_ip=$("$weft" get pods -o json | python3 -c 'import json,sys; print(next(p["status"]["podIP"] for p in json.load(sys.stdin)["items"] if p["metadata"]["name"].startswith("web-")))' 2>/dev/null || true)
if [[ -n $web_ip ]]; then
    echo
    echo "\$ weft exec client -- curl -s http://$web_ip/clientip"
    "$weft" exec client -- curl -s --max-time 5 "http://$web_ip/clientip"
    echo
fi
echo
echo "Explore with $weft (get, exec, logs, apply, delete; --help on each). Remove it all: $weft lab down"
