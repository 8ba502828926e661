#!/usr/bin/env bash
# Benchmarks weft-cni against Debian's reference bridge + host-local in the same run:
# N pod ADDs, then N DELs, per plugin, each plugin in its own fresh network namespace playing the
# node ("host"), with N pod namespaces per plugin created beforehand (not timed). Prints the
# per-operation mean and median for both, the ratios reference/weft and whether each target is
# met. A DEL is reported as returned (what the runtime waits for) and as complete (until the
# pod's host link is gone and every process the plugin left behind has exited). Needs root,
# iproute2, python3, containernetworking-plugins and a release build of weft-cni, linked
# statically as it is shipped (see bench/README.md):
#   cargo rustc --release -p weft-cni --bin weft-cni -- -C target-feature=+crt-static
# Removes everything it creates on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
N=${N:-100}
# Operations run in blocks of BLOCK, alternating plugins block by block, so a burst of load on
# the (shared) machine hits both plugins alike instead of whichever happened to run then.
BLOCK=${BLOCK:-10}
WEFT_CNI=${WEFT_CNI:-$here/../target/release/weft-cni}
REF_DIR=${REF_DIR:-/usr/lib/cni}
SUBNET=${SUBNET:-10.244.1.0/24}
# Where both plugins keep their IPAM store. On disk by default, like /var/lib/cni on a node: the
# file creations are part of an ADD. IPAM_ROOT=/dev/shm (tmpfs) takes the disk out of the picture.
IPAM_ROOT=${IPAM_ROOT:-/var/tmp}
# Everything this run creates carries the pid, so concurrent runs and other tools are untouched.
PREFIX="weftbench-$$-"

