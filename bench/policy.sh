#!/usr/bin/env bash
# NetworkPolicy at scale, in one run (needs root, iperf3 and nsenter; see scripts/deps.sh). The
# cluster is synthetic (crates/policy/examples/cluster/mod.rs: 50 namespaces with team/env labels,
# pods with app/tier labels and named ports, policies selecting by app with ingress from pod
# selectors, namespace + pod selectors and ip blocks, numbered, ranged and named ports, a few with
# egress); every figure is printed beside its target with met or MISSED:
#   (1) scale: POLICIES x PODS, all pods on the node (every policy active: the node's worst case):
#       resolve + compile + whole load into a fresh network namespace by the agent's reconciler,
#       and step by step; the table's size; then the same at a node holding 1/10 of the pods;
#   (2) one pod's label change to the kernel (into/out of peer sets; into/out of a policy's
#       selection), CHANGES times each, p50/p99, through the agent's reconciler, with its steps;
#   (3) data path: two pods wired like the CNI plugin in a node namespace with the policy table,
#       the server isolated by policies whose last one lets the client in: TCP connect latency and
#       iperf3 throughput vs the same node with no policy installed (weft's table for a node
#       without policies: anti-spoofing, the stateful pass), and, reported beside it, vs no table
#       at all and vs a table holding only a conntrack rule, interleaved round by round; each
#       ratio is the median of the rounds' ratios (with their range);
#   (4) resident memory of the process holding the view and the loaded table (the example's own),
#       and of a real agent: a 1-node lab (weft lab up, state in a temporary directory, taken
#       down by the trap) with LAB_PODS pods, before and after POLICIES policies selecting them.
# Every namespace is created by the examples (WEFT_BENCH_NETNS prefix, unique to this run) and
# removed by them, or by this script's trap should they die. Nothing else is touched.
#   bash bench/policy.sh   (POLICIES=1000 PODS=1000 NAMESPACES=50 CHANGES=200 SPREAD_NODES=10 LAB_PODS=100
#                           SPREAD_CHANGES=50 CONNECTS=2000 SECONDS_PER_RUN=3 ROUNDS=7 NICE=-10)
# It builds the examples first (cargo build --release -p weft-policy --examples, honouring
# CARGO_TARGET_DIR). NICE: the examples run at this niceness (root: negative is allowed), so other
# work on the machine takes less of their CPU; the on-CPU figures do not depend on it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
policies=${POLICIES:-1000}
pods=${PODS:-1000}
namespaces=${NAMESPACES:-50}
changes=${CHANGES:-200}
spread_nodes=${SPREAD_NODES:-10}
spread_changes=${SPREAD_CHANGES:-50}
connects=${CONNECTS:-2000}
secs=${SECONDS_PER_RUN:-3}
rounds=${ROUNDS:-7}
niceness=${NICE:--10}
lab_pods=${LAB_PODS:-100}

[[ $(id -u) == 0 ]] || { echo "policy.sh needs root (network namespaces, nftables)" >&2; exit 1; }
for tool in ip nsenter iperf3; do
    command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/deps.sh" >&2; exit 1; }
done

echo "building the examples (release) ..." >&2
(cd "$repo" && cargo build --release -q -p weft-policy --examples)
target=${CARGO_TARGET_DIR:-$repo/target}
scale=$target/release/examples/policy_scale
datapath=$target/release/examples/policy_datapath

