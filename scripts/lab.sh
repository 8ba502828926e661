#!/usr/bin/env bash
# The main job: build weft, bring up the example cluster (3 nodes, VXLAN overlay, Services), show its
# nodes and pods, a request across nodes, one to the outside host, one through each kind of
# Service address, and the same cluster through the real kubectl.
#   bash scripts/lab.sh [manifest...]     (default: examples/quickstart.yaml; NODES=3)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --quiet --bin weft
# The CNI plugin static: the runtime execs it once per pod, and a static binary skips the dynamic
# loader (0.3-0.5 ms per exec, bench/README.md).
cargo rustc --release --quiet -p weft-cni --bin weft-cni -- -C target-feature=+crt-static
weft=./target/release/weft
manifests=("${@:-examples/quickstart.yaml}")
args=()
for m in "${manifests[@]}"; do args+=(-f "$m"); done
# Start from a clean slate if an earlier run left this lab up.
"$weft" lab down >/dev/null
"$weft" lab up --nodes "${NODES:-3}" "${args[@]}"
echo
"$weft" get nodes -o wide
# One request across the pod network, to a web pod on another node if there is one, as the
# README's tour does it; then one to the outside host, which sees the node's address.
web_ip=$("$weft" get pods -o json | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
client = next(p for p in pods if p["metadata"]["name"] == "client")
webs = [p for p in pods if p["metadata"]["name"].startswith("web-") and p["status"].get("podIP")]
webs.sort(key=lambda p: p["spec"].get("nodeName") == client["spec"].get("nodeName"))
print(webs[0]["status"]["podIP"])' 2>/dev/null || true)
if [[ -n $web_ip ]]; then
    echo
    echo "\$ weft exec client -- curl -s http://$web_ip/clientip      # another node's pod sees the client's pod IP"
    "$weft" exec client -- curl -s --max-time 5 "http://$web_ip/clientip"
    echo
    echo "\$ weft exec client -- curl -s http://203.0.113.10/clientip  # the outside host sees the node IP"
    "$weft" exec client -- curl -s --max-time 5 "http://203.0.113.10/clientip"
    echo
fi
# Services of every type for those pods, and one request through each kind of address.
if [[ $# -eq 0 ]]; then
    echo
    "$weft" apply -f examples/services.yaml
    svc_field() { "$weft" get svc "$1" -o json | python3 -c "import json,sys; s=json.load(sys.stdin); print($2)"; }
    cluster_ip=$(svc_field web 's["spec"]["clusterIP"]')
    # The LoadBalancer address comes from weft's controller a moment after the Service exists.
    lb_ip=""
    for _ in $(seq 100); do
        lb_ip=$(svc_field web-lb 's.get("status", {}).get("loadBalancer", {}).get("ingress", [{}])[0].get("ip", "")')
        [[ -n $lb_ip ]] && break
        sleep 0.1
    done
    for _ in $(seq 50); do "$weft" exec client -- curl -s --max-time 1 -o /dev/null "http://$cluster_ip/" && break; sleep 0.2; done
    echo
    "$weft" get svc
    echo
    echo "\$ weft exec client -- curl -s http://$cluster_ip/hostname     # a ClusterIP, balanced in the kernel"
    "$weft" exec client -- curl -s --max-time 5 "http://$cluster_ip/hostname"
    echo
    echo "\$ weft exec client -- curl -s http://web/hostname          # the same Service by name (the cluster DNS)"
    "$weft" exec client -- curl -s --max-time 5 "http://web/hostname"
    echo
    echo "\$ weft exec client -- curl -s http://www.example.org/clientip   # outside by name: forwarded to the outside host's DNS server"
    "$weft" exec client -- curl -s --max-time 5 "http://www.example.org/clientip"
    echo
    echo "\$ weft lab outside -- curl -s http://172.20.0.2:30080/hostname   # a NodePort from outside"
    "$weft" lab outside -- curl -s --max-time 5 "http://172.20.0.2:30080/hostname"
    echo
    echo "\$ weft lab outside -- curl -s http://$lb_ip/clientip   # a LoadBalancer (Local: the client address is kept)"
    "$weft" lab outside -- curl -s --max-time 5 "http://$lb_ip/clientip"
    echo
fi
# The lab is a Kubernetes API endpoint: the tutorials' kubectl commands work against it.
kubeconfig=$("$weft" lab list | awk '$1 == "weft" {print $5}')
if [[ -n $kubeconfig ]] && command -v kubectl >/dev/null; then
    echo "\$ export KUBECONFIG=$kubeconfig"
    export KUBECONFIG=$kubeconfig
    echo "\$ kubectl create deployment hello --image=nginx --replicas=2 && kubectl expose deployment hello --port=80"
    kubectl create deployment hello --image=nginx --replicas=2
    kubectl expose deployment hello --port=80
    kubectl rollout status deployment hello --timeout=60s
    echo "\$ kubectl get pods -o wide -l app=hello; kubectl get endpoints hello"
    kubectl get pods -o wide -l app=hello
    kubectl get endpoints hello
    hello_ip=$(kubectl get svc hello -o jsonpath='{.spec.clusterIP}')
    echo "\$ kubectl exec client -c app -- curl -s http://$hello_ip/hostname"
    for _ in $(seq 50); do kubectl exec client -c app -- curl -s --max-time 1 -o /dev/null "http://$hello_ip/" && break; sleep 0.2; done
    kubectl exec client -c app -- curl -s --max-time 5 "http://$hello_ip/hostname"
    echo "\$ kubectl get ds,deploy -n kube-system   # weft itself, from deploy/ as on a real cluster: the agent and the controller"
    kubectl get ds,deploy -n kube-system
    echo
fi
echo
echo "Explore with $weft (get, exec, logs, apply, delete; --help on each) or kubectl (KUBECONFIG above)."
echo "Remove it all: $weft lab down"
