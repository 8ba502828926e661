//! The network configuration weft-cni reads on stdin, validated into typed values.
//!
//! ```json
//! {
//!   "cniVersion": "1.0.0",
//!   "name": "weft",
//!   "type": "weft-cni",
//!   "mtu": 1500,
//!   "ipam": {
//!     "subnet": "10.244.1.0/24",
//!     "rangeStart": "10.244.1.10",
//!     "rangeEnd": "10.244.1.200",
//!     "dataDir": "/var/lib/weft/ipam"
//!   },
//!   "dns": { "nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"] },
//!   "capabilities": { "ips": true, "mac": true }
//! }
//! ```
//!
//! - `mtu` (default 1500): both ends of the pod's veth.
//! - `ipam` is built in: `ipam.type` must be absent or `"weft-cni"`. `subnet` is the node's pod
//!   CIDR (IPv4, at most /30); network+1 is reserved for the node, so the default range is
//!   network+2 ..= broadcast-1. `rangeStart`/`rangeEnd` narrow it. Allocations live under
//!   `<dataDir>/<name>/` (default dataDir `/var/lib/weft/ipam`).
//! - `dns` is copied into the result.
//! - `runtimeConfig.ips` (capability `ips`) / `args.cni.ips` / `CNI_ARGS IP=` request a
//!   specific address; `runtimeConfig.mac` / `args.cni.mac` set the pod interface's MAC.
//! - `agentSocket`: the abstract unix socket of the node's weft agent. When set, ADD announces
//!   the pod (CNI_ARGS `K8S_POD_NAMESPACE`, `K8S_POD_NAME`) and its address there and returns
//!   only once the agent has programmed the pod's network policy, undoing the ADD if it cannot
//!   (see [`crate::agent`]). `weft install-cni` sets it; without it, no agent is asked.
//! - `prevResult` (chaining) and `cni.dev/valid-attachments` (GC) are read when present.
//!   Other keys (`capabilities`, `ipMasq`, ...) are accepted and ignored.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{Map, Value};
use weft_dataplane::{IpNet, MacAddr};

use crate::env::{ContainerId, IfName};
use crate::error::Error;
use crate::ipam::Pool;
use crate::spec::{CniResult, CniVersion};

pub const DEFAULT_MTU: u32 = 1500;
pub const DEFAULT_DATA_DIR: &str = "/var/lib/weft/ipam";

/// A network name as the spec allows: `[A-Za-z0-9][A-Za-z0-9_.-]*`. It is also a directory
/// name under dataDir, which that alphabet makes safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkName(String);

impl NetworkName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The built-in IPAM's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    pub pool: Pool,
    pub data_dir: PathBuf,
}

/// One attachment the runtime still considers valid (GC input).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    pub container_id: ContainerId,
    pub ifname: IfName,
}

/// A validated network configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: NetworkName,
    pub mtu: u32,
    pub ipam: IpamConf,
    pub dns: Option<Value>,
    /// Addresses asked for through runtimeConfig/args (first one wins).
    pub requested_ips: Vec<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Option<Vec<Attachment>>,
    pub agent_socket: Option<String>,
}

fn cfg(msg: String) -> Error {
    Error::Config(msg)
}

/// Decodes stdin into JSON; anything that is not a JSON object is a decode failure (code 6).
pub fn decode(stdin: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Decode("expected a JSON object".into())),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}

/// The config's cniVersion, checked against what we support.
pub fn version_of(conf: &Map<String, Value>) -> Result<CniVersion, Error> {
    match conf.get("cniVersion") {
        None => Err(cfg("missing cniVersion".into())),
        Some(Value::String(s)) => {
            CniVersion::parse(s).ok_or_else(|| Error::IncompatibleVersion(s.clone()))
        }
        Some(other) => Err(cfg(format!("cniVersion must be a string, got {other}"))),
    }
}

fn str_field<'a>(
    m: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a str>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(cfg(format!("{path}{key} must be a string, got {other}"))),
    }
}

