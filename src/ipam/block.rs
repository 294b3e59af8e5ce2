//! The block model: one-to-one with the IPAMBlock CRD spec, but with ordinals, free list and
//! attribute reference counts in forms that make assign and release O(1) to O(block size).
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{Family, IpamError, addr_to_u128, u128_to_addr};
use crate::api::ipam::{AllocationAttribute, IPAMBlockSpec};

/// Secondary attribute keys Calico writes (libcalico-go ipam `Attribute*`).
pub const ATTR_NODE: &str = "node";
/// Pod namespace.
pub const ATTR_NAMESPACE: &str = "namespace";
/// Pod name.
pub const ATTR_POD: &str = "pod";
/// UTC time of assignment.
pub const ATTR_TIMESTAMP: &str = "timestamp";
/// Allocation type; set for tunnel addresses (`wireguardTunnelAddress`, ...).
pub const ATTR_TYPE: &str = "type";

/// An allocation record, compacted: the handle is shared with the engine's handle index and the
/// secondary attributes are a sorted slice instead of a map (a third of the memory at 150k pods).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attr {
    /// Handle ID, e.g. `k8s-pod-network.<containerID>`; None on records written without one.
    pub handle: Option<Arc<str>>,
    /// Secondary attributes sorted by key.
    pub secondary: Box<[(Box<str>, Box<str>)]>,
}

impl Attr {
    /// Build from a handle and key/value pairs (any order).
    pub fn new(
        handle: Option<&str>,
        secondary: impl IntoIterator<Item = (String, String)>,
    ) -> Attr {
        let mut v: Vec<(Box<str>, Box<str>)> = secondary
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        Attr {
            handle: handle.map(Arc::from),
            secondary: v.into_boxed_slice(),
        }
    }

