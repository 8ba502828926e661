//! `weft port-forward`: a local port that leads into a pod, the way kubectl's does. kubectl's
//! kubelet enters the pod's network namespace and connects to localhost there, so a forward
//! reaches a server even when it listens only on the pod's loopback, and needs no route to the
//! pod network from the host. We do the same: listen on the host's loopback only, and for each
//! connection open a socket inside the pod's namespace (a thread-local `setns`; the socket
//! stays there) to 127.0.0.1:REMOTE, then copy bytes both ways.
//!
//! For `svc/NAME` the remote port is a service port: like kubectl, we pick one ready pod behind
//! the Service once, and forward to the port that service port targets on that pod. No traffic
//! goes through the Service's virtual IP.

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_dataplane::NetNs;
use weft_lab::layout::Layout;
use weft_model::config::ClusterName;
use weft_model::object::{Object, ObjectKey};
use weft_sources::Store;

use crate::table as cells;

/// How long a connection into the pod may take before the client's connection is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct PortForwardArgs {
    /// What to forward to: NAME or pod/NAME (a pod), svc/NAME (one ready pod of the Service),
    /// deploy/NAME (one ready pod of the Deployment).
    target: String,
    /// [LOCAL:]REMOTE, one or more: `8080` (same port), `8080:80`, `:80` or `0:80` (a free local
    /// port). REMOTE may be a port name (a container port of the pod, or a port of the Service).
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    ports: Vec<String>,
    /// The namespace of the pod or service.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    namespace: String,
}

/// A remote port as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemotePort {
    Number(u16),
    Name(String),
}

/// One `[LOCAL:]REMOTE` argument. `local: None` means "the same number as the remote port",
/// `Some(0)` means "any free port".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub local: Option<u16>,
    pub remote: RemotePort,
}

fn port_number(word: &str, what: &str, spec: &str) -> Result<u16> {
    word.parse::<u16>().map_err(|_| {
        anyhow!("bad port spec {spec:?}: {what} port {word:?} is not a number from 0 to 65535")
    })
}

impl PortSpec {
    pub fn parse(spec: &str) -> Result<PortSpec> {
        let (local, remote) = match spec.split_once(':') {
            Some((local, remote)) => (Some(local), remote),
            None => (None, spec),
        };
        if remote.is_empty() {
            bail!("bad port spec {spec:?}: the remote port is missing (use [LOCAL:]REMOTE)");
        }
        let remote = if remote.bytes().all(|b| b.is_ascii_digit()) {
            match port_number(remote, "remote", spec)? {
                0 => bail!("bad port spec {spec:?}: the remote port cannot be 0"),
                n => RemotePort::Number(n),
            }
        } else if remote.contains(':') {
            bail!("bad port spec {spec:?}: use [LOCAL:]REMOTE")
        } else if valid_port_name(remote) {
            RemotePort::Name(remote.to_string())
        } else {
            bail!("bad port spec {spec:?}: {remote:?} is neither a port number nor a port name")
        };
        let local = match local {
            None => None,
            Some("") => Some(0),
            Some(word) => Some(port_number(word, "local", spec)?),
        };
        Ok(PortSpec { local, remote })
    }
}

/// A Kubernetes port name: 1-15 lower-case letters, digits and '-', with a letter.
fn valid_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// One forward, resolved: where to listen and which port in the pod to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub local: u16,
    /// What the user asked for, for the "Forwarding from" line (kubectl prints the service
    /// port for a Service).
    pub shown: String,
    pub pod_port: u16,
}

/// The named container port of a pod.
fn pod_port_by_name(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Resolves specs against a pod (remote = a container port number or name).
pub fn forwards_to_pod(pod: &Pod, specs: &[PortSpec]) -> Result<Vec<Forward>> {
    specs
        .iter()
        .map(|spec| {
            let port = match &spec.remote {
                RemotePort::Number(n) => *n,
                RemotePort::Name(name) => pod_port_by_name(pod, name).ok_or_else(|| {
                    anyhow!("pod {} has no container port named {name:?}", pod_name(pod))
                })?,
            };
            Ok(Forward {
                local: spec.local.unwrap_or(port),
                shown: port.to_string(),
                pod_port: port,
            })
        })
        .collect()
}

/// The service port a spec names (by number or name).
fn service_port<'a>(svc: &'a Service, remote: &RemotePort) -> Result<&'a ServicePort> {
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let found = ports.into_iter().flatten().find(|p| match remote {
        RemotePort::Number(n) => p.port == i32::from(*n),
        RemotePort::Name(want) => p.name.as_deref() == Some(want.as_str()),
    });
    found.ok_or_else(|| {
        let have = cells::ports_cell(svc);
        match remote {
            RemotePort::Number(n) => anyhow!("service {name} has no port {n} (its ports: {have})"),
            RemotePort::Name(n) => {
                anyhow!("service {name} has no port named {n:?} (its ports: {have})")
            }
        }
    })
}

