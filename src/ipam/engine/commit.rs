//! Group commit: ops queued per block, one write per dirty block, acknowledgement and rollback.
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{BlockKey, Entry, InFlight, Ipam, affinity_spec};
use crate::api::ipam::{BlockAffinitySpec, IPAMBlockSpec};
use crate::ipam::{IpamError, affinity_name, block_name};
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

impl Ipam {
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
}
