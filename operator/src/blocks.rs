//! IPAM on the operator side: claim blocks (on join and on agent demand), give WireGuard interface
//! addresses, free what GC decides, and persist it all with compare-and-swap writes batched
//! across nodes. Decisions come from the core (`ocelot::control`, `ocelot::ipam`).
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::SystemTime;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use ocelot::api::ipam::AffinityState;
use ocelot::api::{BlockAffinity, IPAMBlock};
use ocelot::control::{
    TunnelAddress, claims_needed, vxlan_address, vxlan_pools, wireguard_address,
};
use ocelot::ipam::{
    AssignRequest, BlockWrite, Family, FreeReason, GcInput, LeakReason, WriteKind, vxlan_handle,
    wireguard_handle,
};

use crate::apply::FIELD_MANAGER;
use crate::ctx::{Ctx, reference};
use crate::feed::Feed;

/// Writes in flight at once.
const CONCURRENCY: usize = 16;
/// Commit rounds per pass: a block written in one round may be dirty again (e.g. claimed, then
/// the WireGuard address assigned in it); the rest waits for the next pass.
const ROUNDS: usize = 3;

/// Labels a node's pool selectors see: its Calico Node's, else its Kubernetes Node's.
fn labels_of(feed: &Feed, node: &str) -> BTreeMap<String, String> {
    feed.calico_nodes
        .get(node)
        .and_then(|n| n.metadata.labels.clone())
        .or_else(|| {
            feed.kube_nodes
                .get(node)
                .and_then(|n| n.metadata.labels.clone())
        })
        .unwrap_or_default()
}

/// One pass; returns the API writes made.
pub async fn reconcile(ctx: &mut Ctx, feed: &mut Feed) -> usize {
    let now = SystemTime::now();
    let nodes: Vec<String> = feed.index.node_names().map(str::to_string).collect();
    for node in &nodes {
        let labels = labels_of(feed, node);
        let demand: Vec<String> = feed
            .agent_status
            .get(node)
            .map(|s| s.block_demand.iter().map(|d| d.pool.clone()).collect())
            .unwrap_or_default();
        for pool in claims_needed(&feed.ipam, node, &labels, &demand) {
            match feed.ipam.claim_block(node, &pool, now) {
                Ok(c) => tracing::info!(%node, %pool, block = %c.cidr, "claiming a block"),
                Err(e) => {
                    let r = reference("projectcalico.org/v3", "Node", node, None);
                    ctx.warn_once(
                        r,
                        "BlockClaimFailed",
                        &pool,
                        format!("node {node:?}: no block from IPPool {pool:?}: {e}"),
                    )
                    .await;
                }
            }
        }
        let enabled = feed.index.dataplane(node).wireguard_enabled;
        match wireguard_address(&feed.ipam, node, enabled) {
            TunnelAddress::Keep(_) => {}
            TunnelAddress::Assign => {
                let pools = feed.ipam.tunnel_pools(Family::V4, &labels);
                let req = AssignRequest::wireguard(node, now);
                match feed.ipam.auto_assign(&req, Family::V4, &pools) {
                    Ok(a) => {
                        tracing::info!(%node, address = %a.address, "WireGuard interface address assigned")
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "no WireGuard interface address yet")
                    }
                }
            }
            TunnelAddress::Release(addrs) => {
                feed.ipam.release_handle(&wireguard_handle(node));
                tracing::info!(%node, ?addrs, "WireGuard off: interface address released");
            }
        }
        let vp = vxlan_pools(&feed.ipam, &feed.pools, &labels);
        match vxlan_address(&feed.ipam, node, !vp.pools.is_empty()) {
            TunnelAddress::Keep(_) => {}
            TunnelAddress::Assign => {
                let req = AssignRequest::vxlan(node, now);
                match feed.ipam.auto_assign(&req, Family::V4, &vp) {
                    Ok(a) => {
                        tracing::info!(%node, address = %a.address, "VXLAN tunnel address assigned")
                    }
                    Err(e) => tracing::warn!(%node, error = %e, "no VXLAN tunnel address yet"),
                }
            }
            TunnelAddress::Release(addrs) => {
                feed.ipam.release_handle(&vxlan_handle(node));
                tracing::info!(%node, ?addrs, "no VXLAN pool selects the node: tunnel address released");
            }
        }
    }
    gc(ctx, feed, now);
    let mut writes = 0;
    for _ in 0..ROUNDS {
        let batch = feed.ipam.prepare_commit();
        if batch.is_empty() {
            break;
        }
        writes += commit(ctx, feed, batch).await;
    }
    // Right after our own creates the watch has not brought their affinities back yet.
    if writes == 0 {
        writes += repair_affinities(ctx, feed).await;
    }
    for node in &nodes {
        let addr = feed
            .ipam
            .handle_addresses(&wireguard_handle(node))
            .into_iter()
            .find_map(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        let a = feed.index.set_wireguard_address(node, addr);
        feed.pending.add(a);
        let a = feed
            .index
            .set_vxlan_address(node, vxlan_tunnel_address(feed, node));
        feed.pending.add(a);
    }
    writes
}

