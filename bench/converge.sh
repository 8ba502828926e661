#!/usr/bin/env bash
# How fast the other nodes' agents converge when a node joins or leaves a running lab: the time
# from `weft lab node add|remove` returning until every other node's routing table shows the
# change (polled every 20 ms), over ROUNDS joins and leaves. Needs root and a release build.
#   bash bench/converge.sh           (ROUNDS=5, NODES=3 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
weft=${WEFT:-$here/../target/release/weft}
rounds=${ROUNDS:-5}
nodes=${NODES:-3}
[[ -x $weft ]] || { echo "weft not found at $weft: run cargo build --release" >&2; exit 1; }
export WEFT_STATE_DIR=$(mktemp -d)
lab="bc$$"
cleanup() { "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true; rm -rf "$WEFT_STATE_DIR"; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
# Waits until every node in "$@" has (want=1) or lacks (want=0) a route to $cidr; prints seconds since $start.
wait_routes() {
    local start=$1 cidr=$2 want=$3; shift 3
    local deadline=$(( $(date +%s) + 30 ))
    while :; do
        local all=1
        for n in "$@"; do
            if ip netns exec "weft_${lab}_$n" ip route show "$cidr" | grep -q .; then
                [[ $want == 1 ]] || all=0
            else
                [[ $want == 0 ]] || all=0
            fi
        done
        if ((all)); then python3 -c "print('%.3f' % ($(now) - $start))"; return; fi
        (( $(date +%s) < deadline )) || { echo "timeout"; return; }
        sleep 0.02
    done
}

"$weft" --lab "$lab" lab up --nodes "$nodes" >/dev/null
others=()
for ((i = 1; i <= nodes; i++)); do others+=("$lab-node$i"); done
joins=() leaves=()
for ((r = 1; r <= rounds; r++)); do
    out=$("$weft" --lab "$lab" lab node add)
    t=$(now)
    name=$(grep -o "$lab-node[0-9]*" <<<"$out" | head -1)
    cidr=$(grep -oE '10\.[0-9]+\.[0-9]+\.0/[0-9]+' <<<"$out" | head -1)
    joins+=("$(wait_routes "$t" "$cidr" 1 "${others[@]}")")
    "$weft" --lab "$lab" lab node remove "$name" >/dev/null
    t=$(now)
    leaves+=("$(wait_routes "$t" "$cidr" 0 "${others[@]}")")
done
echo "convergence of ${#others[@]} other nodes' routes after a node joins / leaves (seconds, $rounds rounds)"
echo "join:  ${joins[*]}"
echo "leave: ${leaves[*]}"
python3 - "${joins[@]}" -- "${leaves[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]
cut = args.index("--")
for name, xs in (("join", args[:cut]), ("leave", args[cut + 1:])):
    xs = [float(x) for x in xs if x != "timeout"]
    print(f"{name:5s}  median {statistics.median(xs):.3f} s, max {max(xs):.3f} s")
PY
