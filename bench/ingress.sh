#!/usr/bin/env bash
# The ingress controller against Debian's nginx, in one run (needs root, wrk, h2load and nginx; see
# scripts/deps.sh). A 2-node lab (its state in a temporary directory, taken down at the end or by
# the trap) with BACKENDS backend pods behind a Service and an Ingress (plain and TLS); Debian's
# nginx runs in the weft ingress pod's own network namespace, configured as the equivalent reverse
# proxy (the same backend pod addresses, HTTP/1.1 keep-alive upstream, TLS with the same
# certificate, HTTP/2, the same forwarding headers as weft sets, an access log in the same
# ingress-nginx format), so both proxies share the same cores, network path and backends. The clients run on a lab node, alternating weft and nginx round by round:
#   (1) HTTP/1.1 keep-alive: wrk -c CONNS, requests/s and p99 latency;
#   (2) HTTPS (HTTP/1.1 over TLS): wrk;
#   (3) HTTP/2 over TLS: h2load, requests/s and mean latency;
#   (4) the route table with INGRESSES Ingresses: compile + swap time (the controller's own
#       metric), and the controller's RSS before and after.
# Ratios are weft / nginx for requests/s (>= 1.0 is the target) and nginx / weft for latency.
#   bash bench/ingress.sh   (BACKENDS=2 CONNS=32 SECONDS_PER_RUN=8 ROUNDS=3 INGRESSES=1000)
# Nothing outside the lab's namespaces is touched; nginx is started with its own config and pid
# file and stopped by pid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
backends=${BACKENDS:-2}
conns=${CONNS:-32}
secs=${SECONDS_PER_RUN:-8}
rounds=${ROUNDS:-3}
ingresses=${INGRESSES:-1000}

[[ $(id -u) == 0 ]] || { echo "ingress.sh needs root (a lab)" >&2; exit 1; }
for tool in wrk h2load nginx openssl ip; do
    command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/deps.sh" >&2; exit 1; }
done
echo "building weft (release) ..." >&2
(cd "$repo" && cargo build --release -q -p weft -p weft-cni --bins)
target=${CARGO_TARGET_DIR:-$repo/target}
weft=$target/release/weft

files=$(mktemp -d)
export WEFT_STATE_DIR=$files/state
lab="ib$$"
nginx_pid=""
cleanup() {
    if [[ -n $nginx_pid ]]; then kill "$nginx_pid" 2>/dev/null || true; fi
    "$weft" --lab "$lab" lab down >/dev/null 2>&1 || true
    rm -rf "$files"
}
trap cleanup EXIT INT TERM
export KUBECONFIG=$WEFT_STATE_DIR/$lab/kubeconfig
k() { "$weft" --lab "$lab" "$@"; }

# The backends (weft's nginx workload: answers its pod name) and the Ingress, plain and TLS.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench.example.com \
    -addext subjectAltName=DNS:bench.example.com -keyout "$files/tls.key" -out "$files/tls.crt" 2>/dev/null
cat > "$files/bench.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
spec:
  replicas: $backends
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      containers: [{name: c, image: nginx:1.27, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
k lab up --nodes 2 -f "$files/bench.yaml" --wait 180 >/dev/null
kubectl create secret tls bench-tls --cert "$files/tls.crt" --key "$files/tls.key" >/dev/null
cat > "$files/ingress.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, annotations: {nginx.ingress.kubernetes.io/ssl-redirect: "false"}}
spec:
  tls: [{hosts: [bench.example.com], secretName: bench-tls}]
  rules:
    - host: bench.example.com
      http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {number: 80}}}}]}
EOF
k apply -f "$files/ingress.yaml" >/dev/null

