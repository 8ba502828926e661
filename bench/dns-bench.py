#!/usr/bin/env python3
"""The Python side of bench/dns.sh (standard library only).

  dns-bench.py queries ZONES OUT [COUNT]      the query file for dnsperf, from weft's own zones
                                              (`weft dns --print-zone`): a mix of cluster names
  dns-bench.py check QUERIES SAMPLE PORT...   asks every server the first SAMPLE distinct
                                              questions; prints how many answers differ from the
                                              first server's (rcode and answer records)
  dns-bench.py p99 FILE                       p50/p99/max of the latencies in `dnsperf -v` output
  dns-bench.py headless API PKI N ENDPOINTS   creates N headless Services hl0.. in default, each
                                              with a slice of ENDPOINTS ready pod addresses
  dns-bench.py quiet API PKI                  scales the lab's own DNS Deployment (kube-system/
                                              weft-dns) to 0, so only the measured server compiles
  dns-bench.py follow API PKI PORT ROUNDS     how long weft's answers take to follow API writes
"""

import json
import random
import socket
import ssl
import statistics
import struct
import sys
import time
import http.client

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "TXT": 16, "AAAA": 28, "SRV": 33}
NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


# --- the wire format, as much as the checks need -------------------------------------------

def query(qid, name, qtype):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", TYPES[qtype], 1)


def read_name(msg, off):
    labels, jumped, end = [], False, off
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off, jumped = ((n & 0x3F) << 8) | msg[off + 1], True
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels).lower() + ".", (end if jumped else off)


def rdata_text(msg, rtype, off, length):
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, msg[off:off + 4])
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, msg[off:off + 16])
    if rtype in (2, 5, 12):
        return read_name(msg, off)[0]
    if rtype == 33:
        prio, weight, port = struct.unpack(">HHH", msg[off:off + 6])
        return f"{prio} {weight} {port} {read_name(msg, off + 6)[0]}"
    return msg[off:off + length].hex()


def parse(msg):
    """(rcode, sorted answer records as text)."""
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = read_name(msg, off)[1] + 4
    answers = []
    for _ in range(an):
        name, off = read_name(msg, off)
        rtype, _, ttl, length = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        answers.append(f"{name} {ttl} {NAMES.get(rtype, rtype)} {rdata_text(msg, rtype, off, length)}")
        off += length
    return RCODES.get(flags & 0xF, str(flags & 0xF)), sorted(answers)


def ask(sock, port, name, qtype, timeout=1.0):
    qid = random.randrange(65536)
    sock.settimeout(timeout)
    sock.sendto(query(qid, name, qtype), ("127.0.0.1", port))
    while True:
        msg, _ = sock.recvfrom(65535)
        if struct.unpack(">H", msg[:2])[0] == qid:
            return parse(msg)


# --- the query mix -------------------------------------------------------------------------

def zone_records(path):
    for line in open(path):
        if line.startswith((";", "$")) or not line.strip():
            continue
        name, _ttl, _class, rtype, rdata = line.rstrip("\n").split("\t", 4)
        yield name.lower(), rtype, rdata


