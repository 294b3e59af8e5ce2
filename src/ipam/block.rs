//! The block model: one-to-one with the IPAMBlock CRD spec, but with ordinals, free list and
//! attribute reference counts in forms that make assign and release O(1) to O(block size).
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

pub(crate) use super::attr::Interner;
pub use super::attr::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TIMESTAMP, ATTR_TYPE, Attr};
use super::{Family, IpamError, addr_to_u128, u128_to_addr};
use crate::api::ipam::IPAMBlockSpec;

/// A block of addresses carved from a pool. Field meanings follow [`IPAMBlockSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    cidr: IpNet,
    /// `host:<node>`, `virtual:<name>`, or None for an orphaned/borrowable block.
    pub affinity: Option<String>,
    /// RFC 3339 time of the claim.
    pub affinity_claim_time: Option<String>,
    /// Attribute index per ordinal, [`FREE`] when unallocated.
    allocations: Vec<u32>,
    /// Ordinals fit in 16 bits: blocks hold at most 65,536 addresses (checked on parse).
    unallocated: VecDeque<u16>,
    attributes: Vec<Attr>,
    attr_refs: Vec<u32>,
    /// Deprecated in Calico; carried through unchanged.
    pub strict_affinity: bool,
    /// CAS guard set while the block is being deleted.
    pub deleted: bool,
    sequence_number: i64,
    /// Per ordinal; meaningful where the bit in `seq_set` is on (half the size of `Option<i64>`).
    seq_for_alloc: Vec<i64>,
    seq_set: Vec<u64>,
}

/// `allocations` entry of a free ordinal.
const FREE: u32 = u32::MAX;

