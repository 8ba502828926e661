#!/usr/bin/env bash
# Pod-to-pod TCP throughput with iperf3 in real labs, in one run: on one node, across nodes in
# direct mode, across nodes in vxlan mode. Prints Gbit/s and the ratios to the same-node figure
# (and vxlan to direct, with its target met or MISSED). Needs root, iperf3, and a release build
# of weft and weft-cni (`cargo build --release`). Removes its labs on exit.
#   bash bench/net.sh            (SECONDS_PER_RUN=5, ROUNDS=3 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
weft=${WEFT:-$here/../target/release/weft}
secs=${SECONDS_PER_RUN:-5}
[[ -x $weft ]] || { echo "weft not found at $weft: run cargo build --release" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 is not installed (apt-get install iperf3)" >&2; exit 1; }
export WEFT_STATE_DIR=$(mktemp -d)
lab="bn$$"
files=$(mktemp -d)
# The yardstick's two namespaces (no weft in them: plain veth and a kernel VXLAN made with `ip`).
ka="bnk-a-$$"
kb="bnk-b-$$"
cleanup() {
    "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true
    ip netns pids "$kb" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$ka" 2>/dev/null || true
    ip netns del "$kb" 2>/dev/null || true
    rm -rf "$WEFT_STATE_DIR" "$files"
}
trap cleanup EXIT INT TERM

# The server and one client on node1, another client on node2: iperf3 runs as the containers'
# command, inside the pods' namespaces.
cat > "$files/pods.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: $lab-node1
  containers: [{name: iperf, image: busybox, command: [iperf3, -s]}]
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  nodeName: $lab-node1
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: $lab-node2
  containers: [{name: c, image: busybox}]
YAML

gbits() { # client pod -> server IP: Gbit/s received
    "$weft" --lab "$lab" exec "$1" -- iperf3 -c "$2" -t "$secs" -J \
        | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
server_ip() {
    "$weft" --lab "$lab" get pods -o json | python3 -c 'import json,sys; print(next(p["status"]["podIP"] for p in json.load(sys.stdin)["items"] if p["metadata"]["name"]=="server"))'
}

median() { python3 -c 'import statistics,sys; print("%.2f" % statistics.median(map(float, sys.argv[1:])))' "$@"; }
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }

# ROUNDS rounds, each bringing a lab up in each mode and measuring the same-node and the
# cross-node path back to back, so drift in the machine's load hits every figure alike.
rounds=${ROUNDS:-3}
declare -A runs
for ((r = 1; r <= rounds; r++)); do
    for mode in direct vxlan; do
        "$weft" --lab "$lab" lab up --nodes 2 --network-mode "$mode" -f "$files/pods.yaml" --wait 60 >/dev/null
        ip=$(server_ip)
        runs[same]+="$(gbits near "$ip") "
        runs[$mode]+="$(gbits far "$ip") "
        "$weft" --lab "$lab" lab down >/dev/null
    done
done
# Yardstick: what VXLAN costs the kernel itself on this machine, with nothing but two namespaces
# joined by a veth, iperf3 to the peer's veth address vs to its VXLAN address.
ip netns add "$ka"
ip netns add "$kb"
ip -n "$ka" link add eth0 type veth peer name eth0 netns "$kb"
ip -n "$ka" addr add 192.0.2.1/24 dev eth0
ip -n "$kb" addr add 192.0.2.2/24 dev eth0
ip -n "$ka" link add vx0 type vxlan id 5 local 192.0.2.1 remote 192.0.2.2 dev eth0 dstport 4789
ip -n "$kb" link add vx0 type vxlan id 5 local 192.0.2.2 remote 192.0.2.1 dev eth0 dstport 4789
ip -n "$ka" addr add 10.9.0.1/24 dev vx0
ip -n "$kb" addr add 10.9.0.2/24 dev vx0
for ns in "$ka" "$kb"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set vx0 up
done
ip netns exec "$kb" iperf3 -s -D
sleep 0.5
kgbits() {
    ip netns exec "$ka" iperf3 -c "$1" -t "$secs" -J \
        | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
for ((r = 1; r <= rounds; r++)); do
    runs[kdirect]+="$(kgbits 192.0.2.2) "
    runs[kvxlan]+="$(kgbits 10.9.0.2) "
done
kdirect=$(median ${runs[kdirect]})
kvxlan=$(median ${runs[kvxlan]})

same=$(median ${runs[same]})
direct=$(median ${runs[direct]})
vxlan=$(median ${runs[vxlan]})

echo "iperf3 TCP, ${secs}s per run, median of $rounds rounds ($(nproc) CPUs, kernel $(uname -r))"
printf '%-32s %10s %14s   %s\n' path Gbit/s "vs same node" "runs"
printf '%-32s %10s %14s   %s\n' "pod -> pod, same node" "$same" 1.00 "${runs[same]}"
printf '%-32s %10s %14s   %s\n' "pod -> pod, across nodes, direct" "$direct" "$(ratio "$direct" "$same")" "${runs[direct]}"
printf '%-32s %10s %14s   %s\n' "pod -> pod, across nodes, vxlan" "$vxlan" "$(ratio "$vxlan" "$same")" "${runs[vxlan]}"
echo "vxlan / direct: $(ratio "$vxlan" "$direct") (target >= 0.90: $(python3 -c "print('met' if $vxlan / $direct >= 0.90 else 'MISSED')"))"
echo
echo "yardstick, the kernel alone (two namespaces, one veth, a VXLAN device made with ip):"
printf '%-32s %10s   %s\n' "veth" "$kdirect" "${runs[kdirect]}"
printf '%-32s %10s   %s\n' "vxlan over that veth" "$kvxlan" "${runs[kvxlan]}"
echo "kernel vxlan / veth: $(ratio "$kvxlan" "$kdirect")"
