//! The lab's API server as a daemon: its certificates, where it listens (127.0.0.1 on a port
//! chosen once, for kubectl on this machine, and the fabric's gateway address on 6443, which
//! nodes reach directly and pods reach through the `kubernetes` Service), the kubeconfig that
//! points at it, and the `kubernetes` Service itself.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use weft_apiserver::{Api, Pki, PodTools};
use weft_model::config::ClusterConfig;
use weft_model::object::Object;
use weft_sources::Store;

use crate::layout::Layout;
use crate::LabError;

/// Where pods and nodes reach the API server (kube-apiserver's usual port).
pub const FABRIC_PORT: u16 = 6443;

/// The `kubernetes` Service's address: the first of the service CIDR, as in every cluster.
pub fn kubernetes_service_ip(config: &ClusterConfig) -> Ipv4Addr {
    config
        .service_cidr
        .nth(1)
        .unwrap_or_else(|| config.service_cidr.network())
}

/// Every name and address a client may use for the server: the serving certificate's SANs.
pub fn cert_hosts(config: &ClusterConfig) -> Vec<String> {
    let domain = &config.cluster_domain;
    vec![
        "127.0.0.1".into(),
        "localhost".into(),
        config.node_gateway_ip().to_string(),
        kubernetes_service_ip(config).to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
    ]
}

fn pki_error(e: weft_apiserver::pki::PkiError) -> LabError {
    LabError::Invalid(format!("lab PKI: {e}"))
}

/// The variables every container gets for the `kubernetes` Service, which in-cluster clients
/// (client-go, kube-rs) read to find the API server.
pub fn service_env(config: &ClusterConfig) -> Vec<(String, String)> {
    let ip = kubernetes_service_ip(config);
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), ip.to_string()),
        ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()),
        ("KUBERNETES_PORT".into(), format!("tcp://{ip}:443")),
        ("KUBERNETES_PORT_443_TCP".into(), format!("tcp://{ip}:443")),
        ("KUBERNETES_PORT_443_TCP_PROTO".into(), "tcp".into()),
        ("KUBERNETES_PORT_443_TCP_PORT".into(), "443".into()),
        ("KUBERNETES_PORT_443_TCP_ADDR".into(), ip.to_string()),
    ]
}

/// Writes a pod's service account directory: the lab's service account token, the CA that
/// signed the server's certificate, and the pod's namespace.
pub fn write_service_account(layout: &Layout, dir: &Path, namespace: &str) -> Result<(), LabError> {
    let pki = Pki::at(&layout.pki_dir());
    let token = pki.service_account_token().map_err(pki_error)?;
    let ca = pki.read(&pki.ca_cert()).map_err(pki_error)?;
    weft_apiserver::pki::create_private_dir(dir).map_err(pki_error)?;
    for (file, text) in [
        ("token", token.as_str()),
        ("ca.crt", ca.as_str()),
        ("namespace", namespace),
    ] {
        weft_apiserver::pki::write_private(&dir.join(file), text.as_bytes()).map_err(pki_error)?;
    }
    Ok(())
}

/// Makes the PKI, starts the server and waits until it answers; returns its local URL.
pub fn start(layout: &Layout, config: &ClusterConfig) -> Result<String, LabError> {
    Pki::at(&layout.pki_dir())
        .ensure(&cert_hosts(config))
        .map_err(pki_error)?;
    spawn(layout)?;
    let url = wait_listening(layout, Duration::from_secs(20))?;
    write_kubeconfig(layout, &url)?;
    let fabric = format!("https://{}:{FABRIC_PORT}", config.node_gateway_ip());
    let text = kubeconfig(layout, &fabric)?;
    weft_apiserver::pki::write_private(&layout.fabric_kubeconfig_file(), text.as_bytes())
        .map_err(pki_error)?;
    Ok(url)
}

pub(crate) fn spawn(layout: &Layout) -> Result<(), LabError> {
    crate::lab::spawn_daemon(
        layout,
        &["lab", "apiserver"],
        None,
        "apiserver",
        &layout.apiserver_pid_file(),
    )
}

/// The server's URL once it accepts connections.
pub fn wait_listening(layout: &Layout, wait: Duration) -> Result<String, LabError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(port) = fs::read_to_string(layout.apiserver_port_file())
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(format!("https://127.0.0.1:{port}"));
            }
        }
        if Instant::now() >= deadline {
            let log = layout.logs_dir().join("apiserver.log");
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(LabError::Invalid(format!(
                "the API server did not start within {}s; its log ({}) ends: {}",
                wait.as_secs(),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The kubeconfig for this lab, with the CA and the admin's certificate inline.
pub fn kubeconfig(layout: &Layout, url: &str) -> Result<String, LabError> {
    let pki = Pki::at(&layout.pki_dir());
    let b64 = |path: &Path| -> Result<String, LabError> {
        let pem = pki.read(path).map_err(pki_error)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(pem))
    };
    let name = format!("weft-{}", layout.name());
    let user = format!("{name}-admin");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url, "certificate-authority-data": b64(&pki.ca_cert())?}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(&pki.admin_cert())?, "client-key-data": b64(&pki.admin_key())?}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    });
    serde_norway::to_string(&doc)
        .map_err(|e| LabError::Invalid(format!("writing the kubeconfig: {e}")))
}

