//! The IPAM engine: pools and blocks in memory, assignment and release, and group commit.
//!
//! Every change is applied to an in-memory working copy of its block at once (so a later request in
//! the same batch sees it), and queued as an [`Op`] on that block. [`Ipam::prepare_commit`] turns the
//! dirty blocks into one [`BlockWrite`] each; the caller writes them (in parallel, one per block) and
//! reports back with [`Ipam::commit_succeeded`] or [`Ipam::rollback`], which returns exactly the ops
//! the failed write lost. At most one write per block is in flight, so sequence numbers stay linear.
//!
//! Split along its seams: [`index`] (block keys and the handle index), [`claim`] (the block walk,
//! claims and frees), [`assign`] (requests, assignment and release), [`commit`] (group commit).
mod assign;
mod claim;
mod commit;
mod index;

pub use assign::{AssignKind, AssignRequest, Assignment};
pub use claim::Claim;
pub use commit::{BlockWrite, CommitTicket, Durability, Op, OpKind, WriteKind};
pub(crate) use index::BlockKey;
use index::HandleIndex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::block::Interner;
use super::error::PoolSource;
use super::pool::{FamilyPools, PodContext, PoolSelection, automatic_pools, select};
use super::{
    Block, DEFAULT_MAX_BLOCKS_PER_HOST, Family, IPIP_HANDLE_PREFIX, IpamError, Pool,
    VXLAN_HANDLE_PREFIX, WIREGUARD_HANDLE_PREFIX,
};
use crate::api::ipam::{AffinityState, BlockAffinitySpec, IPAMBlockSpec};
use crate::api::ippool::{AllowedUse, IPPoolSpec};

/// Cluster IPAM settings (Calico's IPAMConfiguration `default`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpamConfig {
    /// Never assign from another node's block (no borrowing).
    pub strict_affinity: bool,
    /// Blocks one node may own; 0 means Calico's hidden default of 20.
    pub max_blocks_per_host: u32,
}

impl IpamConfig {
    /// The effective per-node block limit.
    pub fn block_limit(&self) -> u32 {
        if self.max_blocks_per_host == 0 {
            DEFAULT_MAX_BLOCKS_PER_HOST
        } else {
            self.max_blocks_per_host
        }
    }
}

#[derive(Clone, Debug)]
struct InFlight {
    seq: i64,
    kind: WriteKind,
    ops: Vec<Op>,
    written: Option<Block>,
}

#[derive(Clone, Debug)]
struct Entry {
    block: Block,
    /// Sequence number of the stored object; None while our claim is not yet created.
    persisted_seq: Option<i64>,
    /// The last persisted state, kept only while something is uncommitted.
    /// Boxed, as is `in_flight`: both are None for almost every block, and inline they would
    /// triple the size of every map entry.
    rollback_to: Option<Box<Block>>,
    in_flight: Option<Box<InFlight>>,
    pending: Vec<Op>,
    epoch: u32,
    delete: bool,
}

impl Entry {
    fn clean(block: Block) -> Entry {
        Entry {
            persisted_seq: Some(block.sequence_number()),
            block,
            rollback_to: None,
            in_flight: None,
            pending: Vec::new(),
            epoch: 0,
            delete: false,
        }
    }

    /// Sequence number of the next write of this block.
    fn next_seq(&self) -> i64 {
        match (&self.in_flight, self.persisted_seq) {
            (Some(f), _) => f.seq + 1,
            (None, Some(p)) => p + 1,
            (None, None) => self.block.sequence_number(),
        }
    }

    /// Snapshot the persisted state before the first uncommitted change.
    fn touch(&mut self) {
        if self.rollback_to.is_none() && self.persisted_seq.is_some() && self.in_flight.is_none() {
            self.rollback_to = Some(Box::new(self.block.clone()));
        }
    }

    fn lost(&self) -> Vec<Op> {
        let mut v: Vec<Op> = self
            .in_flight
            .iter()
            .flat_map(|f| f.ops.iter().cloned())
            .collect();
        v.extend(self.pending.iter().cloned());
        v
    }
}

/// The IPAM engine. See the module docs for the commit protocol.
#[derive(Clone, Debug, Default)]
pub struct Ipam {
    config: IpamConfig,
    pools: BTreeMap<String, Pool>,
    /// Entries boxed: the tree's nodes then hold 32-byte slots, not 300-byte ones half empty.
    blocks: BTreeMap<BlockKey, Box<Entry>>,
    /// Sorted; a node owns at most maxBlocksPerHost blocks, so a Vec beats a tree here.
    node_blocks: HashMap<Arc<str>, Vec<BlockKey>>,
    handles: HandleIndex,
    dirty: BTreeSet<BlockKey>,
    interner: Interner,
}