die() { echo "cni.sh: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (creates network namespaces)"
command -v ip >/dev/null || die "ip not found: install iproute2"
command -v python3 >/dev/null || die "python3 not found (it makes the timing shell a subreaper)"
[[ -x $WEFT_CNI ]] || die "weft-cni not found at $WEFT_CNI: see the build command at the top of $0, or set WEFT_CNI"
for p in bridge host-local; do
  [[ -x $REF_DIR/$p ]] || die "$REF_DIR/$p not found: install containernetworking-plugins"
done
(( N > 0 && N < 250 )) || die "N=$N: must be 1..249 (one /24 of pod addresses)"
(( BLOCK > 0 )) || die "BLOCK=$BLOCK: must be positive"

# The harness's own files (configs, results, timings) live on tmpfs (/dev/shm: /run is not a
# tmpfs on every machine): creating a file on disk can take milliseconds under load, which would
# pollute every sample.
WORK=$(mktemp -d /dev/shm/weft-bench.XXXXXX)
IPAM=$(mktemp -d "$IPAM_ROOT/weft-bench-ipam.XXXXXX")
cleanup() {
  local ns
  # Deleting a host namespace also removes the veths, bridge and routes the plugins made in it;
  # deleting a pod namespace removes the pod side. Only names with this run's prefix are touched.
  for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX" || true); do
    ip netns del "$ns" 2>/dev/null || echo "cni.sh: could not delete netns $ns" >&2
  done
  rm -rf "$WORK" "$IPAM"
}
# Everything runs in this shell (no background jobs), so a signal's trap fires between commands
# and cleanup never races a loop that is still creating or using namespaces.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The timed part, run inside a plugin's host namespace: operations from..to of one phase, each
# timed on its own (appended to <dir>/<phase>.us, one microsecond count per line).
# Args: phase (ADD|DEL), label, plugin binary, work dir, from, to, netns prefix, CNI_PATH, and the
# pattern of the pod's host-side link name in the ADD result ("" when there is none).
#
# A DEL is also timed "as complete" (<dir>/DEL-complete.us): until the host link is gone and the
# shell has no child left. This shell is made a subreaper (see `block`), so a process a plugin
# detaches to finish its work (weft-cni deletes its veth so) is reparented here and counted; and
# the next operation, of either plugin, starts only once that work is done, so no plugin's
# deferred kernel work lands in another's timed window.
run_block() {
  local phase=$1 label=$2 plugin=$3 dir=$4 from=$5 to=$6 prefix=$7 cni_path=$8 host_link=$9
  local conf i t0 t1 t2 link nap kids
  conf=$(<"$dir/conf.json")
  export CNI_IFNAME=eth0 CNI_PATH=$cni_path CNI_ARGS=
  # A pipe nobody writes to: `read -t` on it sleeps without forking a process.
  exec {nap}<> <(:)
  fail() {
    echo "cni.sh: $label $phase #$1 failed; stdout:" >&2
    cat "$dir/res-$1.json" >&2
    echo "stderr:" >&2
    cat "$dir/err-$1" >&2
    exit 1
  }
  # True while this shell has a child (a plugin's leftover, or a zombie not yet reaped).
  has_children() {
    kids=
    read -r kids <"/proc/$$/task/$$/children" || true
    [[ -n $kids ]]
  }
  for ((i = from; i <= to; i++)); do
    link=
    if [[ $phase == DEL ]]; then
      # A runtime hands DEL the cached ADD result as prevResult; building that is not timed.
      printf '%s' "${conf%\}},\"prevResult\":$(<"$dir/out-$i.json")}" >"$dir/in-$i.json"
      if [[ -n $host_link && $(<"$dir/out-$i.json") =~ \"name\":\"($host_link)\" ]]; then
        link=${BASH_REMATCH[1]}
      fi
    else
      printf '%s' "$conf" >"$dir/in-$i.json"
    fi
    # Nothing of the previous operation may still run when this one is timed.
    while has_children; do read -r -t 0.0002 -u "$nap" || true; done
    t0=$EPOCHREALTIME
    CNI_COMMAND=$phase CNI_CONTAINERID=bench-$i CNI_NETNS=/run/netns/${prefix}$label-pod$i \
      "$plugin" <"$dir/in-$i.json" >"$dir/res-$i.json" 2>"$dir/err-$i" || fail "$i"
    t1=$EPOCHREALTIME
    echo $(( ${t1//[!0-9]/} - ${t0//[!0-9]/} )) >>"$dir/$phase.us"
    if [[ $phase == DEL ]]; then
      while [[ -n $link && -e /sys/class/net/$link ]] || has_children; do
        read -r -t 0.0002 -u "$nap" || true
      done
      t2=$EPOCHREALTIME
      echo $(( ${t2//[!0-9]/} - ${t0//[!0-9]/} )) >>"$dir/DEL-complete.us"
    else
      # Keep ADD results for the DEL phase; DEL prints nothing on success.
      mv "$dir/res-$i.json" "$dir/out-$i.json"
    fi
  done
}

# label -> plugin binary, and the pattern of its pods' host-side link names.
declare -A PLUGIN HOST_LINK

# Creates label's host namespace, its N pod namespaces and its config (none of it timed).
setup() {
  local label=$1 plugin=$2 conf=$3 pods=$4 host_link=$5 i
  PLUGIN[$label]=$plugin
  HOST_LINK[$label]=$host_link
  mkdir -p "$WORK/$label"
  printf '%s' "$conf" >"$WORK/$label/conf.json"
  ip netns add "${PREFIX}$label-host"
  ip -n "${PREFIX}$label-host" link set lo up
  if [[ $pods == pods ]]; then
    for ((i = 1; i <= N; i++)); do
      ip netns add "${PREFIX}$label-pod$i"
    done
  fi
}

# Runs one block of one phase for label in its host namespace, in a shell that is a subreaper
# (prctl PR_SET_CHILD_SUBREAPER, kept across exec): orphans of the plugin become its children.
block() {
  local phase=$1 label=$2 from=$3 to=$4
  ip netns exec "${PREFIX}$label-host" python3 -c '
import ctypes, os, sys
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("cni.sh: prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()))
os.execvp("bash", ["bash"] + sys.argv[1:])' \
    -c "$(declare -f run_block); run_block \"\$@\"" \
    run_block "$phase" "$label" "${PLUGIN[$label]}" "$WORK/$label" "$from" "$to" "$PREFIX" "$REF_DIR" \
    "${HOST_LINK[$label]}"
}

# All ADDs, then all DELs, in blocks; the order of the labels rotates every block.
run_phase() {
  local phase=$1 from to j k=0 label
  shift
  local labels=("$@")
  for ((from = 1; from <= N; from += BLOCK)); do
    to=$(( from + BLOCK - 1 > N ? N : from + BLOCK - 1 ))
    for ((j = 0; j < ${#labels[@]}; j++)); do
      label=${labels[$(( (j + k) % ${#labels[@]} ))]}
      block "$phase" "$label" "$from" "$to"
    done
    k=$(( k + 1 ))
  done
}

# The kernel's own cost per pod interface: N veth pairs created into a pod namespace, then
# deleted, each batch in one `ip -batch` process (only the batch mean is known, so mean =
# median). A DEL that removes a veth waits for the kernel to unregister the device, which is
# most of this number.
kernel_floor() {
  local host=${PREFIX}kernel-host pod=${PREFIX}kernel-pod i t0 t1
  ip netns add "$host"
  ip netns add "$pod"
  for ((i = 1; i <= N; i++)); do echo "link add kf$i type veth peer name kp$i netns $pod"; done \
    >"$WORK/kernel-add.batch"
  for ((i = 1; i <= N; i++)); do echo "link del kf$i"; done >"$WORK/kernel-del.batch"
  t0=$EPOCHREALTIME
  ip -n "$host" -batch "$WORK/kernel-add.batch"
  t1=$EPOCHREALTIME
  mkdir -p "$WORK/kernel"
  echo $(( (${t1//[!0-9]/} - ${t0//[!0-9]/}) / N )) >"$WORK/kernel/ADD.us"
  t0=$EPOCHREALTIME
  ip -n "$host" -batch "$WORK/kernel-del.batch"
  t1=$EPOCHREALTIME
  echo $(( (${t1//[!0-9]/} - ${t0//[!0-9]/}) / N )) >"$WORK/kernel/DEL.us"
  ip netns del "$pod"
  ip netns del "$host"
}

# The DELs must have undone the ADDs: nothing but lo (and the reference's bridge) is left. Every
# DEL was waited for until complete, so anything left now is a leak.
check_clean() {
  local label=$1 left
  left=$(ip -n "${PREFIX}$label-host" -o link show | awk -F': ' '{print $2}' \
    | grep -v -e '^lo$' -e '^benchbr0$' || true)
  [[ -z $left ]] || die "$label left links behind after DEL: $left"
}

weft_conf='{"cniVersion":"1.0.0","name":"benchweft","type":"weft-cni","mtu":1500,"ipam":{"subnet":"'$SUBNET'","dataDir":"'$IPAM'/weft"}}'
ref_conf='{"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":"benchbr0","isGateway":true,"ipam":{"type":"host-local","subnet":"'$SUBNET'","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$IPAM'/ref"}}'

# Which weft-cni is measured: a dynamically linked one pays the loader on every exec.
if readelf -d "$WEFT_CNI" 2>/dev/null | grep '(NEEDED)' >/dev/null; then linkage=dynamic; else linkage=static; fi
echo "cni.sh: $N ADDs then $N DELs per plugin, interleaved in blocks of $BLOCK, IPAM under $IPAM_ROOT ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r))"
echo "cni.sh: weft-cni $WEFT_CNI ($linkage, $(stat -c %s "$WEFT_CNI") bytes)"
setup weft "$WEFT_CNI" "$weft_conf" pods 'weft[0-9a-f]{11}'
setup ref "$REF_DIR/bridge" "$ref_conf" pods 'veth[0-9a-f]{8}'
# /bin/true as a "plugin": fork+exec+redirections of the same loop, nothing else.
setup exec /bin/true '{}' nopods ''
run_phase ADD weft ref exec
run_phase DEL weft ref exec
check_clean weft
check_clean ref
kernel_floor

# mean and median of a label's phase, in ms: "<mean> <median>".
stats() {
  sort -n "$WORK/$1/$2.us" | awk '{ v[NR] = $1; sum += $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.2f %.2f\n", sum / NR / 1000, m / 1000 }'
}
row() {
  local mean_add median_add mean_del median_del
  read -r mean_add median_add < <(stats "$2" ADD)
  read -r mean_del median_del < <(stats "$2" DEL)
  printf '%-24s %9s ms %9s ms   %9s ms %9s ms\n' "$1" "$mean_add" "$mean_del" "$median_add" "$median_del"
}
complete_row() {
  local mean median
  read -r mean median < <(stats "$1" DEL-complete)
  printf '%-24s %12s %9s ms   %12s %9s ms\n' "  DEL as complete" "" "$mean" "" "$median"
}
# ratio reference/weft of the means of a phase, and the verdict against the target.
ratio() {
  local w r
  read -r w _ < <(stats weft "$1")
  read -r r _ < <(stats ref "$2")
  awk -v w="$w" -v r="$r" -v t="$3" 'BEGIN { printf "%.1fx (target >= %dx: %s)", r / w, t, (r / w >= t ? "met" : "MISSED") }'
}

printf '%-24s %12s %12s   %12s %12s\n' plugin "ADD mean" "DEL mean" "ADD median" "DEL median"
row weft-cni weft
complete_row weft
row "bridge + host-local" ref
complete_row ref
echo "ratio reference/weft (means):"
echo "  ADD                  $(ratio ADD ADD 5)"
echo "  DEL as returned      $(ratio DEL DEL 10)"
echo "  DEL as complete      $(ratio DEL-complete DEL-complete 10)"
echo "yardsticks (costs any plugin pays on this machine):"
row "exec floor (/bin/true)" exec
row "kernel veth add/del" kernel
