//! `ocelot-agent`: per-node dataplane (routes, BIRD, WireGuard, NAT) and pod address assignment.
use clap::Parser;

/// Ocelot node agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Name of the node this agent runs on.
    #[arg(long, env = "NODENAME")]
    node_name: Option<String>,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::info!(node = ?args.node_name, "ocelot-agent: dataplane is not wired yet; exiting");
}