impl Ipam {
    /// An empty engine.
    pub fn new(config: IpamConfig) -> Ipam {
        Ipam {
            config,
            ..Ipam::default()
        }
    }

    /// Current settings.
    pub fn config(&self) -> IpamConfig {
        self.config
    }

    /// Replace the settings (IPAMConfiguration changed).
    pub fn set_config(&mut self, config: IpamConfig) {
        self.config = config;
    }

    // ---- pools ----

    /// Add or replace a pool.
    pub fn upsert_pool(&mut self, name: &str, spec: &IPPoolSpec) -> Result<(), IpamError> {
        let pool = Pool::from_spec(name, spec)?;
        self.pools.insert(name.to_string(), pool);
        Ok(())
    }

    /// Forget a pool; its blocks stay (orphaned) until GC frees the empty ones.
    pub fn remove_pool(&mut self, name: &str) -> Option<Pool> {
        self.pools.remove(name)
    }

    /// A pool by name.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    /// All pools in name order.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    /// The pool a block was carved from: the pool containing it, preferring one of the block's size.
    pub fn pool_of(&self, cidr: &IpNet) -> Option<&Pool> {
        let mut found = None;
        for p in self.pools.values() {
            if p.cidr.contains(cidr) {
                if p.block_size == cidr.prefix_len() {
                    return Some(p);
                }
                found.get_or_insert(p);
            }
        }
        found
    }

    /// Pool selection for a pod (Calico §6.2).
    pub fn select_pools(&self, ctx: &PodContext<'_>) -> Result<PoolSelection, IpamError> {
        select(&self.pools, ctx)
    }

    /// The pools a node's tunnel addresses come from: enabled Automatic Tunnel pools selecting the node.
    pub fn tunnel_pools(
        &self,
        family: Family,
        node_labels: &BTreeMap<String, String>,
    ) -> FamilyPools {
        FamilyPools {
            pools: automatic_pools(&self.pools, family, AllowedUse::Tunnel, node_labels, None),
            source: PoolSource::NodeSelector,
        }
    }

    /// Pools whose nodeSelector matches a node: the pools the operator gives it a block from on join.
    /// LoadBalancer pools never give a node host affinity.
    pub fn pools_for_node(&self, node_labels: &BTreeMap<String, String>) -> Vec<String> {
        self.pools
            .values()
            .filter(|p| {
                !p.disabled
                    && p.automatic
                    && p.num_blocks() > 0
                    && !p.allows(AllowedUse::LoadBalancer)
                    && p.node_selector.matches(node_labels)
            })
            .map(|p| p.name.clone())
            .collect()
    }

    // ---- blocks ----

    /// Load or refresh a block read from the API. A newer version than ours discards our uncommitted
    /// ops on it (returned, to be redone); our own write echoed back acknowledges it.
    pub fn observe_block(&mut self, spec: &IPAMBlockSpec) -> Result<Vec<Op>, IpamError> {
        let b = Block::from_spec_in(spec, &mut self.interner)?;
        let key = BlockKey::of(&b.cidr());
        let Some(e) = self.blocks.get(&key) else {
            self.insert_entry(key, Entry::clean(b));
            return Ok(Vec::new());
        };
        if let Some(f) = &e.in_flight
            && f.seq == b.sequence_number()
            && f.written.as_ref() == Some(&b)
        {
            let seq = f.seq;
            self.commit_succeeded(&b.cidr(), seq)?;
            return Ok(Vec::new());
        }
        if e.persisted_seq.is_some_and(|p| b.sequence_number() <= p) {
            return Ok(Vec::new());
        }
        let old = self.remove_entry(key).expect("entry present");
        let lost = old.lost();
        let mut e = Entry::clean(b);
        e.epoch = old.epoch + u32::from(!lost.is_empty());
        self.insert_entry(key, e);
        Ok(lost)
    }

