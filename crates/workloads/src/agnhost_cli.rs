//! agnhost's command line, as a container's `args` give it (`netexec --http-port=8080`,
//! `serve-hostname --port 9376`, `pause`), read into an [`AgnhostConfig`]. Flags the built-in server
//! cannot honour are refused by name rather than ignored, so a manifest never silently means less.

use crate::image::DeclaredPort;
use crate::{AgnhostConfig, AgnhostMode, Protocol, Workload, WorkloadError};

/// netexec's defaults.
const NETEXEC_HTTP_PORT: u16 = 8080;
const NETEXEC_UDP_PORT: u16 = 8081;
/// serve-hostname's default.
const SERVE_HOSTNAME_PORT: u16 = 9376;
/// What agnhost without arguments serves when no TCP port is declared.
const DEFAULT_HTTP_PORT: u16 = 8080;

/// Reads agnhost `args` (subcommand first) into a workload.
pub fn parse(
    image: &str,
    args: &[String],
    ports: &[DeclaredPort],
) -> Result<Workload, WorkloadError> {
    let Some((subcommand, flags)) = args.split_first() else {
        return Ok(Workload::Agnhost(from_declared_ports(ports)));
    };
    let mut flags = Flags {
        image,
        subcommand,
        rest: flags,
    };
    match subcommand.as_str() {
        "netexec" => flags.netexec().map(Workload::Agnhost),
        "serve-hostname" => flags.serve_hostname().map(Workload::Agnhost),
        "pause" => {
            if let Some((flag, _)) = flags.next()? {
                return Err(flags.unsupported(&flag));
            }
            Ok(Workload::Sleep)
        }
        other => Err(WorkloadError::UnsupportedAgnhostCommand {
            image: image.to_string(),
            subcommand: other.to_string(),
        }),
    }
}

/// Without arguments: HTTP on every declared TCP port, UDP echo on every declared UDP port.
fn from_declared_ports(ports: &[DeclaredPort]) -> AgnhostConfig {
    let mut tcp_ports = Vec::new();
    let mut udp_ports = Vec::new();
    for port in ports {
        let list = match port.protocol {
            Protocol::Tcp => &mut tcp_ports,
            Protocol::Udp => &mut udp_ports,
            // std has no SCTP sockets; an SCTP port is left unserved (and connections to it refused).
            Protocol::Sctp => continue,
        };
        if !list.contains(&port.port) {
            list.push(port.port);
        }
    }
    if tcp_ports.is_empty() {
        tcp_ports.push(DEFAULT_HTTP_PORT);
    }
    AgnhostConfig {
        mode: AgnhostMode::Netexec,
        tcp_ports,
        udp_ports,
    }
}

/// A Go/pflag style flag reader: `--name=value`, `--name value`, `-name`, bool flags bare.
struct Flags<'a> {
    image: &'a str,
    subcommand: &'a str,
    rest: &'a [String],
}