/// Adds this lab's cluster, user and context (`weft-<lab>`) to the kubeconfig at `path`
/// (creating it), replacing entries of the same names and leaving every other one alone, and
/// makes it the current context, as `kind export kubeconfig` does.
pub fn merge_kubeconfig(layout: &Layout, path: &Path) -> Result<(), LabError> {
    let url = wait_listening(layout, Duration::from_secs(5))?;
    let ours: serde_json::Value = serde_norway::from_str(&kubeconfig(layout, &url)?)
        .map_err(|e| LabError::Invalid(format!("reading the lab's kubeconfig: {e}")))?;
    let mut theirs: serde_json::Value = match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_norway::from_str(&text).map_err(|e| {
            LabError::Invalid(format!("{} is not a kubeconfig: {e}", path.display()))
        })?,
        Ok(_) => json!({"apiVersion": "v1", "kind": "Config"}),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            json!({"apiVersion": "v1", "kind": "Config"})
        }
        Err(e) => return Err(LabError::io(format!("reading {}", path.display()), e)),
    };
    if !theirs.is_object() {
        return Err(LabError::Invalid(format!(
            "{} is not a kubeconfig",
            path.display()
        )));
    }
    for section in ["clusters", "users", "contexts"] {
        let mut list: Vec<serde_json::Value> =
            theirs[section].as_array().cloned().unwrap_or_default();
        for entry in ours[section].as_array().into_iter().flatten() {
            list.retain(|e| e["name"] != entry["name"]);
            list.push(entry.clone());
        }
        theirs[section] = json!(list);
    }
    theirs["current-context"] = ours["current-context"].clone();
    let text = serde_norway::to_string(&theirs)
        .map_err(|e| LabError::Invalid(format!("writing the kubeconfig: {e}")))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    }
    weft_apiserver::pki::write_private(path, text.as_bytes()).map_err(pki_error)
}

fn write_kubeconfig(layout: &Layout, url: &str) -> Result<(), LabError> {
    let text = kubeconfig(layout, url)?;
    weft_apiserver::pki::write_private(&layout.kubeconfig_file(), text.as_bytes())
        .map_err(pki_error)
}

/// The `kubernetes` Service in `default` and its endpoints: the fabric address of the server.
pub fn kubernetes_service(config: &ClusterConfig) -> Result<Vec<Object>, LabError> {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": kubernetes_service_ip(config).to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": FABRIC_PORT}]},
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "weft.dev/lab"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [config.node_gateway_ip().to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": FABRIC_PORT, "protocol": "TCP"}],
    });
    [service, slice]
        .into_iter()
        .map(|v| {
            Object::from_json(v).map_err(|e| LabError::Invalid(format!("kubernetes Service: {e}")))
        })
        .collect()
}

/// Binds the loopback listener on the kept port (or a new one, then kept).
fn loopback_listener(layout: &Layout) -> Result<TcpListener, LabError> {
    let port_file = layout.apiserver_port_file();
    let kept = fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    let port = kept.unwrap_or(0);
    // A restarted server may find its port briefly held by the old one's last connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(LabError::io(format!("listening on 127.0.0.1:{port}"), e)),
        }
    };
    if kept.is_none() {
        let port = listener
            .local_addr()
            .map_err(|e| LabError::io("reading the listening port", e))?
            .port();
        fs::write(&port_file, port.to_string())
            .map_err(|e| LabError::io(format!("writing {}", port_file.display()), e))?;
    }
    Ok(listener)
}

/// Binds a listener inside another network namespace: the socket stays there, the thread that
/// made it is thrown away.
fn listener_in_netns(netns: &str, addr: SocketAddr) -> Result<TcpListener, LabError> {
    let path = Path::new("/run/netns").join(netns);
    let file = fs::File::open(&path)
        .map_err(|e| LabError::io(format!("opening {}", path.display()), e))?;
    std::thread::spawn(move || {
        // SAFETY: setns on this short-lived thread only; the fd is valid for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        TcpListener::bind(addr)
    })
    .join()
    .map_err(|_| LabError::Invalid(format!("binding {addr} in {netns}: thread failed")))?
    .map_err(|e| LabError::io(format!("listening on {addr} in {netns}"), e))
}

/// The daemon: serves the API until killed, and keeps the controller running (the controller
/// keeps this server running in turn).
pub fn serve(layout: Layout, config: ClusterConfig, store: Store) -> Result<(), LabError> {
    // glibc gives each thread that allocates its own arena and keeps freed list buffers in
    // them: measured, the server sat at ~900 MiB after a few 10k-object lists with the default,
    // ~275 MiB with two arenas. Set before the runtime's threads exist.
    // SAFETY: mallopt only tunes the allocator; called first thing, while the process has a
    // single thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let pki = Pki::at(&layout.pki_dir());
    let tls = weft_apiserver::server::tls_config(&pki).map_err(pki_error)?;
    let tokens = pki.read_tokens().map_err(pki_error)?;
    let loopback = loopback_listener(&layout)?;
    let fabric = listener_in_netns(
        &layout.fabric_netns(),
        SocketAddr::from((config.node_gateway_ip(), FABRIC_PORT)),
    )?;
    let pods = PodTools {
        weft: crate::weft_exe()?,
        lab: layout.name().to_string(),
        logs_dir: layout.logs_dir(),
    };
    let address = format!("{}:{FABRIC_PORT}", config.node_gateway_ip());
    let supervisor = layout.clone();
    std::thread::spawn(move || loop {
        if let Err(e) = crate::supervise::controller(&supervisor) {
            tracing::warn!("controller: {e}");
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::io("starting the API server's runtime", e))?;
    runtime
        .block_on(async move {
            let api: Arc<Api> = Api::new(store, tokens, Some(pods), address);
            tracing::info!("serving the Kubernetes API");
            weft_apiserver::run(api, vec![loopback, fabric], tls).await
        })
        .map_err(|e| LabError::io("serving the API", e))
}
