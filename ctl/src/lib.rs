//! `ocelotctl` (also installed as the kubectl plugin `kubectl-ocelot`): `node status`, `ipam
//! show/check/release`, `status`, and the offline `validate` and `crds`. A thin shell: it reads
//! the API, calls the core (`ocelot::report`, `ocelot::ipam`) and prints.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;

mod ipam;
mod kubeconfig;
mod node;
mod offline;
mod plan;
mod read;
mod status;

pub use ipam::write_block;
pub use kubeconfig::Target;

/// Ocelot command-line tool: Calico's `calicoctl` views of an Ocelot cluster, read from the API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the in-cluster account).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Output format: table (default), yaml or json. For `ipam check`, any other value is the
    /// file the JSON report is written to, as with calicoctl.
    #[arg(short = 'o', long = "output", global = true, value_name = "FORMAT")]
    output: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Node views.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// IP address management: usage, consistency, manual release.
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// One screen on the cluster: operator leader, nodes converged, pools, BGP, WireGuard.
    /// Exits 1 when something is not converged.
    Status,
    /// Check manifests against every single-object rule the API server enforces, without a cluster.
    Validate {
        /// YAML or JSON file with one or more documents ("-" for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Which nodes' desired state the manifests would change, and how (a diff per node), as the
    /// operator would compose it; applies nothing.
    Plan {
        /// YAML or JSON file with one or more documents ("-" for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Write the CRD YAML files (generated from the API types and the validation rules).
    Crds {
        /// Folder to write into; prints to standard output when omitted.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// BGP sessions of a node as `calicoctl node status` shows them, from its NodeNetworkState
    /// (default: this machine's node if it has one, else every node).
    Status {
        /// Node name.
        node: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum IpamCommand {
    /// Addresses per pool: total, in use, free.
    Show {
        /// Also list every block.
        #[arg(long)]
        show_blocks: bool,
    },
    /// Find leaked addresses and orphaned blocks (compares blocks with pods and nodes). Exits 1
    /// when it finds anything.
    Check,
    /// Release one address (refused while a live pod or node holds it, unless --force).
    Release {
        /// The address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// Release even an address that is in use.
        #[arg(long)]
        force: bool,
    },
}

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Yaml,
    Json,
}

impl Format {
    fn parse(s: Option<&str>) -> Result<Format> {
        Ok(match s {
            None | Some("table") => Format::Table,
            Some("yaml") => Format::Yaml,
            Some("json") => Format::Json,
            Some(other) => {
                bail!("unknown output format {other:?}: use -o table, -o yaml or -o json")
            }
        })
    }

    /// Prints `value` as YAML or JSON; false for Table (the caller prints its table).
    pub(crate) fn print_data<T: Serialize>(self, value: &T) -> Result<bool> {
        match self {
            Format::Table => Ok(false),
            Format::Json => {
                println!("{}", serde_json::to_string_pretty(value)?);
                Ok(true)
            }
            Format::Yaml => {
                print!("{}", serde_yaml::to_string(value)?);
                Ok(true)
            }
        }
    }
}

/// Runs the command line of this process. Run as `kubectl-ocelot` (kubectl's plugin lookup),
/// help and usage say `kubectl ocelot`.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let plugin = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .is_some_and(|p| p.file_name().is_some_and(|n| n == "kubectl-ocelot"));
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl ocelot");
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let target = Target {
        kubeconfig: cli.kubeconfig,
        context: cli.context,
    };
    let output = cli.output.as_deref();
    match cli.command {
        Command::Validate { file } => offline::validate(&file),
        Command::Crds { out } => offline::crds(out.as_deref()),
        Command::Node {
            command: NodeCommand::Status { node },
        } => online(node::status(
            &target,
            node.as_deref(),
            Format::parse(output)?,
        )),
        Command::Ipam { command } => match command {
            IpamCommand::Show { show_blocks } => {
                online(ipam::show(&target, show_blocks, Format::parse(output)?))
            }
            IpamCommand::Check => {
                // calicoctl's `ipam check -o FILE` names the report file.
                let (format, report) = match Format::parse(output) {
                    Ok(f) => (f, None),
                    Err(_) => (Format::Table, output.map(PathBuf::from)),
                };
                online(ipam::check(&target, format, report))
            }
            IpamCommand::Release { ip, force } => online(ipam::release(&target, ip, force)),
        },
        Command::Status => online(status::status(&target, Format::parse(output)?)),
        Command::Plan { file } => online(plan::plan(&target, &file, Format::parse(output)?)),
    }
}

/// Runs one API command to completion.
fn online(fut: impl std::future::Future<Output = Result<ExitCode>>) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}
