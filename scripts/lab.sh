#!/usr/bin/env bash
# The main job: build weft, bring up the example cluster (3 nodes, VXLAN overlay), and show its
# nodes, its pods, one request across nodes and one to the outside host.
#   bash scripts/lab.sh [manifest...]     (default: examples/quickstart.yaml; NODES=3)
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
"$weft" lab up --nodes "${NODES:-3}" "${args[@]}"
echo
"$weft" get nodes -o wide
# One request across the pod network, to a web pod on another node if there is one, as the
# README's tour does it; then one to the outside host, which sees the node's address.
web_ip=$("$weft" get pods -o json | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
client = next(p for p in pods if p["metadata"]["name"] == "client")
webs = [p for p in pods if p["metadata"]["name"].startswith("web-") and p["status"].get("podIP")]
webs.sort(key=lambda p: p["spec"].get("nodeName") == client["spec"].get("nodeName"))
print(webs[0]["status"]["podIP"])' 2>/dev/null || true)
if [[ -n $web_ip ]]; then
    echo
    echo "\$ weft exec client -- curl -s http://$web_ip/clientip      # another node's pod sees the client's pod IP"
    "$weft" exec client -- curl -s --max-time 5 "http://$web_ip/clientip"
    echo
    echo "\$ weft exec client -- curl -s http://203.0.113.10/clientip  # the outside host sees the node IP"
    "$weft" exec client -- curl -s --max-time 5 "http://203.0.113.10/clientip"
    echo
fi
echo
echo "Explore with $weft (get, exec, logs, apply, delete; --help on each). Remove it all: $weft lab down"