/// The first ready endpoint of the Service's slices that is a pod: (pod name, its slice).
pub fn pick_endpoint_pod<'a>(slices: &[&'a EndpointSlice]) -> Option<(String, &'a EndpointSlice)> {
    slices.iter().find_map(|slice| {
        slice
            .endpoints
            .iter()
            .filter(|e| cells::endpoint_ready(e))
            .filter_map(|e| e.target_ref.as_ref())
            .find(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod" && r.name.is_some())
            .and_then(|r| r.name.clone())
            .map(|name| (name, *slice))
    })
}

/// Resolves specs against a Service and the pod picked behind it: the slice's port of the same
/// name is the port that service port targets on this pod (the endpoints controller resolved
/// named target ports per pod); without one, the targetPort (a number, or a container port
/// name looked up on the pod), then the service port itself.
pub fn forwards_to_service(
    svc: &Service,
    slice: &EndpointSlice,
    pod: &Pod,
    specs: &[PortSpec],
) -> Result<Vec<Forward>> {
    let svc_name = svc.metadata.name.as_deref().unwrap_or("");
    specs
        .iter()
        .map(|spec| {
            let sp = service_port(svc, &spec.remote)?;
            let port_name = sp.name.as_deref().unwrap_or("");
            let from_slice = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port);
            let target = match (from_slice, &sp.target_port) {
                (Some(n), _) => u16::try_from(n).ok(),
                (None, Some(IntOrString::Int(n))) => u16::try_from(*n).ok(),
                (None, Some(IntOrString::String(name))) => pod_port_by_name(pod, name),
                (None, None) => u16::try_from(sp.port).ok(),
            };
            let pod_port = target.filter(|p| *p != 0).ok_or_else(|| {
                anyhow!(
                    "port {} of service {svc_name} targets {} which pod {} does not have",
                    sp.port,
                    cells::target_port_word(sp),
                    pod_name(pod)
                )
            })?;
            let svc_port = u16::try_from(sp.port)
                .map_err(|_| anyhow!("service {svc_name} has an invalid port {}", sp.port))?;
            Ok(Forward {
                local: spec.local.unwrap_or(svc_port),
                shown: svc_port.to_string(),
                pod_port,
            })
        })
        .collect()
}

/// The pod to forward to and the resolved forwards, from what the user typed.
fn resolve(
    store: &Store,
    namespace: &str,
    target: &str,
    specs: &[PortSpec],
) -> Result<(Pod, Vec<Forward>)> {
    let (kind, name) = match target.split_once('/') {
        Some((kind, name)) => (crate::resources::kind_of(kind), name),
        None => ("Pod".to_string(), target),
    };
    match kind.as_str() {
        "Pod" => {
            let pod = crate::exec_local::get_pod(store, namespace, name)?;
            let forwards = forwards_to_pod(&pod, specs)?;
            Ok((pod, forwards))
        }
        "Service" => {
            let svc = match store.get(&ObjectKey {
                kind: "Service".into(),
                namespace: Some(namespace.into()),
                name: name.into(),
            })? {
                Some(Object::Service(s)) => s,
                _ => bail!("service {name:?} not found in namespace {namespace}"),
            };
            if cells::service_type(&svc) == "ExternalName" {
                bail!("service {name} is of type ExternalName: it has no pods to forward to");
            }
            // Check the ports first: a wrong port is the user's to fix whatever the pods do.
            for spec in specs {
                service_port(&svc, &spec.remote)?;
            }
            let slices = crate::exec_local::service_slices(store, &svc)?;
            let mine: Vec<&EndpointSlice> = slices.iter().collect();
            let Some((pod_name, slice)) = pick_endpoint_pod(&mine) else {
                let why = crate::printers::no_endpoints_hint(&svc, &mine).unwrap_or_else(|| {
                    format!("service {name} has no ready endpoint that is a pod")
                });
                bail!("no ready endpoint to forward to: {why}");
            };
            let pod = crate::exec_local::get_pod(store, namespace, &pod_name)
                .with_context(|| format!("the endpoint of service {name}"))?;
            let forwards = forwards_to_service(&svc, slice, &pod, specs)?;
            Ok((pod, forwards))
        }
        "Deployment" => {
            let pod = crate::exec_local::resolve_pod(store, namespace, &format!("deploy/{name}"))?;
            let forwards = forwards_to_pod(&pod, specs)?;
            Ok((pod, forwards))
        }
        other => {
            bail!("cannot port-forward to a {other}; give NAME, pod/NAME, svc/NAME or deploy/NAME")
        }
    }
}

