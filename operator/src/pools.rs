//! IPPools: the default pool from the flag (once), and each pool's status (observedGeneration,
//! `Allocatable` and `Ready` conditions, effective block size and selector, blocks carved) with a
//! Warning Event when a pool becomes unusable. Never the pool's spec or metadata.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ocelot::api::ippool::IPPoolStatus;
use ocelot::api::{Condition, IPPool, IPPoolSpec};
use ocelot::control::{PoolVerdict, namespace_pool_problems, pool_reason};

use crate::apply::FIELD_MANAGER;
use crate::ctx::{Ctx, reference};
use crate::feed::Feed;

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

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    }
}

/// The status the operator wants on `pool`, keeping each condition's transition time when its
/// status did not change (so an unchanged pool compares equal and is not rewritten).
pub fn desired_status(pool: &IPPool, verdict: &PoolVerdict, blocks: u32) -> IPPoolStatus {
    let generation = pool.metadata.generation;
    let is_v6 = pool.spec.cidr.contains(':');
    let ready_reason = if verdict.allocatable {
        "Ready"
    } else {
        verdict.reason
    };
    let mut conditions = vec![
        condition(
            "Allocatable",
            verdict.allocatable,
            verdict.reason,
            &verdict.message,
            generation,
        ),
        condition(
            "Ready",
            verdict.is_valid(),
            ready_reason,
            &verdict.message,
            generation,
        ),
    ];
    let observed = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for c in &mut conditions {
        if let Some(old) = observed
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    IPPoolStatus {
        observed_generation: generation,
        conditions,
        block_size: Some(pool.spec.effective_block_size(is_v6)),
        node_selector: Some(pool.spec.effective_node_selector().to_string()),
        blocks: Some(blocks),
        nodes_applied: None,
        nodes_total: None,
    }
}

/// Writes every pool's status that differs from the stored one; returns the writes made.
pub async fn reconcile(ctx: &mut Ctx, feed: &Feed) -> usize {
    let api: Api<IPPool> = Api::all(ctx.client.clone());
    let mut writes = 0;
    for (name, pool) in &feed.pools {
        let Some(verdict) = feed.verdicts.get(name) else {
            continue;
        };
        let blocks = feed
            .ipam
            .blocks()
            .filter(|b| {
                feed.ipam
                    .pool_of(&b.cidr())
                    .is_some_and(|p| &p.name == name)
            })
            .count() as u32;
        let want = desired_status(pool, verdict, blocks);
        let was_reason = pool
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Allocatable"))
            .map(|c| c.reason.clone());
        if pool.status.as_ref() != Some(&want) {
            let body = serde_json::json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": { "name": name },
                "status": want,
            });
            let pp = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch_status(name, &pp, &Patch::Apply(&body)).await {
                Ok(_) => writes += 1,
                Err(e) => {
                    tracing::warn!(pool = %name, error = %e, "IPPool status write failed; will retry")
                }
            }
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
    }
    writes
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