/// The node's VXLAN tunnel address as IPAM holds it.
pub fn vxlan_tunnel_address(feed: &Feed, node: &str) -> Option<std::net::Ipv4Addr> {
    feed.ipam
        .handle_addresses(&vxlan_handle(node))
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
}

/// GC as Calico's kube-controllers do it for nodes: a deleted node's addresses are released at
/// once, its empty blocks after the grace period; blocks outside every pool or without affinity
/// are freed. Per-pod leaks are the CNI plugin's `GC` verb's job on each node (the operator does
/// not watch every pod), so pod-leak releases are not applied here.
fn gc(ctx: &mut Ctx, feed: &mut Feed, now: SystemTime) {
    let live: HashSet<String> = feed
        .calico_nodes
        .keys()
        .chain(feed.kube_nodes.keys())
        .cloned()
        .collect();
    let mut input = GcInput::new(&[], &live, now);
    input.grace = ctx.opts.leak_grace;
    let decision = feed.ipam.gc(&input, &ctx.memory.gc);
    ctx.memory.gc = decision.state;
    for r in decision
        .release
        .iter()
        .filter(|r| r.reason == LeakReason::NodeGone)
    {
        tracing::info!(handle = %r.handle, addresses = ?r.addresses, "releasing the addresses of a deleted node");
        feed.ipam.release_handle(&r.handle);
    }
    for b in decision
        .free_blocks
        .iter()
        .filter(|b| b.reason != FreeReason::Unused)
    {
        match feed.ipam.free_block(&b.cidr) {
            Ok(()) => tracing::info!(block = %b.cidr, reason = ?b.reason, "freeing block"),
            Err(e) => tracing::debug!(block = %b.cidr, error = %e, "block not freed yet"),
        }
    }
}

