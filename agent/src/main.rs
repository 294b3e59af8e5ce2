//! `ocelot-agent`: per-node dataplane (routes, BIRD, WireGuard, NAT) and pod address assignment.
use clap::Parser;

// Called once the WireGuard applier is wired into the main loop; until then only its tests use it.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "wired in with the WireGuard applier")
)]
mod wireguard_key;

/// Ocelot node agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Name of the node this agent runs on.
    #[arg(long, env = "NODENAME")]
    node_name: Option<String>,
    /// WireGuard private key file (created with mode 0600 if absent; never leaves the node).
    #[arg(long, env = "OCELOT_WIREGUARD_KEY_FILE", default_value = wireguard_key::DEFAULT_KEY_PATH)]
    wireguard_key_file: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::info!(node = ?args.node_name, wireguard_key_file = %args.wireguard_key_file.display(), "ocelot-agent: dataplane is not wired yet; exiting");
}
