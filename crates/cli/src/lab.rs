//! `weft lab ...`: build a cluster on this machine, tear it down, and the lab's daemons.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use weft_lab::layout::Layout;
use weft_model::config::{ClusterConfig, ClusterName};

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
    /// The control plane of a lab (started by `lab up`).
    #[command(hide = true)]
    Controller,
    /// The kubelet of one lab node (started by `lab up` inside the node's namespace).
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        node: String,
    },
}

pub fn run(lab: &ClusterName, cmd: LabCommand) -> Result<i32> {
    let state_root = Layout::state_root_from_env();
    match cmd {
        LabCommand::Up {
            files,
            config,
            name,
            nodes,
            wait,
        } => {
            let mut cluster = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    ClusterConfig::from_yaml(&path.display().to_string(), &text)?
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
            // Parse everything before creating anything.
            let objects = if files.is_empty() {
                Vec::new()
            } else {
                weft_model::manifest::read_files(&files)?
            };
            let report =
                weft_lab::lab::up(&cluster, objects, &state_root, Duration::from_secs(wait))?;
            println!(
                "lab {} is up: {} node(s), state in {}",
                cluster.name,
                cluster.nodes,
                report.layout.dir().display()
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
        LabCommand::Controller => {
            let (_, _, store) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::controller::Controller::new(store).run()?;
            Ok(0)
        }
        LabCommand::Kubelet { node } => {
            let (layout, config, _) = weft_lab::lab::open(lab, &state_root)?;
            weft_lab::kubelet::Kubelet::new(layout, config, &node)?.run()?;
            Ok(0)
        }
    }
}
