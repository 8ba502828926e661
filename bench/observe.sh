#!/usr/bin/env bash
# What the flow log costs the traffic, in one run (needs root, wrk and iperf3; see
# scripts/deps.sh). Two 2-node labs side by side, the same in all but the cluster config's
# `flowLog` (true in one, false in the other), each with an nginx pod on node 1 and a client pod on
# node 2; the measuring tools run inside the client pod's network namespace:
#   (1) new connections per second: wrk with `Connection: close` (each request its own TCP
#       connection, so each is a conntrack entry the flow log records twice, start and end);
#   (2) iperf3 throughput between the two pods;
# round by round, alternating which lab goes first, with one `weft observe -f` reading the
# flow-log lab's records for the whole run. Ratios are flow log on / off (target >= 0.95x).
#   (3) the agents' resident memory in the flow-log lab after the run, with the number of
#       records each has seen (its last sequence number; the ring keeps the last 10,000).
#   bash bench/observe.sh   (SECONDS_PER_RUN=5 ROUNDS=5 CONNS=8 READER=1)
# Everything runs inside the labs' namespaces; both labs are taken down by the trap, and the
# processes this script starts are stopped by their pids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
secs=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-5}
conns=${CONNS:-8}
reader=${READER:-1}

[[ $(id -u) == 0 ]] || { echo "observe.sh needs root (labs)" >&2; exit 1; }
for tool in wrk iperf3 ip; do
    command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/deps.sh" >&2; exit 1; }
done
echo "building weft (release) ..." >&2
(cd "$repo" && cargo build --release -q -p weft -p weft-cni --bins)
target=${CARGO_TARGET_DIR:-$repo/target}
weft=$target/release/weft

files=$(mktemp -d)
export WEFT_STATE_DIR=$files/state
on="obn$$"
off="obf$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for lab in "$on" "$off"; do "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true; done
    rm -rf "$files"
}
trap cleanup EXIT INT TERM

for lab in "$on" "$off"; do
    flow=$([[ $lab == "$on" ]] && echo true || echo false)
    cat > "$files/$lab.yaml" <<EOF
apiVersion: weft.dev/v1alpha1
kind: Cluster
name: $lab
nodes: 2
flowLog: $flow
EOF
    cat > "$files/$lab-app.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: $lab-node1
  containers: [{name: web, image: nginx:1.27, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: $lab-node2
  containers: [{name: c, image: busybox, command: [sleep, "36000"]}]
EOF
    "$weft" --lab "$lab" lab up --config "$files/$lab.yaml" -f "$files/$lab-app.yaml" --wait 180 >/dev/null
done

# A pod's network namespace or address (FIELD netns or ip), from its sandbox record.
pod_field() { # LAB POD FIELD
    /usr/bin/python3 -c '
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/" + sys.argv[2] + "/nodes/*/sandboxes/*"):
    r = json.load(open(f))
    if r.get("name") == sys.argv[3] and r.get("namespace") == "default":
        print(r[sys.argv[4]]); break' "$WEFT_STATE_DIR" "$1" "$2" "$3"
}
declare -A client server
for lab in "$on" "$off"; do
    client[$lab]=$(pod_field "$lab" client netns)
    server[$lab]=$(pod_field "$lab" server ip)
    [[ -n ${client[$lab]} && -n ${server[$lab]} ]] || { echo "lab $lab: no client or server pod" >&2; exit 1; }
    ip netns exec "$(pod_field "$lab" server netns)" iperf3 -s -D --pidfile "$files/$lab-iperf.pid" >/dev/null
    pids+=("$(cat "$files/$lab-iperf.pid")")
done

# One reader of the flow log for the whole run (READER=0: none).
: > "$files/observed"
if [[ $reader == 1 ]]; then
    "$weft" --lab "$on" observe -f --last 0 > "$files/observed" 2>&1 &
    pids+=($!)
fi

conn_rate() { # LAB -> connections per second
    ip netns exec "${client[$1]}" wrk -t1 -c"$conns" -d"${secs}s" -H 'Connection: close' "http://${server[$1]}/" 2>&1 |
        awk '/Requests\/sec/ { print $2 }'
}
tput() { # LAB -> Gbit/s
    ip netns exec "${client[$1]}" iperf3 -c "${server[$1]}" -t "$secs" -J 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9)'
}

echo "flow log on vs off: two 2-node labs, nginx pod -> client pod across nodes, ${secs}s x $rounds rounds each, $reader weft observe -f reading; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rate gbit
for round in $(seq "$rounds"); do
    order="$on $off"; (( round % 2 == 0 )) && order="$off $on"
    for lab in $order; do
        rate[$lab]+="$(conn_rate "$lab") "
        gbit[$lab]+="$(tput "$lab") "
    done
    echo "  round $round: connections/s (cumulative) on: ${rate[$on]}| off: ${rate[$off]}" | sed 's/  */ /g' >&2
done
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ron=$(median ${rate[$on]}); roff=$(median ${rate[$off]})
gon=$(median ${gbit[$on]}); goff=$(median ${gbit[$off]})
verdict() { awk "BEGIN{print ($1 >= 0.95) ? \"met\" : \"MISSED\"}"; }
cr=$(awk "BEGIN{printf \"%.3f\", $ron / $roff}"); tr_=$(awk "BEGIN{printf \"%.3f\", $gon / $goff}")
printf '  %-40s %12s %12s %8s %16s\n' "" "flow log on" "off" "ratio" "target"
printf '  %-40s %12.0f %12.0f %7sx %16s\n' "new TCP connections/s (wrk, close)" "$ron" "$roff" "$cr" ">= 0.95x: $(verdict "$cr")"
printf '  %-40s %12.2f %12.2f %7sx %16s\n' "iperf3 Gbit/s" "$gon" "$goff" "$tr_" ">= 0.95x: $(verdict "$tr_")"

# (3) The flow-log lab's agents: resident memory and records seen.
flows_seen() { # LAB NODE -> the agent's last sequence number
    "$weft" --lab "$1" observe -o json --last 100000 2>/dev/null | /usr/bin/python3 -c '
import json, sys
last = {}
for line in sys.stdin:
    f = json.loads(line)
    last[f["node"]] = max(last.get(f["node"], 0), f["seq"])
print(last.get(sys.argv[1], 0))' "$2"
}
for node in "$on-node1" "$on-node2"; do
    pid=$(/usr/bin/python3 -c '
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/" + sys.argv[2] + "/nodes/" + sys.argv[3] + "/sandboxes/*"):
    r = json.load(open(f))
    if r.get("namespace") == "kube-system" and r.get("name", "").startswith("weft-agent-"):
        print(r["containers"]["agent"]["pid"]); break' "$WEFT_STATE_DIR" "$on" "$node")
    rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
    printf '  %-40s %s\n' "agent on $node" "RSS $rss MiB after $(flows_seen "$on" "$node") records (ring of 10,000)"
done
printf '  %-40s %s\n' "weft observe -f" "printed $(wc -l < "$files/observed") lines during the run"
