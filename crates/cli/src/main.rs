//! `weft`: Kubernetes networking, and a whole cluster on one Linux machine (the lab).

mod describe;
mod exec;
mod get;
mod lab;
mod portforward;
mod resources;
mod table;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use weft_model::config::ClusterName;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Kubernetes networking in Rust, and a whole cluster on one machine",
    after_help = "Examples:\n  weft lab up -f examples/quickstart.yaml\n  weft get pods -o wide\n  weft exec deploy/web -- curl -s http://10.244.0.3:8080/hostname\n  weft lab down"
)]
struct Cli {
    /// Which lab to talk to (a machine can run several side by side).
    #[arg(long = "lab", global = true, env = "WEFT_LAB", default_value = "weft")]
    lab: ClusterName,
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
    /// Create or update objects from manifests on a running lab.
    #[command(
        after_help = "Examples:\n  weft apply -f examples/quickstart.yaml\n  weft apply -f manifests/   # every .yaml/.yml/.json in it\n  cat x.yaml | weft apply -f -"
    )]
    Apply(FileArgs),
    /// Delete objects named in manifests, or one object by kind and name.
    #[command(
        after_help = "Examples:\n  weft delete -f examples/quickstart.yaml\n  weft delete pod client\n  weft delete deploy web -n demo"
    )]
    Delete(get::DeleteArgs),
    /// List objects like kubectl get.
    #[command(
        after_help = "Examples:\n  weft get pods -o wide\n  weft get pods -A\n  weft get nodes -o wide\n  weft get deploy web -o yaml\n  weft get svc -o wide\n  weft get endpoints web\n  weft get eps"
    )]
    Get(get::GetArgs),
    /// Show one service or pod in detail, with what is wrong with it under Events.
    #[command(
        after_help = "Examples:\n  weft describe svc web\n  weft describe service db -n demo\n  weft describe pod client"
    )]
    Describe(describe::DescribeArgs),
    /// Forward local ports to a pod (or to one ready pod behind a service).
    #[command(
        after_help = "Examples:\n  weft port-forward pod/client 8080          # localhost:8080 -> the pod's 8080\n  weft port-forward svc/web 9000:80          # localhost:9000 -> service port 80's target on one ready pod\n  weft port-forward deploy/web :80 :8080     # free local ports, printed\n  weft port-forward -n demo site 8443:http   # a container port by name\n\nListens on 127.0.0.1 (and ::1) only, connects to localhost inside the pod (TCP only); runs until Ctrl-C."
    )]
    PortForward(portforward::PortForwardArgs),
    /// Run a command inside a pod (its network, hostname and resolv.conf).
    #[command(
        after_help = "Examples:\n  weft exec client -- curl -s http://10.244.0.5:8080/clientip\n  weft exec deploy/web -- ip addr\n  weft exec -n demo pod/db -- cat /etc/resolv.conf"
    )]
    Exec(exec::ExecArgs),
    /// Print a container's output.
    #[command(
        after_help = "Examples:\n  weft logs client\n  weft logs web-7d9c6b5f4-x2kqz -c web"
    )]
    Logs(exec::LogsArgs),
    /// The node agent: keeps this node's routes, overlay and egress rules in step with the
    /// cluster (the lab starts one per node; on Kubernetes it runs as a DaemonSet).
    #[command(
        after_help = "Examples:\n  weft --lab demo agent --node demo-node1          # inside that node's network namespace\n  weft --lab demo agent --node demo-node2 --plan   # print the node's plan, change nothing"
    )]
    Agent {
        /// The node this agent runs on.
        #[arg(long)]
        node: String,
        /// Print the plan (routes, overlay entries, egress table) as commands and exit.
        #[arg(long)]
        plan: bool,
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
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Lab(cmd) => lab::run(&cli.lab, cmd),
        Command::Apply(args) => get::apply(&cli.lab, &args.files).map(|()| 0),
        Command::Delete(args) => get::delete(&cli.lab, args).map(|()| 0),
        Command::Get(args) => get::get(&cli.lab, args).map(|()| 0),
        Command::Describe(args) => describe::describe(&cli.lab, args).map(|()| 0),
        Command::PortForward(args) => portforward::port_forward(&cli.lab, args),
        Command::Exec(args) => exec::exec(&cli.lab, args),
        Command::Logs(args) => exec::logs(&cli.lab, args).map(|()| 0),
        Command::Agent { node, plan } => {
            let (_, config, store) =
                weft_lab::lab::open(&cli.lab, &weft_lab::layout::Layout::state_root_from_env())?;
            let agent = weft_agent::Agent::new(
                store,
                weft_net::NetworkConfig::from_cluster(&config),
                &node,
            )?;
            if plan {
                print!("{}", agent.plan()?);
                println!("# the Service table");
                print!("nft -f - <<EOF\n{}EOF\n", agent.services_script()?);
            } else {
                agent.run()?;
            }
            Ok(0)
        }
        Command::Workload { args } => {
            let workload = weft_workloads::Workload::from_args(&args)?;
            weft_workloads::run(&workload)?;
            Ok(0)
        }
    }
}
