//! CNI spec types: versions, the result object and its per-version JSON shape.
//!
//! Results are held version-neutral and rendered for the version the config asked for:
//! 0.3.x/0.4.0 IPs carry `"version": "4"`, 1.x do not; fields added in 1.1.0 (interface
//! `mtu`/`socketPath`/`pciID`, route `mtu`/`advmss`/`priority`/`table`/`scope`) are dropped
//! for older versions.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Spec versions weft-cni speaks (0.1.0/0.2.0 results are too different to be worth it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

pub const SUPPORTED: [CniVersion; 5] = [
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

/// Human list used in error messages.
pub const SUPPORTED_LIST: &str = "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0";

impl CniVersion {
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub fn parse(s: &str) -> Option<CniVersion> {
        SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Before 1.0.0 each IP said its family as "version": "4"/"6".
    fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    fn has_1_1_fields(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VERSION command's answer.
pub fn version_info() -> Value {
    serde_json::json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Fields we do not interpret (socketPath, pciID, ...) pass through untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One IP configuration of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation: `10.244.1.5/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A CNI result (ADD's output, and the `prevResult` input).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

impl CniResult {
    /// Appends `ours` after `self` (the previous plugin's result), renumbering our IPs'
    /// interface indexes; DNS from the previous result wins unless it has none.
    pub fn merge(mut self, ours: CniResult) -> CniResult {
        let offset = self.interfaces.len();
        self.interfaces.extend(ours.interfaces);
        self.ips.extend(ours.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(ours.routes);
        if self.dns.as_ref().is_none_or(dns_is_empty) {
            self.dns = ours.dns.or(self.dns);
        }
        self
    }

    /// The JSON shape of `version`.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let mut interfaces = Vec::new();
        for i in &self.interfaces {
            let mut v = to_object(i);
            if !version.has_1_1_fields() {
                for k in ["mtu", "socketPath", "pciID"] {
                    v.remove(k);
                }
            }
            interfaces.push(Value::Object(v));
        }
        let mut ips = Vec::new();
        for ip in &self.ips {
            let mut v = to_object(ip);
            if version.ips_carry_version() {
                let fam = if ip.address.contains(':') { "6" } else { "4" };
                v.insert("version".into(), Value::String(fam.into()));
            } else {
                v.remove("version");
            }
            ips.push(Value::Object(v));
        }
        let mut routes = Vec::new();
        for r in &self.routes {
            let mut v = to_object(r);
            if !version.has_1_1_fields() {
                for k in ["mtu", "advmss", "priority", "table", "scope"] {
                    v.remove(k);
                }
            }
            routes.push(Value::Object(v));
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::String(version.as_str().into()));
        out.insert("interfaces".into(), Value::Array(interfaces));
        out.insert("ips".into(), Value::Array(ips));
        if !routes.is_empty() {
            out.insert("routes".into(), Value::Array(routes));
        }
        out.insert(
            "dns".into(),
            self.dns
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new())),
        );
        Value::Object(out)
    }
}

fn dns_is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(|x| match x {
            Value::Array(a) => a.is_empty(),
            Value::String(s) => s.is_empty(),
            Value::Null => true,
            _ => false,
        }),
        _ => false,
    }
}

fn to_object<T: Serialize>(t: &T) -> Map<String, Value> {
    match serde_json::to_value(t) {
        Ok(Value::Object(m)) => m,
        // Our result structs always serialize to objects.
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "weft0123456789a".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    mtu: None,
                    sandbox: None,
                    extra: Map::new(),
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    mtu: Some(1450),
                    sandbox: Some("/run/netns/p".into()),
                    extra: Map::new(),
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.1.2/32".into(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                interface: Some(1),
                extra: Map::new(),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".parse().unwrap()),
                extra: Map::new(),
            }],
            dns: None,
        }
    }

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(CniVersion::parse("1.0.0"), Some(CniVersion::V1_0_0));
        assert_eq!(CniVersion::parse("0.2.0"), None);
        assert!(CniVersion::V0_4_0 < CniVersion::V1_0_0);
        assert_eq!(
            version_info(),
            json!({"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
    }

    #[test]
    fn old_versions_carry_ip_version_and_drop_mtu() {
        let v = ours().to_json(CniVersion::V0_3_1);
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][1].get("mtu").is_none());
        let v = ours().to_json(CniVersion::V0_4_0);
        assert_eq!(v["ips"][0]["version"], "4");
    }

    #[test]
    fn v1_has_no_ip_version_and_1_1_has_mtu() {
        let v = ours().to_json(CniVersion::V1_0_0);
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["interfaces"][1].get("mtu").is_none());
        let v = ours().to_json(CniVersion::V1_1_0);
        assert_eq!(v["interfaces"][1]["mtu"], 1450);
        assert_eq!(v["ips"][0]["address"], "10.244.1.2/32");
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(
            v["routes"][0],
            json!({"dst":"0.0.0.0/0","gw":"169.254.1.1"})
        );
    }

    #[test]
    fn merge_appends_and_renumbers() {
        // What Debian's loopback plugin answers (0.4.0 shape, with "version").
        let prev: CniResult = serde_json::from_value(json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/p"}],
            "ips": [{"version": "4", "address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.96.0.10"]}
        }))
        .unwrap();
        let merged = prev.merge(ours());
        assert_eq!(merged.interfaces.len(), 3);
        assert_eq!(merged.interfaces[0].name, "lo");
        assert_eq!(merged.ips[0].interface, Some(0));
        assert_eq!(merged.ips[1].interface, Some(2));
        assert_eq!(merged.dns, Some(json!({"nameservers": ["10.96.0.10"]})));
        let v = merged.to_json(CniVersion::V1_0_0);
        assert!(v["ips"][0].get("version").is_none(), "1.x output drops it");
        let v = merged.to_json(CniVersion::V0_4_0);
        assert_eq!(v["ips"][1]["version"], "4");
    }

    #[test]
    fn merge_takes_our_dns_when_prev_has_none() {
        let mut o = ours();
        o.dns = Some(json!({"nameservers": ["10.96.0.10"]}));
        let merged = CniResult::default().merge(o);
        assert_eq!(merged.dns, Some(json!({"nameservers": ["10.96.0.10"]})));
    }
}
