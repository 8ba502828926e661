#!/usr/bin/env bash
# Installs what weft needs on a Debian 12 machine (as root). Quiet, and quick when all is there.
set -euo pipefail
packages=(nftables iproute2 iptables containernetworking-plugins podman runc busybox-static curl dnsutils iperf3 procps)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
