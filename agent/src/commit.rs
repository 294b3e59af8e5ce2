//! Group commit of the node's IPAMBlocks: every op the core queued on a block since the last
//! write goes out in one compare-and-swap replace (resourceVersion), so a burst of ADDs costs one
//! API write per block, not per pod. The agent only updates blocks the operator claimed for it.
use std::collections::HashMap;

use futures::StreamExt;
use kube::api::{Api, ObjectMeta, PostParams};
use ocelot::api::IPAMBlock;
use ocelot::ipam::{BlockWrite, Ipam, WriteKind};

/// The agent's field manager on the objects it writes.
pub const FIELD_MANAGER: &str = "ocelot-agent";
/// Block writes in flight at once (a node has few blocks).
const CONCURRENCY: usize = 8;

/// IPAMBlock writes, with the metadata last seen of each block (its resourceVersion is the next
/// write's condition; the rest is carried over untouched).
pub struct BlockWriter {
    api: Api<IPAMBlock>,
    stored: HashMap<String, ObjectMeta>,
    /// API writes made, for metrics and the benchmark.
    pub writes: u64,
}

/// What one commit round did.
#[derive(Debug, Default)]
pub struct Committed {
    pub written: usize,
    pub failed: usize,
}

impl BlockWriter {
    pub fn new(api: Api<IPAMBlock>) -> BlockWriter {
        BlockWriter {
            api,
            stored: HashMap::new(),
            writes: 0,
        }
    }

    /// A block as read from the watch: its version is what the next write must replace.
    pub fn observed(&mut self, block: &IPAMBlock) {
        self.keep(&block.metadata);
    }

    fn keep(&mut self, meta: &ObjectMeta) {
        if let Some(meta) = ocelot::ipam::block_meta_to_keep(meta) {
            self.stored
                .insert(meta.name.clone().unwrap_or_default(), meta);
        }
    }

    pub fn forget(&mut self, name: &str) {
        self.stored.remove(name);
    }

    /// Writes every dirty block once. A conflict rolls the block back and reloads it, so the
    /// requests whose ops were lost are redone on the next pass against the stored state.
    pub async fn commit(&mut self, ipam: &mut Ipam) -> Committed {
        let mut out = Committed::default();
        let batch = ipam.prepare_commit();
        if batch.is_empty() {
            return out;
        }
        let jobs: Vec<_> = batch
            .into_iter()
            .map(|w| {
                let stored = self.stored.get(&w.name).cloned();
                (w, stored)
            })
            .collect();
        let api = self.api.clone();
        let mut results = futures::stream::iter(jobs)
            .map(|(w, stored)| {
                let api = api.clone();
                async move {
                    let r = replace(&api, &w, stored).await;
                    (w, r)
                }
            })
            .buffer_unordered(CONCURRENCY);
        let mut reload = Vec::new();
        while let Some((w, result)) = results.next().await {
            match result {
                Ok(meta) => {
                    self.writes += 1;
                    out.written += 1;
                    self.keep(&meta);
                    if let Err(e) = ipam.commit_succeeded(&w.cidr, w.sequence) {
                        tracing::warn!(block = %w.name, error = %e, "commit bookkeeping");
                    }
                }
                Err(e) => {
                    out.failed += 1;
                    let lost = ipam.rollback(&w.cidr);
                    tracing::info!(block = %w.name, error = %e, lost = lost.len(), "block write refused; reloading the block and redoing its requests");
                    reload.push((w.name.clone(), w.cidr));
                }
            }
        }
        drop(results);
        for (name, cidr) in reload {
            match self.api.get_opt(&name).await {
                Ok(Some(b)) => {
                    self.observed(&b);
                    if let Err(e) = ipam.observe_block(&b.spec) {
                        tracing::warn!(block = %name, error = %e, "reloaded block unreadable");
                    }
                }
                Ok(None) => {
                    self.forget(&name);
                    ipam.observe_block_deleted(&cidr);
                }
                Err(e) => tracing::warn!(block = %name, error = %e, "reloading a block"),
            }
        }
        out
    }
}

/// One conditional replace; returns the block's new metadata.
async fn replace(
    api: &Api<IPAMBlock>,
    w: &BlockWrite,
    stored: Option<ObjectMeta>,
) -> Result<ObjectMeta, String> {
    if w.kind != WriteKind::Update {
        // Claims and frees are the operator's; the agent's core never queues them.
        return Err(format!(
            "{:?} of a block is not the agent's to write",
            w.kind
        ));
    }
    let Some(stored) = stored else {
        return Err("block not read yet".into());
    };
    let obj = ocelot::ipam::block_update(&stored, w.spec.clone());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.replace(&w.name, &pp, &obj)
        .await
        .map(|b| b.metadata)
        .map_err(|e| e.to_string())
}
