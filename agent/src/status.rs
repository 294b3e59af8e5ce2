//! The node's NodeNetworkState status, written only by this node's agent (server-side apply on
//! the status subresource, field manager `ocelot-agent`) and only when its content changed.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use ocelot::api::Condition;
use ocelot::api::NodeNetworkState;
use ocelot::api::nodestate::{BlockDemand, NodeNetworkStateStatus, PoolUsage};
use ocelot::rollup::status::{condition, keep_transition_times};

use crate::agent::{Agent, Msg};
use crate::commit::FIELD_MANAGER;

/// Shortest time between two status writes that change only the per-pool usage.
const USAGE_INTERVAL: Duration = Duration::from_secs(2);
/// Pause after a refused status write.
const STATUS_RETRY: Duration = Duration::from_secs(1);

/// Status from the agent's state: IPAM usage and demand, and a condition per subsystem.
pub fn compose(agent: &Agent, now: &Time) -> Option<NodeNetworkStateStatus> {
    let nns = agent.nns.as_ref()?;
    let generation = nns.metadata.generation;
    let me = agent.settings.node.as_str();
    let mut usage: BTreeMap<String, PoolUsage> = BTreeMap::new();
    for b in agent.ipam.blocks().filter(|b| b.node() == Some(me)) {
        let Some(pool) = agent.ipam.pool_of(&b.cidr()) else {
            continue;
        };
        let u = usage.entry(pool.name.clone()).or_insert_with(|| PoolUsage {
            pool: pool.name.clone(),
            ..PoolUsage::default()
        });
        u.blocks += 1;
        u.in_use += b.allocated();
        u.free += b.free();
    }
    let demand: Vec<BlockDemand> = agent
        .demand
        .iter()
        .map(|(pool, reason)| BlockDemand {
            pool: pool.clone(),
            reason: reason.clone(),
        })
        .collect();
    let ipam = if demand.is_empty() {
        condition(
            "IPAM",
            true,
            "Assigning",
            "pod addresses are assigned from the node's blocks".into(),
            generation,
            now,
        )
    } else {
        let pools: Vec<&str> = demand.iter().map(|d| d.pool.as_str()).collect();
        condition(
            "IPAM",
            false,
            "WaitingForBlock",
            format!("waiting for a block of {}", pools.join(", ")),
            generation,
            now,
        )
    };
    let routes = condition(
        "Routes",
        true,
        "Programmed",
        "pod routes are in the kernel before each ADD returns".into(),
        generation,
        now,
    );
    let (bgp, bgp_applied) = bgp_condition(agent, generation, now);
    let previous = agent.last_status.as_ref().or(nns.status.as_ref());
    let (wireguard, wg_applied) =
        crate::wg_state::wireguard_condition(agent, previous, generation, now);
    // Ready means the spec is applied; a peer that does not answer is BGP's own condition.
    let nat = crate::nat::nat_condition(&agent.nat, generation, now);
    let (tunnel, tunnel_ok) = crate::tunnel::tunnel_condition(agent, generation, now);
    let all_ok = [&ipam, &routes, &nat].iter().all(|c| c.status == "True")
        && bgp_applied
        && wg_applied
        && tunnel_ok;
    let ready = if all_ok {
        condition(
            "Ready",
            true,
            "Applied",
            format!("spec {} applied", nns.spec.hash),
            generation,
            now,
        )
    } else {
        condition(
            "Ready",
            false,
            "NotApplied",
            "a subsystem is not ready (see its condition)".into(),
            generation,
            now,
        )
    };
    let mut conditions = vec![ipam, routes, bgp, wireguard, nat, tunnel, ready];
    if let Some(old) = previous {
        keep_transition_times(&mut conditions, &old.conditions);
    }
    Some(NodeNetworkStateStatus {
        observed_generation: generation,
        applied_hash: Some(nns.spec.hash.clone()),
        conditions,
        // Until its worker reports, a new agent keeps the key the last one published: dropping
        // it would make every peer remove this node and break its tunnel for a round trip.
        wireguard_public_key: match &agent.wg.report {
            Some(r) => r.public_key.clone(),
            None => previous.and_then(|s| s.wireguard_public_key.clone()),
        },
        bgp_peers: agent
            .bgp
            .report
            .as_ref()
            .map(|r| r.peers.clone())
            .unwrap_or_default(),
        ipam: usage.into_values().collect(),
        block_demand: demand,
    })
}

