#!/usr/bin/env bash
# Benchmarks weft-cni against Debian's reference bridge + host-local in the same run:
# N pod ADDs, then N DELs, per plugin, each plugin in its own fresh network namespace playing the
# node ("host"), with N pod namespaces per plugin created beforehand (not timed). Prints the
# per-operation mean for both and the ratios reference/weft. Needs root, iproute2,
# containernetworking-plugins and a release build of weft-cni (see bench/README.md). Removes
# everything it creates on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
N=${N:-100}
# Operations run in blocks of BLOCK, alternating plugins block by block, so a burst of load on
# the (shared) machine hits both plugins alike instead of whichever happened to run then.
BLOCK=${BLOCK:-10}
WEFT_CNI=${WEFT_CNI:-$here/../target-bench/release/weft-cni}
REF_DIR=${REF_DIR:-/usr/lib/cni}
SUBNET=${SUBNET:-10.244.1.0/24}
# Everything this run creates carries the pid, so concurrent runs and other tools are untouched.
PREFIX="weftbench-$$-"

die() { echo "cni.sh: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (creates network namespaces)"
command -v ip >/dev/null || die "ip not found: install iproute2"
[[ -x $WEFT_CNI ]] || die "weft-cni not found at $WEFT_CNI: run CARGO_TARGET_DIR=target-bench cargo build --release -p weft-cni, or set WEFT_CNI"
for p in bridge host-local; do
  [[ -x $REF_DIR/$p ]] || die "$REF_DIR/$p not found: install containernetworking-plugins"
done
(( N > 0 && N < 250 )) || die "N=$N: must be 1..249 (one /24 of pod addresses)"
(( BLOCK > 0 )) || die "BLOCK=$BLOCK: must be positive"

WORK=$(mktemp -d /tmp/weft-bench.XXXXXX)
cleanup() {
  local ns
  # Deleting a host namespace also removes the veths, bridge and routes the plugins made in it;
  # deleting a pod namespace removes the pod side. Only names with this run's prefix are touched.
  for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX" || true); do
    ip netns del "$ns" 2>/dev/null || echo "cni.sh: could not delete netns $ns" >&2
  done
  rm -rf "$WORK"
}
# Everything runs in this shell (no background jobs), so a signal's trap fires between commands
# and cleanup never races a loop that is still creating or using namespaces.
trap cleanup EXIT
trap 'exit 130' INT TERM

# The timed part, run inside a plugin's host namespace: operations from..to of one phase.
# Args: phase (ADD|DEL), label, plugin binary, work dir, from, to, netns prefix, CNI_PATH.
# Prints the block's wall time in microseconds.
run_block() {
  local phase=$1 label=$2 plugin=$3 dir=$4 from=$5 to=$6 prefix=$7 cni_path=$8
  local conf i t0 t1
  conf=$(<"$dir/conf.json")
  export CNI_IFNAME=eth0 CNI_PATH=$cni_path CNI_ARGS=
  fail() {
    echo "cni.sh: $label $phase #$1 failed; stdout:" >&2
    cat "$dir/out-$1.json" >&2
    echo "stderr:" >&2
    cat "$dir/err-$1" >&2
    exit 1
  }
  if [[ $phase == DEL ]]; then
    # A runtime hands DEL the cached ADD result as prevResult; building that is not timed.
    for ((i = from; i <= to; i++)); do
      printf '%s' "${conf%\}},\"prevResult\":$(<"$dir/out-$i.json")}" >"$dir/in-$i.json"
    done
  else
    for ((i = from; i <= to; i++)); do
      printf '%s' "$conf" >"$dir/in-$i.json"
    done
  fi
  t0=$EPOCHREALTIME
  for ((i = from; i <= to; i++)); do
    CNI_COMMAND=$phase CNI_CONTAINERID=bench-$i CNI_NETNS=/run/netns/${prefix}$label-pod$i \
      "$plugin" <"$dir/in-$i.json" >"$dir/res-$i.json" 2>"$dir/err-$i" || fail "$i"
  done
  t1=$EPOCHREALTIME
  # Keep ADD results for the DEL phase; DEL prints nothing on success.
  if [[ $phase == ADD ]]; then
    for ((i = from; i <= to; i++)); do mv "$dir/res-$i.json" "$dir/out-$i.json"; done
  fi
  echo $(( ${t1//[!0-9]/} - ${t0//[!0-9]/} ))
}

# label -> plugin binary, and the per-label running totals (microseconds).
declare -A PLUGIN ADD_US DEL_US

# Creates label's host namespace, its N pod namespaces and its config (none of it timed).
setup() {
  local label=$1 plugin=$2 conf=$3 pods=$4 i
  PLUGIN[$label]=$plugin
  ADD_US[$label]=0
  DEL_US[$label]=0
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

# Runs one block of one phase for label in its host namespace and adds it to the totals.
block() {
  local phase=$1 label=$2 from=$3 to=$4 us
  us=$(ip netns exec "${PREFIX}$label-host" bash -c "$(declare -f run_block); run_block \"\$@\"" \
    run_block "$phase" "$label" "${PLUGIN[$label]}" "$WORK/$label" "$from" "$to" "$PREFIX" "$REF_DIR")
  if [[ $phase == ADD ]]; then
    ADD_US[$label]=$(( ${ADD_US[$label]} + us ))
  else
    DEL_US[$label]=$(( ${DEL_US[$label]} + us ))
  fi
}

# All ADDs, then all DELs, in blocks; the order of the labels rotates every block.
run_phase() {
  local phase=$1 from to k=0 label
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
# deleted, each batch in one `ip -batch` process. A DEL that removes a veth waits for the kernel
# to unregister the device, which is most of this number.
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
  ADD_US[kernel]=$(( ${t1//[!0-9]/} - ${t0//[!0-9]/} ))
  t0=$EPOCHREALTIME
  ip -n "$host" -batch "$WORK/kernel-del.batch"
  t1=$EPOCHREALTIME
  DEL_US[kernel]=$(( ${t1//[!0-9]/} - ${t0//[!0-9]/} ))
  ip netns del "$pod"
  ip netns del "$host"
}

# The DELs must have undone the ADDs: nothing but lo (and the reference's bridge) is left.
check_clean() {
  local label=$1 left
  left=$(ip -n "${PREFIX}$label-host" -o link show | awk -F': ' '{print $2}' \
    | grep -v -e '^lo$' -e '^benchbr0$' || true)
  [[ -z $left ]] || die "$label left links behind after DEL: $left"
}

weft_conf='{"cniVersion":"1.0.0","name":"benchweft","type":"weft-cni","mtu":1500,"ipam":{"subnet":"'$SUBNET'","dataDir":"'$WORK'/weft/ipam"}}'
ref_conf='{"cniVersion":"1.0.0","name":"benchref","type":"bridge","bridge":"benchbr0","isGateway":true,"ipam":{"type":"host-local","subnet":"'$SUBNET'","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$WORK'/ref/ipam"}}'

echo "cni.sh: $N ADDs then $N DELs per plugin, interleaved in blocks of $BLOCK ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r))"
setup weft "$WEFT_CNI" "$weft_conf" pods
setup ref "$REF_DIR/bridge" "$ref_conf" pods
# /bin/true as a "plugin": fork+exec+redirections of the same loop, nothing else.
setup exec /bin/true '{}' nopods
run_phase ADD weft ref exec
run_phase DEL weft ref exec
check_clean weft
check_clean ref
kernel_floor

awk -v n="$N" -v wa="${ADD_US[weft]}" -v wd="${DEL_US[weft]}" -v ra="${ADD_US[ref]}" \
  -v rd="${DEL_US[ref]}" -v ka="${ADD_US[kernel]}" -v kd="${DEL_US[kernel]}" \
  -v ea="${ADD_US[exec]}" -v ed="${DEL_US[exec]}" 'BEGIN {
  printf "%-24s %12s %12s\n", "plugin", "ADD mean", "DEL mean"
  printf "%-24s %9.2f ms %9.2f ms\n", "weft-cni", wa / n / 1000, wd / n / 1000
  printf "%-24s %9.2f ms %9.2f ms\n", "bridge + host-local", ra / n / 1000, rd / n / 1000
  printf "%-24s %11.1fx %11.1fx\n", "ratio reference/weft", ra / wa, rd / wd
  printf "target: ADD >= 5x (%s), DEL >= 10x (%s)\n", (ra / wa >= 5 ? "met" : "MISSED"), (rd / wd >= 10 ? "met" : "MISSED")
  printf "yardsticks (costs any plugin pays on this machine):\n"
  printf "%-24s %9.2f ms %9.2f ms\n", "exec floor (/bin/true)", ea / n / 1000, ed / n / 1000
  printf "%-24s %9.2f ms %9.2f ms\n", "kernel veth add/del", ka / n / 1000, kd / n / 1000
}'
