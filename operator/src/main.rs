//! `ocelot-operator`: watches the Calico-compatible objects, feeds them into the core's cluster
//! index and writes each node's NodeNetworkState spec. Decisions live in the `ocelot` crate; this
//! binary only moves events in and results out.
mod access;
mod apply;
mod blocks;
mod ctx;
mod feed;
mod leader;
mod metrics;
mod nodes;
mod policy;
mod pools;
mod status;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kube::Client;
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
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OCELOT_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: std::net::SocketAddr,
    /// CIDR of `default-ipv4-ippool`, created once when no IPv4 pool exists (never touched after).
    #[arg(long, env = "OCELOT_DEFAULT_IPV4_POOL_CIDR")]
    default_ipv4_pool_cidr: Option<ipnet::Ipv4Net>,
    /// Prefix length of the node subnet, given to each node's InternalIP in its Calico Node.
    #[arg(long, env = "OCELOT_NODE_PREFIX_LENGTH", default_value_t = 32,
          value_parser = clap::value_parser!(u8).range(1..=32))]
    node_prefix_length: u8,
    /// Seconds a deleted node's empty blocks are kept before they are freed (Calico's leakGracePeriod).
    #[arg(long, env = "OCELOT_LEAK_GRACE_SECONDS", default_value_t = 900)]
    leak_grace_seconds: u64,
    /// Seconds between cluster passes with no event (GC timers, retries).
    #[arg(long, env = "OCELOT_RESYNC_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    resync_seconds: u64,
    /// Elect one writing replica through a Lease (off: this process always writes).
    #[arg(long, env = "OCELOT_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    leader_election_namespace: String,
    /// Lease duration in seconds: a dead leader is replaced after at most this long.
    #[arg(long, env = "OCELOT_LEASE_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_seconds: u64,
}