    /// A block was deleted in the API. Returns the uncommitted ops lost with it.
    pub fn observe_block_deleted(&mut self, cidr: &IpNet) -> Vec<Op> {
        let key = BlockKey::of(cidr);
        match self.blocks.get(&key) {
            // Our own claim not created yet: the delete is of an older object.
            Some(e) if e.persisted_seq.is_none() => Vec::new(),
            Some(_) => self.remove_entry(key).map(|e| e.lost()).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// A block by CIDR.
    pub fn block(&self, cidr: &IpNet) -> Option<&Block> {
        self.blocks.get(&BlockKey::of(cidr)).map(|e| &e.block)
    }

    /// All blocks (working copies), by family and address.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.values().map(|e| &e.block)
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// A node's affine blocks: also the node's `blackhole` routes.
    pub fn node_blocks(&self, node: &str) -> Vec<IpNet> {
        self.node_blocks
            .get(node)
            .map(|s| s.iter().map(|k| self.blocks[k].block.cidr()).collect())
            .unwrap_or_default()
    }

    /// Per node, the addresses allocated to it (the allocation's `node` attribute) in blocks that
    /// are not affine to it: borrowed from another node's block or held in an unaffine one. The
    /// WireGuard plan routes them as /32s, as Felix does.
    pub fn borrowed_addresses(&self) -> BTreeMap<String, Vec<IpAddr>> {
        let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for e in self.blocks.values().filter(|e| !e.delete) {
            let owner = e.block.node();
            for (ord, a) in e.block.allocations() {
                if let Some(n) = a.node()
                    && Some(n) != owner
                {
                    out.entry(n.to_string())
                        .or_default()
                        .push(e.block.address(ord));
                }
            }
        }
        out
    }

    /// Nodes that own at least one block.
    pub fn nodes_with_blocks(&self) -> impl Iterator<Item = &str> {
        self.node_blocks.keys().map(|n| &**n)
    }

    fn block_containing(&self, addr: IpAddr) -> Option<BlockKey> {
        let (k, e) = self.blocks.range(..=BlockKey::of_addr(addr)).next_back()?;
        e.block.cidr().contains(&addr).then_some(*k)
    }

    fn overlapping(&self, cidr: &IpNet) -> Option<IpNet> {
        let end = BlockKey::of_addr(cidr.broadcast());
        let (_, e) = self.blocks.range(..=end).next_back()?;
        let b = e.block.cidr();
        (b.contains(&cidr.network()) || cidr.contains(&b.network())).then_some(b)
    }

    // ---- index maintenance ----

    fn insert_entry(&mut self, key: BlockKey, e: Entry) {
        if let Some(n) = e.block.node() {
            let n = self.interner.str(n);
            let v = self.node_blocks.entry(n).or_default();
            if let Err(i) = v.binary_search(&key) {
                v.insert(i, key);
            }
        }
        self.blocks.insert(key, Box::new(e));
        // The index reads handles from the records, so they go in after the block.
        let b = &self.blocks[&key].block;
        for (ord, a) in b.allocations() {
            if let Some(h) = a.handle() {
                self.handles.insert(&self.blocks, h, key, ord);
            }
        }
    }

    fn remove_entry(&mut self, key: BlockKey) -> Option<Entry> {
        // The index reads handles from the records, so they leave it before the block goes.
        let b = &self.blocks.get(&key)?.block;
        for (ord, a) in b.allocations() {
            if let Some(h) = a.handle() {
                self.handles.remove(&self.blocks, h, key, ord);
            }
        }
        let e = *self.blocks.remove(&key)?;
        self.dirty.remove(&key);
        if let Some(n) = e.block.node()
            && let Some(s) = self.node_blocks.get_mut(n)
        {
            s.retain(|k| *k != key);
            if s.is_empty() {
                self.node_blocks.remove(n);
            }
        }
        Some(e)
    }

    /// Whether an allocation's handle marks a node tunnel address, and for which node.
    pub fn tunnel_node(handle: &str) -> Option<&str> {
        [
            WIREGUARD_HANDLE_PREFIX,
            IPIP_HANDLE_PREFIX,
            VXLAN_HANDLE_PREFIX,
        ]
        .iter()
        .find_map(|p| handle.strip_prefix(p))
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&BlockKey, &Block)> {
        self.blocks.iter().map(|(k, e)| (k, &e.block))
    }

    pub(crate) fn node_block_count(&self, node: &str) -> usize {
        self.node_blocks.get(node).map_or(0, Vec::len)
    }
}

/// The BlockAffinity of a node's block.
pub fn affinity_spec(node: &str, cidr: &IpNet) -> BlockAffinitySpec {
    BlockAffinitySpec {
        cidr: cidr.to_string(),
        node: node.to_string(),
        state: AffinityState::Confirmed,
        type_: Some("host".into()),
        deleted: false,
    }
}
