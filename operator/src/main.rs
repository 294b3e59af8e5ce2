//! `ocelot-operator`: cluster controllers (IPPool, BGP, FelixConfiguration, Node, IPAM, WireGuard keys).
use clap::Parser;

/// Ocelot operator: reconciles Calico-compatible network objects into per-node desired state.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address of the metrics and health endpoint.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: String,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::info!(metrics_addr = %args.metrics_addr, "ocelot-operator: controllers are not wired yet; exiting");
}
