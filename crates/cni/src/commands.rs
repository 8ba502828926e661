//! The CNI commands: ADD, DEL, CHECK, STATUS, VERSION, GC. Each takes the parsed environment
//! and config and either prints a result or fails with a spec error.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Map, Value};
use weft_dataplane::{sysctl, IpNet, NetNs, Netlink};

use crate::config::{self, Attachment, NetConf};
use crate::env::{Command, Env};
use crate::error::Error;
use crate::ipam::Store;
use crate::reaper;
use crate::spec::{self, CniResult, CniVersion, Interface, IpConfig, RouteEntry};
use crate::wiring::{self, host_veth_name, PodWiring, GATEWAY};

/// What the binary prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one invocation: `get_env` reads the runtime's environment, `stdin` is the config.
pub fn run(get_env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    // Errors are answered in the config's version when it is one we know.
    let decoded = config::decode(stdin);
    let version = decoded
        .as_ref()
        .ok()
        .and_then(|m| config::version_of(m).ok())
        .unwrap_or(CniVersion::LATEST);
    match dispatch(get_env, decoded) {
        Ok(Some(v)) => Outcome {
            stdout: v.to_string(),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(e) => Outcome {
            stdout: e.to_json(version).to_string(),
            exit_code: 1,
        },
    }
}

fn dispatch(
    get_env: impl Fn(&str) -> Option<String>,
    decoded: Result<Map<String, Value>, Error>,
) -> Result<Option<Value>, Error> {
    let env = Env::from_lookup(get_env)?;
    if env.command == Command::Version {
        return Ok(Some(spec::version_info()));
    }
    let conf = NetConf::from_map(&decoded?)?;
    match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|()| None),
        Command::Check => check(&env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Gc => gc(&conf).map(|()| None),
        Command::Version => Ok(Some(spec::version_info())),
    }
}

fn require_version(conf: &NetConf, command: &'static str, needs: CniVersion) -> Result<(), Error> {
    if conf.cni_version < needs {
        return Err(Error::CommandNotInVersion {
            command,
            version: conf.cni_version,
            needs,
        });
    }
    Ok(())
}

/// The attachment and pod netns named by the environment.
fn attachment(env: &Env) -> Result<Attachment, Error> {
    Ok(Attachment {
        container_id: env
            .container_id
            .clone()
            .ok_or(Error::MissingEnv("CNI_CONTAINERID"))?,
        ifname: env.ifname.clone().ok_or(Error::MissingEnv("CNI_IFNAME"))?,
    })
}

fn open_netns(env: &Env) -> Result<NetNs, Error> {
    let path = env.netns.as_deref().ok_or(Error::MissingEnv("CNI_NETNS"))?;
    NetNs::open(path).map_err(|e| {
        if e.is_not_found() {
            Error::NoNetns(path.to_string())
        } else {
            e.into()
        }
    })
}

fn add(env: &Env, conf: &NetConf) -> Result<Value, Error> {
    let att = attachment(env)?;
    let pod_ns = open_netns(env)?;
    let requested = conf.requested_ips.first().copied().or(env.args.ip);
    let store = Store::new(&conf.ipam.data_dir, conf.name.as_str());
    let alloc = store.lock()?.allocate(&conf.ipam.pool, &att, requested)?;
    let host_veth = host_veth_name(&att.container_id, &att.ifname);
    let wiring = PodWiring {
        pod_ns: &pod_ns,
        ifname: &att.ifname,
        host_veth: &host_veth,
        ip: alloc.ip,
        mtu: conf.mtu,
        mac: conf.mac,
    };
    let mut host = match Netlink::open() {
        Ok(h) => h,
        Err(e) => {
            undo_allocation(&store, &att);
            return Err(e.into());
        }
    };
    let wired = match wiring.setup(&mut host) {
        Ok(w) => w,
        Err(e) => {
            // Nothing may be left behind: no veth (the pod end and host route go with it),
            // no allocation.
            let _ = wiring::teardown(&mut host, &host_veth);
            undo_allocation(&store, &att);
            return Err(e);
        }
    };
    if let Some(socket) = &conf.agent_socket {
        if let Err(e) = announce(env, socket, alloc.ip) {
            // The pod must not run unprogrammed: nothing of this ADD stays.
            let _ = wiring::teardown(&mut host, &host_veth);
            undo_allocation(&store, &att);
            return Err(e);
        }
    }
    let ours = CniResult {
        interfaces: vec![
            Interface {
                name: wired.host.name.clone(),
                mac: wired.host.mac.map(|m| m.to_string()),
                mtu: Some(conf.mtu),
                sandbox: None,
                extra: Map::new(),
            },
            Interface {
                name: att.ifname.as_str().to_string(),
                mac: wired.pod.mac.map(|m| m.to_string()),
                mtu: Some(conf.mtu),
                sandbox: Some(pod_ns.path().display().to_string()),
                extra: Map::new(),
            },
        ],
        ips: vec![IpConfig {
            address: format!("{}/32", alloc.ip),
            gateway: Some(IpAddr::V4(GATEWAY)),
            interface: Some(1),
            extra: Map::new(),
        }],
        routes: vec![RouteEntry {
            dst: "0.0.0.0/0".into(),
            gw: Some(IpAddr::V4(GATEWAY)),
            extra: Map::new(),
        }],
        dns: conf.dns.clone(),
    };
    let merged = conf.prev_result.clone().unwrap_or_default().merge(ours);
    Ok(merged.to_json(conf.cni_version))
}

