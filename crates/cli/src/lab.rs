//! `weft lab ...`: build a cluster on this machine, tear it down, and the lab's daemons.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use weft_lab::layout::Layout;
use weft_model::config::{ClusterConfig, ClusterName, NetworkMode};

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build a cluster: node and pod namespaces, wired by weft-cni, from your manifests.
    #[command(
        after_help = "Examples:\n  weft lab up -f examples/quickstart.yaml\n  weft lab up --name demo --config examples/cluster.yaml -f examples/quickstart.yaml\n  weft lab up --nodes 1 -f app.yaml -f policy.yaml"
    )]
    Up {
        /// Manifest files or directories to apply once the cluster is up.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// A `kind: Cluster` config (CIDRs, node count, cluster domain...).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The cluster's name (prefixes everything it creates); defaults to --lab.
        #[arg(long)]
        name: Option<ClusterName>,
        /// Number of nodes (overrides the config).
        #[arg(long)]
        nodes: Option<u32>,
        /// How pods on different nodes reach each other: vxlan or direct (overrides the config).
        #[arg(long = "network-mode")]
        network_mode: Option<NetworkMode>,
        /// How long to wait for pods to become ready, in seconds.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Remove exactly what `weft lab up` made (running it twice is fine).
    #[command(after_help = "Examples:\n  weft lab down\n  weft lab down --name demo")]
    Down {
        /// The cluster's name; defaults to --lab.
        #[arg(long)]
        name: Option<ClusterName>,
    },
    /// Print the lab's kubeconfig, or merge it into ~/.kube/config as context weft-<lab>.
    #[command(
        after_help = "Examples:\n  weft lab kubeconfig > lab.kubeconfig && KUBECONFIG=lab.kubeconfig kubectl get pods\n  weft lab kubeconfig --merge && kubectl --context weft-weft get nodes"
    )]
    Kubeconfig {
        /// Merge into $KUBECONFIG's first file, else ~/.kube/config, and switch to its context.
        #[arg(long)]
        merge: bool,
    },
    /// List the labs on this machine.
    #[command(after_help = "Examples:\n  weft lab list")]
    List,
    /// Add or remove nodes of a running lab.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a command on the lab's outside host (203.0.113.10), outside the cluster.
    #[command(
        after_help = "Examples:\n  weft lab outside -- curl -s http://172.20.0.2:30080/hostname\n  weft lab outside -- ip -br addr"
    )]
    Outside {
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print the lab's cluster CA certificate (PEM): the issuer of the certificates the ingress
    /// controller makes for Ingresses that ask a cert-manager issuer for one. Trust it to verify
    /// them (there is no ACME here: no internet).
    #[command(
        after_help = "Examples:\n  weft lab ca > ca.crt && weft lab outside -- curl --cacert ca.crt https://shop.example.com/"
    )]
    Ca,
    /// Print where the lab's Prometheus metrics are, as a target list for Prometheus's
    /// file_sd_configs: every running pod annotated prometheus.io/scrape (weft's agent,
    /// controller, DNS and ingress controller, and any of yours), with job, namespace, pod and
    /// node labels. Prometheus must run where pod addresses are reached, e.g. on a node.
    #[command(
        after_help = "Examples:\n  weft lab targets > /tmp/weft-targets.json\n  ip netns exec weft_weft_weft-node1 prometheus --config.file prometheus.yml  # file_sd_configs: [{files: [/tmp/weft-targets.json]}]"
    )]
    Targets,
    /// The cluster as a diagram for documents: nodes holding their pods, each Service pointing
    /// at its endpoints (not-ready ones dashed), each NetworkPolicy on the pods it selects.
    #[command(
        after_help = "Examples:\n  weft lab topology -o dot | dot -Tsvg > cluster.svg\n  weft lab topology -o mermaid > cluster.mmd"
    )]
    Topology {
        /// dot (Graphviz) or mermaid.
        #[arg(short = 'o', long = "output", value_parser = ["dot", "mermaid"], default_value = "mermaid")]
        output: String,
    },
    /// The control plane of a lab (started by `lab up`).
    #[command(hide = true)]
    Controller,
    /// The lab's Kubernetes API server (started by `lab up`).
    #[command(hide = true)]
    Apiserver,
    /// A command inside a pod of this lab, entered directly (the API server runs it for
    /// `pods/exec`; use `weft exec`).
    #[command(
        hide = true,
        name = "exec-local",
        after_help = "Examples:\n  weft lab exec-local -n default client -c app -- ip addr"
    )]
    ExecLocal(crate::exec_local::ExecLocalArgs),
    /// The lab's load-balancer speaker (started by `lab up` in the fabric namespace).
    #[command(hide = true)]
    Speaker,
    /// The kubelet of one lab node (started by `lab up` inside the node's namespace).
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        node: String,
    },
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Add a node: its namespace, the first free pod CIDR, a kubelet and an agent.
    #[command(after_help = "Examples:\n  weft lab node add\n  weft lab node add --label zone=b")]
    Add {
        /// Extra node labels, KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Remove a node; its pods are scheduled elsewhere.
    #[command(after_help = "Examples:\n  weft lab node remove weft-node2")]
    Remove { name: String },
}