/// The BGP condition, and whether the node's BGP config is applied (whatever the sessions do).
fn bgp_condition(agent: &Agent, generation: Option<i64>, now: &Time) -> (Condition, bool) {
    let c =
        |ok: bool, reason: &str, msg: String| condition("BGP", ok, reason, msg, generation, now);
    let has_bgp = agent.nns.as_ref().is_some_and(|n| n.spec.bgp.is_some());
    if !has_bgp {
        return (
            c(true, "NotConfigured", "this node runs no BGP".into()),
            true,
        );
    }
    if let Some(e) = &agent.bgp.render_error {
        return (c(false, "ConfigInvalid", e.clone()), false);
    }
    let Some(report) = &agent.bgp.report else {
        return (
            c(false, "Starting", "BIRD has not reported yet".into()),
            false,
        );
    };
    if let Err(e) = &report.applied {
        return (c(false, "BirdFailed", e.clone()), false);
    }
    let total = report.peers.len();
    let down: Vec<String> = report
        .peers
        .iter()
        .filter(|p| p.info.as_deref() != Some("Established"))
        .map(|p| format!("{} {}", p.peer_ip, p.info.as_deref().unwrap_or(&p.state)))
        .collect();
    let up = total - down.len();
    let cond = if total == 0 {
        c(
            true,
            "NoPeers",
            "BIRD runs; no sessions are configured".into(),
        )
    } else if down.is_empty() {
        c(
            true,
            "Established",
            format!("{up}/{total} sessions Established"),
        )
    } else {
        c(
            false,
            "SessionsNotEstablished",
            format!(
                "{up}/{total} sessions Established; not: {}",
                down.join(", ")
            ),
        )
    };
    (cond, true)
}

/// Writes the status when it differs from the last one written (or read at start). The write
/// runs in its own task and reports with [`Msg::StatusWritten`]; one at a time, so the loop
/// (and the CNI calls it answers) never waits for the API server here.
pub fn write_if_changed(agent: &mut Agent) {
    agent.metrics.set_ready(agent.ready().err());
    if agent.status_in_flight || agent.status_retry_at.is_some_and(|t| Instant::now() < t) {
        return;
    }
    let now = Time(jiff::Timestamp::now());
    let Some(status) = compose(agent, &now) else {
        return;
    };
    let current = agent
        .last_status
        .clone()
        .or_else(|| agent.nns.as_ref().and_then(|n| n.status.clone()));
    if current.as_ref() == Some(&status) {
        agent.last_status = current;
        return;
    }
    // Usage counts alone move with every batch of pods: they are written at most once per
    // USAGE_INTERVAL, so a burst of ADDs costs a few status writes, not one per pass.
    let usage_only = current.as_ref().is_some_and(|c| {
        NodeNetworkStateStatus {
            ipam: status.ipam.clone(),
            ..c.clone()
        } == status
    });
    if usage_only
        && agent
            .last_status_write
            .is_some_and(|t| t.elapsed() < USAGE_INTERVAL)
    {
        return;
    }
    let old_key = current
        .as_ref()
        .and_then(|c| c.wireguard_public_key.as_deref());
    if old_key != status.wireguard_public_key.as_deref() {
        tracing::info!(key = ?status.wireguard_public_key, before = ?old_key, "WireGuard public key reported");
    }
    let api: Api<NodeNetworkState> = Api::all(agent.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "ocelot.dev/v1alpha1",
        "kind": "NodeNetworkState",
        "status": status,
    });
    let (node, tx) = (agent.settings.node.clone(), agent.tx.clone());
    agent.status_in_flight = true;
    tokio::spawn(async move {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let result = api
            .patch_status(&node, &pp, &Patch::Apply(&patch))
            .await
            .map(|_| status)
            .map_err(|e| e.to_string());
        let _ = tx.send(Msg::StatusWritten(result)).await;
    });
}

/// The status write's outcome: what was written becomes the status to compare with.
pub fn written(agent: &mut Agent, result: Result<NodeNetworkStateStatus, String>) {
    agent.status_in_flight = false;
    agent.status_retry_at = None;
    match result {
        Ok(status) => {
            agent.last_status_write = Some(Instant::now());
            agent.metrics.status_writes.inc();
            agent.last_status = Some(status);
        }
        Err(e) => {
            // The outcome is itself a message (a pass): without a pause a refused write would
            // be retried in a tight loop.
            agent.status_retry_at = Some(Instant::now() + STATUS_RETRY);
            tracing::warn!(error = %e, "NodeNetworkState status not written; retried in {STATUS_RETRY:?}")
        }
    }
}
