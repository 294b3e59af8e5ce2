//! The IPAM engine: pools and blocks in memory, assignment and release, and group commit.
//!
//! Every change is applied to an in-memory working copy of its block at once (so a later request in
//! the same batch sees it), and queued as an [`Op`] on that block. [`Ipam::prepare_commit`] turns the
//! dirty blocks into one [`BlockWrite`] each; the caller writes them (in parallel, one per block) and
//! reports back with [`Ipam::commit_succeeded`] or [`Ipam::rollback`], which returns exactly the ops
//! the failed write lost. At most one write per block is in flight, so sequence numbers stay linear.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::IpNet;

use super::block::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TIMESTAMP, ATTR_TYPE, Interner};
use super::error::PoolSource;
use super::pool::{FamilyPools, PodContext, PoolSelection, automatic_pools, select};
use super::{
    Attr, Block, DEFAULT_MAX_BLOCKS_PER_HOST, Family, IPIP_HANDLE_PREFIX, IpamError, Pool,
    VXLAN_HANDLE_PREFIX, WIREGUARD_HANDLE_PREFIX, addr_to_u128, affinity_name, block_name, fnv32,
    host_affinity, rfc3339, rfc3339_secs, unix_nanos, unix_secs,
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

/// Blocks sort by family, then start address, so range scans find containing/overlapping blocks. The
/// prefix is part of the key so a mis-sized block sharing a start address (ipam check's "overlap")
/// does not shadow the other. The start is two u64 halves (high first, so the order is the u128
/// order) to keep the key 8-byte aligned: 24 bytes instead of 32 in every map and index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    v6: bool,
    hi: u64,
    lo: u64,
    prefix: u8,
}

// By hand: one u128 comparison is cheaper than the derived field-by-field one (hot in tree searches).
impl Ord for BlockKey {
    fn cmp(&self, o: &BlockKey) -> std::cmp::Ordering {
        (self.v6, self.start(), self.prefix).cmp(&(o.v6, o.start(), o.prefix))
    }
}

impl PartialOrd for BlockKey {
    fn partial_cmp(&self, o: &BlockKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl BlockKey {
    fn new(v6: bool, start: u128, prefix: u8) -> BlockKey {
        BlockKey {
            v6,
            hi: (start >> 64) as u64,
            lo: start as u64,
            prefix,
        }
    }
    /// Upper bound for range scans: sorts after every block starting at `a`.
    pub(crate) fn of_addr(a: IpAddr) -> BlockKey {
        BlockKey::new(a.is_ipv6(), addr_to_u128(a), u8::MAX)
    }
    pub(crate) fn of(cidr: &IpNet) -> BlockKey {
        BlockKey::new(
            cidr.addr().is_ipv6(),
            addr_to_u128(cidr.network()),
            cidr.prefix_len(),
        )
    }
    fn start(&self) -> u128 {
        u128::from(self.hi) << 64 | u128::from(self.lo)
    }
    /// The block's last address, from the key alone (no trip to the boxed entry).
    fn last(&self) -> u128 {
        let max: u32 = if self.v6 { 128 } else { 32 };
        let host_bits = max.saturating_sub(u32::from(self.prefix));
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        self.start() + span
    }
}

/// Where one allocation of a handle is, plus 32 bits of the handle's hash (so the table can grow
/// without reading the handles back). 24 bytes; the handle text lives only in the block's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    hi: u64,
    lo: u64,
    v6: bool,
    prefix: u8,
    ord: u16,
    hash: u32,
}

impl Loc {
    fn new(key: BlockKey, ord: u32, hash: u32) -> Loc {
        Loc {
            hi: key.hi,
            lo: key.lo,
            v6: key.v6,
            prefix: key.prefix,
            ord: ord as u16,
            hash,
        }
    }
    fn key(&self) -> BlockKey {
        BlockKey {
            v6: self.v6,
            hi: self.hi,
            lo: self.lo,
            prefix: self.prefix,
        }
    }
    fn ord(&self) -> u32 {
        u32::from(self.ord)
    }
}

/// Handle → locations of its addresses. Equality is checked against the handle in the block record,
/// so the index holds no copy of the handle strings.
#[derive(Clone, Debug, Default)]
struct HandleIndex {
    hasher: DefaultHashBuilder,
    table: HashTable<Loc>,
    /// Number of distinct handles.
    distinct: usize,
}

/// The table hash from the stored 32 bits: repeated so both hashbrown's bucket bits (low) and its
/// tag bits (top 7) come from them.
fn table_hash(h: u32) -> u64 {
    u64::from(h) | u64::from(h) << 32
}

fn handle_at<'a>(blocks: &'a BTreeMap<BlockKey, Box<Entry>>, l: &Loc) -> Option<&'a str> {
    blocks.get(&l.key())?.block.attr(l.ord())?.handle()
}

