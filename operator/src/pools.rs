//! IPPools: the default pool from the flag (once), and each pool's status (observedGeneration,
//! `Allocatable` and `Ready` conditions, effective block size and selector, the roll-up of its
//! blocks, addresses and nodes) with a Warning Event when a pool becomes unusable. Never the
//! pool's spec or metadata.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ocelot::api::ippool::IPPoolStatus;
use ocelot::api::{IPPool, IPPoolSpec};
use ocelot::control::{PoolVerdict, namespace_pool_problems, pool_reason};
use ocelot::desired::support::pool_unsupported;
use ocelot::rollup::status::{condition, keep_transition_times, pool_rollup, supported_condition};
use ocelot::rollup::{NodeTotals, PoolCounts};

use crate::apply::FIELD_MANAGER;
use crate::ctx::{Ctx, reference};
use crate::feed::Feed;
use crate::status;

/// Name of the pool created from `--default-ipv4-pool-cidr`, as Calico names it.
pub const DEFAULT_POOL: &str = "default-ipv4-ippool";

/// Creates the default pool once if no IPv4 pool exists; returns the writes made.
pub async fn ensure_default(ctx: &mut Ctx, feed: &Feed) -> usize {
    let Some(cidr) = ctx.opts.default_ipv4_pool_cidr else {
        return 0;
    };
    if ctx.memory.default_pool_done {
        return 0;
    }
    let has_v4 = feed
        .pools
        .values()
        .any(|p| p.spec.cidr.parse::<ipnet::Ipv4Net>().is_ok());
    if has_v4 {
        ctx.memory.default_pool_done = true;
        return 0;
    }
    // Calico's default pool: the whole CIDR, every node, NAT to outside the pools, no overlay.
    let pool = IPPool::new(
        DEFAULT_POOL,
        IPPoolSpec {
            cidr: cidr.to_string(),
            block_size: Some(26),
            nat_outgoing: true,
            node_selector: Some("all()".into()),
            ..Default::default()
        },
    );
    let api: Api<IPPool> = Api::all(ctx.client.clone());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &pool).await {
        Ok(_) => {
            tracing::info!(pool = DEFAULT_POOL, %cidr, "created the default IPv4 pool (no IPv4 pool existed)");
            ctx.memory.default_pool_done = true;
            1
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            ctx.memory.default_pool_done = true;
            0
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not create the default pool; will retry");
            0
        }
    }
}

/// The status the operator wants on `pool`: its verdict's conditions (each keeping its transition
/// time while its status stays), the effective defaults, and the roll-up counts.
pub fn desired_status(
    pool: &IPPool,
    verdict: &PoolVerdict,
    counts: PoolCounts,
    totals: NodeTotals,
    now: &Time,
) -> IPPoolStatus {
    let generation = pool.metadata.generation;
    let is_v6 = pool.spec.cidr.contains(':');
    let ready_reason = if verdict.allocatable {
        "Ready"
    } else {
        verdict.reason
    };
    let mut conditions = vec![
        supported_condition(&pool_unsupported(&pool.spec), generation, now),
        condition(
            "Allocatable",
            verdict.allocatable,
            verdict.reason,
            verdict.message.clone(),
            generation,
            now,
        ),
        condition(
            "Ready",
            verdict.is_valid(),
            ready_reason,
            verdict.message.clone(),
            generation,
            now,
        ),
    ];
    let observed = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    keep_transition_times(&mut conditions, observed);
    let mut status = IPPoolStatus {
        observed_generation: generation,
        conditions,
        block_size: Some(pool.spec.effective_block_size(is_v6)),
        node_selector: Some(pool.spec.effective_node_selector().to_string()),
        ..Default::default()
    };
    pool_rollup(&mut status, counts, totals);
    status
}

