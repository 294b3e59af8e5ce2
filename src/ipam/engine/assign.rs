//! Address requests, assignment (own blocks, then borrowing) and release.
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;

use super::commit::{CommitTicket, Op, OpKind};
use super::{BlockKey, Ipam};
use crate::api::ippool::AllowedUse;
use crate::ipam::block::{ATTR_NAMESPACE, ATTR_NODE, ATTR_TYPE, Interner};
use crate::ipam::error::PoolSource;
use crate::ipam::gorand::block_walk_start;
use crate::ipam::stamp::{StampForm, unix_nanos_u64};
use crate::ipam::{Attr, Family, FamilyPools, IpamError, Pool};
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
            handle: crate::ipam::pod_handle(container_id),
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
            handle: crate::ipam::wireguard_handle(node),
            node: node.to_string(),
            kind: AssignKind::WireguardTunnel,
            time,
        }
    }

    /// A node's VXLAN tunnel address request.
    pub fn vxlan(node: &str, time: SystemTime) -> AssignRequest {
        AssignRequest {
            handle: crate::ipam::vxlan_handle(node),
            node: node.to_string(),
            kind: AssignKind::VxlanTunnel,
            time,
        }
    }

    pub(super) fn usage(&self) -> AllowedUse {
        match self.kind {
            AssignKind::Pod { .. } => AllowedUse::Workload,
            _ => AllowedUse::Tunnel,
        }
    }

    /// The allocation record. The timestamp stays a number until a spec is rendered.
    pub(super) fn attr(&self, interner: &mut Interner) -> Attr {
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
        let handle = Some(Box::from(self.handle.as_str()));
        // Written in Calico's form (Go's time.String of a UTC time).
        let stamp = (unix_nanos_u64(self.time), StampForm::Go);
        Attr::from_parts(handle, &pairs, pod, Some(stamp), interner)
    }
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

impl Ipam {
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
        self.check_block_limit(&req.node, &usable)?;
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

    /// A block of `pool` with a free address, walking the pool's blocks in Calico's order for this node
    /// (the same start as for claims, then forward, wrapping), so borrowers spread out as under Calico.
    pub(super) fn borrowable(&self, pool: &Pool, node: &str) -> Option<BlockKey> {
        let lo = BlockKey {
            prefix: 0,
            ..BlockKey::of(&pool.cidr)
        };
        let hi = BlockKey::of_addr(pool.cidr.broadcast());
        let mid = BlockKey::of(&pool.block_at(block_walk_start(node, pool.num_blocks())));
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
                self.check_block_limit(&req.node, &[pool])?;
                let pool = pool.name.clone();
                self.create_block(&req.node, &pool, cidr, now);
                BlockKey::of(&cidr)
            }
        };
        let borrowed = self.blocks[&key].block.node() != Some(req.node.as_str());
        Ok(self.assign_in(key, req, Some(address), borrowed))
    }

    pub(super) fn assign_in(
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

    pub(super) fn release_at(&mut self, key: BlockKey, ord: u32) -> IpAddr {
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
        // Calico's releaseIPsFromBlock: a block nobody has affinity to goes once it is empty.
        if e.block.affinity.is_none() && e.block.is_empty() {
            e.delete = true;
        }
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
}
