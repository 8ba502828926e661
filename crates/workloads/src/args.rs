//! The command line a workload travels on: what the lab puts after `weft workload`, and reads back
//! in the pod's process. [`Workload::to_args`] and [`Workload::from_args`] are exact inverses.

use crate::{AgnhostConfig, AgnhostMode, NginxConfig, Workload, WorkloadError};

impl Workload {
    /// `agnhost --mode netexec --tcp 8080 --udp 8081`, `nginx --port 80`, or `sleep`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        match self {
            Workload::Agnhost(config) => {
                args.push("agnhost".to_string());
                args.push("--mode".to_string());
                args.push(mode_name(config.mode).to_string());
                push_ports(&mut args, "--tcp", &config.tcp_ports);
                push_ports(&mut args, "--udp", &config.udp_ports);
            }
            Workload::Nginx(config) => {
                args.push("nginx".to_string());
                push_ports(&mut args, "--port", &config.ports);
            }
            Workload::Sleep => args.push("sleep".to_string()),
        }
        args
    }

    /// Reads what [`Workload::to_args`] wrote.
    pub fn from_args(args: &[String]) -> Result<Workload, WorkloadError> {
        let invalid = |reason: String| WorkloadError::InvalidWorkloadArgs {
            args: args.to_vec(),
            reason,
        };
        let Some((name, rest)) = args.split_first() else {
            return Err(invalid(
                "no workload named (agnhost, nginx or sleep)".into(),
            ));
        };
        let pairs = flag_pairs(rest).map_err(invalid)?;
        match name.as_str() {
            "agnhost" => {
                let mut mode = None;
                let (mut tcp_ports, mut udp_ports) = (Vec::new(), Vec::new());
                for (flag, value) in pairs {
                    match flag {
                        "--mode" => mode = Some(parse_mode(value).map_err(invalid)?),
                        "--tcp" => tcp_ports.push(parse_port(flag, value).map_err(invalid)?),
                        "--udp" => udp_ports.push(parse_port(flag, value).map_err(invalid)?),
                        other => return Err(invalid(format!("agnhost takes no flag {other:?}"))),
                    }
                }
                let mode = mode.ok_or_else(|| invalid("agnhost needs --mode".into()))?;
                Ok(Workload::Agnhost(AgnhostConfig {
                    mode,
                    tcp_ports,
                    udp_ports,
                }))
            }
            "nginx" => {
                let mut ports = Vec::new();
                for (flag, value) in pairs {
                    match flag {
                        "--port" => ports.push(parse_port(flag, value).map_err(invalid)?),
                        other => return Err(invalid(format!("nginx takes no flag {other:?}"))),
                    }
                }
                Ok(Workload::Nginx(NginxConfig { ports }))
            }
            "sleep" if rest.is_empty() => Ok(Workload::Sleep),
            "sleep" => Err(invalid("sleep takes no arguments".into())),
            other => Err(invalid(format!(
                "unknown workload {other:?} (agnhost, nginx or sleep)"
            ))),
        }
    }
}

fn push_ports(args: &mut Vec<String>, flag: &str, ports: &[u16]) {
    for port in ports {
        args.push(flag.to_string());
        args.push(port.to_string());
    }
}

fn mode_name(mode: AgnhostMode) -> &'static str {
    match mode {
        AgnhostMode::Netexec => "netexec",
        AgnhostMode::ServeHostname => "serve-hostname",
    }
}

fn parse_mode(value: &str) -> Result<AgnhostMode, String> {
    match value {
        "netexec" => Ok(AgnhostMode::Netexec),
        "serve-hostname" => Ok(AgnhostMode::ServeHostname),
        other => Err(format!(
            "agnhost mode {other:?} is neither netexec nor serve-hostname"
        )),
    }
}

fn parse_port(flag: &str, value: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?} is not a port from 0 to 65535"))
}

/// Splits `--flag value --flag value ...` into pairs.
fn flag_pairs(rest: &[String]) -> Result<Vec<(&str, &str)>, String> {
    rest.chunks(2)
        .map(|pair| match pair {
            [flag, value] if flag.starts_with("--") => Ok((flag.as_str(), value.as_str())),
            [flag, _] => Err(format!("expected a --flag, found {flag:?}")),
            [flag] => Err(format!("flag {flag:?} has no value")),
            _ => Err("empty flag pair".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips() {
        for workload in [
            Workload::Sleep,
            Workload::Nginx(NginxConfig {
                ports: vec![80, 8080],
            }),
            Workload::Nginx(NginxConfig { ports: vec![] }),
            Workload::Agnhost(AgnhostConfig {
                mode: AgnhostMode::Netexec,
                tcp_ports: vec![8080, 0],
                udp_ports: vec![8081],
            }),
            Workload::Agnhost(AgnhostConfig {
                mode: AgnhostMode::ServeHostname,
                tcp_ports: vec![],
                udp_ports: vec![9376],
            }),
        ] {
            let args = workload.to_args();
            assert_eq!(Workload::from_args(&args).unwrap(), workload, "{args:?}");
        }
    }

    #[test]
    fn the_format_is_readable() {
        let workload = Workload::Agnhost(AgnhostConfig {
            mode: AgnhostMode::Netexec,
            tcp_ports: vec![8080],
            udp_ports: vec![8081],
        });
        assert_eq!(
            workload.to_args(),
            strings(&["agnhost", "--mode", "netexec", "--tcp", "8080", "--udp", "8081"])
        );
    }

    #[test]
    fn refuses_malformed_args() {
        for args in [
            &[][..],
            &["apache"],
            &["sleep", "10"],
            &["agnhost", "--tcp", "80"],
            &["agnhost", "--mode", "porter"],
            &["agnhost", "--mode", "netexec", "--tcp"],
            &["agnhost", "--mode", "netexec", "--tcp", "http"],
            &["agnhost", "--mode", "netexec", "tcp", "80"],
            &["nginx", "--tcp", "80"],
            &["nginx", "--port", "65536"],
        ] {
            let err = Workload::from_args(&strings(args)).unwrap_err();
            assert!(
                err.to_string().starts_with("workload arguments"),
                "{args:?}: {err}"
            );
        }
    }
}