impl HandleIndex {
    fn h32(&self, handle: &str) -> u32 {
        self.hasher.hash_one(handle) as u32
    }

    fn contains(&self, blocks: &BTreeMap<BlockKey, Box<Entry>>, handle: &str, h: u32) -> bool {
        self.table
            .iter_hash(table_hash(h))
            .any(|l| l.hash == h && handle_at(blocks, l) == Some(handle))
    }

    /// Record an allocation; its record must already be in `blocks`.
    fn insert(
        &mut self,
        blocks: &BTreeMap<BlockKey, Box<Entry>>,
        handle: &str,
        key: BlockKey,
        ord: u32,
    ) {
        let h = self.h32(handle);
        if !self.contains(blocks, handle, h) {
            self.distinct += 1;
        }
        self.table
            .insert_unique(table_hash(h), Loc::new(key, ord, h), |l| table_hash(l.hash));
    }

    /// Forget one allocation; its record must still be in `blocks`.
    fn remove(
        &mut self,
        blocks: &BTreeMap<BlockKey, Box<Entry>>,
        handle: &str,
        key: BlockKey,
        ord: u32,
    ) {
        let h = self.h32(handle);
        let loc = Loc::new(key, ord, h);
        if let Ok(e) = self.table.find_entry(table_hash(h), |l| *l == loc) {
            e.remove();
            if !self.contains(blocks, handle, h) {
                self.distinct -= 1;
            }
        }
    }

    /// A handle's allocations, in block and ordinal order.
    fn get(&self, blocks: &BTreeMap<BlockKey, Box<Entry>>, handle: &str) -> Vec<(BlockKey, u32)> {
        let h = self.h32(handle);
        let mut v: Vec<(BlockKey, u32)> = self
            .table
            .iter_hash(table_hash(h))
            .filter(|l| l.hash == h && handle_at(blocks, l) == Some(handle))
            .map(|l| (l.key(), l.ord()))
            .collect();
        v.sort_unstable();
        v
    }

    /// Remove and return a handle's allocations, in block and ordinal order.
    fn take(
        &mut self,
        blocks: &BTreeMap<BlockKey, Box<Entry>>,
        handle: &str,
    ) -> Vec<(BlockKey, u32)> {
        let v = self.get(blocks, handle);
        if v.is_empty() {
            return v;
        }
        let h = self.h32(handle);
        for &(k, o) in &v {
            let loc = Loc::new(k, o, h);
            if let Ok(e) = self.table.find_entry(table_hash(h), |l| *l == loc) {
                e.remove();
            }
        }
        self.distinct -= 1;
        v
    }
}

/// What an address is for; decides the secondary attributes and the pool use checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssignKind {
    /// A pod sandbox.
    Pod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// A node's WireGuard interface address.
    WireguardTunnel,
    /// A node's IPIP tunnel address.
    IpipTunnel,
    /// A node's VXLAN tunnel address.
    VxlanTunnel,
}

/// One address request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignRequest {
    /// Handle to record, e.g. `k8s-pod-network.<containerID>`.
    pub handle: String,
    /// The node the address is for.
    pub node: String,
    /// Pod or tunnel.
    pub kind: AssignKind,
    /// Assignment time, recorded as the `timestamp` attribute.
    pub time: SystemTime,
}

