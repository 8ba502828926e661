//! `weft`: Kubernetes networking, and a whole cluster on one Linux machine (the lab).

mod agents;
mod apply;
mod client;
mod describe;
mod describe_ingress;
mod describe_netpol;
mod diagram;
mod exec;
mod exec_local;
mod get;
mod install_cni;
mod lab;
mod logs;
mod observe;
mod policy;
mod portforward;
mod printers;
mod resources;
mod table;
mod terminal;
mod trace;
mod ui;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use weft_model::config::ClusterName;

use crate::client::{Reported, ServerError, Target};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Kubernetes networking in Rust, and a whole cluster on one machine",
    after_help = "Examples:\n  weft lab up -f examples/quickstart.yaml\n  weft get pods -o wide\n  weft exec deploy/web -- curl -s http://10.244.0.3:8080/hostname\n  weft --context prod get svc -A      # any kubeconfig context, a lab's or a real cluster's\n  weft lab down\n\nThe user verbs (apply, delete, get, describe, exec, logs) talk to the Kubernetes API: the lab's\n(--lab, default \"weft\") unless --kubeconfig or --context chooses a kubeconfig context."
)]
struct Cli {
    /// Which lab to talk to (a machine can run several side by side).
    #[arg(long = "lab", global = true, env = "WEFT_LAB", default_value = "weft")]
    lab: ClusterName,
    /// The kubeconfig file the user verbs (get, apply, exec...) use instead of the lab's.
    #[arg(long = "kubeconfig", global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context they use (from --kubeconfig, else $KUBECONFIG or ~/.kube/config).
    #[arg(long = "context", global = true, value_name = "NAME")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and remove a cluster on this machine.
    #[command(
        subcommand,
        after_help = "Examples:\n  weft lab up -f examples/quickstart.yaml\n  weft lab down"
    )]
    Lab(lab::LabCommand),
    /// Create or update objects from manifests (all or nothing: the server checks them all first).
    #[command(
        after_help = "Examples:\n  weft apply -f examples/quickstart.yaml\n  weft apply -f manifests/   # every .yaml/.yml/.json in it\n  cat x.yaml | weft apply -f -"
    )]
    Apply(FileArgs),
    /// Delete objects named in manifests, or one object by kind and name.
    #[command(
        after_help = "Examples:\n  weft delete -f examples/quickstart.yaml\n  weft delete pod client\n  weft delete deploy web -n demo"
    )]
    Delete(apply::DeleteArgs),
    /// List objects like kubectl get.
    #[command(
        after_help = "Examples:\n  weft get pods -o wide\n  weft get pods -A\n  weft get nodes -o wide\n  weft get deploy web -o yaml\n  weft get svc/web\n  weft get pod,svc\n  weft get all\n  weft get pods -l app=web -w\n  weft get endpoints web\n  weft get eps"
    )]
    Get(get::GetArgs),
    /// Show one service or pod in detail, with what is wrong with it under Events.
    #[command(
        after_help = "Examples:\n  weft describe svc web\n  weft describe service db -n demo\n  weft describe pod client\n  weft describe netpol deny-db   # the policy as kubectl shows it, the pods it selects, and per node\n                                 # what it allowed and dropped (from each node's agent, GET :9876/policy)"
    )]
    Describe(describe::DescribeArgs),
    /// What the NetworkPolicies do to traffic: one path explained (`check`), or the reachability
    /// matrix of some namespaces' pods (`matrix`), computed with the agents' own compiler.
    #[command(
        subcommand,
        after_help = "Examples:\n  weft policy check x/a default/db 5432\n  weft policy check client svc/web 80 --probe\n  weft policy matrix -n x,y,z --port 80/tcp"
    )]
    Policy(policy::PolicyCommand),
    /// Forward local ports to a pod (or to one ready pod behind a service) of a lab on this machine.
    #[command(
        after_help = "Examples:\n  weft port-forward pod/client 8080          # localhost:8080 -> the pod's 8080\n  weft port-forward svc/web 9000:80          # localhost:9000 -> service port 80's target on one ready pod\n  weft port-forward deploy/web :80 :8080     # free local ports, printed\n  weft port-forward -n demo site 8443:http   # a container port by name\n\nListens on 127.0.0.1 (and ::1) only, connects to localhost inside the pod (TCP only); runs until Ctrl-C.\nLabs only for now: the API's pods/portforward is not served yet, so --kubeconfig/--context are refused."
    )]
    PortForward(portforward::PortForwardArgs),
    /// Run a command inside a pod (its network, hostname and resolv.conf).
    #[command(
        after_help = "Examples:\n  weft exec client -- curl -s http://10.244.0.5:8080/clientip\n  weft exec deploy/web -- ip addr\n  weft exec -n demo pod/db -- cat /etc/resolv.conf\n  weft exec -it client -- sh                  # an interactive shell\n  echo hi | weft exec -i client -- cat\n\nExits with the command's exit code."
    )]
    Exec(exec::ExecArgs),
    /// Print a container's output.
    #[command(
        after_help = "Examples:\n  weft logs client\n  weft logs web-7d9c6b5f4-x2kqz -c web\n  weft logs -f --tail 10 deploy/web\n  weft logs -l app=web\n  weft logs --previous client"
    )]
    Logs(logs::LogsArgs),
    /// The flow log: connections between workloads and packets dropped, from every node's
    /// agent, the last N then (-f) as they come.
    #[command(
        after_help = "Examples:\n  weft observe --last 50\n  weft observe -f --verdict DROPPED\n  weft observe --pod client --to default/web -o json"
    )]
    Observe(observe::ObserveArgs),
    /// Why can (or can't) FROM reach TO: the path hop by hop as weft decides it (DNS, Service,
    /// endpoints, route, policies, the listener), the first failing hop and what to change.
    #[command(after_help = trace::AFTER_HELP)]
    Trace(trace::TraceArgs),
    /// A live map of the cluster on 127.0.0.1: nodes, pods, Services and their endpoints,
    /// policies, and the flows between pods (allowed and dropped), plus a namespace's
    /// reachability matrix.
    #[command(after_help = ui::AFTER_HELP)]
    Ui(ui::UiArgs),
    /// The node agent: keeps this node's routes, overlay, egress rules and Service table in step
    /// with the cluster, watching the Kubernetes API (the lab runs one per node from the
    /// DaemonSet in deploy/; on Kubernetes the same DaemonSet runs it).
    #[command(
        after_help = "Examples:\n  weft --lab demo agent --node demo-node2 --plan   # print the node's plan, change nothing\n  weft agent --node node1 --config /etc/weft/cluster.yaml --kubeconfig /etc/weft/kubeconfig\n  NODE_NAME=node1 weft agent --config /etc/weft/cluster.yaml   # in a pod: in-cluster API access\n\nThe API: --kubeconfig, else the lab's kubeconfig when the lab is up on this machine, else the\nin-cluster service account or $KUBECONFIG. The cluster config: --config, else the lab's."
    )]
    Agent {
        /// The node this agent runs on.
        #[arg(long, env = "NODE_NAME")]
        node: String,
        /// The cluster config (YAML, the lab's format: CIDRs, network mode, MTU).
        #[arg(long, value_name = "PATH", env = "WEFT_CONFIG")]
        config: Option<PathBuf>,
        /// Print the plan (routes, overlay entries, egress table) as commands and exit.
        #[arg(long)]
        plan: bool,
        /// Where /healthz and /readyz are served, on every address of the node.
        #[arg(long, value_name = "PORT", default_value_t = weft_agent::HEALTH_PORT)]
        health_port: u16,
    },
    /// weft's cluster-wide controller: allocates LoadBalancer addresses from the cluster
    /// config's pool, watching the Kubernetes API (the Deployment in deploy/controller.yaml; the
    /// lab deploys the same). With --lab-controllers it also runs what a lab lacks and a real
    /// cluster has (scheduler, Deployment/DaemonSet, garbage and EndpointSlice controllers).
    #[command(
        after_help = "Examples:\n  weft controller --config /etc/weft/cluster.yaml     # in a pod: in-cluster API access\n  weft controller --config cluster.yaml --kubeconfig ~/.kube/config\n\nThe API: --kubeconfig, else the lab's kubeconfig when the lab is up on this machine, else the\nin-cluster service account or $KUBECONFIG. The cluster config: --config, else the lab's."
    )]
    Controller {
        /// The cluster config (YAML, the lab's format): the load-balancer pool.
        #[arg(long, value_name = "PATH", env = "WEFT_CONFIG")]
        config: Option<PathBuf>,
        /// Do not allocate LoadBalancer addresses (another controller does).
        #[arg(long)]
        no_load_balancers: bool,
        /// Also run the lab's scheduler, workload, garbage and EndpointSlice controllers.
        #[arg(long)]
        lab_controllers: bool,
        /// Where /healthz and /readyz are served.
        #[arg(long, value_name = "PORT", default_value_t = weft_controller::HEALTH_PORT)]
        health_port: u16,
    },
    /// The cluster DNS: answers the Kubernetes DNS names of Services and pods from a zone
    /// compiled from the API (the kube-dns Deployment in deploy/dns.yaml; the lab deploys the
    /// same).
    #[command(
        after_help = "Examples:\n  weft dns --config /etc/weft/cluster.yaml                     # in a pod: in-cluster API access\n  weft dns --config cluster.yaml --kubeconfig ~/.kube/config --listen 127.0.0.1:5353\n  weft dns --print-zone > zones.txt                             # what the lab's DNS serves"
    )]
    Dns {
        /// The cluster config (YAML, the lab's format): the cluster domain and ranges.
        #[arg(long, value_name = "PATH", env = "WEFT_CONFIG")]
        config: Option<PathBuf>,
        /// Where to answer, UDP and TCP.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:53")]
        listen: std::net::SocketAddr,
        /// Where /healthz and /readyz are served.
        #[arg(long, value_name = "PORT", default_value_t = weft_dns::run::HEALTH_PORT)]
        health_port: u16,
        /// List the Services and EndpointSlices once, print the zones as master files (RFC
        /// 1035: the cluster domain's, then each reverse zone's) and exit.
        #[arg(long)]
        print_zone: bool,
    },
    /// The Ingress controller and proxy: serves the networking.k8s.io/v1 Ingresses of its
    /// class (and of class nginx, and those without a class when its class is the default)
    /// straight to the ready endpoint pods, and writes its Service's address into their status.
    #[command(
        after_help = "Examples:\n  weft ingress --publish-service weft-system/weft-ingress         # in a pod: in-cluster API access\n  weft ingress --kubeconfig ~/.kube/config --http 127.0.0.1:8080  # from a workstation"
    )]
    Ingress {
        /// Where plain HTTP is served.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:80")]
        http: std::net::SocketAddr,
        /// Where HTTPS is served (certificates from the Ingresses' TLS Secrets, by SNI).
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:443")]
        https: std::net::SocketAddr,
        /// The IngressClass name this controller answers to.
        #[arg(long, value_name = "NAME", default_value = weft_ingress::routes::CLASS)]
        class: String,
        /// Leave Ingresses of class nginx alone (served by default, so ingress-nginx manifests
        /// work unchanged; `ingressNginxClass: false` in the cluster config does the same).
        #[arg(long)]
        no_nginx_class: bool,
        /// The ConfigMap (NAMESPACE/NAME) whose `cluster.yaml` is the cluster config, read at
        /// start (weft's is kube-system/weft-config); "" for none.
        #[arg(
            long,
            value_name = "NAMESPACE/NAME",
            default_value = "kube-system/weft-config"
        )]
        cluster_config: String,
        /// Proxy threads, each with its own listeners and backend connections (nginx's
        /// worker_processes); one per CPU when not given.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        workers: Option<u16>,
        /// The controller's own Service (NAMESPACE/NAME): its address goes into the status of
        /// every Ingress served.
        #[arg(long, value_name = "NAMESPACE/NAME")]
        publish_service: Option<String>,
        /// Where /healthz and /readyz are served.
        #[arg(long, value_name = "PORT", default_value_t = weft_ingress::run::HEALTH_PORT)]
        health_port: u16,
    },
    /// Install the CNI plugin and this node's conflist on the host (the agent DaemonSet's init
    /// container on a real cluster).
    #[command(
        after_help = "Examples:\n  NODE_NAME=node1 weft install-cni --config /etc/weft/cluster.yaml --bin-dir /host/opt/cni/bin --conf-dir /host/etc/cni/net.d"
    )]
    InstallCni(install_cni::InstallCniArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  weft completion bash > /etc/bash_completion.d/weft\n  source <(weft completion bash)\n  weft completion zsh > \"${fpath[1]}/_weft\"\n  weft completion fish > ~/.config/fish/completions/weft.fish"
    )]
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run a built-in workload (the lab starts these inside pods).
    #[command(hide = true)]
    Workload {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct FileArgs {
    /// Manifest files or directories ("-" reads stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Daemons log to files: colour codes only for a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) if e.is::<Reported>() => 1,
        // The server's own words, as kubectl prints them.
        Err(e) if e.is::<ServerError>() => {
            eprintln!("{e}");
            1
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    let target = Target::from_flags(&cli.lab, cli.kubeconfig.clone(), cli.context.clone());
    match cli.command {
        Command::Lab(cmd) => lab::run(&cli.lab, cmd),
        Command::Apply(args) => api(async { apply::apply(&target, &args.files).await.map(|()| 0) }),
        Command::Delete(args) => api(async { apply::delete(&target, args).await.map(|()| 0) }),
        Command::Get(args) => api(async { get::get(&target, args).await.map(|()| 0) }),
        Command::Describe(args) => api(async { describe::describe(&target, args).await.map(|()| 0) }),
        Command::Exec(args) => api(exec::exec(&target, args)),
        Command::Policy(cmd) => api(policy::run(&target, cmd)),
        Command::Logs(args) => api(async { logs::logs(&target, args).await.map(|()| 0) }),
        Command::Observe(args) => api(async { observe::observe(&target, args).await.map(|()| 0) }),
        Command::Trace(args) => api(trace::trace(&target, args)),
        Command::Ui(args) => api(ui::ui(&target, args)),
        Command::PortForward(args) => match target {
            Target::Lab(lab) => portforward::port_forward(&lab, args),
            Target::Kubeconfig { .. } => bail!(
                "port-forward through a remote API is not supported yet (the API's pods/portforward); \
                 it works for a lab on this machine: drop --kubeconfig/--context and give --lab"
            ),
        },
        Command::InstallCni(args) => {
            let kubeconfig = cli.kubeconfig.clone();
            api(async move {
                install_cni::install(&args, kubeconfig.as_deref())
                    .await
                    .map(|()| 0)
            })
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weft", &mut std::io::stdout());
            Ok(0)
        }
        Command::Agent {
            node,
            config,
            plan,
            health_port,
        } => {
            let mut config = agent_config(&cli.lab, node, config, cli.kubeconfig.clone())?;
            config.health_port = health_port;
            if plan {
                let plan = weft_agent::plan(config)?;
                print!("{}", plan.net);
                println!("# the Service table");
                print!("nft -f - <<EOF\n{}EOF\n", plan.services);
                println!("# the NetworkPolicy table");
                print!("nft -f - <<EOF\n{}EOF\n", plan.policy);
            } else {
                weft_agent::run(config)?;
            }
            Ok(0)
        }
        Command::Controller {
            config,
            no_load_balancers,
            lab_controllers,
            health_port,
        } => {
            let (cluster, lab_kubeconfig) = cluster_config(&cli.lab, config)?;
            weft_controller::run(weft_controller::ControllerConfig {
                kubeconfig: cli.kubeconfig.clone().or(lab_kubeconfig),
                load_balancers: (!no_load_balancers).then_some(cluster.load_balancer_pool),
                lab: lab_controllers,
                health_port: Some(health_port),
            })?;
            Ok(0)
        }
        Command::Dns {
            config,
            listen,
            health_port,
            print_zone,
        } => {
            let (cluster, lab_kubeconfig) = cluster_config(&cli.lab, config)?;
            let zone = weft_dns::ZoneConfig::of(&cluster);
            let kubeconfig = cli.kubeconfig.clone().or(lab_kubeconfig);
            if print_zone {
                let serial = weft_dns::zone::first_serial();
                let timeout = std::time::Duration::from_secs(60);
                let compiled =
                    weft_dns::master::listed(&zone, kubeconfig.as_deref(), serial, timeout)?;
                print!("{}", weft_dns::master::render_all(&compiled, &zone));
                return Ok(0);
            }
            weft_dns::run::run(weft_dns::run::DnsConfig {
                zone,
                kubeconfig,
                listen,
                health_port: Some(health_port),
                metrics_port: Some(weft_dns::run::METRICS_PORT),
                log_queries: cluster.dns_query_log,
                upstream: cluster.upstream_dns.clone(),
                cache_size: usize::try_from(cluster.dns_cache_size).unwrap_or(usize::MAX),
                cluster_dns: Some(cluster.dns_service_ip.into()),
            })?;
            Ok(0)
        }
        Command::Ingress {
            http,
            https,
            class,
            no_nginx_class,
            publish_service,
            cluster_config: config_map,
            workers,
            health_port,
        } => {
            let publish_service = publish_service
                .map(|text| ns_name("--publish-service", &text, "weft-system/weft-ingress"))
                .transpose()?;
            let config_map = (!config_map.is_empty())
                .then(|| ns_name("--cluster-config", &config_map, "kube-system/weft-config"))
                .transpose()?;
            let kubeconfig = match cli.kubeconfig.clone() {
                Some(k) => Some(k),
                None => cluster_config(&cli.lab, None).ok().and_then(|(_, k)| k),
            };
            weft_ingress::run::run(weft_ingress::run::IngressConfig {
                kubeconfig,
                settings: weft_ingress::Settings {
                    class,
                    serve_nginx: !no_nginx_class,
                    ..weft_ingress::Settings::default()
                },
                http,
                https,
                health_port: Some(health_port),
                publish_service,
                cluster_config: config_map,
                workers: workers.map(usize::from),
                proxy: weft_ingress::proxy::ProxyConfig::default(),
            })?;
            Ok(0)
        }
        Command::Workload { args } => {
            let workload = weft_workloads::Workload::from_args(&args)?;
            weft_workloads::run(&workload)?;
            Ok(0)
        }
    }
}

/// A `NAMESPACE/NAME` argument of `flag`.
fn ns_name(flag: &str, text: &str, example: &str) -> Result<weft_view::NsName> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(weft_view::NsName::new(ns, name))
        }
        _ => anyhow::bail!("{flag} {text:?}: expected NAMESPACE/NAME, e.g. {example}"),
    }
}