def cmd_queries(zones, out, count="100000"):
    count = int(count)
    a, ptr_to, srv_of = {}, {}, {}
    domain = None
    for name, rtype, rdata in zone_records(zones):
        if rtype == "SOA" and domain is None:
            domain = name  # the cluster domain's file comes first
        elif rtype == "A":
            a.setdefault(name, []).append(rdata)
        elif rtype == "PTR":
            ptr_to[name] = rdata.lower()
        elif rtype == "SRV":
            srv_of.setdefault(name, []).append(rdata)
    is_service = lambda n: n.endswith(".svc." + domain) and n.count(".") == domain.count(".") + 3
    clusterip = sorted({t for t in ptr_to.values() if is_service(t) and len(a.get(t, [])) == 1})
    headless = sorted(n for n in a if is_service(n) and len(a[n]) > 1)
    ptrs = sorted(p for p, t in ptr_to.items() if t in set(clusterip))
    srvs = sorted(s for s in srv_of if s.split(".", 2)[2] in set(clusterip))
    if not clusterip:
        sys.exit("no ClusterIP Service in the zones: nothing to ask")

    def nxdomain(rng):
        # What a pod's resolver asks first for a full name (ndots:5 and the search list).
        svc = rng.choice(clusterip)
        ns = svc.split(".")[1]
        suffix = rng.choice([f"{ns}.svc.{domain}", f"svc.{domain}", domain])
        return svc + suffix, "A"

    kinds = [  # (label, share in %, one question)
        ("A of a ClusterIP Service, full name", 40, lambda r: (r.choice(clusterip), "A")),
        ("AAAA of a ClusterIP Service (NODATA)", 10, lambda r: (r.choice(clusterip), "AAAA")),
        ("SRV of a named port", 10, lambda r: (r.choice(srvs), "SRV")),
        ("PTR of a cluster IP", 10, lambda r: (r.choice(ptrs), "PTR")),
        ("NXDOMAIN (search-list expansions)", 20, nxdomain),
        (f"A of a headless Service ({statistics.median(len(a[h]) for h in headless) if headless else 0:.0f} records)",
         10, lambda r: (r.choice(headless), "A")),
    ]
    kinds = [k for k in kinds if not ((k[0].startswith("SRV") and not srvs) or
                                      (k[0].startswith("A of a headless") and not headless))]
    total = sum(k[1] for k in kinds)
    rng = random.Random(1)
    weights = [k[1] for k in kinds]
    with open(out, "w") as f:
        for _ in range(count):
            name, qtype = rng.choices(kinds, weights)[0][2](rng)
            f.write(f"{name} {qtype}\n")
    for label, share, _ in kinds:
        print(f"  {100 * share / total:3.0f}%  {label}")
    print(f"  from {len(clusterip)} ClusterIP and {len(headless)} headless Services; {count} queries, shuffled")


def cmd_check(queries, sample, *ports):
    sample, ports = int(sample), [int(p) for p in ports]
    seen, questions = set(), []
    for line in open(queries):
        q = tuple(line.split())
        if q not in seen:
            seen.add(q)
            questions.append(q)
        if len(questions) >= sample:
            break
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    differ = {p: 0 for p in ports[1:]}
    first_diff = {}
    for name, qtype in questions:
        want = ask(sock, ports[0], name, qtype)
        for p in ports[1:]:
            got = ask(sock, p, name, qtype)
            if got != want:
                differ[p] += 1
                first_diff.setdefault(p, (name, qtype, want, got))
    print(" ".join(str(differ[p]) for p in ports[1:]))
    for p, (name, qtype, want, got) in first_diff.items():
        print(f"port {p}, first difference: {name} {qtype}: {want} vs {got}", file=sys.stderr)


def cmd_p99(path):
    lat = []
    for line in open(path):
        # "> NOERROR name TYPE 0.000123"
        parts = line.split()
        if len(parts) >= 3 and parts[0] == ">" and parts[1] not in ("T", "I"):
            try:
                lat.append(float(parts[-1]))
            except ValueError:
                pass
    if not lat:
        sys.exit(f"no latencies in {path}")
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    print(f"{pick(0.5):.3f} {pick(0.99):.3f} {lat[-1] * 1000:.3f} {len(lat)}")


# --- following the API ---------------------------------------------------------------------

class Api:
    """The lab's API server over HTTPS with its admin client certificate (kept-alive)."""

    def __init__(self, url, pki):
        host, port = url.removeprefix("https://").rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=f"{pki}/ca.crt")
        ctx.load_cert_chain(f"{pki}/admin.crt", f"{pki}/admin.key")
        ctx.check_hostname = False
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read()
        if resp.status >= 300:
            sys.exit(f"{method} {path}: {resp.status} {text[:300]!r}")
        return json.loads(text) if text else None


SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SERVICES = "/api/v1/namespaces/default/services"


