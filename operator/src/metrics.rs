//! `/metrics` (Prometheus text format, prometheus-client), `/healthz` (the process serves) and
//! `/readyz` (every watch has listed once: the caches are synced).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub ready: AtomicBool,
    pub reconciles: Counter,
    pub errors: Family<Labels, Counter>,
    pub reconcile_seconds: Histogram,
    pub watch_events: Family<Labels, Counter>,
    pub api_writes: Family<Labels, Counter>,
    pub pool_blocks: Family<Labels, Gauge>,
    pub pool_in_use: Family<Labels, Gauge>,
    pub pool_free: Family<Labels, Gauge>,
    pub nodes_total: Gauge,
    pub nodes_converged: Gauge,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("ocelot_operator");
        let m = Metrics {
            registry: Registry::default(),
            ready: AtomicBool::new(false),
            reconciles: Counter::default(),
            errors: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            watch_events: Family::default(),
            api_writes: Family::default(),
            pool_blocks: Family::default(),
            pool_in_use: Family::default(),
            pool_free: Family::default(),
            nodes_total: Gauge::default(),
            nodes_converged: Gauge::default(),
            leader: Gauge::default(),
        };
        registry.register("reconciles", "Reconcile passes run", m.reconciles.clone());
        registry.register(
            "errors",
            "Failed API requests by stable reason",
            m.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "watch_events",
            "Watch events received by kind",
            m.watch_events.clone(),
        );
        registry.register(
            "api_writes",
            "API writes made by kind",
            m.api_writes.clone(),
        );
        registry.register("ipam_blocks", "IPAM blocks per pool", m.pool_blocks.clone());
        registry.register(
            "ipam_addresses_in_use",
            "Addresses in use per pool",
            m.pool_in_use.clone(),
        );
        registry.register(
            "ipam_addresses_free",
            "Free addresses in the blocks of each pool",
            m.pool_free.clone(),
        );
        registry.register("nodes", "Nodes known", m.nodes_total.clone());
        registry.register(
            "nodes_converged",
            "Nodes whose agent applied the current spec hash",
            m.nodes_converged.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts `n` writes of `kind`.
    pub fn wrote(&self, kind: &str, n: usize) {
        if n > 0 {
            self.api_writes
                .get_or_create(&vec![("kind", kind.to_string())])
                .inc_by(n as u64);
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

impl ocelot_daemon::Endpoints for Metrics {
    fn metrics(&self) -> String {
        self.render()
    }

    fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("caches not synced yet".into())
        }
    }
}

/// Serves /metrics, /healthz and /readyz until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    ocelot_daemon::serve(addr, metrics).await
}

/// Counts one watch event by kind.
pub fn count_event(m: &Metrics, msg: &crate::watch::Msg) {
    use crate::watch::Msg;
    let kind = match msg {
        Msg::Init(k) | Msg::InitDone(k) => *k,
        Msg::Apply(o) | Msg::Delete(o) => o.kind(),
    };
    m.watch_events
        .get_or_create(&vec![("kind", format!("{kind:?}"))])
        .inc();
}

/// Sets the per-pool IPAM gauges and the node convergence gauges from the feed.
pub fn update_gauges(m: &Metrics, feed: &crate::feed::Feed) {
    let mut per_pool: std::collections::BTreeMap<String, (i64, i64, i64)> = feed
        .ipam
        .pools()
        .map(|p| (p.name.clone(), (0, 0, 0)))
        .collect();
    for b in feed.ipam.blocks() {
        let Some(pool) = feed.ipam.pool_of(&b.cidr()) else {
            continue;
        };
        let e = per_pool.entry(pool.name.clone()).or_default();
        e.0 += 1;
        e.1 += i64::from(b.allocated());
        e.2 += i64::from(b.free());
    }
    for (pool, (blocks, used, free)) in per_pool {
        let l = vec![("pool", pool)];
        m.pool_blocks.get_or_create(&l).set(blocks);
        m.pool_in_use.get_or_create(&l).set(used);
        m.pool_free.get_or_create(&l).set(free);
    }
    m.nodes_total.set(feed.index.node_count() as i64);
    let converged = feed
        .written
        .iter()
        .filter(|(n, h)| {
            feed.agent_status
                .get(*n)
                .and_then(|s| s.applied_hash.as_ref())
                == Some(h)
        })
        .count();
    m.nodes_converged.set(converged as i64);
}
