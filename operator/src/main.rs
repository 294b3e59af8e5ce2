//! `ocelot-operator`: watches the Calico-compatible objects, feeds them into the core's cluster
//! index and writes each node's NodeNetworkState spec. Decisions live in the `ocelot` crate; this
//! binary only moves events in and results out.
mod apply;
mod feed;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::feed::Feed;
use crate::watch::Msg;

/// Ocelot operator: reconciles Calico-compatible network objects into per-node desired state.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Kubeconfig file; without it, the in-cluster service account or the default kubeconfig.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address of the metrics and health endpoint (not served yet).
    #[arg(long, env = "OCELOT_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: String,
}

/// Wait before retrying writes that failed (the API server may be restarting).
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain `key=value` fields.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tracing::info!(metrics_addr = %args.metrics_addr, "starting (metrics endpoint not served yet)");
    let client = client(args.kubeconfig.as_deref()).await?;
    run(client).await;
    tracing::info!("stopped");
    Ok(())
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client> {
    let Some(path) = kubeconfig.filter(|p| !p.as_os_str().is_empty()) else {
        return Client::try_default()
            .await
            .context("no --kubeconfig and no in-cluster or default kubeconfig");
    };
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))?;
    Client::try_from(config).context("build the API client")
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The reconcile loop: drain every pending event into the index, then write the affected nodes
/// in one batch. Returns on shutdown, after the batch in progress.
async fn run(client: Client) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let watchers = watch::spawn_all(&client, &tx);
    drop(tx);
    let mut feed = Feed::default();
    let mut was_synced = false;
    let mut retry: Option<tokio::time::Instant> = None;
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let retry_at =
            retry.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = &mut stop => break,
            msg = rx.recv() => match msg {
                Some(msg) => feed.handle(msg),
                None => {
                    tracing::error!("all watchers ended");
                    break;
                }
            },
            _ = tokio::time::sleep_until(retry_at), if retry.is_some() => retry = None,
        }
        // Batch: everything already queued goes into the index before anything is written.
        while let Ok(msg) = rx.try_recv() {
            feed.handle(msg);
        }
        if !feed.synced() || feed.pending.is_empty() || retry.is_some() {
            continue;
        }
        let nodes = feed.take_pending();
        let batch = apply::reconcile(&client, &mut feed, nodes).await;
        if !was_synced {
            was_synced = true;
            tracing::info!(
                nodes = feed.index.node_count(),
                looked_at = batch.looked_at,
                applied = batch.applied,
                deleted = batch.deleted,
                failed = batch.failed.len(),
                "caches synced; initial reconcile done"
            );
        } else {
            tracing::debug!(?batch, "reconciled");
        }
        if !batch.failed.is_empty() {
            feed.pending
                .add(ocelot::index::Affected::Nodes(batch.failed));
            retry = Some(tokio::time::Instant::now() + RETRY_AFTER);
        }
    }
    for w in watchers {
        w.abort();
    }
}