def cmd_headless(url, pki, n, endpoints):
    api, n, endpoints = Api(url, pki), int(n), int(endpoints)
    for i in range(n):
        api.call("POST", SERVICES, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"hl{i}"},
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}})
        eps = []
        for e in range(endpoints):
            k = i * endpoints + e + 1  # pod addresses from 10.244.100.1 (the lab's pod CIDR)
            eps.append({"addresses": [f"10.244.{100 + k // 256}.{k % 256}"], "conditions": {"ready": True}})
        api.call("POST", SLICES, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"hl{i}-1", "labels": {"kubernetes.io/service-name": f"hl{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps})


def cmd_quiet(url, pki):
    api = Api(url, pki)
    path = "/apis/apps/v1/namespaces/kube-system/deployments/weft-dns"
    deployment = api.call("GET", path)
    deployment["spec"]["replicas"] = 0
    api.call("PUT", path, deployment)


def wait_for(sock, port, name, qtype, done, timeout=10.0):
    """Polls until done(answer) (every ~1 ms); returns the time it first held, None on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            answer = ask(sock, port, name, qtype, timeout=0.2)
        except socket.timeout:
            continue
        if done(answer):
            return time.monotonic()
        time.sleep(0.001)
    return None


def cmd_follow(url, pki, port, rounds):
    """Times, ROUNDS times each: an endpoint added to and removed from the headless Service hl0
    (its slice hl0-1 replaced by PUT), and a Service created and deleted; from the API's response
    to the write until weft answers the new records."""
    port, rounds = int(port), int(rounds)
    api, sock = Api(url, pki), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    domain = "cluster.local."
    results = {"endpoint added": [], "endpoint removed": [], "Service created": [], "Service deleted": []}
    headless = f"hl0.default.svc.{domain}"
    for i in range(rounds):
        for kind in ("endpoint added", "endpoint removed"):
            sl = api.call("GET", f"{SLICES}/hl0-1")
            eps = sl["endpoints"]
            if kind == "endpoint added":
                eps = eps + [{"addresses": [f"10.244.250.{i + 1}"], "conditions": {"ready": True}}]
            else:
                eps = eps[:-1]
            sl["endpoints"] = eps
            want = len(eps)
            t0 = time.monotonic()
            api.call("PUT", f"{SLICES}/hl0-1", sl)
            t1 = time.monotonic()
            seen = wait_for(sock, port, headless, "A", lambda a: len(a[1]) == want)
            results[kind].append((t1 - t0, None if seen is None else seen - t1))
        name = f"follow{i}"
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
        fqdn = f"{name}.default.svc.{domain}"
        t0 = time.monotonic()
        api.call("POST", SERVICES, body)
        t1 = time.monotonic()
        seen = wait_for(sock, port, fqdn, "A", lambda a: a[0] == "NOERROR" and len(a[1]) == 1)
        results["Service created"].append((t1 - t0, None if seen is None else seen - t1))
        t0 = time.monotonic()
        api.call("DELETE", f"{SERVICES}/{name}")
        t1 = time.monotonic()
        seen = wait_for(sock, port, fqdn, "A", lambda a: a[0] == "NXDOMAIN")
        results["Service deleted"].append((t1 - t0, None if seen is None else seen - t1))
    worst = 0.0
    for kind, runs in results.items():
        delays = [d for _, d in runs if d is not None]
        missed = sum(1 for _, d in runs if d is None)
        writes = sorted(w for w, _ in runs)
        if delays:
            delays.sort()
            worst = max(worst, delays[-1] if not missed else float("inf"))
            print(f"  {kind:<18} p50 {statistics.median(delays) * 1000:7.1f} ms   max {delays[-1] * 1000:7.1f} ms"
                  f"   (the write itself: p50 {statistics.median(writes) * 1000:.1f} ms){'   not seen within 10 s: ' + str(missed) if missed else ''}")
        else:
            worst = float("inf")
            print(f"  {kind:<18} never seen within 10 s ({missed} of {len(runs)})")
    print(f"WORST {worst * 1000:.1f}")


if __name__ == "__main__":
    commands = {"queries": cmd_queries, "check": cmd_check, "p99": cmd_p99,
                "headless": cmd_headless, "quiet": cmd_quiet, "follow": cmd_follow}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