fn parse_name(s: &str) -> Result<NetworkName, Error> {
    let mut b = s.bytes();
    let ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(NetworkName(s.to_string()))
    } else {
        Err(cfg(format!(
            "name {s:?} must start with a letter or digit followed by letters, digits, '_', '.' or '-'"
        )))
    }
}

fn parse_ipam(v: Option<&Value>) -> Result<IpamConf, Error> {
    let m = match v {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => {
            return Err(cfg("missing ipam (with at least ipam.subnet)".into()))
        }
        Some(other) => return Err(cfg(format!("ipam must be an object, got {other}"))),
    };
    if let Some(t) = str_field(m, "ipam.", "type")? {
        if t != "weft-cni" {
            return Err(Error::Unsupported(format!(
                "ipam.type {t:?} is not supported: weft-cni has built-in IPAM (omit ipam.type or set it to \"weft-cni\")"
            )));
        }
    }
    let subnet_s =
        str_field(m, "ipam.", "subnet")?.ok_or_else(|| cfg("missing ipam.subnet".into()))?;
    let subnet: IpNet = subnet_s
        .parse()
        .map_err(|_| cfg(format!("ipam.subnet {subnet_s:?} is not a CIDR")))?;
    if !subnet.addr().is_ipv4() {
        return Err(cfg(format!(
            "ipam.subnet {subnet_s:?} is IPv6; weft-cni allocates IPv4 only for now"
        )));
    }
    if subnet.network() != subnet {
        return Err(cfg(format!(
            "ipam.subnet {subnet_s:?} has host bits set (did you mean {}?)",
            subnet.network()
        )));
    }
    if subnet.prefix() > 30 {
        return Err(cfg(format!(
            "ipam.subnet {subnet_s:?} is too small: at most /30 (network, node, one pod, broadcast)"
        )));
    }
    let mut pool = Pool::whole(subnet);
    let bound = |key: &str| -> Result<Option<Ipv4Addr>, Error> {
        match str_field(m, "ipam.", key)? {
            None => Ok(None),
            Some(s) => {
                let ip: Ipv4Addr = s
                    .parse()
                    .map_err(|_| cfg(format!("ipam.{key} {s:?} is not an IPv4 address")))?;
                if !pool.usable(ip) {
                    return Err(cfg(format!(
                        "ipam.{key} {s:?} is outside the usable addresses of {subnet} ({})",
                        pool.range_text()
                    )));
                }
                Ok(Some(ip))
            }
        }
    };
    let (start, end) = (bound("rangeStart")?, bound("rangeEnd")?);
    if let Some(s) = start {
        pool.start = s;
    }
    if let Some(e) = end {
        pool.end = e;
    }
    if pool.start > pool.end {
        return Err(cfg(format!(
            "ipam.rangeStart {} is after ipam.rangeEnd {}",
            pool.start, pool.end
        )));
    }
    let data_dir = match str_field(m, "ipam.", "dataDir")? {
        None => PathBuf::from(DEFAULT_DATA_DIR),
        Some(d) if d.starts_with('/') => PathBuf::from(d),
        Some(d) => return Err(cfg(format!("ipam.dataDir {d:?} must be an absolute path"))),
    };
    Ok(IpamConf { pool, data_dir })
}

/// Reads `ips` and `mac` from one of runtimeConfig / args.cni.
fn parse_capabilities(
    m: &Map<String, Value>,
    path: &str,
    ips: &mut Vec<Ipv4Addr>,
    mac: &mut Option<MacAddr>,
) -> Result<(), Error> {
    if let Some(v) = m.get("ips") {
        let list = v
            .as_array()
            .ok_or_else(|| cfg(format!("{path}ips must be a list of addresses, got {v}")))?;
        for item in list {
            let s = item
                .as_str()
                .ok_or_else(|| cfg(format!("{path}ips entries must be strings, got {item}")))?;
            // The `ips` convention allows "10.244.1.5" or "10.244.1.5/24".
            let addr = s.split_once('/').map_or(s, |(a, _)| a);
            match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => ips.push(ip),
                // IPv6 requests are for another plugin in the chain; we allocate IPv4.
                Ok(std::net::IpAddr::V6(_)) => {}
                Err(_) => return Err(cfg(format!("{path}ips entry {s:?} is not an IP address"))),
            }
        }
    }
    if let Some(s) = str_field(m, path, "mac")? {
        *mac = Some(
            s.parse()
                .map_err(|e| cfg(format!("{path}mac {s:?} is not a usable MAC address: {e}")))?,
        );
    }
    Ok(())
}