async fn commit(ctx: &Ctx, feed: &mut Feed, batch: Vec<BlockWrite>) -> usize {
    let blocks: Api<IPAMBlock> = Api::all(ctx.client.clone());
    let affinities: Api<BlockAffinity> = Api::all(ctx.client.clone());
    // Only the written blocks' metadata is copied: a commit costs O(its blocks), not O(all).
    let jobs: Vec<_> = batch
        .into_iter()
        .map(|w| {
            let stored = feed.block_meta.get(&w.name).cloned();
            (w, stored)
        })
        .collect();
    let mut results = futures::stream::iter(jobs)
        .map(|(w, stored)| {
            let (blocks, affinities) = (blocks.clone(), affinities.clone());
            async move {
                let r = write(&blocks, &affinities, &w, stored).await;
                (w, r)
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut writes = 0;
    while let Some((w, result)) = results.next().await {
        match result {
            Ok((n, meta)) => {
                writes += n;
                match meta.as_ref().and_then(ocelot::ipam::block_meta_to_keep) {
                    Some(meta) => {
                        feed.block_meta.insert(w.name.clone(), meta);
                    }
                    None => {
                        feed.block_meta.remove(&w.name);
                    }
                }
                if let Err(e) = feed.ipam.commit_succeeded(&w.cidr, w.sequence) {
                    tracing::warn!(block = %w.name, error = %e, "commit bookkeeping");
                }
            }
            Err(e) => {
                tracing::warn!(block = %w.name, kind = ?w.kind, error = %e, "block write failed (changed by another writer?); redone on the next pass");
                let lost = feed.ipam.rollback(&w.cidr);
                tracing::debug!(block = %w.name, lost = lost.len(), "rolled back");
            }
        }
    }
    writes
}

/// One block write; returns the API writes made and the block's new metadata (None when
/// deleted).
async fn write(
    blocks: &Api<IPAMBlock>,
    affinities: &Api<BlockAffinity>,
    w: &BlockWrite,
    stored: Option<ObjectMeta>,
) -> kube::Result<(usize, Option<ObjectMeta>)> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match w.kind {
        WriteKind::Create => {
            // The block first: its create is the compare-and-swap (409 when another writer has it).
            // A crash before the affinity is created is repaired by `repair_affinities`.
            let mut obj = IPAMBlock::new(&w.name, w.spec.clone());
            obj.metadata.labels = ocelot::ipam::block_labels(&w.spec);
            let created = blocks.create(&pp, &obj).await?;
            let mut n = 1;
            if let Some((name, spec)) = &w.affinity {
                let mut spec = spec.clone();
                spec.state = AffinityState::Confirmed;
                match affinities
                    .create(&pp, &BlockAffinity::new(name, spec))
                    .await
                {
                    Ok(_) => n += 1,
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((n, Some(created.metadata)))
        }
        WriteKind::Update => {
            // Never read (no version to swap against): the replace is unconditional, as before
            // the block's first watch event; the engine only updates blocks it has seen.
            let stored = stored.unwrap_or_else(|| ObjectMeta {
                name: Some(w.name.clone()),
                ..Default::default()
            });
            let obj = ocelot::ipam::block_update(&stored, w.spec.clone());
            let replaced = blocks.replace(&w.name, &pp, &obj).await?;
            Ok((1, Some(replaced.metadata)))
        }
        WriteKind::Delete => {
            let mut n = 0;
            if let Some((name, _)) = &w.affinity {
                match affinities.delete(name, &DeleteParams::default()).await {
                    Ok(_) => n += 1,
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: stored.and_then(|m| m.resource_version),
                    uid: None,
                }),
                ..Default::default()
            };
            match blocks.delete(&w.name, &dp).await {
                Ok(_) => n += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            Ok((n, None))
        }
    }
}

/// Creates the BlockAffinity of every persisted affine block that lacks one (a crash between the
/// block's and the affinity's creation).
async fn repair_affinities(ctx: &Ctx, feed: &Feed) -> usize {
    let api: Api<BlockAffinity> = Api::all(ctx.client.clone());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut n = 0;
    for b in feed.ipam.blocks() {
        let (Some(node), Some(_)) = (b.node(), feed.block_meta.get(&b.name())) else {
            continue;
        };
        let name = ocelot::ipam::affinity_name(node, &b.cidr());
        if feed.has_affinity(&name) {
            continue;
        }
        let spec = ocelot::ipam::engine::affinity_spec(node, &b.cidr());
        match api.create(&pp, &BlockAffinity::new(&name, spec)).await {
            Ok(_) => {
                tracing::info!(affinity = %name, "created the missing BlockAffinity of a block");
                n += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => tracing::warn!(affinity = %name, error = %e, "BlockAffinity repair failed"),
        }
    }
    n
}
