#!/usr/bin/env bash
# The lab's Kubernetes API server under load, and the old file store (git 6dc4c46: JSON files, a
# jsonl change log and a flock, written by `weft apply`) as the yardstick, in one run:
#   - create N Services through the API, then re-apply them unchanged (PUT of the current object);
#   - list them (JSON, and the Table kubectl asks for), median and p99 of LISTS lists;
#   - watch latency: WRITES ConfigMap writes one at a time, from each write's response to its
#     event on a watch;
#   - the API server's RSS with N Services and N EndpointSlices of 10 endpoints each;
#   - kubectl apply -f of the same N Services, end to end (informational);
#   - the old store: weft apply -f of the same N Services, a re-apply, and weft get svc -o json.
# Needs root, kubectl, and release builds:
#   cargo build --release -p weft -p weft-cni
#   cargo build --release --manifest-path bench/api/Cargo.toml
#   bash bench/api.sh      (COUNT=10000, LISTS=20, WRITES=1000, CONNS=4, STREAMS=2, KUBECTL=1)
# The old binary is built here from 6dc4c46 in a temporary worktree (into OLD_TARGET, kept for
# the next run) unless OLD_WEFT names one.
set -euo pipefail
export LC_ALL=C  # sort and join agree on the order of the daemon names
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
weft=${WEFT:-$repo/target/release/weft}
client=${API_BENCH:-$here/api/target/release/weft-api-bench}
old_rev=${OLD_REV:-6dc4c46}
old_target=${OLD_TARGET:-/tmp/weft-old-target}
old_weft=${OLD_WEFT:-$old_target/release/weft}
count=${COUNT:-10000}
lists=${LISTS:-20}
writes=${WRITES:-1000}
conns=${CONNS:-4}
streams=${STREAMS:-2}
run_kubectl=${KUBECTL:-1}
for b in "$weft" "$client"; do
    [[ -x $b ]] || { echo "$b not found: see the build commands at the top of $0" >&2; exit 1; }
done
if ((run_kubectl)); then command -v kubectl >/dev/null || { echo "kubectl not found (KUBECTL=0 skips it)" >&2; exit 1; }; fi

out=$(mktemp -d)          # results (one JSON or number per file) and manifests
new_state=$(mktemp -d) old_state=$(mktemp -d)
new_lab="ba$$" old_lab="bo$$"
worktree=""
cleanup() {
    WEFT_STATE_DIR=$new_state "$weft" --lab "$new_lab" lab down >/dev/null 2>&1 || true
    if [[ -x $old_weft ]]; then WEFT_STATE_DIR=$old_state "$old_weft" --lab "$old_lab" lab down >/dev/null 2>&1 || true; fi
    if [[ -n $worktree ]]; then git -C "$repo" worktree remove --force "$worktree" >/dev/null 2>&1 || true; fi
    rm -rf "$out" "$new_state" "$old_state"
}
trap cleanup EXIT INT TERM

if [[ ! -x $old_weft ]]; then
    worktree=/tmp/weft-old-$$
    echo "building weft at $old_rev (the old file store) in $worktree ..." >&2
    git -C "$repo" worktree add --detach "$worktree" "$old_rev" >/dev/null
    cargo build --release -p weft -p weft-cni --manifest-path "$worktree/Cargo.toml" \
        --target-dir "$old_target" >&2
    git -C "$repo" worktree remove --force "$worktree"
    worktree=""
fi

# The same N Services for every writer: ClusterIP, one port, no selector (so hand-made slices
# are theirs), as one file of --- separated documents; and a copy in its own namespace.
python3 - "$count" "$out" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
def doc(i, ns=""):
    meta = f"{{name: bulk{i}{', namespace: ' + ns if ns else ''}}}"
    return f"apiVersion: v1\nkind: Service\nmetadata: {meta}\nspec: {{type: ClusterIP, ports: [{{name: http, port: 80, protocol: TCP}}]}}"
open(f"{out}/services.yaml", "w").write("\n---\n".join(doc(i) for i in range(n)) + "\n")
ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-apply}"
open(f"{out}/services-ns.yaml", "w").write("\n---\n".join([ns] + [doc(i, "weft-apply") for i in range(n)]) + "\n")
PY