impl AssignRequest {
    /// A pod sandbox's request, with Calico's CNI handle.
    pub fn pod(
        container_id: &str,
        namespace: &str,
        pod: &str,
        node: &str,
        time: SystemTime,
    ) -> AssignRequest {
        AssignRequest {
            handle: super::pod_handle(container_id),
            node: node.to_string(),
            kind: AssignKind::Pod {
                namespace: namespace.to_string(),
                name: pod.to_string(),
            },
            time,
        }
    }

    /// A node's WireGuard interface address request.
    pub fn wireguard(node: &str, time: SystemTime) -> AssignRequest {
        AssignRequest {
            handle: super::wireguard_handle(node),
            node: node.to_string(),
            kind: AssignKind::WireguardTunnel,
            time,
        }
    }

    fn usage(&self) -> AllowedUse {
        match self.kind {
            AssignKind::Pod { .. } => AllowedUse::Workload,
            _ => AllowedUse::Tunnel,
        }
    }

    /// The allocation record. The timestamp stays a number until a spec is rendered.
    fn attr(&self, interner: &mut Interner) -> Attr {
        let node = (ATTR_NODE, self.node.as_str());
        // Calico's AttributeType values for tunnel addresses.
        let tunnel = |t| [node, (ATTR_TYPE, t)];
        // Pairs in key order: namespace < node < type.
        let (pairs, pod): ([(&str, &str); 2], _) = match &self.kind {
            AssignKind::Pod { namespace, name } => {
                ([(ATTR_NAMESPACE, namespace), node], Some(name.as_str()))
            }
            AssignKind::WireguardTunnel => (tunnel("wireguardTunnelAddress"), None),
            AssignKind::IpipTunnel => (tunnel("ipipTunnelAddress"), None),
            AssignKind::VxlanTunnel => (tunnel("vxlanTunnelAddress"), None),
        };
        let secs = unix_secs(self.time);
        let handle = Some(Box::from(self.handle.as_str()));
        // Past year 9999 a stamp does not round-trip through RFC 3339 text: keep it as text then.
        if secs < MAX_STAMP {
            return Attr::from_parts(handle, &pairs, pod, Some(secs), interner);
        }
        let text = rfc3339_secs(secs);
        let mut all = vec![(ATTR_TIMESTAMP, text.as_str())];
        all.extend(pairs);
        all.extend(pod.map(|p| (ATTR_POD, p)));
        Attr::build(handle, all, interner)
    }
}

/// First second of the year 10000.
const MAX_STAMP: u64 = 253_402_300_800;

/// Identifies the block write an op depends on: durable once the block is persisted at `sequence`
/// within the same `epoch` (the epoch changes whenever uncommitted ops are discarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommitTicket {
    /// The block.
    pub block: IpNet,
    /// Rollback generation of the block.
    pub epoch: u32,
    /// The sequence number of the write that persists the op.
    pub sequence: i64,
}

/// Whether an op is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The block write that carries it succeeded.
    Committed,
    /// Not written yet, or the write is in flight.
    Pending,
    /// Its write failed or was superseded, or the block is gone; the op must be redone.
    Lost,
}

/// A successful assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The address.
    pub address: IpAddr,
    /// Its block.
    pub block: IpNet,
    /// Whether the block belongs to another node (borrowed, strictAffinity off).
    pub borrowed: bool,
    /// The write the assignment depends on.
    pub ticket: CommitTicket,
}

/// Assign or release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// An address was assigned.
    Assign,
    /// An address was released.
    Release,
}

/// One uncommitted change to a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Assign or release.
    pub kind: OpKind,
    /// The allocation's handle (shared with the block record, not copied).
    pub handle: Option<Arc<str>>,
    /// The address.
    pub address: IpAddr,
}

/// What to do with the IPAMBlock object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Create the block (and its BlockAffinity, pending then confirmed).
    Create,
    /// Replace the block's spec, conditional on `expected_sequence` (and the object's resourceVersion).
    Update,
    /// Delete the block (and its BlockAffinity).
    Delete,
}