fn parse_attachments(v: &Value) -> Result<Vec<Attachment>, Error> {
    const KEY: &str = "cni.dev/valid-attachments";
    let list = v
        .as_array()
        .ok_or_else(|| cfg(format!("{KEY} must be a list, got {v}")))?;
    list.iter()
        .map(|item| {
            let get = |k: &str| item.get(k).and_then(Value::as_str);
            let cid = get("containerID")
                .and_then(ContainerId::parse)
                .ok_or_else(|| cfg(format!("{KEY} entry {item} needs a valid containerID")))?;
            let ifname = get("ifname")
                .and_then(IfName::parse)
                .ok_or_else(|| cfg(format!("{KEY} entry {item} needs a valid ifname")))?;
            Ok(Attachment {
                container_id: cid,
                ifname,
            })
        })
        .collect()
}

impl NetConf {
    /// Validates a decoded config. Every error names the key and the offending value.
    pub fn from_map(m: &Map<String, Value>) -> Result<NetConf, Error> {
        let cni_version = version_of(m)?;
        let name =
            parse_name(str_field(m, "", "name")?.ok_or_else(|| cfg("missing name".into()))?)?;
        str_field(m, "", "type")?.ok_or_else(|| cfg("missing type".into()))?;
        let mtu = match m.get("mtu") {
            None | Some(Value::Null) => DEFAULT_MTU,
            Some(v) => match v.as_u64() {
                Some(n @ 68..=65535) => n as u32,
                _ => {
                    return Err(cfg(format!(
                        "mtu must be an integer between 68 and 65535, got {v}"
                    )))
                }
            },
        };
        let ipam = parse_ipam(m.get("ipam"))?;
        let dns = match m.get("dns") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => return Err(cfg(format!("dns must be an object, got {other}"))),
        };
        let (mut requested_ips, mut mac) = (Vec::new(), None);
        match m.get("runtimeConfig") {
            None | Some(Value::Null) => {}
            Some(Value::Object(rc)) => {
                parse_capabilities(rc, "runtimeConfig.", &mut requested_ips, &mut mac)?
            }
            Some(other) => {
                return Err(cfg(format!("runtimeConfig must be an object, got {other}")))
            }
        }
        // `args` may carry anything (spec); only args.cni.{ips,mac} mean something to us.
        if let Some(Value::Object(cni)) = m.get("args").and_then(|a| a.get("cni")) {
            parse_capabilities(cni, "args.cni.", &mut requested_ips, &mut mac)?;
        }
        let prev_result = match m.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<CniResult>(v.clone())
                    .map_err(|e| cfg(format!("prevResult is not a CNI result: {e}")))?,
            ),
        };
        let valid_attachments = m
            .get("cni.dev/valid-attachments")
            .map(parse_attachments)
            .transpose()?;
        let agent_socket = str_field(m, "", "agentSocket")?.map(str::to_string);
        Ok(NetConf {
            agent_socket,
            cni_version,
            name,
            mtu,
            ipam,
            dns,
            requested_ips,
            mac,
            prev_result,
            valid_attachments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, Error> {
        NetConf::from_map(v.as_object().unwrap())
    }

    fn base() -> Value {
        json!({"cniVersion":"1.0.0","name":"weft","type":"weft-cni","ipam":{"subnet":"10.244.1.0/24","dataDir":"/tmp/x"}})
    }

    fn with(path: &[&str], v: Value) -> Value {
        let mut b = base();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur[path[path.len() - 1]] = v;
        b
    }

    fn err(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code() as u32, e.to_string())
    }

    #[test]
    fn minimal_config_defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_0_0);
        assert_eq!(c.name.as_str(), "weft");
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.ipam.pool.start, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(c.ipam.pool.end, Ipv4Addr::new(10, 244, 1, 254));
        assert_eq!(c.ipam.data_dir, PathBuf::from("/tmp/x"));
        let mut no_dir = base();
        no_dir["ipam"].as_object_mut().unwrap().remove("dataDir");
        assert_eq!(
            parse(no_dir).unwrap().ipam.data_dir,
            PathBuf::from(DEFAULT_DATA_DIR)
        );
    }

    #[test]
    fn full_config() {
        let mut v = base();
        v["mtu"] = json!(1450);
        v["ipam"]["type"] = json!("weft-cni");
        v["ipam"]["rangeStart"] = json!("10.244.1.10");
        v["ipam"]["rangeEnd"] = json!("10.244.1.20");
        v["dns"] = json!({"nameservers":["10.96.0.10"]});
        v["capabilities"] = json!({"ips": true, "mac": true});
        v["runtimeConfig"] =
            json!({"ips":["10.244.1.15/24", "fd00::5/64"], "mac":"c2:11:22:33:44:55"});
        v["ipMasq"] = json!(true);
        v["args"] = json!({"labels":{"a":"b"}});
        v["prevResult"] =
            json!({"cniVersion":"1.0.0","interfaces":[{"name":"lo","sandbox":"/x"}],"ips":[]});
        v["cni.dev/valid-attachments"] = json!([{"containerID":"c1","ifname":"eth0"}]);
        let c = parse(v).unwrap();
        assert_eq!(c.mtu, 1450);
        assert_eq!(c.ipam.pool.start, Ipv4Addr::new(10, 244, 1, 10));
        assert_eq!(c.ipam.pool.end, Ipv4Addr::new(10, 244, 1, 20));
        assert_eq!(c.requested_ips, vec![Ipv4Addr::new(10, 244, 1, 15)]);
        assert_eq!(c.mac.unwrap().to_string(), "c2:11:22:33:44:55");
        assert_eq!(c.prev_result.unwrap().interfaces[0].name, "lo");
        assert_eq!(c.valid_attachments.unwrap().len(), 1);
        assert!(c.dns.is_some());
    }

    #[test]
    fn args_cni_ips() {
        let c = parse(with(&["args"], json!({"cni":{"ips":["10.244.1.7"]}}))).unwrap();
        assert_eq!(c.requested_ips, vec![Ipv4Addr::new(10, 244, 1, 7)]);
    }

    #[test]
    fn every_bad_config_names_the_problem() {
        let cases: Vec<(Value, u32, &str)> = vec![
            (
                with(&["cniVersion"], json!("0.2.0")),
                1,
                "incompatible CNI version \"0.2.0\"",
            ),
            (
                with(&["cniVersion"], json!(1)),
                7,
                "cniVersion must be a string",
            ),
            (with(&["name"], json!("-x")), 7, "name \"-x\" must start"),
            (with(&["name"], json!(null)), 7, "missing name"),
            (with(&["type"], json!(null)), 7, "missing type"),
            (
                with(&["mtu"], json!(10)),
                7,
                "mtu must be an integer between 68 and 65535, got 10",
            ),
            (with(&["mtu"], json!("1500")), 7, "mtu must be an integer"),
            (with(&["ipam"], json!(null)), 7, "missing ipam"),
            (with(&["ipam"], json!("x")), 7, "ipam must be an object"),
            (
                with(&["ipam", "type"], json!("host-local")),
                2,
                "ipam.type \"host-local\" is not supported",
            ),
            (
                with(&["ipam", "subnet"], json!("10.244.1.0/33")),
                7,
                "network config: ipam.subnet \"10.244.1.0/33\" is not a CIDR",
            ),
            (
                with(&["ipam", "subnet"], json!(null)),
                7,
                "missing ipam.subnet",
            ),
            (with(&["ipam", "subnet"], json!("fd00::/64")), 7, "IPv6"),
            (
                with(&["ipam", "subnet"], json!("10.244.1.5/24")),
                7,
                "has host bits set (did you mean 10.244.1.0/24?)",
            ),
            (
                with(&["ipam", "subnet"], json!("10.244.1.0/31")),
                7,
                "too small",
            ),
            (
                with(&["ipam", "rangeStart"], json!("10.244.2.5")),
                7,
                "ipam.rangeStart \"10.244.2.5\" is outside",
            ),
            (
                with(&["ipam", "rangeStart"], json!("10.244.1.1")),
                7,
                "outside the usable addresses",
            ),
            (
                with(&["ipam", "rangeEnd"], json!("10.244.1.255")),
                7,
                "ipam.rangeEnd",
            ),
            (
                with(&["ipam", "rangeEnd"], json!("nope")),
                7,
                "ipam.rangeEnd \"nope\" is not an IPv4 address",
            ),
            (
                with(&["ipam", "dataDir"], json!("rel/dir")),
                7,
                "must be an absolute path",
            ),
            (with(&["dns"], json!([])), 7, "dns must be an object"),
            (
                with(&["runtimeConfig"], json!({"ips": "10.244.1.5"})),
                7,
                "runtimeConfig.ips must be a list",
            ),
            (
                with(&["runtimeConfig"], json!({"ips": ["x"]})),
                7,
                "runtimeConfig.ips entry \"x\" is not an IP address",
            ),
            (
                with(&["runtimeConfig"], json!({"mac": "zz"})),
                7,
                "runtimeConfig.mac \"zz\"",
            ),
            (
                with(&["prevResult"], json!({"interfaces": 3})),
                7,
                "prevResult is not a CNI result",
            ),
            (
                with(&["cni.dev/valid-attachments"], json!([{"containerID":"c"}])),
                7,
                "needs a valid ifname",
            ),
        ];
        for (v, code, needle) in cases {
            let (c, msg) = err(v.clone());
            assert!(
                msg.contains(needle),
                "{msg:?} should contain {needle:?} for {v}"
            );
            assert_eq!(c, code, "{msg}");
        }
        let mut r = base();
        r["ipam"]["rangeStart"] = json!("10.244.1.50");
        r["ipam"]["rangeEnd"] = json!("10.244.1.40");
        assert!(err(r).1.contains("is after ipam.rangeEnd"));
        let mut nv = base();
        nv.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(err(nv), (7, "network config: missing cniVersion".into()));
    }

    proptest::proptest! {
        /// stdin is untrusted: arbitrary bytes and arbitrary values under the known keys
        /// give a config or an error, never a panic.
        #[test]
        fn stdin_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(m) = decode(&bytes) {
                let _ = NetConf::from_map(&m);
            }
        }

        #[test]
        fn odd_values_never_panic(
            key in proptest::sample::select(vec!["mtu", "name", "dns", "runtimeConfig", "prevResult", "args", "cni.dev/valid-attachments"]),
            ipam_key in proptest::sample::select(vec!["subnet", "rangeStart", "rangeEnd", "dataDir", "type"]),
            s in ".{0,24}",
            n in proptest::num::i64::ANY,
        ) {
            for v in [json!(s.clone()), json!(n), json!([s.clone()]), json!({"ips": [s.clone()], "mac": s.clone()}), json!(null)] {
                let _ = parse(with(&[key], v.clone()));
                let _ = parse(with(&["ipam", ipam_key], v));
            }
        }
    }

    #[test]
    fn decode_errors_are_code_6() {
        assert_eq!(decode(b"{nope").unwrap_err().code() as u32, 6);
        assert_eq!(decode(b"[1]").unwrap_err().code() as u32, 6);
        assert!(decode(b"{}").is_ok());
    }
}
