//! `ocelot-agent`: one per node. Serves the CNI plugin on a unix socket, assigns pod addresses
//! from the node's own blocks (group commit), makes the pods' interfaces and routes, and reports
//! the node's NodeNetworkState status. Driven only by the API: its own NodeNetworkState, its own
//! IPAMBlocks and Pods, and the cluster's IPPools, Namespaces and Calico Nodes.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ocelot_agent::agent::{Agent, Settings};
use ocelot_agent::bgp::BgpState;
use ocelot_agent::metrics::Metrics;
use ocelot_agent::netns::NodeNetns;
use ocelot_agent::wg_state::WgState;
use ocelot_agent::{
    bird, boringtun, install, overlay, overlay_state, server, watch, wireguard, wireguard_key,
};

/// Ocelot node agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Name of the node this agent runs on.
    #[arg(long, env = "NODENAME")]
    node_name: String,
    /// Kubeconfig file; without it, the in-cluster service account or the default kubeconfig.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The node's network namespace when the agent runs outside it (e.g. /run/netns/node1);
    /// default: the agent's own (a hostNetwork pod).
    #[arg(long, env = "OCELOT_NETNS")]
    netns: Option<PathBuf>,
    /// Unix socket the CNI plugin calls.
    #[arg(long, env = "OCELOT_CNI_SOCKET", default_value = ocelot::cni::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Folder to install the `ocelot-cni` binary into (e.g. /opt/cni/bin); not installed when unset.
    #[arg(long, env = "OCELOT_CNI_BIN_DIR")]
    cni_bin_dir: Option<PathBuf>,
    /// Folder to write 10-ocelot.conflist into (e.g. /etc/cni/net.d); not written when unset.
    #[arg(long, env = "OCELOT_CNI_CONF_DIR")]
    cni_conf_dir: Option<PathBuf>,
    /// Pod interface MTU written into the conflist (default: the plugin's 1500, or the spec's).
    #[arg(long, env = "OCELOT_POD_MTU")]
    pod_mtu: Option<u32>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OCELOT_METRICS_ADDR", default_value = "0.0.0.0:9091")]
    metrics_addr: std::net::SocketAddr,
    /// Seconds an ADD waits for a block the node asked the operator for.
    #[arg(long, env = "OCELOT_BLOCK_WAIT_SECONDS", default_value_t = 20)]
    block_wait_seconds: u64,
    /// Folder for the agent's node-local state (bird.conf, BIRD's control socket and log).
    #[arg(long, env = "OCELOT_STATE_DIR", default_value = "/var/lib/ocelot")]
    state_dir: PathBuf,
    /// The BIRD 2 daemon program.
    #[arg(long, env = "OCELOT_BIRD", default_value = "bird")]
    bird: PathBuf,
    /// BIRD's control client program.
    #[arg(long, env = "OCELOT_BIRDC", default_value = "birdc")]
    birdc: PathBuf,
    /// WireGuard private key file (created with mode 0600 if absent; never leaves the node).
    #[arg(long, env = "OCELOT_WIREGUARD_KEY_FILE", default_value = wireguard_key::DEFAULT_KEY_PATH)]
    wireguard_key_file: PathBuf,
    /// Namespace of the Secrets BGP passwords refer to (the agent's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    secrets_namespace: String,
    /// The userspace WireGuard program (boringtun-cli 0.7), run in the node's namespace.
    #[arg(long, env = "OCELOT_BORINGTUN", default_value = "boringtun-cli")]
    boringtun: PathBuf,
    /// The node's /proc/sys, writable (in a container: a hostPath mount of /proc/sys/net there).
    #[arg(long, env = "OCELOT_PROC_SYS", default_value = "/proc/sys")]
    proc_sys: PathBuf,
}

#[tokio::main]
async fn main() {
    ocelot_daemon::init_logging();
    if let Err(e) = run(Args::parse()).await {
        tracing::error!("ocelot-agent failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let netns = args
        .netns
        .clone()
        .map_or_else(NodeNetns::current, NodeNetns::at);
    let netlink = netns
        .route_netlink()
        .with_context(|| format!("netlink socket in the node's namespace {:?}", netns.path()))?;
    let client = ocelot_daemon::client(args.kubeconfig.as_deref()).await?;
    let metrics = Metrics::new();
    let endpoints = ocelot_daemon::serve(args.metrics_addr, Arc::new(metrics.clone()))
        .await
        .with_context(|| format!("bind {}", args.metrics_addr))?;
    let listener = server::bind(&args.socket)
        .with_context(|| format!("bind the CNI socket {}", args.socket.display()))?;
    let plugin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(install::PLUGIN)))
        .unwrap_or_else(|| PathBuf::from(install::PLUGIN));
    install::install(
        &plugin,
        args.cni_bin_dir.as_deref(),
        args.cni_conf_dir.as_deref(),
        &args.socket,
        args.pod_mtu,
    )
    .context("install the CNI plugin")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    watch::start(&client, &args.node_name, &tx);
    let settings = Settings {
        node: args.node_name.clone(),
        netns,
        block_wait: Duration::from_secs(args.block_wait_seconds),
        proc_sys: args.proc_sys.clone(),
    };
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("create the state folder {}", args.state_dir.display()))?;
    let paths = bird::BirdPaths::in_dir(&args.state_dir, args.bird.clone(), args.birdc.clone());
    let (desired, desired_rx) = tokio::sync::watch::channel(bird::Desired::Unknown);
    let bgp = BgpState::new(
        desired,
        Some(paths.log.display().to_string()),
        args.secrets_namespace.clone(),
    );
    bird::start(paths, settings.netns.clone(), desired_rx, tx.clone());
    let (wg_desired, wg_rx) = tokio::sync::watch::channel(wireguard::WgDesired::Unknown);
    let wg = WgState::new(wg_desired, args.wireguard_key_file.clone());
    let userspace = boringtun::Userspace::in_dir(
        &args.state_dir,
        args.boringtun.clone(),
        settings.netns.clone(),
    );
    wireguard::start(
        userspace,
        settings.netns.route_netlink()?,
        wg_rx,
        tx.clone(),
    );
    let (overlay_desired, overlay_rx) =
        tokio::sync::watch::channel(overlay::OverlayDesired::Unknown);
    overlay::start(settings.netns.route_netlink()?, overlay_rx, tx.clone());
    let overlay = overlay_state::OverlayState::new(overlay_desired);
    let agent = Agent::new(
        settings,
        client,
        tx.clone(),
        netlink,
        metrics,
        bgp,
        wg,
        overlay,
    );
    let socket_task = tokio::spawn(server::serve(listener, tx));
    tracing::info!(node = %args.node_name, socket = %args.socket.display(), "ocelot-agent started");
    tokio::select! {
        _ = agent.run(rx) => {}
        _ = ocelot_daemon::shutdown() => {}
    }
    // Routes, interfaces and BIRD stay as they are: the next agent adopts them.
    socket_task.abort();
    endpoints.abort();
    let _ = std::fs::remove_file(&args.socket);
    tracing::info!("stopped");
    Ok(())
}