prefix="weftpb$$"
export WEFT_BENCH_NETNS=$prefix
files=$(mktemp -d)
cleanup() {
    # Only the namespaces of this run (the examples name them <prefix>-<what>-<pid>-<n>).
    for ns in $(ip netns list | awk '{ print $1 }' | grep "^$prefix-" || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    rm -rf "$files"
}
trap cleanup EXIT INT TERM
run() { nice -n "$niceness" "$@"; }
field() { grep -o "$1=[0-9.]*" "$2" | head -1 | cut -d= -f2; }
verdict() { python3 -c "import sys; print('met' if $1 else 'MISSED')"; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

echo "(1) scale: $policies NetworkPolicies x $pods pods, all on this node; (2) one pod's label change, $changes times per kind"
run "$scale" "$policies" "$pods" "$namespaces" 1 "$changes" | sed 's/^/    /' | tee "$files/scale"
echo
echo "(1b) the same cluster, this node holding 1/$spread_nodes of the pods; $spread_changes changes per kind"
run "$scale" "$policies" "$pods" "$namespaces" "$spread_nodes" "$spread_changes" | sed 's/^/    /' | tee "$files/spread"
echo
if [[ $lab_pods -gt 0 ]]; then
    echo "(4b) a real agent: a 1-node lab with $lab_pods pods, then $policies NetworkPolicies selecting them"
    (cd "$repo" && cargo build --release -q -p weft -p weft-cni --bins)
    weft=$target/release/weft
    lab="pb$$"
    export WEFT_STATE_DIR=$files/state
    lab_cleanup() { "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true; cleanup; }
    trap lab_cleanup EXIT INT TERM
    # The pods: agnhost servers in namespace bench, 10 apps; the policies: each selects one
    # app and lets in another app's pods (podSelector) and a labelled namespace's (namespace
    # selector), on a named and a numbered port.
    /usr/bin/python3 - "$lab_pods" "$policies" "$files/pods.yaml" "$files/policies.yaml" <<'PY'
import sys
pods, policies = int(sys.argv[1]), int(sys.argv[2])
out = open(sys.argv[3], "w")
print("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench, labels: {team: bench}}", file=out)
for app in range(10):
    print(f"""---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app-{app}, namespace: bench}}
spec:
  replicas: {pods // 10}
  selector: {{matchLabels: {{app: app-{app}}}}}
  template:
    metadata: {{labels: {{app: app-{app}}}}}
    spec:
      containers:
        - name: c
          image: registry.k8s.io/e2e-test-images/agnhost:2.53
          args: [netexec, --http-port=8080]
          ports: [{{containerPort: 8080, name: http}}]""", file=out)
out = open(sys.argv[4], "w")
for i in range(policies):
    print(f"""---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p{i:04d}, namespace: bench}}
spec:
  podSelector: {{matchLabels: {{app: app-{i % 10}}}}}
  ingress:
    - from: [{{podSelector: {{matchLabels: {{app: app-{(i + 1 + i // 10) % 10}}}}}}},
             {{namespaceSelector: {{matchLabels: {{team: t{i % 50}}}}}}}]
      ports: [{{port: http}}, {{port: {8000 + i % 100}}}]""", file=out)
PY
    rss_of() { # the agent's VmRSS and VmHWM in MiB, from its pid in the lab's sandbox records
        local pid
        pid=$(/usr/bin/python3 -c '
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/*/nodes/*/sandboxes/*"):
    r = json.load(open(f))
    if r.get("namespace") == "kube-system" and r.get("name", "").startswith("weft-agent-"):
        print(r["containers"]["agent"]["pid"]); break' "$WEFT_STATE_DIR")
        awk '/VmRSS|VmHWM/ { printf "%s %.1f ", $1, $2 / 1024 }' "/proc/$pid/status"
    }
    "$weft" --lab "$lab" lab up --nodes 1 -f "$files/pods.yaml" --wait 600 >/dev/null
    before=$(rss_of)
    KUBECONFIG=$WEFT_STATE_DIR/$lab/kubeconfig "$weft" --lab "$lab" apply -f "$files/policies.yaml" >/dev/null
    sleep 15
    after=$(rss_of)
    kernel_rules=$(ip netns exec "weft_${lab}_${lab}-node1" nft -a list table ip weft_policy 2>/dev/null | grep -c 'handle' || true)
    echo "    agent before the policies: $before; after: $after (MiB); policy table rules+objects: $kernel_rules" | tee "$files/lab"
    agent_rss=$(echo "$after" | grep -o 'VmRSS: [0-9.]*' | cut -d' ' -f2)
    "$weft" --lab "$lab" lab down >/dev/null
    echo
fi

echo "(3) data path: client -> server pod through the node, $connects connects and ${secs}s of iperf3 per condition and round, $rounds rounds"
run "$datapath" "$policies" "$pods" "$namespaces" "$connects" "$secs" "$rounds" | sed 's/^/    /' | tee "$files/datapath"
echo

full=$(field full_ms "$files/scale")
full_cpu=$(field full_cpu_ms "$files/scale")
p50=$(field change_p50_ms "$files/scale")
p99=$(field change_p99_ms "$files/scale")
cpu99=$(field change_cpu_p99_ms "$files/scale")
rss=$(field rss_mib "$files/scale")
spread_full=$(field full_ms "$files/spread")
spread_p99=$(field change_p99_ms "$files/spread")
c50=$(field policy_vs_none_connect_ratio_p50 "$files/datapath")
c99=$(field policy_vs_none_connect_ratio_p99 "$files/datapath")
tput=$(field policy_vs_none_iperf_ratio "$files/datapath")
bare50=$(field nopolicies_connect_ratio_p50 "$files/datapath")
abs50=$(field policy_connect_ratio_p50 "$files/datapath")
abstput=$(field policy_iperf_ratio "$files/datapath")
range() { grep -o "$1=[0-9.]* ([0-9.-]*)" "$2" | head -1 | grep -o '(.*)'; }
echo "policy.sh summary: $policies policies x $pods pods in $namespaces namespaces; $(nproc) CPUs, load $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end, kernel $(uname -r), niceness $niceness"
printf '  %-62s %-24s %s\n' figure measured "target: verdict"
printf '  %-62s %-24s %s\n' \
    "(1) resolve + compile + whole load, all pods on the node" "$full ms (cpu $full_cpu)" "< 1000 ms: $(verdict "$full < 1000")" \
    "    the same, 1/$spread_nodes of the pods on the node" "$spread_full ms" "< 1000 ms: $(verdict "$spread_full < 1000")" \
    "(2) one pod's label change to the kernel, worst kind: p50" "$p50 ms" "< 5 ms: $(verdict "$p50 < 5")" \
    "    p99 (wall-clock)" "$p99 ms" "< 5 ms: $(verdict "$p99 < 5")" \
    "    p99 on CPU (without waiting for one)" "$cpu99 ms" "< 5 ms: $(verdict "$cpu99 < 5")" \
    "    p99, 1/$spread_nodes of the pods on the node" "$spread_p99 ms" "< 5 ms: $(verdict "$spread_p99 < 5")" \
    "(3) TCP connect, $policies policies vs none installed: p50" "${c50}x $(range policy_vs_none_connect_ratio_p50 "$files/datapath")" ">= 0.95x: $(verdict "$c50 >= 0.95")" \
    "    p99" "${c99}x $(range policy_vs_none_connect_ratio_p99 "$files/datapath")" ">= 0.95x: $(verdict "$c99 >= 0.95")" \
    "    iperf3 throughput, $policies policies vs none installed" "${tput}x $(range policy_vs_none_iperf_ratio "$files/datapath")" ">= 0.95x: $(verdict "$tput >= 0.95")" \
    "    weft with no policies vs no table at all: connect p50" "${bare50}x $(range nopolicies_connect_ratio_p50 "$files/datapath")" "(reported)" \
    "    $policies policies vs no table at all: connect p50" "${abs50}x $(range policy_connect_ratio_p50 "$files/datapath")" "(reported)" \
    "    $policies policies vs no table at all: iperf3" "${abstput}x $(range policy_iperf_ratio "$files/datapath")" "(reported)" \
    "(4) RSS holding the view and the loaded table (example's VmRSS)" "$rss MiB" "(reported)" \
    "    a real agent in a lab, $lab_pods pods + $policies policies" "${agent_rss:-not run} MiB" "(reported)"