/// Shortest time between two status writes of a pool that change only its address counts.
const USAGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes pool `name`'s status if it differs from the stored one, and a Warning Event when the
/// pool became unusable. Ok(writes made); Err when it was not written now (the write failed, or
/// only the address counts changed within [`USAGE_INTERVAL`] of the last write): the pool stays
/// dirty and the next pass tries again.
pub async fn write_status(ctx: &mut Ctx, feed: &Feed, name: &str, now: &Time) -> Result<usize, ()> {
    let (Some(pool), Some(verdict)) = (feed.pools.get(name), feed.verdicts.get(name)) else {
        ctx.memory.status_sent.remove(&format!("IPPool/{name}"));
        return Ok(0);
    };
    let want = desired_status(
        pool,
        verdict,
        feed.rollup.pool(name),
        feed.rollup.totals(),
        now,
    );
    let was_reason = pool
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Allocatable"))
        .map(|c| c.reason.clone());
    let old_conditions = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    status::warn_unsupported(
        ctx,
        "IPPool",
        name,
        pool.metadata.uid.as_deref(),
        &pool_unsupported(&pool.spec),
        old_conditions,
        &want.conditions,
    )
    .await;
    let mut writes = 0;
    // Address counts alone move with every pod: they are written at most once per
    // USAGE_INTERVAL (a later pass writes them), so a burst of pods costs a few writes.
    let usage_only = pool.status.as_ref().is_some_and(|have| {
        IPPoolStatus {
            addresses_in_use: want.addresses_in_use,
            addresses_free: want.addresses_free,
            ..have.clone()
        } == want
    });
    let recent = ctx
        .memory
        .usage_written
        .get(name)
        .is_some_and(|t| t.elapsed() < USAGE_INTERVAL);
    if usage_only && recent {
        // Deferred, not dropped: the pool stays dirty for the next pass.
        return Err(());
    }
    if pool.status.as_ref() != Some(&want) {
        let rv = pool.metadata.resource_version.as_deref();
        let wrote = status::write::<IPPool>(ctx, name, rv, &want).await?;
        if wrote {
            ctx.memory
                .usage_written
                .insert(name.to_string(), std::time::Instant::now());
        }
        writes += usize::from(wrote);
    }
    let unusable = !verdict.is_valid();
    if unusable && was_reason.as_deref() != Some(verdict.reason) {
        let r = reference(
            "projectcalico.org/v3",
            "IPPool",
            name,
            pool.metadata.uid.as_deref(),
        );
        ctx.warn_once(r, verdict.reason, &pool.spec.cidr, verdict.message.clone())
            .await;
    } else if verdict.reason == pool_reason::OK {
        ctx.clear_warnings("IPPool", name, pool_reason::CIDR_OVERLAP);
    }
    Ok(writes)
}

/// Warns (once per problem) about namespaces whose pool annotations cannot be honoured.
pub async fn check_namespaces(ctx: &mut Ctx, feed: &Feed) {
    const REASON: &str = "InvalidPoolAnnotation";
    for (ns, ann) in &feed.namespaces {
        let problems = namespace_pool_problems(ns, ann, &feed.ipam);
        if problems.is_empty() {
            ctx.clear_warnings("Namespace", ns, REASON);
        }
        for p in problems {
            let r = reference("v1", "Namespace", ns, None);
            ctx.warn_once(r, REASON, &p, p.clone()).await;
        }
    }
}

/// Keeps ClusterInformation `default` (datastoreReady once the caches are synced); one GET per
/// operator start, a write only when it differs.
pub async fn ensure_cluster_information(ctx: &mut Ctx) -> usize {
    use ocelot::api::ClusterInformation;
    if ctx.memory.cluster_info_done {
        return 0;
    }
    let api: Api<ClusterInformation> = Api::all(ctx.client.clone());
    let existing = match api.get_opt("default").await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read ClusterInformation default; will retry");
            return 0;
        }
    };
    let new_guid = || {
        let mut b = [0u8; 16];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut b);
        }
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let Some(spec) =
        ocelot::control::cluster_information(existing.as_ref().map(|e| &e.spec), new_guid)
    else {
        ctx.memory.cluster_info_done = true;
        return 0;
    };
    let body = serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "ClusterInformation",
        "metadata": { "name": "default" },
        "spec": spec,
    });
    match api
        .patch(
            "default",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(guid = ?spec.cluster_guid, "ClusterInformation default: datastoreReady");
            ctx.memory.cluster_info_done = true;
            1
        }
        Err(e) => {
            tracing::warn!(error = %e, "ClusterInformation write failed; will retry");
            0
        }
    }
}