/// One block write of a group commit.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockWrite {
    /// IPAMBlock object name.
    pub name: String,
    /// Block CIDR (the key for [`Ipam::commit_succeeded`] / [`Ipam::rollback`]).
    pub cidr: IpNet,
    /// Create, update or delete.
    pub kind: WriteKind,
    /// The spec to write (for a delete, the last spec).
    pub spec: IPAMBlockSpec,
    /// Sequence number of the stored version this write replaces (None for a create).
    pub expected_sequence: Option<i64>,
    /// Sequence number of the version this write produces.
    pub sequence: i64,
    /// The BlockAffinity to create (Create) or delete (Delete) with the block: name and spec.
    pub affinity: Option<(String, BlockAffinitySpec)>,
    /// The ops this write persists; all of them are lost if it fails.
    pub ops: Vec<Op>,
}

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
    pub fn pools_for_node(&self, node_labels: &BTreeMap<String, String>) -> Vec<String> {
        self.pools
            .values()
            .filter(|p| {
                !p.disabled
                    && p.automatic
                    && p.num_blocks() > 0
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

    /// The block-sized subnet of `pool` a new block for `node` would get: walk from a start derived from
    /// FNV-32 of the node name, wrapping, taking the first subnet that overlaps no existing block (Calico's
    /// findUsableBlock). Deterministic for a node and a set of blocks.
    pub fn find_free_block(&self, pool: &str, node: &str) -> Option<IpNet> {
        let pool = self.pools.get(pool)?;
        let n = pool.num_blocks();
        if n == 0 {
            return None;
        }
        let v6 = pool.family() == Family::V6;
        let base = addr_to_u128(pool.cidr.network());
        let bl = pool.block_len();
        let mut i = u128::from(fnv32(node)) % n;
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
        self.check_block_limit(node)?;
        let cidr = self
            .find_free_block(pool, node)
            .ok_or_else(|| IpamError::PoolsExhausted {
                pools: vec![pool.to_string()],
            })?;
        Ok(self.create_block(node, pool, cidr, now))
    }

    fn check_block_limit(&self, node: &str) -> Result<(), IpamError> {
        let limit = self.config.block_limit();
        let owned = self.node_blocks.get(node).map_or(0, Vec::len);
        if owned >= limit as usize {
            return Err(IpamError::BlockLimit {
                node: node.to_string(),
                limit,
            });
        }
        Ok(())
    }

    fn create_block(&mut self, node: &str, pool: &str, cidr: IpNet, now: SystemTime) -> Claim {
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

    // ---- assignment ----

    /// Assign one address of `family` from `pools` (in order) to the request's node (Calico's autoAssign):
    /// the node's own blocks first; if they are full, [`IpamError::NeedBlock`] while the node may claim
    /// another block; then, with strictAffinity off, borrow from any block of the pools.
    pub fn auto_assign(
        &mut self,
        req: &AssignRequest,
        family: Family,
        pools: &FamilyPools,
    ) -> Result<Assignment, IpamError> {
        let usage = req.usage();
        let mut usable: Vec<&Pool> = Vec::with_capacity(pools.pools.len());
        for name in &pools.pools {
            let explicit = pools.source != PoolSource::NodeSelector;
            match self.pools.get(name) {
                Some(p) if !p.disabled && p.family() == family && p.allows(usage) => usable.push(p),
                // Automatic lists are recomputed from current pools, so a stale entry is just skipped.
                _ if !explicit => {}
                None => {
                    return Err(IpamError::UnknownPool {
                        pool: name.clone(),
                        source_kind: pools.source,
                    });
                }
                Some(p) if p.disabled => {
                    return Err(IpamError::PoolDisabled {
                        pool: name.clone(),
                        source_kind: pools.source,
                    });
                }
                Some(p) if p.family() != family => {
                    return Err(IpamError::PoolWrongFamily {
                        pool: name.clone(),
                        source_kind: pools.source,
                        wanted: family,
                        actual: p.family(),
                    });
                }
                Some(_) => {
                    return Err(IpamError::PoolNotForUse {
                        pool: name.clone(),
                        usage: format!("{usage:?}"),
                    });
                }
            }
        }
        if usable.is_empty() {
            return Err(IpamError::NoPoolForNode {
                node: req.node.clone(),
                family,
            });
        }
        // 1. The node's own blocks, pool by pool.
        let own = self.node_blocks.get(req.node.as_str());
        let mut found = None;
        if let Some(own) = own {
            'pools: for p in &usable {
                for k in own {
                    let e = &self.blocks[k];
                    if !e.delete && e.block.free() > 0 && p.cidr.contains(&e.block.cidr()) {
                        found = Some(*k);
                        break 'pools;
                    }
                }
            }
        }
        if let Some(k) = found {
            return Ok(self.assign_in(k, req, None, false));
        }
        // 2. The block limit stops both claiming and borrowing, as in Calico.
        self.check_block_limit(&req.node)?;
        // 3. Ask for a block from the first pool with room.
        if let Some(p) = usable
            .iter()
            .find(|p| self.find_free_block(&p.name, &req.node).is_some())
        {
            return Err(IpamError::NeedBlock {
                node: req.node.clone(),
                pool: p.name.clone(),
            });
        }
        // 4. Borrow from any existing block of the pools.
        if !self.config.strict_affinity {
            for p in &usable {
                if let Some(k) = self.borrowable(p, &req.node) {
                    return Ok(self.assign_in(k, req, None, true));
                }
            }
        }
        Err(IpamError::PoolsExhausted {
            pools: usable.iter().map(|p| p.name.clone()).collect(),
        })
    }

    /// A block of `pool` with a free address, scanning from the node's hash position so borrowers spread out.
    fn borrowable(&self, pool: &Pool, node: &str) -> Option<BlockKey> {
        let lo = BlockKey {
            prefix: 0,
            ..BlockKey::of(&pool.cidr)
        };
        let hi = BlockKey::of_addr(pool.cidr.broadcast());
        let n = pool.num_blocks().max(1);
        let mid = BlockKey::of(&pool.block_at(u128::from(fnv32(node)) % n));
        self.blocks
            .range(mid..=hi)
            .chain(self.blocks.range(lo..mid))
            .find(|(_, e)| !e.delete && e.block.free() > 0 && pool.cidr.contains(&e.block.cidr()))
            .map(|(k, _)| *k)
    }

    /// Assign a specific address (the `ipAddrs` annotation; Calico's AssignIP): it must be inside an
    /// enabled pool (nodeSelector not checked) and free. A missing block is claimed for the node.
    pub fn assign_address(
        &mut self,
        req: &AssignRequest,
        address: IpAddr,
        now: SystemTime,
    ) -> Result<Assignment, IpamError> {
        let usage = req.usage();
        let pool = self
            .pools
            .values()
            .find(|p| !p.disabled && p.cidr.contains(&address))
            .ok_or(IpamError::AddressOutsidePools { address })?;
        if !pool.allows(usage) {
            return Err(IpamError::PoolNotForUse {
                pool: pool.name.clone(),
                usage: format!("{usage:?}"),
            });
        }
        let key = match self.block_containing(address) {
            Some(k) => {
                let b = &self.blocks[&k].block;
                let ord = b.ordinal(address).expect("block contains address");
                if let Some(a) = b.attr(ord) {
                    return Err(IpamError::AddressInUse {
                        address,
                        handle: a.handle().unwrap_or("<none>").to_string(),
                    });
                }
                if self.config.strict_affinity && b.node() != Some(req.node.as_str()) {
                    return Err(IpamError::NotAffine {
                        address,
                        block: b.cidr(),
                        owner: b.affinity.clone().unwrap_or_else(|| "no affinity".into()),
                    });
                }
                if self.blocks[&k].delete {
                    return Err(IpamError::InvalidBlock {
                        block: b.cidr().to_string(),
                        reason: "the block is being deleted; retry after it is gone".into(),
                    });
                }
                k
            }
            None => {
                let cidr = IpNet::new(address, pool.block_size)
                    .expect("pool block size is valid")
                    .trunc();
                if let Some(o) = self.overlapping(&cidr) {
                    return Err(IpamError::InvalidBlock {
                        block: cidr.to_string(),
                        reason: format!("it would overlap existing block {o}"),
                    });
                }
                self.check_block_limit(&req.node)?;
                let pool = pool.name.clone();
                self.create_block(&req.node, &pool, cidr, now);
                BlockKey::of(&cidr)
            }
        };
        let borrowed = self.blocks[&key].block.node() != Some(req.node.as_str());
        Ok(self.assign_in(key, req, Some(address), borrowed))
    }

    fn assign_in(
        &mut self,
        key: BlockKey,
        req: &AssignRequest,
        address: Option<IpAddr>,
        borrowed: bool,
    ) -> Assignment {
        let attr = req.attr(&mut self.interner);
        // The ops' copy; the record keeps its own (an Arc there would cost 16 bytes per address).
        let handle: Arc<str> = Arc::from(req.handle.as_str());
        let e = self.blocks.get_mut(&key).expect("caller checked the block");
        let seq = e.next_seq();
        e.touch();
        let ord = match address {
            Some(a) => {
                let ord = e.block.ordinal(a).expect("caller checked the address");
                let ok = e.block.assign_ordinal(ord, attr, seq);
                debug_assert!(ok, "caller checked the ordinal is free");
                ord
            }
            None => e
                .block
                .assign_next(attr, seq)
                .expect("caller checked the block has room"),
        };
        let address = e.block.address(ord);
        e.pending.push(Op {
            kind: OpKind::Assign,
            handle: Some(handle.clone()),
            address,
        });
        let ticket = CommitTicket {
            block: e.block.cidr(),
            epoch: e.epoch,
            sequence: seq,
        };
        self.handles.insert(&self.blocks, &handle, key, ord);
        self.dirty.insert(key);
        Assignment {
            address,
            block: ticket.block,
            borrowed,
            ticket,
        }
    }

    // ---- release ----

    /// Release every address of a handle. Idempotent: an unknown handle releases nothing.
    pub fn release_handle(&mut self, handle: &str) -> Vec<IpAddr> {
        let locs = self.handles.take(&self.blocks, handle);
        locs.into_iter()
            .map(|(k, ord)| self.release_at(k, ord))
            .collect()
    }

    /// Release one address; returns its handle, or None if it was not allocated.
    pub fn release_address(&mut self, address: IpAddr) -> Option<String> {
        let k = self.block_containing(address)?;
        let ord = self.blocks[&k].block.ordinal(address)?;
        let handle = self.blocks[&k]
            .block
            .attr(ord)?
            .handle()
            .map(str::to_string);
        if let Some(h) = &handle {
            self.handles.remove(&self.blocks, h, k, ord);
        }
        self.release_at(k, ord);
        Some(handle.unwrap_or_default())
    }

    fn release_at(&mut self, key: BlockKey, ord: u32) -> IpAddr {
        let e = self
            .blocks
            .get_mut(&key)
            .expect("index points at live blocks");
        e.touch();
        let address = e.block.address(ord);
        let handle = e.block.release_ordinal(ord).flatten();
        e.pending.push(Op {
            kind: OpKind::Release,
            handle,
            address,
        });
        self.dirty.insert(key);
        address
    }

    /// The addresses held by a handle.
    pub fn handle_addresses(&self, handle: &str) -> Vec<IpAddr> {
        self.handles
            .get(&self.blocks, handle)
            .iter()
            .map(|(k, o)| self.blocks[k].block.address(*o))
            .collect()
    }

    /// The allocation record of an address, if allocated.
    pub fn address_owner(&self, address: IpAddr) -> Option<&Attr> {
        let b = &self.blocks[&self.block_containing(address)?].block;
        b.attr(b.ordinal(address)?)
    }

    /// Number of handles with at least one address.
    pub fn handle_count(&self) -> usize {
        self.handles.distinct
    }

    // ---- group commit ----

    /// Whether any change is not yet persisted.
    pub fn has_uncommitted(&self) -> bool {
        !self.dirty.is_empty() || self.blocks.values().any(|e| e.in_flight.is_some())
    }

    /// One write per dirty block that has no write in flight. Each write carries every op queued on the
    /// block since the last one, so a burst of N assignments in one block costs one API write.
    pub fn prepare_commit(&mut self) -> Vec<BlockWrite> {
        let keys: Vec<BlockKey> = self
            .dirty
            .iter()
            .filter(|k| self.blocks.get(k).is_some_and(|e| e.in_flight.is_none()))
            .copied()
            .collect();
        let mut writes = Vec::with_capacity(keys.len());
        for key in keys {
            self.dirty.remove(&key);
            let e = self.blocks.get_mut(&key).expect("filtered above");
            let seq = e.next_seq();
            let cidr = e.block.cidr();
            let node = e.block.node().map(str::to_string);
            let ops = std::mem::take(&mut e.pending);
            if e.delete && e.persisted_seq.is_none() {
                // Claimed and freed before it was ever written: nothing to do in the API.
                self.remove_entry(key);
                continue;
            }
            let kind = if e.delete {
                WriteKind::Delete
            } else if e.persisted_seq.is_none() {
                WriteKind::Create
            } else {
                WriteKind::Update
            };
            let mut spec_block = e.block.clone();
            spec_block.set_sequence_number(seq);
            if kind == WriteKind::Delete {
                spec_block.deleted = true;
            } else {
                e.block.set_sequence_number(seq);
            }
            let spec = spec_block.to_spec();
            let affinity = match (kind, &node) {
                (WriteKind::Create | WriteKind::Delete, Some(n)) => {
                    Some((affinity_name(n, &cidr), affinity_spec(n, &cidr)))
                }
                _ => None,
            };
            e.in_flight = Some(Box::new(InFlight {
                seq,
                kind,
                ops: ops.clone(),
                written: (kind != WriteKind::Delete).then_some(spec_block),
            }));
            writes.push(BlockWrite {
                name: block_name(&cidr),
                cidr,
                kind,
                spec,
                expected_sequence: e.persisted_seq,
                sequence: seq,
                affinity,
                ops,
            });
        }
        writes
    }

    /// The write of `block` at `sequence` was stored.
    pub fn commit_succeeded(&mut self, block: &IpNet, sequence: i64) -> Result<(), IpamError> {
        let key = BlockKey::of(block);
        let no_write = IpamError::NoSuchWrite {
            block: *block,
            sequence,
        };
        let e = self.blocks.get_mut(&key).ok_or(no_write.clone())?;
        match &e.in_flight {
            Some(f) if f.seq == sequence => {}
            _ => return Err(no_write),
        }
        let f = e.in_flight.take().expect("matched above");
        if f.kind == WriteKind::Delete {
            self.remove_entry(key);
            return Ok(());
        }
        e.persisted_seq = Some(f.seq);
        e.rollback_to = if e.pending.is_empty() && !e.delete {
            None
        } else {
            f.written.map(Box::new)
        };
        Ok(())
    }

    /// The ops a failure of the in-flight write of `block` would lose (the write's and those queued after it).
    pub fn lost_by(&self, block: &IpNet) -> Vec<Op> {
        self.blocks
            .get(&BlockKey::of(block))
            .map(|e| e.lost())
            .unwrap_or_default()
    }

    /// The write of `block` failed (conflict, error): return the block to its last persisted state and
    /// return the ops that were lost, so the caller can fail or redo exactly those requests. A never
    /// created block (a failed claim) disappears. Reload the block with [`Ipam::observe_block`] after a conflict.
    pub fn rollback(&mut self, block: &IpNet) -> Vec<Op> {
        let key = BlockKey::of(block);
        let Some(e) = self.blocks.get(&key) else {
            return Vec::new();
        };
        let lost = e.lost();
        if e.persisted_seq.is_none() {
            self.remove_entry(key);
            return lost;
        }
        let old = self.remove_entry(key).expect("present");
        let block = old.rollback_to.map_or(old.block, |b| *b);
        let mut e = Entry::clean(block);
        e.persisted_seq = old.persisted_seq;
        e.epoch = old.epoch + 1;
        self.insert_entry(key, e);
        lost
    }

    /// Whether the op behind a ticket is persisted, pending, or lost.
    pub fn durability(&self, ticket: &CommitTicket) -> Durability {
        match self.blocks.get(&BlockKey::of(&ticket.block)) {
            Some(e) if e.epoch == ticket.epoch => {
                if e.persisted_seq.is_some_and(|p| p >= ticket.sequence) {
                    Durability::Committed
                } else {
                    Durability::Pending
                }
            }
            _ => Durability::Lost,
        }
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
