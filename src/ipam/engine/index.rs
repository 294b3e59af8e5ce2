//! Block keys (ordered for range scans) and the handle index (handle → block locations).
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::IpNet;

use super::Entry;
use crate::ipam::addr_to_u128;
/// Blocks sort by family, then start address, so range scans find containing/overlapping blocks. The
/// prefix is part of the key so a mis-sized block sharing a start address (ipam check's "overlap")
/// does not shadow the other. The start is two u64 halves (high first, so the order is the u128
/// order) to keep the key 8-byte aligned: 24 bytes instead of 32 in every map and index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub(super) v6: bool,
    pub(super) hi: u64,
    pub(super) lo: u64,
    pub(super) prefix: u8,
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
    pub(super) fn new(v6: bool, start: u128, prefix: u8) -> BlockKey {
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
    pub(super) fn start(&self) -> u128 {
        u128::from(self.hi) << 64 | u128::from(self.lo)
    }
    /// The block's last address, from the key alone (no trip to the boxed entry).
    pub(super) fn last(&self) -> u128 {
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
    pub(super) fn new(key: BlockKey, ord: u32, hash: u32) -> Loc {
        Loc {
            hi: key.hi,
            lo: key.lo,
            v6: key.v6,
            prefix: key.prefix,
            ord: ord as u16,
            hash,
        }
    }
    pub(super) fn key(&self) -> BlockKey {
        BlockKey {
            v6: self.v6,
            hi: self.hi,
            lo: self.lo,
            prefix: self.prefix,
        }
    }
    pub(super) fn ord(&self) -> u32 {
        u32::from(self.ord)
    }
}

/// Handle → locations of its addresses. Equality is checked against the handle in the block record,
/// so the index holds no copy of the handle strings.
#[derive(Clone, Debug, Default)]
pub(super) struct HandleIndex {
    hasher: DefaultHashBuilder,
    table: HashTable<Loc>,
    /// Number of distinct handles.
    pub(super) distinct: usize,
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
    pub(super) fn h32(&self, handle: &str) -> u32 {
        self.hasher.hash_one(handle) as u32
    }

    pub(super) fn contains(
        &self,
        blocks: &BTreeMap<BlockKey, Box<Entry>>,
        handle: &str,
        h: u32,
    ) -> bool {
        self.table
            .iter_hash(table_hash(h))
            .any(|l| l.hash == h && handle_at(blocks, l) == Some(handle))
    }

    /// Record an allocation; its record must already be in `blocks`.
    pub(super) fn insert(
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
    pub(super) fn remove(
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
    pub(super) fn get(
        &self,
        blocks: &BTreeMap<BlockKey, Box<Entry>>,
        handle: &str,
    ) -> Vec<(BlockKey, u32)> {
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
    pub(super) fn take(
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