/// Binds 127.0.0.1:port (0 = any free port), then [::1] on the same port when the host has
/// IPv6 loopback. The IPv4 one must work; the IPv6 one is a bonus, as with kubectl.
fn listen(port: u16) -> Result<Vec<TcpListener>> {
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => {
            anyhow!("unable to listen on port {port}: 127.0.0.1:{port} is already in use")
        }
        ErrorKind::PermissionDenied => {
            anyhow!(
                "unable to listen on port {port}: permission denied (ports below 1024 need root)"
            )
        }
        _ => anyhow!("unable to listen on 127.0.0.1:{port}: {e}"),
    })?;
    let port = v4.local_addr()?.port();
    let mut listeners = vec![v4];
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(v6) => listeners.push(v6),
        Err(e) => eprintln!("Unable to listen on [::1]:{port} ({e}); forwarding on IPv4 only"),
    }
    Ok(listeners)
}

pub fn port_forward(lab: &ClusterName, args: PortForwardArgs) -> Result<i32> {
    let specs = args
        .ports
        .iter()
        .map(|s| PortSpec::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let (layout, _, store) = weft_lab::lab::open(lab, &Layout::state_root_from_env())?;
    let (pod, forwards) = resolve(&store, &args.namespace, &args.target, &specs)?;
    let name = pod_name(&pod).to_string();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let netns_path = Path::new("/run/netns").join(layout.pod_netns(&uid));
    let netns = open_pod_netns(&pod, &netns_path)?;
    let netns = Arc::new(netns);

    // Bind everything before serving anything, so a taken port fails the whole command.
    let mut bound = Vec::new();
    for fwd in &forwards {
        bound.push((fwd.clone(), listen(fwd.local)?));
    }
    let mut threads = Vec::new();
    let mut stdout = std::io::stdout();
    for (fwd, listeners) in bound {
        for listener in listeners {
            let addr = listener.local_addr()?;
            writeln!(stdout, "Forwarding from {addr} -> {}", fwd.shown)?;
            let netns = Arc::clone(&netns);
            let pod = name.clone();
            let port = fwd.pod_port;
            threads.push(std::thread::spawn(move || {
                serve(listener, netns, pod, port)
            }));
        }
    }
    stdout.flush()?;
    // Serves until killed (Ctrl-C, SIGTERM): the default signal action ends the process, and
    // there is nothing to clean up that the kernel does not.
    for t in threads {
        let _ = t.join();
    }
    Ok(0)
}

fn open_pod_netns(pod: &Pod, path: &PathBuf) -> Result<NetNs> {
    let name = pod_name(pod);
    if !path.exists() {
        bail!(
            "pod {name} has no network namespace yet (status {})",
            weft_model::pod::phase(pod)
        );
    }
    NetNs::open(path).with_context(|| format!("opening the network namespace of pod {name}"))
}

fn serve(listener: TcpListener, netns: Arc<NetNs>, pod: String, port: u16) {
    let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    for conn in listener.incoming() {
        let client = match conn {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error accepting a connection on port {local}: {e}");
                continue;
            }
        };
        println!("Handling connection for {local}");
        let netns = Arc::clone(&netns);
        let pod = pod.clone();
        std::thread::spawn(move || {
            if let Err(e) = forward(client, &netns, port) {
                eprintln!("error forwarding port {port} to pod {pod}: {e:#}");
            }
        });
    }
}

