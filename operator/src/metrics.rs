//! `/metrics` (Prometheus text format, prometheus-client), `/healthz` (the process serves) and
//! `/readyz` (every watch has listed once: the caches are synced).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
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

/// Serves the endpoints until the task is aborted. Binding errors are returned at once.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // The bound address: with port 0 the kernel picks one (tests run several operators).
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&metrics, req.uri().path())) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics connection");
                }
            });
        }
    }))
}

fn respond(m: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.render(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if m.ready.load(Ordering::SeqCst) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "caches not synced yet\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
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