/// Tells the node's agent the pod's address and waits until it has programmed the pod.
fn announce(env: &Env, socket: &str, ip: std::net::Ipv4Addr) -> Result<(), Error> {
    let (Some(namespace), Some(name)) = (&env.args.k8s_pod_namespace, &env.args.k8s_pod_name)
    else {
        return Err(Error::Agent(
            "agentSocket is set but CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME".into(),
        ));
    };
    let attach = crate::agent::Attach {
        namespace: namespace.clone(),
        name: name.clone(),
        ip,
    };
    let timeout = std::time::Duration::from_secs(crate::agent::TIMEOUT_SECS + 5);
    crate::agent::announce(socket, &attach, timeout).map_err(Error::Agent)
}

fn undo_allocation(store: &Store, att: &Attachment) {
    if let Ok(l) = store.lock() {
        let _ = l.release(att);
    }
}

/// DEL: idempotent; works without CNI_NETNS or with a netns that is already gone, because
/// the host veth's name is derived from the attachment and deleting it removes the pod end.
///
/// The pod is taken off the network at once (its host route deleted) and its address released
/// under the IPAM lock; the veth itself is deleted by a detached process (see [`reaper`]),
/// because the kernel's wait for that is most of a DEL's time.
fn del(env: &Env, conf: &NetConf) -> Result<(), Error> {
    let att = attachment(env)?;
    let mut host = Netlink::open()?;
    let veth = host.link_get(host_veth_name(&att.container_id, &att.ifname).as_str())?;
    let store = Store::new(&conf.ipam.data_dir, conf.name.as_str());
    let ipam = store.lock()?;
    if let (Some(link), Some(ip)) = (&veth, ipam.find(&att)?) {
        // The route must be gone before the address can be handed out again.
        match host.route_del(IpNet::host(IpAddr::V4(ip)), Some(link.index), None) {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
    }
    ipam.release(&att)?;
    drop(ipam);
    if let Some(link) = veth {
        reaper::delete_link_detached(link.index);
    }
    Ok(())
}

fn check(env: &Env, conf: &NetConf) -> Result<(), Error> {
    require_version(conf, "CHECK", CniVersion::V0_4_0)?;
    let att = attachment(env)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        Error::Config("CHECK needs prevResult (the result of the ADD being checked)".into())
    })?;
    let pod_ns = open_netns(env)?;
    let store = Store::new(&conf.ipam.data_dir, conf.name.as_str());
    let ip = store.lock()?.find(&att)?.ok_or_else(|| {
        Error::Check(format!(
            "failed: no IPAM allocation for {}/{} in network {}",
            att.container_id.as_str(),
            att.ifname.as_str(),
            conf.name.as_str()
        ))
    })?;
    let want = format!("{ip}/32");
    if !prev.ips.iter().any(|i| i.address == want) {
        return Err(Error::Check(format!(
            "failed: prevResult does not list {want}, the address allocated to {}/{}",
            att.container_id.as_str(),
            att.ifname.as_str()
        )));
    }
    let host_veth = host_veth_name(&att.container_id, &att.ifname);
    let mut host = Netlink::open()?;
    PodWiring {
        pod_ns: &pod_ns,
        ifname: &att.ifname,
        host_veth: &host_veth,
        ip,
        mtu: conf.mtu,
        mac: conf.mac,
    }
    .check(&mut host)
}

fn status(conf: &NetConf) -> Result<(), Error> {
    require_version(conf, "STATUS", CniVersion::V1_1_0)?;
    let store = Store::new(&conf.ipam.data_dir, conf.name.as_str());
    let unavailable = |reason: String| Error::Unavailable {
        limited: false,
        reason,
    };
    let lock = store
        .lock()
        .map_err(|e| unavailable(format!("IPAM data dir is not usable: {e}")))?;
    let all = lock
        .allocations()
        .map_err(|e| unavailable(format!("IPAM data dir is not usable: {e}")))?;
    let pool = &conf.ipam.pool;
    let used = all.iter().filter(|(ip, _)| pool.contains(*ip)).count() as u32;
    if used >= pool.size() {
        return Err(unavailable(format!(
            "no free address in {} (range {}): {used} of {} allocated",
            pool.subnet,
            pool.range_text(),
            pool.size()
        )));
    }
    // Pods already wired stop reaching anything once forwarding is off.
    if !all.is_empty() && sysctl::read("net/ipv4/ip_forward").is_ok_and(|v| v != "1") {
        return Err(Error::Unavailable {
            limited: true,
            reason: "net.ipv4.ip_forward is off in the plugin's netns: pods cannot reach beyond their node"
                .into(),
        });
    }
    Ok(())
}

fn gc(conf: &NetConf) -> Result<(), Error> {
    require_version(conf, "GC", CniVersion::V1_1_0)?;
    let valid: HashSet<Attachment> = conf
        .valid_attachments
        .clone()
        .ok_or_else(|| Error::Config("GC needs cni.dev/valid-attachments".into()))?
        .into_iter()
        .collect();
    let store = Store::new(&conf.ipam.data_dir, conf.name.as_str());
    let freed = store.lock()?.retain(&valid)?;
    let mut host = Netlink::open()?;
    for (_, owner) in freed {
        if let Some(att) = owner {
            wiring::teardown(&mut host, &host_veth_name(&att.container_id, &att.ifname))?;
        }
    }
    Ok(())
}