    /// A secondary attribute by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.secondary
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.secondary[i].1)
    }

    /// The handle as a string slice.
    pub fn handle(&self) -> Option<&str> {
        self.handle.as_deref()
    }

    fn from_api(a: &AllocationAttribute) -> Attr {
        Attr::new(
            a.handle_id.as_deref(),
            a.secondary.iter().map(|(k, v)| (k.clone(), v.clone())),
        )
    }

    fn to_api(&self) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: self.handle.as_deref().map(str::to_string),
            secondary: self
                .secondary
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A block of addresses carved from a pool. Field meanings follow [`IPAMBlockSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    cidr: IpNet,
    base: u128,
    /// `host:<node>`, `virtual:<name>`, or None for an orphaned/borrowable block.
    pub affinity: Option<String>,
    /// RFC 3339 time of the claim.
    pub affinity_claim_time: Option<String>,
    allocations: Vec<Option<u32>>,
    unallocated: VecDeque<u32>,
    attributes: Vec<Attr>,
    attr_refs: Vec<u32>,
    /// Deprecated in Calico; carried through unchanged.
    pub strict_affinity: bool,
    /// CAS guard set while the block is being deleted.
    pub deleted: bool,
    sequence_number: i64,
    seq_for_alloc: Vec<Option<i64>>,
}

/// Object name of the IPAMBlock for a CIDR: `.`, `:` and `/` replaced by `-`, e.g. `198-19-22-128-26`.
pub fn block_name(cidr: &IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// Object name of the BlockAffinity of a node's block: `<node>-<block name>`; names longer than 253
/// characters are cut and get 11 hex digits of a hash appended, as Calico does (there with sha256; here
/// with FNV-1a 64, which is enough to keep names distinct and needs no crypto dependency).
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    let name = format!("{node}-{}", block_name(cidr));
    if name.len() < 253 {
        return name;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let hex = format!("{h:016x}");
    format!("{}{}", &name[..241], &hex[..11])
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
            base: addr_to_u128(cidr.network()),
            cidr,
            affinity,
            affinity_claim_time: claim_time,
            allocations: vec![None; size as usize],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            attr_refs: Vec::new(),
            strict_affinity: false,
            deleted: false,
            sequence_number: seq,
            seq_for_alloc: vec![None; size as usize],
        }
    }

    /// Parse and check an IPAMBlock spec. Inconsistent records are refused rather than repaired, so a
    /// corrupted block is never used for assignment (ipam check reports it).
    pub fn from_spec(spec: &IPAMBlockSpec) -> Result<Block, IpamError> {
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
                None => allocations.push(None),
                Some(i) if *i >= 0 && (*i as usize) < spec.attributes.len() => {
                    attr_refs[*i as usize] += 1;
                    allocations.push(Some(*i as u32));
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
            if allocations[o as usize].is_some() {
                return Err(bad(format!(
                    "ordinal {o} is both allocated and unallocated"
                )));
            }
            seen[o as usize] = true;
            unallocated.push_back(o as u32);
        }
        if let Some(o) = (0..size).find(|&o| !seen[o] && allocations[o].is_none()) {
            return Err(bad(format!(
                "ordinal {o} is neither allocated nor unallocated"
            )));
        }
        let mut seq_for_alloc = vec![None; size];
        for (k, v) in spec.sequence_number_for_allocation.iter().flatten() {
            if let Ok(o) = k.parse::<usize>()
                && o < size
            {
                seq_for_alloc[o] = Some(*v);
            }
        }
        Ok(Block {
            base: addr_to_u128(cidr.network()),
            cidr,
            affinity: spec.affinity.clone(),
            affinity_claim_time: spec.affinity_claim_time.clone(),
            allocations,
            unallocated,
            attributes: spec.attributes.iter().map(Attr::from_api).collect(),
            attr_refs,
            strict_affinity: spec.strict_affinity,
            deleted: spec.deleted,
            sequence_number: spec.sequence_number.unwrap_or(0),
            seq_for_alloc,
        })
    }

    /// The IPAMBlock spec for this block.
    pub fn to_spec(&self) -> IPAMBlockSpec {
        let seq_map: BTreeMap<String, i64> = self
            .seq_for_alloc
            .iter()
            .enumerate()
            .filter_map(|(o, s)| s.map(|s| (o.to_string(), s)))
            .collect();
        IPAMBlockSpec {
            cidr: self.cidr.to_string(),
            affinity: self.affinity.clone(),
            affinity_claim_time: self.affinity_claim_time.clone(),
            allocations: self.allocations.iter().map(|a| a.map(i64::from)).collect(),
            unallocated: self.unallocated.iter().map(|&o| i64::from(o)).collect(),
            attributes: self.attributes.iter().map(Attr::to_api).collect(),
            strict_affinity: self.strict_affinity,
            deleted: self.deleted,
            sequence_number: Some(self.sequence_number),
            sequence_number_for_allocation: (!seq_map.is_empty()).then_some(seq_map),
        }
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
        u128_to_addr(self.base + u128::from(ordinal), self.family())
    }

    /// The ordinal of an address inside the block.
    pub fn ordinal(&self, addr: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&addr) {
            return None;
        }
        Some((addr_to_u128(addr) - self.base) as u32)
    }

    /// The allocation record of an ordinal, if allocated.
    pub fn attr(&self, ordinal: u32) -> Option<&Attr> {
        let i = (*self.allocations.get(ordinal as usize)?)?;
        Some(&self.attributes[i as usize])
    }

    /// Sequence number at which an ordinal was allocated.
    pub fn sequence_for(&self, ordinal: u32) -> Option<i64> {
        *self.seq_for_alloc.get(ordinal as usize)?
    }

    /// Allocated ordinals with their records, in ordinal order.
    pub fn allocations(&self) -> impl Iterator<Item = (u32, &Attr)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(o, a)| a.map(|i| (o as u32, &self.attributes[i as usize])))
    }

    /// Free ordinals in hand-out order.
    pub fn unallocated(&self) -> impl Iterator<Item = u32> + '_ {
        self.unallocated.iter().copied()
    }

    fn attr_index(&mut self, attr: &Attr) -> u32 {
        // Records are shared by identical (handle, secondary), as Calico's findOrAddAttribute does.
        if let Some(i) = self.attributes.iter().position(|a| a == attr) {
            return i as u32;
        }
        self.attributes.push(attr.clone());
        self.attr_refs.push(0);
        (self.attributes.len() - 1) as u32
    }

    /// Take the first free ordinal (FIFO reuse).
    pub fn assign_next(&mut self, attr: &Attr, seq: i64) -> Option<u32> {
        let ord = self.unallocated.pop_front()?;
        self.set_allocated(ord, attr, seq);
        Some(ord)
    }

    /// Take a specific ordinal; false if it is not free.
    pub fn assign_ordinal(&mut self, ord: u32, attr: &Attr, seq: i64) -> bool {
        let Some(pos) = self.unallocated.iter().position(|&o| o == ord) else {
            return false;
        };
        self.unallocated.remove(pos);
        self.set_allocated(ord, attr, seq);
        true
    }

    fn set_allocated(&mut self, ord: u32, attr: &Attr, seq: i64) {
        let i = self.attr_index(attr);
        self.attr_refs[i as usize] += 1;
        self.allocations[ord as usize] = Some(i);
        self.seq_for_alloc[ord as usize] = Some(seq);
    }

    /// Free an ordinal (appended to the free list) and return its record; None if it was free.
    pub fn release_ordinal(&mut self, ord: u32) -> Option<Attr> {
        let i = self.allocations.get_mut(ord as usize)?.take()? as usize;
        self.unallocated.push_back(ord);
        self.seq_for_alloc[ord as usize] = None;
        self.attr_refs[i] -= 1;
        let attr = if self.attr_refs[i] == 0 {
            self.remove_attr(i)
        } else {
            self.attributes[i].clone()
        };
        Some(attr)
    }

    fn remove_attr(&mut self, i: usize) -> Attr {
        // Compact the list so indices stay dense, as Calico's deleteAttributes does.
        let attr = self.attributes.remove(i);
        self.attr_refs.remove(i);
        let i = i as u32;
        for a in self.allocations.iter_mut().flatten() {
            if *a > i {
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