/// One connection: connect inside the pod, then copy both ways. When the pod's side ends, the
/// client is closed too; when the client stops sending, the pod sees EOF and its answer still
/// flows back (HTTP/1.0 clients and `nc -q` rely on that half-close).
fn forward(client: TcpStream, netns: &NetNs, port: u16) -> Result<()> {
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let upstream = netns
        .run(|| TcpStream::connect_timeout(&target, CONNECT_TIMEOUT))
        .context("entering the pod's network namespace")?
        .with_context(|| format!("connecting to {target} in the pod"))?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_r, mut upstream_w) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut upstream_w);
        let _ = upstream_w.shutdown(Shutdown::Write);
    });
    let (mut upstream_r, mut client_w) = (upstream, client);
    let _ = std::io::copy(&mut upstream_r, &mut client_w);
    let _ = client_w.shutdown(Shutdown::Both);
    let _ = upstream_r.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(s: &str) -> PortSpec {
        PortSpec::parse(s).expect(s)
    }

    #[test]
    fn port_specs_like_kubectl() {
        assert_eq!(
            spec("8080"),
            PortSpec {
                local: None,
                remote: RemotePort::Number(8080)
            }
        );
        assert_eq!(
            spec("9000:80"),
            PortSpec {
                local: Some(9000),
                remote: RemotePort::Number(80)
            }
        );
        assert_eq!(
            spec(":80"),
            PortSpec {
                local: Some(0),
                remote: RemotePort::Number(80)
            }
        );
        assert_eq!(
            spec("0:80"),
            PortSpec {
                local: Some(0),
                remote: RemotePort::Number(80)
            }
        );
        assert_eq!(
            spec("8443:https"),
            PortSpec {
                local: Some(8443),
                remote: RemotePort::Name("https".into())
            }
        );
    }

    #[test]
    fn bad_port_specs_say_what_is_wrong() {
        let err = |s: &str| PortSpec::parse(s).unwrap_err().to_string();
        assert!(
            err("80:").contains("remote port is missing"),
            "{}",
            err("80:")
        );
        assert!(err("x:80").contains("local port \"x\" is not a number"));
        assert!(err("70000").contains("remote port \"70000\" is not a number"));
        assert!(err("1:2:3").contains("use [LOCAL:]REMOTE"));
        assert!(err("0").contains("cannot be 0"));
        assert!(err("Bad_Name").contains("neither a port number nor a port name"));
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        }))
        .unwrap()
    }

    #[test]
    fn pod_forwards_resolve_names() {
        let f = forwards_to_pod(&pod(), &[spec("http"), spec("0:9090")]).unwrap();
        assert_eq!(
            f[0],
            Forward {
                local: 8080,
                shown: "8080".into(),
                pod_port: 8080
            }
        );
        assert_eq!(
            f[1],
            Forward {
                local: 0,
                shown: "9090".into(),
                pod_port: 9090
            }
        );
        let e = forwards_to_pod(&pod(), &[spec("grpc")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "pod web-1 has no container port named \"grpc\"");
    }

    #[test]
    fn service_forwards_target_the_slice_port_of_the_picked_pod() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 81, "targetPort": 9000},
                {"name": "named", "port": 82, "targetPort": "http"},
            ]},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x"}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.0.9"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "web-0"}},
                {"addresses": ["10.244.0.10"], "targetRef": {"kind": "Pod", "name": "web-1"}},
            ],
        }))
        .unwrap();
        let (picked, _) = pick_endpoint_pod(&[&slice]).unwrap();
        assert_eq!(picked, "web-1");
        let f = forwards_to_service(
            &svc,
            &slice,
            &pod(),
            &[spec("0:80"), spec("81"), spec("named")],
        )
        .unwrap();
        assert_eq!(
            f[0],
            Forward {
                local: 0,
                shown: "80".into(),
                pod_port: 8080
            }
        );
        assert_eq!(
            f[1],
            Forward {
                local: 81,
                shown: "81".into(),
                pod_port: 9000
            }
        );
        assert_eq!(
            f[2],
            Forward {
                local: 82,
                shown: "82".into(),
                pod_port: 8080
            }
        );
        let e = forwards_to_service(&svc, &slice, &pod(), &[spec("443")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "service web has no port 443 (its ports: 80/TCP,81/TCP,82/TCP)"
        );
    }
}
