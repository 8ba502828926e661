"""DNS question pairs that race in conntrack, for crates/e2e/tests/dns_storm.rs.

glibc's resolver sends the A and AAAA questions of a lookup back to back on one UDP socket (one
sendmmsg): one 5-tuple, two packets. This sends the same pair on one socket, but from two
threads released at the same instant, so the two packets reach the node's conntrack from two
CPUs at once, each creating its own unconfirmed entry (and DNAT choice) before either is
confirmed: the insertion race behind Kubernetes' 5-second DNS stalls, forced instead of waited
for (the kernel's own selftest, tools/testing/selftests/net/netfilter/udpclash.c, does the same).

Usage: dns_pairs.py SERVER NAME PAIRS FIRST_PORT. Pair n is sent from local port FIRST_PORT + n
(so the DNS servers' query logs tell the pairs apart); one line per pair: "<answers> <seconds>",
answers being the NOERROR replies received (2 when both came back) within 5 s.
"""

import socket
import struct
import sys
import threading
import time

A, AAAA = 1, 28


def question(qname, qid, qtype):
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD, one question
    return header + qname + struct.pack(">HH", qtype, 1)


def main():
    server, name, pairs, first_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    qname = b"".join(bytes([len(l)]) + l for l in name.encode().split(b".") if l) + b"\0"
    for n in range(pairs):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("", first_port + n))
        s.connect((server, 53))
        s.settimeout(5.0)
        ids = {(2 * n) & 0xFFFF: A, (2 * n + 1) & 0xFFFF: AAAA}
        go = threading.Barrier(len(ids) + 1)

        def send(packet):
            go.wait()
            s.send(packet)

        senders = [
            threading.Thread(target=send, args=(question(qname, qid, qtype),))
            for qid, qtype in ids.items()
        ]
        for t in senders:
            t.start()
        go.wait()
        start = time.monotonic()
        for t in senders:
            t.join()
        answered = set()
        try:
            while len(answered) < len(ids):
                reply = s.recv(1500)
                qid, flags = struct.unpack(">HH", reply[:4])
                # A response (QR) with rcode NOERROR to one of this pair's questions.
                if qid in ids and flags & 0x8000 and flags & 0xF == 0:
                    answered.add(qid)
        except socket.timeout:
            pass
        print(len(answered), f"{time.monotonic() - start:.6f}", flush=True)
        s.close()


main()
