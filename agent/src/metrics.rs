//! The agent's metrics (prometheus-client), served with /healthz and /readyz by ocelot-endpoints.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocelot::cni::Command;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Cheap to clone: every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub cni_requests: Family<Labels, Counter>,
    pub add_seconds: Histogram,
    /// One pod's interfaces (veth, addresses, routes), made while its address is committed.
    pub interfaces_seconds: Histogram,
    /// One group commit round (every dirty IPAMBlock written once).
    pub commit_seconds: Histogram,
    pub ipam_writes: Counter,
    /// IPAMBlock writes refused (another writer changed the block first); their ADDs are redone.
    pub ipam_conflicts: Counter,
    /// Pod interfaces deleted because the write storing their address was refused.
    pub interfaces_undone: Counter,
    pub status_writes: Counter,
    pub wireguard_peers: Gauge,
    pub routes_applied: Counter,
    /// BGP sessions by BIRD state (Established, Active, Connect, ...).
    pub bgp_sessions: Family<Labels, Gauge>,
    /// Why the agent is not ready, or None.
    pub not_ready: Arc<Mutex<Option<String>>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ocelot_agent");
        let cni_requests = Family::<Labels, Counter>::default();
        // 0.5 ms .. ~8 s.
        let add_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        let interfaces_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        let ipam_writes = Counter::default();
        let ipam_conflicts = Counter::default();
        let interfaces_undone = Counter::default();
        let status_writes = Counter::default();
        let wireguard_peers = Gauge::default();
        let routes_applied = Counter::default();
        let bgp_sessions = Family::<Labels, Gauge>::default();
        registry.register(
            "routes_applied",
            "Pod host routes written before their ADD answered",
            routes_applied.clone(),
        );
        registry.register(
            "bgp_sessions",
            "BGP sessions of the node's BIRD, by state",
            bgp_sessions.clone(),
        );
        registry.register(
            "cni_requests",
            "CNI calls answered, by verb and result",
            cni_requests.clone(),
        );
        registry.register(
            "cni_add_duration_seconds",
            "Time from an ADD reaching the agent to its answer",
            add_seconds.clone(),
        );
        registry.register(
            "pod_interfaces_duration_seconds",
            "Time to make one pod's veth, addresses and routes",
            interfaces_seconds.clone(),
        );
        registry.register(
            "ipam_commit_duration_seconds",
            "Time of one group commit round (each dirty IPAMBlock written once)",
            commit_seconds.clone(),
        );
        registry.register(
            "ipam_writes",
            "IPAMBlock writes (one per dirty block per group commit)",
            ipam_writes.clone(),
        );
        registry.register(
            "ipam_conflicts",
            "IPAMBlock writes refused because the block changed first (the ADDs are redone)",
            ipam_conflicts.clone(),
        );
        registry.register(
            "pod_interfaces_undone",
            "Pod interfaces deleted because the write storing their address was refused",
            interfaces_undone.clone(),
        );
        registry.register(
            "status_writes",
            "NodeNetworkState status writes",
            status_writes.clone(),
        );
        registry.register(
            "wireguard_peers",
            "WireGuard peers programmed on the node's device",
            wireguard_peers.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            cni_requests,
            add_seconds,
            interfaces_seconds,
            commit_seconds,
            ipam_writes,
            ipam_conflicts,
            interfaces_undone,
            status_writes,
            wireguard_peers,
            routes_applied,
            bgp_sessions,
            not_ready: Arc::new(Mutex::new(Some("starting".into()))),
        }
    }

    /// Counts one answered call.
    pub fn observe_call(&self, verb: Command, ok: bool, took: Duration) {
        let result = if ok { "success" } else { "error" };
        self.cni_requests
            .get_or_create(&vec![
                ("verb", format!("{verb:?}").to_uppercase()),
                ("result", result.into()),
            ])
            .inc();
        if verb == Command::Add && ok {
            self.add_seconds.observe(took.as_secs_f64());
        }
    }

    /// Sessions per state from BIRD's latest report; states no session is in read 0.
    pub fn set_bgp_sessions(&self, peers: &[ocelot::api::nodestate::BGPPeerStatusEntry]) {
        self.bgp_sessions.clear();
        for p in peers {
            let state = p.info.clone().unwrap_or_else(|| p.state.clone());
            self.bgp_sessions
                .get_or_create(&vec![("state", state)])
                .inc();
        }
    }

    pub fn set_ready(&self, why_not: Option<String>) {
        *self.not_ready.lock().expect("not poisoned") = why_not;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl ocelot_daemon::Endpoints for Metrics {
    fn metrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }

    fn ready(&self) -> Result<(), String> {
        match &*self.not_ready.lock().expect("not poisoned") {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }
}