/// Object name of the IPAMBlock for a CIDR: `.`, `:` and `/` replaced by `-`, e.g. `198-19-22-128-26`.
pub fn block_name(cidr: &IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// Object name of the BlockAffinity of a node's block: `<node>-<block name>`. A name of 253 or more
/// characters is built as Calico's blockAffinityClient builds it: the node name cut so the whole is
/// 252 characters, then `-<block name>-` and the first 11 hex digits of SHA-256(`<node>+<block name>`).
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    use sha2::{Digest, Sha256};
    let cidr_name = block_name(cidr);
    let name = format!("{node}-{cidr_name}");
    if name.len() < 253 {
        return name;
    }
    // Go slices bytes; node names are DNS names (ASCII), so a char boundary is only a safeguard.
    let mut keep = 252usize
        .saturating_sub(cidr_name.len() + 13)
        .min(node.len());
    while !node.is_char_boundary(keep) {
        keep -= 1;
    }
    let digest = Sha256::digest(format!("{node}+{cidr_name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{cidr_name}-{}", &node[..keep], &hex[..11])
}

/// `host:<node>` affinity string.
pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

impl Block {
    /// A new empty block: every ordinal free, in ascending order (network and broadcast included, as in Calico).
    pub fn new(
        cidr: IpNet,
        affinity: Option<String>,
        claim_time: Option<String>,
        seq: i64,
    ) -> Block {
        let cidr = cidr.trunc();
        let size = block_len(&cidr);
        Block {
            cidr,
            affinity,
            affinity_claim_time: claim_time,
            allocations: vec![FREE; size as usize],
            unallocated: (0..size).map(|o| o as u16).collect(),
            attributes: Vec::new(),
            attr_refs: Vec::new(),
            strict_affinity: false,
            deleted: false,
            sequence_number: seq,
            seq_for_alloc: vec![0; size as usize],
            seq_set: vec![0; (size as usize).div_ceil(64)],
        }
    }

    /// Parse and check an IPAMBlock spec. Inconsistent records are refused rather than repaired, so a
    /// corrupted block is never used for assignment (ipam check reports it).
    pub fn from_spec(spec: &IPAMBlockSpec) -> Result<Block, IpamError> {
        Block::from_spec_in(spec, &mut Interner::default())
    }

    /// [`Block::from_spec`], sharing repeated strings through the engine's interner.
    pub(crate) fn from_spec_in(
        spec: &IPAMBlockSpec,
        interner: &mut Interner,
    ) -> Result<Block, IpamError> {
        let bad = |reason: String| IpamError::InvalidBlock {
            block: spec.cidr.clone(),
            reason,
        };
        let cidr: IpNet = spec
            .cidr
            .parse()
            .map_err(|e| bad(format!("cidr does not parse: {e}")))?;
        if cidr.trunc() != cidr {
            return Err(bad("cidr has host bits set".into()));
        }
        let max_len = if cidr.addr().is_ipv4() { 32 } else { 128 };
        if max_len - cidr.prefix_len() > 16 {
            return Err(bad(
                "blocks larger than 65536 addresses are not supported".into()
            ));
        }
        let size = block_len(&cidr) as usize;
        if spec.allocations.len() != size {
            return Err(bad(format!(
                "allocations has {} entries, the block has {size} addresses",
                spec.allocations.len()
            )));
        }
        let mut allocations = Vec::with_capacity(size);
        let mut attr_refs = vec![0u32; spec.attributes.len()];
        for (ord, a) in spec.allocations.iter().enumerate() {
            match a {
                None => allocations.push(FREE),
                Some(i)
                    if *i >= 0 && (*i as usize) < spec.attributes.len() && *i < i64::from(FREE) =>
                {
                    attr_refs[*i as usize] += 1;
                    allocations.push(*i as u32);
                }
                Some(i) => {
                    return Err(bad(format!(
                        "ordinal {ord} points at attribute {i}, there are {}",
                        spec.attributes.len()
                    )));
                }
            }
        }
        let mut seen = vec![false; size];
        let mut unallocated = VecDeque::with_capacity(spec.unallocated.len());
        for &o in &spec.unallocated {
            if o < 0 || o as usize >= size {
                return Err(bad(format!("unallocated ordinal {o} is outside the block")));
            }
            if seen[o as usize] {
                return Err(bad(format!("unallocated lists ordinal {o} twice")));
            }
            if allocations[o as usize] != FREE {
                return Err(bad(format!(
                    "ordinal {o} is both allocated and unallocated"
                )));
            }
            seen[o as usize] = true;
            unallocated.push_back(o as u16);
        }
        if let Some(o) = (0..size).find(|&o| !seen[o] && allocations[o] == FREE) {
            return Err(bad(format!(
                "ordinal {o} is neither allocated nor unallocated"
            )));
        }
        let mut seq_for_alloc = vec![0; size];
        let mut seq_set = vec![0u64; size.div_ceil(64)];
        for (k, v) in spec.sequence_number_for_allocation.iter().flatten() {
            if let Ok(o) = k.parse::<usize>()
                && o < size
            {
                seq_for_alloc[o] = *v;
                seq_set[o / 64] |= 1 << (o % 64);
            }
        }
        Ok(Block {
            cidr,
            affinity: spec.affinity.clone(),
            affinity_claim_time: spec.affinity_claim_time.clone(),
            allocations,
            unallocated,
            attributes: spec
                .attributes
                .iter()
                .map(|a| Attr::from_api(a, interner))
                .collect(),
            attr_refs,
            strict_affinity: spec.strict_affinity,
            deleted: spec.deleted,
            sequence_number: spec.sequence_number.unwrap_or(0),
            seq_for_alloc,
            seq_set,
        })
    }

    /// The IPAMBlock spec for this block.
    pub fn to_spec(&self) -> IPAMBlockSpec {
        let seq_map: BTreeMap<String, i64> = (0..self.size())
            .filter_map(|o| self.sequence_for(o).map(|s| (o.to_string(), s)))
            .collect();
        IPAMBlockSpec {
            cidr: self.cidr.to_string(),
            affinity: self.affinity.clone(),
            affinity_claim_time: self.affinity_claim_time.clone(),
            allocations: self
                .allocations
                .iter()
                .map(|&a| (a != FREE).then_some(i64::from(a)))
                .collect(),
            unallocated: self.unallocated.iter().map(|&o| i64::from(o)).collect(),
            attributes: self.attributes.iter().map(Attr::to_api).collect(),
            strict_affinity: self.strict_affinity,
            deleted: self.deleted,
            sequence_number: Some(self.sequence_number),
            sequence_number_for_allocation: (!seq_map.is_empty()).then_some(seq_map),
        }
    }

    /// The first address as a number (computed, not stored: a u128 field would force 16-byte
    /// alignment and padding on every block and engine entry).
    fn base(&self) -> u128 {
        addr_to_u128(self.cidr.network())
    }

    /// The block's CIDR.
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// The IPAMBlock object name.
    pub fn name(&self) -> String {
        block_name(&self.cidr)
    }

    /// Address family.
    pub fn family(&self) -> Family {
        Family::of(&self.cidr.addr())
    }

    /// The node of a `host:` affinity.
    pub fn node(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    /// Number of addresses (ordinals).
    pub fn size(&self) -> u32 {
        self.allocations.len() as u32
    }

    /// Free ordinals.
    pub fn free(&self) -> u32 {
        self.unallocated.len() as u32
    }

    /// Allocated ordinals (size minus free, as calicoctl counts).
    pub fn allocated(&self) -> u32 {
        self.size() - self.free()
    }

    /// No address allocated.
    pub fn is_empty(&self) -> bool {
        self.free() == self.size()
    }

    /// Sequence number of this version of the block.
    pub fn sequence_number(&self) -> i64 {
        self.sequence_number
    }

    pub(crate) fn set_sequence_number(&mut self, seq: i64) {
        self.sequence_number = seq;
    }

    /// The address of an ordinal.
    pub fn address(&self, ordinal: u32) -> IpAddr {
        u128_to_addr(self.base() + u128::from(ordinal), self.family())
    }

    /// The ordinal of an address inside the block.
    pub fn ordinal(&self, addr: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&addr) {
            return None;
        }
        Some((addr_to_u128(addr) - self.base()) as u32)
    }

    /// The allocation record of an ordinal, if allocated.
    pub fn attr(&self, ordinal: u32) -> Option<&Attr> {
        let i = *self.allocations.get(ordinal as usize)?;
        (i != FREE).then(|| &self.attributes[i as usize])
    }

    /// Sequence number at which an ordinal was allocated.
    pub fn sequence_for(&self, ordinal: u32) -> Option<i64> {
        let o = ordinal as usize;
        let set = self.seq_set.get(o / 64)? & (1 << (o % 64)) != 0;
        set.then(|| self.seq_for_alloc[o])
    }

    fn set_sequence_for(&mut self, ordinal: u32, seq: Option<i64>) {
        let o = ordinal as usize;
        match seq {
            Some(s) => {
                self.seq_for_alloc[o] = s;
                self.seq_set[o / 64] |= 1 << (o % 64);
            }
            None => {
                self.seq_for_alloc[o] = 0;
                self.seq_set[o / 64] &= !(1 << (o % 64));
            }
        }
    }

    /// Allocated ordinals with their records, in ordinal order.
    pub fn allocations(&self) -> impl Iterator<Item = (u32, &Attr)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != FREE)
            .map(|(o, &i)| (o as u32, &self.attributes[i as usize]))
    }

    /// Free ordinals in hand-out order.
    pub fn unallocated(&self) -> impl Iterator<Item = u32> + '_ {
        self.unallocated.iter().map(|&o| u32::from(o))
    }

    fn attr_index(&mut self, attr: Attr) -> u32 {
        // Records are shared by identical (handle, secondary), as Calico's findOrAddAttribute does.
        if let Some(i) = self.attributes.iter().position(|a| *a == attr) {
            return i as u32;
        }
        self.attributes.push(attr);
        self.attr_refs.push(0);
        (self.attributes.len() - 1) as u32
    }

    /// Take the first free ordinal (FIFO reuse).
    pub fn assign_next(&mut self, attr: Attr, seq: i64) -> Option<u32> {
        let ord = u32::from(self.unallocated.pop_front()?);
        self.set_allocated(ord, attr, seq);
        Some(ord)
    }

    /// Take a specific ordinal; false if it is not free.
    pub fn assign_ordinal(&mut self, ord: u32, attr: Attr, seq: i64) -> bool {
        let Some(pos) = self.unallocated.iter().position(|&o| u32::from(o) == ord) else {
            return false;
        };
        self.unallocated.remove(pos);
        self.set_allocated(ord, attr, seq);
        true
    }

    fn set_allocated(&mut self, ord: u32, attr: Attr, seq: i64) {
        let i = self.attr_index(attr);
        self.attr_refs[i as usize] += 1;
        self.allocations[ord as usize] = i;
        self.set_sequence_for(ord, Some(seq));
    }

    /// Free an ordinal (appended to the free list). None if it was free; else the record's handle.
    pub fn release_ordinal(&mut self, ord: u32) -> Option<Option<Arc<str>>> {
        let slot = self.allocations.get_mut(ord as usize)?;
        let i = std::mem::replace(slot, FREE);
        if i == FREE {
            return None;
        }
        let i = i as usize;
        self.unallocated.push_back(ord as u16);
        self.set_sequence_for(ord, None);
        self.attr_refs[i] -= 1;
        let handle = if self.attr_refs[i] == 0 {
            self.remove_attr(i).handle.map(Arc::from)
        } else {
            self.attributes[i].handle().map(Arc::from)
        };
        Some(handle)
    }

    fn remove_attr(&mut self, i: usize) -> Attr {
        // Compact the list so indices stay dense, as Calico's deleteAttributes does.
        let attr = self.attributes.remove(i);
        self.attr_refs.remove(i);
        let i = i as u32;
        for a in self.allocations.iter_mut() {
            if *a != FREE && *a > i {
                *a -= 1;
            }
        }
        attr
    }
}

/// Number of addresses in a block CIDR.
pub(crate) fn block_len(cidr: &IpNet) -> u32 {
    1u32 << (cidr.max_prefix_len() - cidr.prefix_len())
}