# Where everything is: the ingress pod (its address and namespace), the backends, a node.
json() { k get pods -A -o json; }
ingress_ip=$(json | /usr/bin/python3 -c 'import json,sys
for p in json.load(sys.stdin)["items"]:
    if p["metadata"]["namespace"] == "weft-system": print(p["status"]["podIP"]); break')
backend_ips=$(json | /usr/bin/python3 -c 'import json,sys
print(" ".join(p["status"]["podIP"] for p in json.load(sys.stdin)["items"] if p["metadata"]["labels"].get("app") == "backend"))')
record() { # the ingress pod's sandbox record: its network namespace and the controller's pid
    /usr/bin/python3 -c '
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/*/nodes/*/sandboxes/*"):
    r = json.load(open(f))
    if r.get("namespace") == "weft-system":
        print(r[sys.argv[2]] if sys.argv[2] != "pid" else r["containers"]["ingress"]["pid"]); break' "$WEFT_STATE_DIR" "$1"
}
ingress_pid=$(record pid)
pod_netns=$(ip netns identify "$ingress_pid")
node_netns="weft_${lab}_${lab}-node1"
[[ -n $ingress_ip && -n $pod_netns && -n $backend_ips ]] || { echo "could not find the ingress pod" >&2; exit 1; }

# Debian's nginx beside it: same pod, ports 8080 and 8443, the same backends.
mkdir -p "$files/nginx"
{
    echo "worker_processes 2; pid $files/nginx/nginx.pid; error_log $files/nginx/error.log;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    # ingress-nginx's log format, as weft writes it (the upstream name is a constant here).
    echo "  log_format weft '\$remote_addr - \$remote_user [\$time_local] \"\$request\" \$status \$body_bytes_sent \"\$http_referer\" \"\$http_user_agent\" \$request_length \$request_time [default-backend-80] [] \$upstream_addr';"
    echo "  access_log $files/nginx/access.log weft; client_body_temp_path $files/nginx; proxy_temp_path $files/nginx;"
    echo "  fastcgi_temp_path $files/nginx; uwsgi_temp_path $files/nginx; scgi_temp_path $files/nginx;"
    echo "  upstream backend { keepalive 64;"
    for ip in $backend_ips; do echo "    server $ip:80;"; done
    echo "  }"
    echo "  server { listen 8080 reuseport; listen 8443 ssl http2 reuseport; server_name bench.example.com;"
    echo "    ssl_certificate $files/tls.crt; ssl_certificate_key $files/tls.key;"
    echo "    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    echo "      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; proxy_set_header X-Real-IP \$remote_addr;"
    echo "      proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host; proxy_set_header X-Forwarded-Port \$server_port; } }"
    echo "}"
} > "$files/nginx/nginx.conf"
ip netns exec "$pod_netns" nginx -c "$files/nginx/nginx.conf" -p "$files/nginx" -g 'daemon on;'
nginx_pid=$(cat "$files/nginx/nginx.pid")
sleep 1

# Both answer through their proxies before measuring.
client() { ip netns exec "$node_netns" "$@"; }
for url in "http://$ingress_ip:80/" "http://$ingress_ip:8080/"; do
    client curl -sf -m 5 -H 'Host: bench.example.com' "$url" >/dev/null || { echo "no answer from $url" >&2; exit 1; }
done

wrk_run() { # URL -> "rps p99_ms requests"
    client wrk -t2 -c"$conns" -d"${secs}s" --latency -H 'Host: bench.example.com' "$1" > "$files/wrk.out" 2>&1 || true
    /usr/bin/python3 - "$files/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
requests = int(re.search(r"(\d+) requests in", t).group(1))
print(rps, p99, requests)
PY
}
h2_run() { # URL -> "rps mean_ms"
    client h2load -n $((conns * 500)) -c "$conns" -m 10 --connect-to="$2" "$1" > "$files/h2.out" 2>&1 || true
    /usr/bin/python3 - "$files/h2.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", t).group(1))
m = re.search(r"time for request:\s+[\d.]+(?:us|ms|s)\s+[\d.]+(?:us|ms|s)\s+([\d.]+)(us|ms|s)", t)
mean = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
ok = re.search(r"(\d+) succeeded", t).group(1)
print(rps, mean, ok)
PY
}

echo "weft ingress vs Debian nginx $(nginx -v 2>&1 | cut -d/ -f2), same pod, $backends backends, $conns connections, ${secs}s x $rounds rounds each; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
# The proxy's own CPU time (user + system, in clock ticks): the controller process, or nginx's
# workers. Per request, it is the cost that does not depend on what else shares the cores.
proxy_ticks() {
    local pids=$ingress_pid t=0
    [[ $1 == nginx ]] && pids=$(pgrep -P "$nginx_pid")
    for p in $pids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
hz=$(getconf CLK_TCK)
declare -A rps p99 cpu
for round in $(seq "$rounds"); do
    # Each round in the other order, so neither always runs first.
    order="weft nginx"; (( round % 2 == 0 )) && order="nginx weft"
    for who in $order; do
        if [[ $who == weft ]]; then http=80; https=443; else http=8080; https=8443; fi
        t0=$(proxy_ticks "$who")
        read -r r l n < <(wrk_run "http://$ingress_ip:$http/")
        t1=$(proxy_ticks "$who")
        rps[$who,http]+="$r "; p99[$who,http]+="$l "
        cpu[$who]+="$(awk "BEGIN{print ($t1 - $t0) * 1e6 / $hz / $n}") "
        read -r r l e < <(wrk_run "https://$ingress_ip:$https/")
        rps[$who,https]+="$r "; p99[$who,https]+="$l "
        read -r r l ok < <(h2_run "https://bench.example.com:$https/" "$ingress_ip:$https")
        rps[$who,h2]+="$r "; p99[$who,h2]+="$l "
        echo "  round $round $who: http ${rps[$who,http]##* } https h2 (cumulative: ${rps[$who,http]}| ${rps[$who,https]}| ${rps[$who,h2]})" | sed 's/  */ /g' >&2
    done
done
median() { echo "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '  %-36s %14s %14s %10s %18s\n' "" "weft" "nginx" "ratio" "target"
for kind in http https h2; do
    case $kind in http) name="HTTP/1.1 keep-alive (wrk)";; https) name="HTTPS, HTTP/1.1 (wrk)";; h2) name="HTTP/2 over TLS (h2load)";; esac
    wr=$(median ${rps[weft,$kind]}); nr=$(median ${rps[nginx,$kind]})
    wl=$(median ${p99[weft,$kind]}); nl=$(median ${p99[nginx,$kind]})
    lat=$([[ $kind == h2 ]] && echo "mean" || echo "p99")
    printf '  %-36s %10.0f r/s %10.0f r/s %9.2fx %18s\n' "$name" "$wr" "$nr" "$(awk "BEGIN{print $wr / $nr}")" ">= 1.0x: $(awk "BEGIN{print ($wr >= $nr) ? \"met\" : \"MISSED\"}")"
    printf '  %-36s %11.2f ms %11.2f ms %9.2fx %18s\n' "    $lat latency" "$wl" "$nl" "$(awk "BEGIN{print $nl / $wl}")" "no worse: $(awk "BEGIN{print ($wl <= $nl) ? \"met\" : \"MISSED\"}")"
    if [[ $kind == http ]]; then
        wc=$(median ${cpu[weft]}); nc=$(median ${cpu[nginx]})
        printf '  %-36s %11.1f us %11.1f us %9.2fx %18s\n' "    proxy CPU per request" "$wc" "$nc" "$(awk "BEGIN{print $nc / $wc}")" "reported"
    fi
done

# (4) The route table with many Ingresses: the controller's compile+swap time and its RSS.
rss() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$ingress_pid/status"; }
before=$(rss)
/usr/bin/python3 - "$ingresses" > "$files/many.yaml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"""---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: many-{i:04d}}}
spec:
  rules:
    - host: h{i}.example.com
      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: backend, port: {{number: 80}}}}}}}}, {{path: /api/v{i % 7}, pathType: Exact, backend: {{service: {{name: backend, port: {{name: http}}}}}}}}]}}""")
PY
k apply -f "$files/many.yaml" >/dev/null
metric() { ip netns exec "$pod_netns" curl -s -m 5 http://127.0.0.1:10254/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
for _ in $(seq 60); do
    served=$(metric weft_ingress_ingresses)
    [[ ${served%.*} -ge $ingresses ]] && break
    sleep 1
done
compile_s=$(metric weft_ingress_route_table_compile_seconds)
after=$(rss)
printf '  %-36s %s\n' "route table, $served Ingresses served" "compile + swap $(awk "BEGIN{printf \"%.2f\", $compile_s * 1000}") ms (the last, from the controller's metric)"
printf '  %-36s %s\n' "controller RSS" "$before MiB with 1 Ingress, $after MiB with $served"