now() { date +%s.%N; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# CPU seconds (user + system) of every daemon with a pid file in the lab, as "name seconds".
cpu_of_daemons() {
    local dir=$1 f pid
    find "$dir" -name '*.pid' | sort | while read -r f; do
        pid=$(cat "$f" 2>/dev/null) || continue
        [[ -r /proc/$pid/stat ]] || continue
        local name=${f#"$dir"/}
        awk -v n="${name%.pid}" '{ sub(/^.*\) /, ""); printf "%s %.2f\n", n, ($12 + $13) / 100 }' "/proc/$pid/stat"
    done
}
# CPU seconds the whole machine has been busy (every process, ours and other users').
machine_busy() { awk '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
# Runs "$@" with the daemons' CPU noted before and after, into $out/cpu.<phase>, and the
# machine's busy CPU and the wall time over the phase into $out/machine.<phase>: what the lab
# and the client did not use was other load on the shared machine.
with_cpu() {
    local phase=$1 dir=$2; shift 2
    cpu_of_daemons "$dir" > "$out/cpu0"
    local busy0 t0; busy0=$(machine_busy) t0=$(now)
    "$@"
    echo "$(machine_busy) $busy0 $(now) $t0" | awk '{ printf "%.2f %.2f\n", $1 - $2, $3 - $4 }' > "$out/machine.$phase"
    cpu_of_daemons "$dir" > "$out/cpu1"
    join "$out/cpu0" "$out/cpu1" | awk '{ d = $3 - $2; if (d >= 0.05) printf "%s %.2f\n", $1, d }' > "$out/cpu.$phase"
}
timed() { # seconds of "$@" into $out/$1 (its output discarded; a failure stops the run)
    local name=$1; shift
    local t0; t0=$(now)
    "$@" >/dev/null 2>"$out/$name.err" || { echo "failed: $*" >&2; head -5 "$out/$name.err" >&2; return 1; }
    python3 -c "print('%.3f' % ($(now) - $t0))" > "$out/$name"
}
timed_cpu() { # as timed, and the command's own CPU seconds (user + system) into $out/$1.cpu
    local name=$1; shift
    timed "$name" /usr/bin/time -f '%U %S' -o "$out/$name.rusage" "$@"
    awk '{ print $1 + $2 }' "$out/$name.rusage" > "$out/$name.cpu"
}

cut -d' ' -f1 /proc/loadavg > "$out/load.start"
echo "new: lab up with $weft" >&2
export WEFT_STATE_DIR=$new_state
"$weft" --lab "$new_lab" lab up --nodes 1 >/dev/null
lab_dir=$new_state/$new_lab
url="https://127.0.0.1:$(cat "$lab_dir/apiserver.port")"
apiserver=$(cat "$lab_dir/apiserver.pid")
api() { "$client" "$url" "$lab_dir/pki" "$@"; }
sleep 3
rss_kb "$apiserver" > "$out/rss.start"

echo "new: creating $count Services through the API ..." >&2
with_cpu create "$lab_dir" api create count="$count" conns="$conns" streams="$streams" > "$out/create.json"
sleep 2
rss_kb "$apiserver" > "$out/rss.created"
with_cpu put "$lab_dir" api put conns="$conns" streams="$streams" > "$out/put.json"
echo "new: lists, watch ..." >&2
with_cpu list "$lab_dir" api list times="$lists" > "$out/list.json"
api list times="$lists" table=1 > "$out/list-table.json"
with_cpu watch "$lab_dir" api watch writes="$writes" > "$out/watch.json"
sleep 2
rss_kb "$apiserver" > "$out/rss.services"

echo "new: $count EndpointSlices x 10 endpoints ..." >&2
with_cpu slices "$lab_dir" api slices count="$count" endpoints=10 conns="$conns" streams="$streams" > "$out/slices.json"
# The lab's controller, speaker and node agent react to the slices: 10 s for that (their CPU is
# printed), then the RSS.
with_cpu settle "$lab_dir" sleep 10
rss_kb "$apiserver" > "$out/rss.slices"
api list times=5 > "$out/list-with-slices.json"

if ((run_kubectl)); then
    echo "new: kubectl apply -f of $count Services (a new namespace) ..." >&2
    export KUBECONFIG=$lab_dir/kubeconfig
    # kubectl create sends built-in types as protobuf; apply sends JSON, which the server reads.
    printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: kubectl-bench}\n' | kubectl apply -f - >/dev/null
    with_cpu kubectl "$lab_dir" timed_cpu kubectl.create kubectl apply -n kubectl-bench -f "$out/services.yaml"
    timed_cpu kubectl.reapply kubectl apply -n kubectl-bench -f "$out/services.yaml"
    unset KUBECONFIG
fi
# The new store without the API: weft apply writes the lab's SQLite database itself, as the
# old weft apply wrote the files (a namespace of its own, as the Services in default exist).
timed_cpu new.create "$weft" --lab "$new_lab" apply -f "$out/services-ns.yaml"
timed_cpu new.reapply "$weft" --lab "$new_lab" apply -f "$out/services-ns.yaml"
hwm_kb "$apiserver" > "$out/rss.peak"
"$weft" --lab "$new_lab" lab down >/dev/null

echo "old: lab up with $old_weft ($old_rev)" >&2
export WEFT_STATE_DIR=$old_state
"$old_weft" --lab "$old_lab" lab up --nodes 1 >/dev/null
sleep 3
with_cpu old-create "$old_state/$old_lab" timed_cpu old.create "$old_weft" --lab "$old_lab" apply -f "$out/services.yaml"
timed_cpu old.reapply "$old_weft" --lab "$old_lab" apply -f "$out/services.yaml"
for ((i = 0; i < lists; i++)); do timed "old.list.$i" "$old_weft" --lab "$old_lab" get svc -o json; done
for ((i = 0; i < lists; i++)); do timed "old.table.$i" "$old_weft" --lab "$old_lab" get svc; done
"$old_weft" --lab "$old_lab" get svc -o json | wc -c > "$out/old.list.bytes"
"$old_weft" --lab "$old_lab" lab down >/dev/null
cut -d' ' -f1 /proc/loadavg > "$out/load.end"

python3 - "$out" "$count" "$lists" "$run_kubectl" <<'PY'
import json, math, os, sys
out, n, lists, kubectl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
def js(name): return json.load(open(os.path.join(out, name)))
def num(name): return float(open(os.path.join(out, name)).read())
def pct(xs, q):
    xs = sorted(xs); return xs[max(1, math.ceil(q / 100 * len(xs))) - 1]
def cpu(phase):
    try: rows = [l.split() for l in open(os.path.join(out, "cpu." + phase))]
    except FileNotFoundError: return "-"
    return ", ".join(f"{k} {v}" for k, v in rows) or "none above 0.05 s"
def met(ok): return "met" if ok else "MISSED"

create, put, lst, tbl, watch, slices = (js(f) for f in ("create.json", "put.json", "list.json", "list-table.json", "watch.json", "slices.json"))
old_create, old_reapply = n / num("old.create"), n / num("old.reapply")
old_list = [1000 * num(f"old.list.{i}") for i in range(lists)]
old_table = [1000 * num(f"old.table.{i}") for i in range(lists)]
errors = create["errors"] + put["errors"] + slices["errors"]

print(f"{n} Services, one run. new: the API server over SQLite, driven over {create['conns']} HTTP/2 connections x {create['streams']} streams;")
print(f"old: weft apply / weft get on the file store (6dc4c46), one process per command as a user runs it;")
print(f"{os.cpu_count()} CPUs, load average {num('load.start'):.1f} at the start, {num('load.end'):.1f} at the end")
print(f"{'':42s} {'new':>10s} {'old':>10s} {'new/old':>8s}")
def row(name, a, b, note=""):
    print(f"{name:42s} {a:>10.1f} {b:>10.1f} {a / b:>8.2f}  {note}")
row("create, objects/s", create["per_second"], old_create, f"target >= 2000/s: {met(create['per_second'] >= 2000)}")
row("re-apply unchanged, objects/s", put["per_second"], old_reapply,
    f"PUT of the current object; target >= create: {met(put['per_second'] >= create['per_second'])}")
row("list JSON, median ms", lst["median_ms"], pct(old_list, 50), f"target < 200 ms: {met(lst['p99_ms'] < 200)} (p99)")
row(f"list JSON, p99 ms ({lists} lists)", lst["p99_ms"], pct(old_list, 99))
row("list Table, median ms", tbl["median_ms"], pct(old_table, 50), "old: weft get svc (its text table)")
row(f"list Table, p99 ms ({lists} lists)", tbl["p99_ms"], pct(old_table, 99))
print(f"  sizes: JSON {lst['bytes'] / 1e6:.1f} MB ({lst['items']} items), Table {tbl['bytes'] / 1e6:.1f} MB; old JSON {num('old.list.bytes') / 1e6:.1f} MB."
      f" Errors: {errors}. resourceVersions the unchanged PUTs changed: {put.get('resource_versions_changed')}")
print()
print(f"watch latency, {watch['writes']} ConfigMap writes one at a time (half creates, half updates):")
print(f"  write response -> event  p50 {watch['response_to_event_p50_ms']:6.3f} ms  p99 {watch['response_to_event_p99_ms']:6.3f} ms"
      f"  max {watch['response_to_event_max_ms']:6.3f} ms   target p99 < 10 ms: {met(watch['response_to_event_p99_ms'] < 10)}")
print(f"  write sent -> event      p50 {watch['send_to_event_p50_ms']:6.3f} ms  p99 {watch['send_to_event_p99_ms']:6.3f} ms")
print(f"  the write alone          p50 {watch['write_p50_ms']:6.3f} ms  p99 {watch['write_p99_ms']:6.3f} ms")
print(f"  events read before their write's response (counted as 0): {watch['events_before_response']}; missed (none within 5 s): {watch['missed']}")
print()
mb = lambda name: num(name) / 1024
print(f"API server RSS: {mb('rss.start'):.0f} MiB at start, {mb('rss.created'):.0f} MiB once the {n} Services are created,"
      f" {mb('rss.services'):.0f} MiB after the re-apply, {2 * lists + 4} lists of them and the watch,")
print(f"  {mb('rss.slices'):.0f} MiB with {n} EndpointSlices x 10 endpoints more; peak over the run {mb('rss.peak'):.0f} MiB")
print(f"  slices created at {slices['per_second']:.0f} objects/s; the Service list then: median {js('list-with-slices.json')['median_ms']:.1f} ms")
print()
print(f"the same {n} Services from one file through a CLI, end to end (informational):")
def cli(name, key):
    c, r = num(f"{key}.create"), num(f"{key}.reapply")
    print(f"  {name:38s} create {c:6.1f} s ({n / c:5.0f}/s, its CPU {num(f'{key}.create.cpu'):5.1f} s)"
          f"   unchanged {r:6.1f} s ({n / r:5.0f}/s, CPU {num(f'{key}.reapply.cpu'):5.1f} s)")
if kubectl: cli("kubectl apply -f (through the API)", "kubectl")
cli("new weft apply -f (SQLite, no API)", "new")
cli("old weft apply -f (file store)", "old")
print(f"  new/old weft apply: create {num('old.create') / num('new.create'):.2f}, re-apply {num('old.reapply') / num('new.reapply'):.2f} (rates)")
print()
print("CPU seconds during each phase: the lab's daemons, the client (the bench tool, or the CLI), and the rest of the")
print("machine's busy time ('others': other users' builds and labs, short-lived children; 2 CPUs give 2 CPU-s per second):")
def phase(label, name, client):
    try: rows = [l.split() for l in open(os.path.join(out, "cpu." + name))]
    except FileNotFoundError: return
    busy, wall = (float(x) for x in open(os.path.join(out, "machine." + name)).read().split())
    ours = sum(float(v) for _, v in rows) + client
    daemons = ", ".join(f"{k.split('/')[-1]} {v}" for k, v in rows) or "none above 0.05 s"
    print(f"  {label:22s} {wall:6.1f} s wall: {daemons}; client {client:.2f}; others {max(0.0, busy - ours):.1f}")
phase("new create (API)", "create", create["client_cpu_during"])
phase("new re-apply (PUT)", "put", put["client_cpu_during"])
phase("new JSON lists", "list", lst["client_cpu_seconds"])
phase("new watch", "watch", watch["client_cpu_seconds"])
phase("new slices", "slices", slices["client_cpu_during"])
phase("10 s after the slices", "settle", 0.0)
if kubectl: phase("kubectl apply create", "kubectl", num("kubectl.create.cpu"))
phase("old weft apply create", "old-create", num("old.create.cpu"))
PY