impl Flags<'_> {
    /// The next flag's name and, when written with `=`, its value.
    fn next(&mut self) -> Result<Option<(String, Option<String>)>, WorkloadError> {
        let Some((arg, rest)) = self.rest.split_first() else {
            return Ok(None);
        };
        self.rest = rest;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            // agnhost takes no positional arguments after its subcommand.
            return Err(self.unsupported(arg));
        };
        Ok(Some(match body.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (body.to_string(), None),
        }))
    }

    /// The value of a flag that needs one: after `=`, or the next argument.
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, WorkloadError> {
        if let Some(value) = inline {
            return Ok(value);
        }
        let Some((value, rest)) = self.rest.split_first() else {
            return Err(WorkloadError::MissingAgnhostFlagValue {
                image: self.image.to_string(),
                subcommand: self.subcommand.to_string(),
                flag: flag.to_string(),
            });
        };
        self.rest = rest;
        Ok(value.clone())
    }

    /// A port, or `None` for agnhost's "-1: disabled".
    fn port(&mut self, flag: &str, inline: Option<String>) -> Result<Option<u16>, WorkloadError> {
        let value = self.value(flag, inline)?;
        if value == "-1" {
            return Ok(None);
        }
        value
            .parse::<u16>()
            .map(Some)
            .map_err(|_| self.invalid(flag, &value, "a port from 0 to 65535, or -1 for none"))
    }

    /// A bool flag: bare means true, `=value` must be a Go bool.
    fn bool(&self, flag: &str, inline: Option<String>) -> Result<bool, WorkloadError> {
        match inline.as_deref() {
            None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(self.invalid(flag, other, "true or false")),
        }
    }

    fn netexec(&mut self) -> Result<AgnhostConfig, WorkloadError> {
        let mut http_port = Some(NETEXEC_HTTP_PORT);
        let mut udp_port = Some(NETEXEC_UDP_PORT);
        while let Some((flag, inline)) = self.next()? {
            match flag.as_str() {
                "http-port" => http_port = self.port(&flag, inline)?,
                "udp-port" => udp_port = self.port(&flag, inline)?,
                // Disabled SCTP is what we do anyway; an enabled one cannot be served (no SCTP in std).
                "sctp-port" => {
                    if self.port(&flag, inline.clone())?.is_some() {
                        return Err(self.unsupported(&flag));
                    }
                }
                // Only delays exit after SIGTERM; the lab kills workloads itself, so it changes nothing.
                "delay-shutdown" => {
                    let value = self.value(&flag, inline)?;
                    if value.parse::<u32>().is_err() {
                        return Err(self.invalid(&flag, &value, "a number of seconds"));
                    }
                }
                _ => return Err(self.unsupported(&flag)),
            }
        }
        Ok(AgnhostConfig {
            mode: AgnhostMode::Netexec,
            tcp_ports: http_port.into_iter().collect(),
            udp_ports: udp_port.into_iter().collect(),
        })
    }

    fn serve_hostname(&mut self) -> Result<AgnhostConfig, WorkloadError> {
        let mut port = SERVE_HOSTNAME_PORT;
        let (mut http, mut udp) = (true, false);
        while let Some((flag, inline)) = self.next()? {
            match flag.as_str() {
                "port" => {
                    port = self
                        .port(&flag, inline)?
                        .ok_or_else(|| self.invalid(&flag, "-1", "a port from 0 to 65535"))?;
                }
                // `--http` is a bool in agnhost; a port number after it is taken as `--port`.
                "http" => match inline.as_deref().map(str::parse::<u16>) {
                    Some(Ok(number)) => port = number,
                    _ => {
                        let next_is_port = inline.is_none()
                            && self.rest.first().is_some_and(|a| a.parse::<u16>().is_ok());
                        if next_is_port {
                            port = self.port(&flag, None)?.unwrap_or(port);
                        } else {
                            http = self.bool(&flag, inline)?;
                        }
                    }
                },
                "udp" => udp = self.bool(&flag, inline)?,
                // Raw TCP mode (hostname then close) is not built in; an explicit false is fine.
                "tcp" => {
                    if self.bool(&flag, inline)? {
                        return Err(self.unsupported(&flag));
                    }
                }
                // Closing after each answer only changes connection reuse, never what is answered.
                "close" => {
                    self.bool(&flag, inline)?;
                }
                _ => return Err(self.unsupported(&flag)),
            }
        }
        Ok(AgnhostConfig {
            mode: AgnhostMode::ServeHostname,
            tcp_ports: if http { vec![port] } else { Vec::new() },
            udp_ports: if udp { vec![port] } else { Vec::new() },
        })
    }

    fn unsupported(&self, flag: &str) -> WorkloadError {
        WorkloadError::UnsupportedAgnhostFlag {
            image: self.image.to_string(),
            subcommand: self.subcommand.to_string(),
            flag: flag.to_string(),
        }
    }

    fn invalid(&self, flag: &str, value: &str, expected: &'static str) -> WorkloadError {
        WorkloadError::InvalidAgnhostFlagValue {
            image: self.image.to_string(),
            subcommand: self.subcommand.to_string(),
            flag: flag.to_string(),
            value: value.to_string(),
            expected,
        }
    }
}

#[cfg(test)]
#[path = "agnhost_cli_tests.rs"]
mod tests;
