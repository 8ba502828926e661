#!/usr/bin/env bash
# How fast the nodes' agents converge, in a running lab, over ROUNDS rounds:
#   - routes: from `weft lab node add|remove` returning until every other node's routing table
#     shows the change;
#   - endpoints: from `weft apply` of a Service's EndpointSlice with a new address returning
#     until every node's proxy table has that address.
# Polled every 20 ms. A wait that reaches TIMEOUT seconds counts as TIMEOUT in the median and the
# max, and is flagged. Prints each target (routes 0.05 s, endpoints 0.3 s) as met or MISSED, for
# the median and for the slowest run. Needs root and a release build (cargo build --release).
#   bash bench/converge.sh           (ROUNDS=5, NODES=3, TIMEOUT=30 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
weft=${WEFT:-$here/../target/release/weft}
rounds=${ROUNDS:-5}
nodes=${NODES:-3}
timeout=${TIMEOUT:-30}
[[ -x $weft ]] || { echo "weft not found at $weft: run cargo build --release" >&2; exit 1; }
export WEFT_STATE_DIR=$(mktemp -d)
lab="bc$$"
files=$(mktemp -d)
cleanup() { "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true; rm -rf "$WEFT_STATE_DIR" "$files"; }
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
# Polls `check <node>` on every node in "$@" until all pass; prints seconds since $start, or
# "timeout" once $timeout seconds have passed.
wait_all() {
    local start=$1 check=$2; shift 2
    local deadline=$(( $(date +%s) + timeout ))
    while :; do
        local all=1 n
        for n in "$@"; do "$check" "$n" || { all=0; break; }; done
        if ((all)); then python3 -c "print('%.3f' % ($(now) - $start))"; return; fi
        (( $(date +%s) < deadline )) || { echo "timeout"; return; }
        sleep 0.02
    done
}
ns_of() { echo "weft_${lab}_$1"; }
# grep reads its whole input (no -q): under pipefail, a grep that quits at the first match can
# make the writer die of SIGPIPE and the check fail although it matched.
has_route() { ip -n "$(ns_of "$1")" route show "$cidr" | grep . >/dev/null; }
lacks_route() { ! has_route "$1"; }
# An endpoint is in a `backends_<n>` map as `<dispatch mark> . <slot> : <address> . <port>`.
has_endpoint() { ip netns exec "$(ns_of "$1")" nft list table ip weft_services 2>/dev/null | grep -F ": $endpoint . 8080" >/dev/null; }

"$weft" --lab "$lab" lab up --nodes "$nodes" >/dev/null
others=()
for ((i = 1; i <= nodes; i++)); do others+=("$lab-node$i"); done
joins=() leaves=()
for ((r = 1; r <= rounds; r++)); do
    out=$("$weft" --lab "$lab" lab node add)
    t=$(now)
    name=$(grep -o "$lab-node[0-9]*" <<<"$out" | head -1)
    cidr=$(grep -oE '10\.[0-9]+\.[0-9]+\.0/[0-9]+' <<<"$out" | head -1)
    joins+=("$(wait_all "$t" has_route "${others[@]}")")
    "$weft" --lab "$lab" lab node remove "$name" >/dev/null
    t=$(now)
    leaves+=("$(wait_all "$t" lacks_route "${others[@]}")")
done

# Endpoints: a Service without selector whose one endpoint moves to a new address each round,
# as when its pod is replaced (the agents' watch -> proxy update path, the same on every node).
cat > "$files/svc.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: converge}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
YAML
"$weft" --lab "$lab" apply -f "$files/svc.yaml" >/dev/null
endpoints=()
for ((r = 1; r <= rounds; r++)); do
    endpoint="10.250.0.$r"
    cat > "$files/slice.yaml" <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: converge-1, labels: {kubernetes.io/service-name: converge}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [$endpoint], conditions: {ready: true}}]
YAML
    "$weft" --lab "$lab" apply -f "$files/slice.yaml" >/dev/null
    t=$(now)
    endpoints+=("$(wait_all "$t" has_endpoint "${others[@]}")")
done

echo "convergence of ${#others[@]} nodes after a change (seconds, $rounds rounds, polled every 20 ms, timeout $timeout s)"
echo "route, join:     ${joins[*]}"
echo "route, leave:    ${leaves[*]}"
echo "endpoint moved:  ${endpoints[*]}"
python3 - "$timeout" "${joins[@]}" -- "${leaves[@]}" -- "${endpoints[@]}" <<'PY'
import statistics, sys
timeout, args = float(sys.argv[1]), sys.argv[2:]
groups, cur = [], []
for a in args:
    if a == "--":
        groups.append(cur); cur = []
    else:
        cur.append(a)
groups.append(cur)
for (name, target), xs in zip((("route, join", 0.05), ("route, leave", 0.05), ("endpoint moved", 0.3)), groups):
    # A timed-out run converged no faster than the timeout: it counts as that, never dropped.
    timed_out = sum(x == "timeout" for x in xs)
    vals = [timeout if x == "timeout" else float(x) for x in xs]
    med, worst = statistics.median(vals), max(vals)
    over = sum(v > target for v in vals)
    verdict = lambda v: "met" if v <= target else "MISSED"
    flag = f"; {timed_out} of {len(vals)} TIMED OUT (counted as {timeout:.0f} s)" if timed_out else ""
    print(f"{name:15s} median {med:.3f} s, max {worst:.3f} s{flag}")
    print(f"{'':15s} target <= {target} s: median {verdict(med)}, max {verdict(worst)} ({over} of {len(vals)} runs over)")
PY