/// The cluster config from `--config` or else the lab's, with the lab's kubeconfig when the
/// config was the lab's.
fn cluster_config(
    lab: &weft_model::ClusterName,
    config: Option<PathBuf>,
) -> Result<(weft_model::ClusterConfig, Option<PathBuf>)> {
    let layout = weft_lab::layout::Layout::new(
        lab.clone(),
        &weft_lab::layout::Layout::state_root_from_env(),
    );
    let (path, from_lab) = match config {
        Some(path) => (path, false),
        None => (layout.config_file(), true),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        if from_lab {
            format!(
                "no --config given and lab {lab} is not up here ({} is missing)",
                path.display()
            )
        } else {
            format!("reading the cluster config {}", path.display())
        }
    })?;
    let cluster = weft_model::ClusterConfig::from_yaml(&path.display().to_string(), &text)?;
    Ok((cluster, from_lab.then(|| layout.kubeconfig_file())))
}

/// The agent's settings: the cluster config from `--config` or the lab's, the API from
/// `--kubeconfig`, the lab's kubeconfig (when its config is taken from the lab), or in-cluster.
fn agent_config(
    lab: &weft_model::ClusterName,
    node: String,
    config: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
) -> Result<weft_agent::AgentConfig> {
    let (cluster, lab_kubeconfig) = cluster_config(lab, config)?;
    Ok(weft_agent::AgentConfig {
        node,
        network: weft_net::NetworkConfig::from_cluster(&cluster),
        kubeconfig: kubeconfig.or(lab_kubeconfig),
        health_port: weft_agent::HEALTH_PORT,
        announce_arp: (cluster.load_balancer_announcement == weft_model::config::Announcement::Arp)
            .then_some(cluster.load_balancer_pool),
        external_ip_ranges: cluster.external_ip_ranges,
        flow_log: cluster.flow_log,
    })
}

/// Runs an API verb on a tokio runtime made for it (the lab's daemons stay synchronous and
/// make their own). Shut down in the background: a read of our stdin may still be blocked in a
/// thread, and the process exits right after.
pub(crate) fn api(verb: impl std::future::Future<Output = Result<i32>>) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(verb);
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bash_completion_knows_the_commands() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "weft",
            &mut out,
        );
        let script = String::from_utf8(out).expect("a UTF-8 script");
        assert!(script.contains("lab") && script.contains("get"), "{script}");
        assert!(script.contains("--kubeconfig") && script.contains("--context"));
    }

    #[test]
    fn exec_takes_kubectl_flags() {
        let cli = Cli::try_parse_from(["weft", "exec", "-it", "client", "--", "sh"]).unwrap();
        assert!(matches!(cli.command, Command::Exec(_)));
        let cli = Cli::try_parse_from([
            "weft",
            "--kubeconfig",
            "k",
            "--context",
            "c",
            "logs",
            "-f",
            "--tail",
            "5",
            "-l",
            "app=x",
        ])
        .unwrap();
        assert!(matches!(
            Target::from_flags(&cli.lab, cli.kubeconfig.clone(), cli.context.clone()),
            Target::Kubeconfig { .. }
        ));
    }
}
