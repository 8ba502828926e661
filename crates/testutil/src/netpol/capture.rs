//! What really arrives at a pod: a packet capture inside the pod's network namespace (an
//! `AF_PACKET` socket on its interface, in Python, run with `weft exec`), and a sender of
//! hand-made VXLAN packets for the overlay's isolation.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::lab::Lab;

/// Captures, in a pod's namespace, the IPv4 TCP and UDP packets arriving on eth0 for the
/// given ports, for some seconds: prints `ready`, then a JSON list of
/// `[source, protocol, port, payload]`.
const SNIFFER: &str = r#"
import json, socket, struct, sys, time
seconds, ports = float(sys.argv[1]), set(json.loads(sys.argv[2]))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.2)
print("ready", flush=True)
seen, end = [], time.time() + seconds
while time.time() < end:
    try:
        frame, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    proto, l4 = ip[9], ip[(ip[0] & 15) * 4:]
    if proto not in (6, 17) or struct.unpack(">H", l4[2:4])[0] not in ports:
        continue
    payload = l4[8:48].decode(errors="replace") if proto == 17 else ""
    seen.append([socket.inet_ntoa(ip[12:16]), "udp" if proto == 17 else "tcp", struct.unpack(">H", l4[2:4])[0], payload])
print(json.dumps(seen), flush=True)
"#;

/// Sends three VXLAN packets to `node:port` (VNI `vni`) carrying an Ethernet frame from
/// `smac` to `dmac` with a UDP datagram from `inner_src` to `inner_dst:dport` saying
/// `payload`.
pub const VXLAN_SENDER: &str = r#"
import socket, struct, sys
node, port, vni, smac, dmac, inner_src, inner_dst, dport, payload = sys.argv[1:10]
data = payload.encode()
udp = struct.pack(">HHHH", 40000, int(dport), 8 + len(data), 0) + data
def checksum(b):
    s = sum(struct.unpack(">%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                 socket.inet_aton(inner_src), socket.inet_aton(inner_dst))
ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
packet = struct.pack(">B3xI", 0x08, int(vni) << 8) + mac(dmac) + mac(smac) + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(packet, (node, int(port)))
"#;

/// A capture running in a pod ([`Capture::start`]), until its time is up ([`Capture::finish`]).
pub struct Capture {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        // A test failing before `finish` leaves no capture running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Capture {
    /// Starts capturing in pod `ns/pod` for `seconds` the packets to `ports` (a JSON list),
    /// returning once the capture is running.
    pub fn start(lab: &Lab, ns: &str, pod: &str, seconds: u32, ports: &str) -> Capture {
        let mut child = lab
            .weft_cmd(&[
                "exec",
                "-n",
                ns,
                pod,
                "--",
                "/usr/bin/python3",
                "-c",
                SNIFFER,
                &seconds.to_string(),
                ports,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the sniffer");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the sniffer's first line");
        assert_eq!(line.trim(), "ready", "sniffer in {ns}/{pod}");
        Capture { child, out }
    }

    /// Waits for the capture to end: `(source, protocol, port, payload)` of each packet.
    pub fn finish(mut self) -> Vec<(String, String, u64, String)> {
        let mut rest = String::new();
        self.out
            .read_to_string(&mut rest)
            .expect("the sniffer's output");
        let list: Vec<Value> = serde_json::from_str(rest.trim()).expect("the capture as JSON");
        list.iter()
            .map(|v| {
                (
                    v[0].as_str().unwrap_or_default().to_string(),
                    v[1].as_str().unwrap_or_default().to_string(),
                    v[2].as_u64().unwrap_or_default(),
                    v[3].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}
