//! The runtime's environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS` (`K=V;K=V`, host-local's `IP=` and Kubernetes' `K8S_POD_*`, with
//! `IgnoreUnknown=1` semantics) and `CNI_PATH`. Parsed once, at the edge.

use std::net::Ipv4Addr;

use crate::error::Error;

/// The CNI operation requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }

    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            _ => return None,
        })
    }
}

/// A container id as the spec allows it: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn parse(s: &str) -> Option<ContainerId> {
        let mut b = s.bytes();
        let first_ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        (first_ok && rest_ok).then(|| ContainerId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Linux interface name valid for CNI_IFNAME.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    pub fn parse(s: &str) -> Option<IfName> {
        let ok = !s.is_empty()
            && s.len() <= weft_dataplane::MAX_IFNAME_LEN
            && s != "."
            && s != ".."
            && !s
                .bytes()
                .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c == 0);
        ok.then(|| IfName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parsed `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// host-local's `IP=`: the address the runtime wants.
    pub ip: Option<Ipv4Addr>,
    pub k8s_pod_name: Option<String>,
    pub k8s_pod_namespace: Option<String>,
    pub k8s_pod_infra_container_id: Option<String>,
    pub k8s_pod_uid: Option<String>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown` is `1`/`true`
    /// (anywhere in the list), as libcni's `LoadArgs` does.
    pub fn parse(raw: &str) -> Result<CniArgs, Error> {
        let invalid = |reason: String| Error::InvalidEnv {
            name: "CNI_ARGS",
            value: raw.to_string(),
            reason,
        };
        let mut pairs = Vec::new();
        for part in raw.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("{part:?} is not KEY=VALUE")))?;
            pairs.push((k, v));
        }
        let ignore_unknown = pairs
            .iter()
            .any(|(k, v)| *k == "IgnoreUnknown" && (v.eq_ignore_ascii_case("true") || *v == "1"));
        let mut args = CniArgs::default();
        for (k, v) in pairs {
            match k {
                "IgnoreUnknown" => {}
                "IP" => {
                    // host-local accepts a comma list; we hand out one IPv4 address.
                    let first = v.split(',').next().unwrap_or_default();
                    let ip = first
                        .parse::<Ipv4Addr>()
                        .map_err(|_| invalid(format!("IP={v:?} is not an IPv4 address")))?;
                    args.ip = Some(ip);
                }
                "K8S_POD_NAME" => args.k8s_pod_name = Some(v.to_string()),
                "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = Some(v.to_string()),
                "K8S_POD_INFRA_CONTAINER_ID" => {
                    args.k8s_pod_infra_container_id = Some(v.to_string())
                }
                "K8S_POD_UID" => args.k8s_pod_uid = Some(v.to_string()),
                _ if ignore_unknown => {}
                _ => {
                    return Err(invalid(format!(
                        "unknown argument {k:?} (set IgnoreUnknown=1 to ignore it)"
                    )))
                }
            }
        }
        Ok(args)
    }
}

/// The whole environment of one invocation.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: Option<ContainerId>,
    /// Raw CNI_NETNS path; existence is checked by the command that needs it.
    pub netns: Option<String>,
    pub ifname: Option<IfName>,
    pub args: CniArgs,
}

impl Env {
    /// Reads the environment through `get` (std::env in the binary, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let raw = get("CNI_COMMAND").ok_or(Error::MissingEnv("CNI_COMMAND"))?;
        let command = Command::parse(&raw).ok_or_else(|| Error::InvalidEnv {
            name: "CNI_COMMAND",
            value: raw.clone(),
            reason: "expected ADD, DEL, CHECK, STATUS, VERSION or GC".into(),
        })?;
        let container_id = match get("CNI_CONTAINERID") {
            Some(v) => Some(ContainerId::parse(&v).ok_or_else(|| Error::InvalidEnv {
                name: "CNI_CONTAINERID",
                value: v.clone(),
                reason: "must start with a letter or digit followed by letters, digits, '_', '.' or '-'".into(),
            })?),
            None => None,
        };
        let ifname = match get("CNI_IFNAME") {
            Some(v) => Some(IfName::parse(&v).ok_or_else(|| Error::InvalidEnv {
                name: "CNI_IFNAME",
                value: v.clone(),
                reason: "not a valid interface name (1-15 bytes, no '/', ':' or spaces)".into(),
            })?),
            None => None,
        };
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let env = Env {
            command,
            container_id,
            netns: get("CNI_NETNS"),
            ifname,
            args,
        };
        // What each command needs, per the spec (DEL may come without CNI_NETNS).
        let needs: &[&'static str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Status | Command::Version | Command::Gc => &[],
        };
        for &name in needs {
            let present = match name {
                "CNI_CONTAINERID" => env.container_id.is_some(),
                "CNI_NETNS" => env.netns.is_some(),
                _ => env.ifname.is_some(),
            };
            if !present {
                return Err(Error::MissingEnv(name));
            }
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, Error> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn args_known_keys() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u1;IP=10.244.1.9",
        )
        .unwrap();
        assert_eq!(a.ip, Some("10.244.1.9".parse().unwrap()));
        assert_eq!(a.k8s_pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.k8s_pod_namespace.as_deref(), Some("default"));
        assert_eq!(a.k8s_pod_uid.as_deref(), Some("u1"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
    }

    #[test]
    fn args_unknown_and_malformed() {
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert!(e.to_string().contains("unknown argument \"FOO\""), "{e}");
        assert_eq!(e.code() as u32, 4);
        assert!(CniArgs::parse("FOO=bar;IgnoreUnknown=true").is_ok());
        assert!(CniArgs::parse("IgnoreUnknown=0;FOO=bar").is_err());
        assert!(CniArgs::parse("novalue").is_err());
        assert!(CniArgs::parse("IP=10.1.1").is_err());
    }

    proptest::proptest! {
        /// CNI_ARGS comes from the runtime: any string parses or fails cleanly.
        #[test]
        fn args_never_panic(raw in ".{0,80}") {
            let _ = CniArgs::parse(&raw);
        }
    }

    #[test]
    fn env_requirements_per_command() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(e.to_string(), "missing environment variable CNI_NETNS");
        let d = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(d.command, Command::Del);
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert_eq!(
            env(&[]).unwrap_err().to_string(),
            "missing environment variable CNI_COMMAND"
        );
        assert!(env(&[("CNI_COMMAND", "FROB")]).is_err());
        let bad = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert!(bad.to_string().contains("CNI_CONTAINERID"), "{bad}");
        let long = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "this-is-too-long0"),
        ]);
        assert!(long.is_err());
    }
}
