//! The block walk (Calico's randomBlockGenerator order), block claims and frees.
use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;

use super::{BlockKey, Entry, Ipam, affinity_spec};
use crate::api::ipam::BlockAffinitySpec;
use crate::api::ippool::AllowedUse;
use crate::ipam::error::PoolSource;
use crate::ipam::gorand::block_walk_start;
use crate::ipam::{
    Block, Family, IpamError, Pool, addr_to_u128, affinity_name, block_name, host_affinity,
    rfc3339, unix_nanos,
};
/// A claimed block, to be created by the next commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// Pool it was carved from.
    pub pool: String,
    /// Block CIDR.
    pub cidr: IpNet,
    /// IPAMBlock name.
    pub block_name: String,
    /// BlockAffinity name.
    pub affinity_name: String,
    /// BlockAffinity spec (confirmed once the block is created).
    pub affinity: BlockAffinitySpec,
}

impl Ipam {
    /// The block-sized subnet of `pool` a new block for `node` would get, as Calico's findUsableBlock
    /// picks it: walk the pool's blocks from [`block_walk_start`] (Go's math/rand seeded with FNV-1 32
    /// of the node name), forward and wrapping, taking the first subnet that overlaps no existing
    /// block. Deterministic for a node and a set of blocks.
    pub fn find_free_block(&self, pool: &str, node: &str) -> Option<IpNet> {
        let pool = self.pools.get(pool)?;
        let n = pool.num_blocks();
        if n == 0 {
            return None;
        }
        let v6 = pool.family() == Family::V6;
        let base = addr_to_u128(pool.cidr.network());
        let bl = pool.block_len();
        let mut i = block_walk_start(node, n);
        let mut visited: u128 = 0;
        while visited < n {
            let start = base + i * bl;
            let end = start + (bl - 1);
            let hit = self
                .blocks
                .range(..=BlockKey::new(v6, end, u8::MAX))
                .next_back()
                .filter(|(k, _)| k.v6 == v6)
                .map(|(k, _)| k.last())
                .filter(|&b_end| b_end >= start);
            match hit {
                None => return Some(pool.block_at(i)),
                Some(b_end) => {
                    // Skip every subnet the obstacle covers (a larger foreign block covers several).
                    let next = if b_end >= end {
                        (b_end - base) / bl + 1
                    } else {
                        i + 1
                    };
                    let next = next.min(n);
                    visited += next - i;
                    i = if next >= n { 0 } else { next };
                }
            }
        }
        None
    }

    /// Claim a new block of `pool` for `node` (operator side). The block and its affinity are created
    /// by the next commit; the caller follows Calico's pending → confirmed affinity protocol.
    pub fn claim_block(
        &mut self,
        node: &str,
        pool: &str,
        now: SystemTime,
    ) -> Result<Claim, IpamError> {
        let p = self.pools.get(pool).ok_or_else(|| IpamError::UnknownPool {
            pool: pool.to_string(),
            source_kind: PoolSource::Claim,
        })?;
        if p.disabled {
            return Err(IpamError::PoolDisabled {
                pool: pool.to_string(),
                source_kind: PoolSource::Claim,
            });
        }
        // Calico gives LoadBalancer blocks a `virtual:` affinity, never a node's.
        if p.allows(AllowedUse::LoadBalancer) {
            return Err(IpamError::PoolNotForUse {
                pool: pool.to_string(),
                usage: "host affinity (LoadBalancer pool)".into(),
            });
        }
        // The claim is a request for this one pool: the limit counts the node's blocks in it.
        self.check_block_limit(node, std::slice::from_ref(&p))?;
        let cidr = self
            .find_free_block(pool, node)
            .ok_or_else(|| IpamError::PoolsExhausted {
                pools: vec![pool.to_string()],
            })?;
        Ok(self.create_block(node, pool, cidr, now))
    }

    /// Calico's per-host limit: the node's affine blocks are counted only when they lie in one of
    /// the pools usable for the request (so of its family), as autoAssign counts its affine blocks.
    pub(super) fn check_block_limit(&self, node: &str, usable: &[&Pool]) -> Result<(), IpamError> {
        let limit = self.config.block_limit();
        let owned = self.node_blocks.get(node).map_or(0, |keys| {
            keys.iter()
                .filter(|k| {
                    let cidr = self.blocks[*k].block.cidr();
                    usable.iter().any(|p| p.cidr.contains(&cidr))
                })
                .count()
        });
        if owned >= limit as usize {
            return Err(IpamError::BlockLimit {
                node: node.to_string(),
                limit,
            });
        }
        Ok(())
    }

    pub(super) fn create_block(
        &mut self,
        node: &str,
        pool: &str,
        cidr: IpNet,
        now: SystemTime,
    ) -> Claim {
        let block = Block::new(
            cidr,
            Some(host_affinity(node)),
            Some(rfc3339(now)),
            unix_nanos(now),
        );
        let key = BlockKey::of(&cidr);
        self.insert_entry(
            key,
            Entry {
                block,
                persisted_seq: None,
                rollback_to: None,
                in_flight: None,
                pending: Vec::new(),
                epoch: 0,
                delete: false,
            },
        );
        self.dirty.insert(key);
        Claim {
            pool: pool.to_string(),
            cidr,
            block_name: block_name(&cidr),
            affinity_name: affinity_name(node, &cidr),
            affinity: affinity_spec(node, &cidr),
        }
    }

    /// Free an empty block (GC or pool deletion): the next commit deletes it and its affinity.
    pub fn free_block(&mut self, cidr: &IpNet) -> Result<(), IpamError> {
        let key = BlockKey::of(cidr);
        let e = self
            .blocks
            .get_mut(&key)
            .ok_or(IpamError::UnknownBlock { block: *cidr })?;
        if !e.block.is_empty() {
            return Err(IpamError::BlockNotEmpty {
                block: *cidr,
                allocated: e.block.allocated(),
            });
        }
        e.touch();
        e.delete = true;
        self.dirty.insert(key);
        Ok(())
    }

    /// Free the node's empty blocks whose pool (enabled, still present) no longer selects the node,
    /// as Calico's autoAssign does before every assignment (prepareAffinityBlocksForHost); returns
    /// them. Call it with the node's current labels before [`Ipam::auto_assign`]. Blocks of deleted
    /// pools are left to GC, blocks still holding addresses stay until they are empty.
    pub fn release_unselected_blocks(
        &mut self,
        node: &str,
        node_labels: &BTreeMap<String, String>,
    ) -> Vec<IpNet> {
        let unselected: Vec<IpNet> = self
            .node_blocks
            .get(node)
            .into_iter()
            .flatten()
            .map(|k| &self.blocks[k])
            .filter(|e| !e.delete && e.block.is_empty())
            .map(|e| e.block.cidr())
            .filter(|cidr| {
                self.pool_of(cidr)
                    .is_some_and(|p| !p.disabled && !p.node_selector.matches(node_labels))
            })
            .collect();
        for cidr in &unselected {
            self.free_block(cidr).expect("an empty block of this node");
        }
        unselected
    }
}