/// Wait before retrying writes that failed (the API server may be restarting).
const RETRY_AFTER: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ocelot_daemon::init_logging();
    tracing::info!(metrics_addr = %args.metrics_addr, "starting");
    let metrics = metrics::Metrics::new();
    let server = metrics::serve(args.metrics_addr, metrics.clone())
        .await
        .with_context(|| {
            format!(
                "cannot serve metrics on {} (--metrics-addr)",
                args.metrics_addr
            )
        })?;
    let client = ocelot_daemon::client(args.kubeconfig.as_deref()).await?;
    let opts = ctx::Opts {
        default_ipv4_pool_cidr: args.default_ipv4_pool_cidr,
        node_prefix_length: args.node_prefix_length,
        leak_grace: Duration::from_secs(args.leak_grace_seconds),
    };
    let ctx = ctx::Ctx::new(client.clone(), opts);
    let (leadership, election) = if args.leader_elect {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let cfg = leader::LeaseConfig {
            namespace: args.leader_election_namespace.clone(),
            name: "ocelot-operator".into(),
            identity,
            duration: Duration::from_secs(args.lease_seconds),
        };
        tracing::info!(?cfg, "leader election on");
        let (l, t) = leader::spawn(client.clone(), cfg.clone());
        (l, Some((t, cfg)))
    } else {
        (leader::Leadership::always(), None)
    };
    run(
        client.clone(),
        ctx,
        leadership,
        metrics,
        Duration::from_secs(args.resync_seconds),
    )
    .await;
    server.abort();
    if let Some((t, cfg)) = election {
        t.abort();
        leader::release(client, &cfg).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The reconcile loop: drain every pending event into the index, then write the affected nodes
/// in one batch. Returns on shutdown, after the batch in progress.
async fn run(
    client: Client,
    mut ctx: ctx::Ctx,
    leadership: leader::Leadership,
    metrics: std::sync::Arc<metrics::Metrics>,
    resync: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let watchers = watch::spawn_all(&client, &tx);
    drop(tx);
    let mut feed = Feed::default();
    let mut was_synced = false;
    let mut retry: Option<tokio::time::Instant> = None;
    let mut leading = false;
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = ocelot_daemon::shutdown();
    tokio::pin!(stop);
    loop {
        let retry_at =
            retry.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = &mut stop => break,
            msg = rx.recv() => match msg {
                Some(msg) => {
                    metrics::count_event(&metrics, &msg);
                    feed.handle(msg)
                }
                None => {
                    tracing::error!("all watchers ended");
                    break;
                }
            },
            _ = tokio::time::sleep_until(retry_at), if retry.is_some() => retry = None,
            _ = tick.tick() => feed.control_dirty = true,
        }
        // Batch: everything already queued goes into the index before anything is written.
        while let Ok(msg) = rx.try_recv() {
            metrics::count_event(&metrics, &msg);
            feed.handle(msg);
        }
        if !feed.synced() {
            continue;
        }
        metrics
            .ready
            .store(true, std::sync::atomic::Ordering::SeqCst);
        metrics.leader.set(i64::from(leadership.is_leader()));
        // Followers keep their caches current (a fast takeover) but never write.
        if !leadership.is_leader() {
            if leading {
                leading = false;
                tracing::warn!("not the leader: writes stopped");
            }
            continue;
        }
        if !leading {
            leading = true;
            // A new leader looks at everything once; hashes and statuses already current are not rewritten.
            feed.control_dirty = true;
            feed.pending.add(ocelot::index::Affected::All);
            feed.mark_all_sources();
            was_synced = false;
        }
        let mut cluster_writes = 0;
        let started = std::time::Instant::now();
        if std::mem::take(&mut feed.control_dirty) {
            let p = pools::ensure_default(&mut ctx, &feed).await
                + pools::ensure_cluster_information(&mut ctx).await;
            let b = blocks::reconcile(&mut ctx, &mut feed).await;
            let n = nodes::reconcile(&mut ctx, &feed).await;
            pools::check_namespaces(&mut ctx, &feed).await;
            policy::report_unenforced(&mut ctx, &feed).await;
            metrics.wrote("IPPool", p);
            metrics.wrote("IPAMBlock", b);
            metrics.wrote("Node", n);
            metrics.reconciles.inc();
            metrics
                .reconcile_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics::update_gauges(&metrics, &feed);
            cluster_writes = p + b + n;
            if cluster_writes > 0 {
                tracing::debug!(writes = cluster_writes, "cluster pass");
            }
        }
        let batch = if feed.pending.is_empty() || retry.is_some() {
            None
        } else {
            let nodes = feed.take_pending();
            let batch = apply::reconcile(&client, &mut feed, nodes).await;
            metrics.wrote("NodeNetworkState", batch.applied + batch.deleted);
            if !batch.failed.is_empty() {
                metrics
                    .errors
                    .get_or_create(&vec![("reason", "NodeNetworkStateWriteFailed".to_string())])
                    .inc_by(batch.failed.len() as u64);
            }
            metrics::update_gauges(&metrics, &feed);
            Some(batch)
        };
        // Roll-ups after the batch: the nodes it looked at have their facts counted again, and
        // each source object whose roll-up moved is written once.
        let statuses = status::reconcile(&mut ctx, &mut feed).await;
        metrics.wrote("IPPool", statuses.pools);
        metrics.wrote("BGPPeer", statuses.peers);
        metrics.wrote("BGPConfiguration", statuses.bgp_configs);
        metrics.wrote("FelixConfiguration", statuses.felix);
        cluster_writes += statuses.total();
        if !was_synced && (batch.is_some() || feed.pending.is_empty()) {
            was_synced = true;
            let b = batch.as_ref();
            tracing::info!(
                nodes = feed.index.node_count(),
                looked_at = b.map_or(0, |b| b.looked_at),
                applied = b.map_or(0, |b| b.applied),
                deleted = b.map_or(0, |b| b.deleted),
                failed = b.map_or(0, |b| b.failed.len()),
                cluster_writes,
                "caches synced; initial reconcile done"
            );
        } else if let Some(b) = &batch {
            tracing::debug!(batch = ?b, "reconciled");
        }
        if let Some(b) = batch
            && !b.failed.is_empty()
        {
            feed.pending.add(ocelot::index::Affected::Nodes(b.failed));
            retry = Some(tokio::time::Instant::now() + RETRY_AFTER);
        }
    }
    for w in watchers {
        w.abort();
    }
}
