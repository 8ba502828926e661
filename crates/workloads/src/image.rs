//! Which containers are built in: the decision from a container's image, command, args and ports.

use crate::{agnhost_cli, NginxConfig, Protocol, Workload, WorkloadError};

/// nginx images listen here whatever the pod declares.
const NGINX_PORT: u16 = 80;

/// A port a container declares (`containerPort` and `protocol` in its pod spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeclaredPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// Decides what a container runs when its image is built in; `Ok(None)` means it is not, and the
/// container's `command` and `args` run as given.
///
/// - agnhost (any registry and tag): `args` are read like agnhost's own command line (`netexec`,
///   `serve-hostname`, `pause`); without args it serves HTTP on every declared TCP port (8080 when
///   none) and UDP on every declared UDP port. A `command` runs as given, unless it is the agnhost
///   binary itself (`/agnhost netexec ...`), which is read like args.
/// - nginx: a web server on port 80 and every declared TCP port, unless a `command` other than nginx
///   replaces it (args to nginx, like `-g "daemon off;"`, change nothing here).
/// - busybox and pause without command or args: sleep until killed.
pub fn builtin_for(
    image: &str,
    command: &[String],
    args: &[String],
    ports: &[DeclaredPort],
) -> Result<Option<Workload>, WorkloadError> {
    let name = image_name(image);
    let command_is = |binary: &str| command.first().is_some_and(|c| basename(c) == binary);
    match name {
        "agnhost" if command.is_empty() => agnhost_cli::parse(image, args, ports).map(Some),
        "agnhost" if command_is("agnhost") => {
            let full: Vec<String> = command[1..].iter().chain(args).cloned().collect();
            agnhost_cli::parse(image, &full, ports).map(Some)
        }
        "nginx" if command.is_empty() || command_is("nginx") => {
            let mut served = vec![NGINX_PORT];
            for port in ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                if !served.contains(&port.port) {
                    served.push(port.port);
                }
            }
            Ok(Some(Workload::Nginx(NginxConfig { ports: served })))
        }
        "pause" if command.is_empty() && args.is_empty() => Ok(Some(Workload::Sleep)),
        name if name.starts_with("busybox") && command.is_empty() && args.is_empty() => {
            Ok(Some(Workload::Sleep))
        }
        _ => Ok(None),
    }
}

/// The repository's last path component: `registry.k8s.io/e2e-test-images/agnhost:2.53` -> `agnhost`,
/// `localhost:5000/nginx@sha256:...` -> `nginx`.
fn image_name(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map_or(last, |(name, _tag)| name)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgnhostConfig, AgnhostMode};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn tcp(port: u16) -> DeclaredPort {
        DeclaredPort {
            port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn image_names() {
        for (image, name) in [
            ("registry.k8s.io/e2e-test-images/agnhost:2.53", "agnhost"),
            ("agnhost", "agnhost"),
            ("nginx:1.27", "nginx"),
            ("docker.io/library/nginx:alpine", "nginx"),
            ("localhost:5000/nginx@sha256:abcd", "nginx"),
            ("localhost:5000/busybox", "busybox"),
            ("", ""),
        ] {
            assert_eq!(image_name(image), name, "{image}");
        }
    }

    #[test]
    fn agnhost_images_with_any_registry_and_tag() {
        for image in [
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            "agnhost",
            "k8s.gcr.io/e2e-test-images/agnhost:2.39@sha256:7e8bdd",
        ] {
            let workload = builtin_for(image, &[], &strings(&["netexec"]), &[]).unwrap();
            assert_eq!(
                workload,
                Some(Workload::Agnhost(AgnhostConfig {
                    mode: AgnhostMode::Netexec,
                    tcp_ports: vec![8080],
                    udp_ports: vec![8081],
                })),
                "{image}"
            );
        }
    }

    #[test]
    fn agnhost_command_runs_as_given_unless_it_is_agnhost() {
        let image = "registry.k8s.io/e2e-test-images/agnhost:2.53";
        let sh = strings(&["/bin/sh", "-c", "sleep 1"]);
        assert_eq!(builtin_for(image, &sh, &[], &[]).unwrap(), None);
        let command = strings(&["/agnhost", "serve-hostname"]);
        let workload = builtin_for(image, &command, &strings(&["--port", "9000"]), &[]).unwrap();
        assert_eq!(
            workload,
            Some(Workload::Agnhost(AgnhostConfig {
                mode: AgnhostMode::ServeHostname,
                tcp_ports: vec![9000],
                udp_ports: vec![],
            }))
        );
    }

    #[test]
    fn agnhost_errors_name_the_image() {
        let image = "registry.k8s.io/e2e-test-images/agnhost:2.53";
        let err = builtin_for(image, &[], &strings(&["porter"]), &[]).unwrap_err();
        assert!(err.to_string().contains(image), "{err}");
        assert!(err.to_string().contains("porter"), "{err}");
    }

    #[test]
    fn nginx_serves_80_and_declared_tcp_ports() {
        let udp = DeclaredPort {
            port: 53,
            protocol: Protocol::Udp,
        };
        for image in ["nginx", "nginx:1.27", "docker.io/library/nginx:alpine"] {
            let workload = builtin_for(image, &[], &[], &[tcp(80), tcp(8080), udp]).unwrap();
            assert_eq!(
                workload,
                Some(Workload::Nginx(NginxConfig {
                    ports: vec![80, 8080]
                })),
                "{image}"
            );
        }
        let args = strings(&["-g", "daemon off;"]);
        let nginx = strings(&["nginx"]);
        assert!(builtin_for("nginx", &nginx, &args, &[]).unwrap().is_some());
        let sh = strings(&["sh", "-c", "echo hi"]);
        assert_eq!(builtin_for("nginx", &sh, &[], &[]).unwrap(), None);
    }

    #[test]
    fn busybox_and_pause_sleep_without_a_command() {
        for image in [
            "busybox",
            "busybox:1.36",
            "docker.io/library/busybox:latest",
            "registry.k8s.io/pause:3.10",
        ] {
            assert_eq!(
                builtin_for(image, &[], &[], &[]).unwrap(),
                Some(Workload::Sleep),
                "{image}"
            );
        }
        let command = strings(&["sleep", "3600"]);
        assert_eq!(builtin_for("busybox", &command, &[], &[]).unwrap(), None);
        // busybox has no entrypoint, so args alone are the command.
        assert_eq!(builtin_for("busybox", &[], &command, &[]).unwrap(), None);
    }

    #[test]
    fn other_images_are_not_built_in() {
        for image in [
            "redis",
            "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7",
            "nginx-unprivileged",
            "myagnhost",
        ] {
            assert_eq!(builtin_for(image, &[], &[], &[]).unwrap(), None, "{image}");
        }
    }
}