/// Where `--merge` writes: the first file of $KUBECONFIG, else ~/.kube/config (kubectl's order).
fn default_kubeconfig() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set KUBECONFIG instead")?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    weft_model::names::check_label_key(k)?;
    weft_model::names::check_label_value(v)?;
    Ok((k.to_string(), v.to_string()))
}

pub fn run(lab: &ClusterName, cmd: LabCommand) -> Result<i32> {
    let state_root = Layout::state_root_from_env();
    match cmd {
        LabCommand::Up {
            files,
            config,
            name,
            nodes,
            network_mode,
            wait,
        } => {
            let mut cluster = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let mut cluster = ClusterConfig::from_yaml(&path.display().to_string(), &text)?;
                    // A config without a name builds the lab the command names (--lab).
                    let named = serde_norway::from_str::<serde_norway::Value>(&text)
                        .is_ok_and(|doc| doc.get("name").is_some());
                    if !named {
                        cluster.name = lab.clone();
                    }
                    cluster
                }
                None => ClusterConfig {
                    name: lab.clone(),
                    ..ClusterConfig::default()
                },
            };
            if let Some(name) = name {
                cluster.name = name;
            }
            if let Some(nodes) = nodes {
                cluster.nodes = nodes;
            }
            if let Some(mode) = network_mode {
                cluster.network_mode = mode;
            }
            // Parse everything before creating anything.
            let objects = if files.is_empty() {
                Vec::new()
            } else {
                weft_model::manifest::read_files(&files)?
            };
            let interrupt =
                weft_lab::lab::remove_on_interrupt(Layout::new(cluster.name.clone(), &state_root))?;
            let report =
                weft_lab::lab::up(&cluster, objects, &state_root, Duration::from_secs(wait))?;
            interrupt.disarm();
            println!(
                "lab {} is up: {} node(s), state in {}",
                cluster.name,
                cluster.nodes,
                report.layout.dir().display()
            );
            println!(
                "API server {} ; use it with:\n  export KUBECONFIG={}\n  (or `weft lab kubeconfig --merge --lab {}` for context weft-{})",
                report.api_url,
                report.layout.kubeconfig_file().display(),
                cluster.name,
                cluster.name
            );
            for result in &report.applied {
                println!("{result}");
            }
            println!();
            crate::get::print_pods(&cluster.name, true, true)?;
            if !report.not_ready.is_empty() {
                eprintln!("\nwarning: not ready after {wait}s:");
                for (what, why) in &report.not_ready {
                    eprintln!("  {what}: {why}");
                }
            }
            Ok(0)
        }
        LabCommand::Down { name } => {
            let name = name.unwrap_or_else(|| lab.clone());
            let report = weft_lab::lab::down(&Layout::new(name.clone(), &state_root))?;
            if report.namespaces.is_empty() && !report.state_removed {
                println!("lab {name} is not up; nothing to remove");
            } else {
                println!(
                    "lab {name} removed: {} namespace(s), {} process(es){}",
                    report.namespaces.len(),
                    report.processes,
                    if report.state_removed {
                        ", its state"
                    } else {
                        ""
                    }
                );
            }
            Ok(0)
        }
        LabCommand::Node(NodeCommand::Add { labels }) => {
            let (layout, config, store) = weft_lab::lab::open(lab, &state_root)?;
            let slot = weft_lab::nodes::add(&layout, &config, &store, &labels)?;
            println!(
                "node/{} added: {} pod CIDR {}",
                slot.name, slot.ip, slot.pod_cidr
            );
            Ok(0)
        }
        LabCommand::Node(NodeCommand::Remove { name }) => {
            let (layout, _, store) = weft_lab::lab::open(lab, &state_root)?;
            let moved = weft_lab::nodes::remove(&layout, &store, &name)?;
            println!("node/{name} removed; {moved} pod(s) rescheduled");
            Ok(0)
        }
        LabCommand::Kubeconfig { merge } => {
            let (layout, _, _) = weft_lab::lab::open(lab, &state_root)?;
            if merge {
                let path = default_kubeconfig()?;
                weft_lab::apiserver::merge_kubeconfig(&layout, &path)?;
                println!(
                    "merged lab {lab} into {} as context weft-{lab} (now the current context)",
                    path.display()
                );
            } else {
                let url = weft_lab::apiserver::wait_listening(&layout, Duration::from_secs(5))?;
                print!("{}", weft_lab::apiserver::kubeconfig(&layout, &url)?);
            }
            Ok(0)
        }
        LabCommand::List => {
            let labs = weft_lab::lab::list(&state_root)?;
            if labs.is_empty() {
                println!("No labs in {}.", state_root.display());
                return Ok(0);
            }
            println!(
                "{:<16} {:<6} {:<8} {:<28} KUBECONFIG",
                "NAME", "NODES", "API", "SERVER"
            );
            for l in labs {
                println!(
                    "{:<16} {:<6} {:<8} {:<28} {}",
                    l.name,
                    l.nodes,
                    if l.api_running { "running" } else { "down" },
                    l.server.unwrap_or_else(|| "<none>".into()),
                    l.kubeconfig.display()
                );
            }
            Ok(0)
        }
        LabCommand::Ca => {
            let (layout, _, _) = weft_lab::lab::open(lab, &state_root)?;
            let (cert, _) = weft_lab::lab::cluster_ca(&layout)?;
            print!("{cert}");
            Ok(0)
        }
        LabCommand::Targets => {
            let (_, _, store) = weft_lab::lab::open(lab, &state_root)?;
            let pods = weft_lab::list_pods(&store)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&weft_lab::targets::file_sd(&pods))?
            );
            Ok(0)
        }
        LabCommand::Topology { output } => {
            let target = crate::client::Target::Lab(lab.clone());
            crate::api(async move {
                let cluster = crate::client::Cluster::connect(&target).await?;
                let snapshot = crate::policy::Snapshot::fetch(&cluster).await?;
                let t = crate::diagram::Topology::of(&snapshot.view);
                print!(
                    "{}",
                    if output == "dot" {
                        t.dot()
                    } else {
                        t.mermaid()
                    }
                );
                Ok(0)
            })
        }
        LabCommand::Outside { command } => {
            let (layout, _, _) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::lab::run_outside(&layout, &command).map_err(Into::into)
        }
        LabCommand::Speaker => {
            let (layout, config, _) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::speaker::run(&layout.fabric_kubeconfig_file(), &config)?;
            Ok(0)
        }
        LabCommand::Controller => {
            let (layout, _, store) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::controller::run(layout, store)?;
            Ok(0)
        }
        LabCommand::Apiserver => {
            let (layout, config, store) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::apiserver::serve(layout, config, store)?;
            Ok(0)
        }
        LabCommand::ExecLocal(args) => crate::exec_local::exec_local(lab, args),
        LabCommand::Kubelet { node } => {
            let (layout, config, _) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::kubelet::Kubelet::new(layout, config, &node)?.run()?;
            Ok(0)
        }
    }
}
