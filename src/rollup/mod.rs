//! Roll-ups of node status into the source objects' `status`: how many nodes applied their
//! current state, how many have WireGuard ready, which nodes a BGPPeer gives sessions and how many
//! of them are Established, and each pool's blocks and addresses.
//!
//! Counters are kept incrementally: a node's [`NodeFacts`] (derived from its composed spec and its
//! agent's NodeNetworkState status) or a block's [`BlockFacts`] replace the old ones, the old
//! contribution is subtracted and the new one added, so one node event costs O(that node's
//! sessions), never O(nodes). Every source object whose roll-up value changed is marked dirty
//! ([`Rollup::take_dirty`]); the operator rewrites only those, at most once per pass.
//! [`status`] turns the counters into the statuses the operator writes.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;

use crate::api::nodestate::{NodeNetworkStateSpec, NodeNetworkStateStatus, PeerType};
use crate::ipam::Ipam;

pub mod status;
#[cfg(test)]
mod tests;

/// The NodeNetworkState status condition an agent sets once its WireGuard device is up.
pub const WIREGUARD_CONDITION: &str = "WireGuard";

/// Sessions one BGPPeer gives one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Sessions in the node's spec that came from the peer.
    pub expected: u32,
    /// Those its agent reports Established.
    pub established: u32,
}

/// What one node contributes to the roll-ups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The agent applied exactly the current desired state (`appliedHash` equals the spec hash).
    pub converged: bool,
    /// WireGuard is on for this node (merged FelixConfiguration).
    pub wireguard_enabled: bool,
    /// WireGuard is on, the state applied, and the agent's WireGuard condition is True.
    pub wireguard_ready: bool,
    /// Per BGPPeer (the sessions' `source`): its sessions on this node.
    pub peers: BTreeMap<String, Sessions>,
}

/// The facts of a node from its composed desired state and what its agent reports (None before
/// the agent wrote anything).
pub fn node_facts(
    spec: &NodeNetworkStateSpec,
    status: Option<&NodeNetworkStateStatus>,
) -> NodeFacts {
    let converged = status.and_then(|s| s.applied_hash.as_deref()) == Some(spec.hash.as_str());
    let wireguard_enabled = spec.dataplane.wireguard_enabled;
    let wireguard_up = status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == WIREGUARD_CONDITION && c.status == "True")
    });
    let mut peers: BTreeMap<String, Sessions> = BTreeMap::new();
    for target in spec.bgp.iter().flat_map(|b| &b.peers) {
        let e = peers.entry(target.source.clone()).or_default();
        e.expected += 1;
        if status.is_some_and(|s| {
            s.bgp_peers.iter().any(|p| {
                p.state == "up"
                    && p.info
                        .as_deref()
                        .is_some_and(|i| i.starts_with("Established"))
                    && same_session(&target.name, target.peer_type, &p.peer_ip, p.peer_type)
            })
        }) {
            e.established += 1;
        }
    }
    NodeFacts {
        converged,
        wireguard_enabled,
        wireguard_ready: wireguard_enabled && converged && wireguard_up,
        peers,
    }
}

/// Whether a reported session is the spec's: BIRD's protocol name is `<Prefix>_<address with _>`
/// and the agent reports the suffix with `_` turned back into `.` (a port shows as `.port.N`).
fn same_session(
    protocol: &str,
    kind: PeerType,
    reported_ip: &str,
    reported_kind: PeerType,
) -> bool {
    kind == reported_kind
        && protocol
            .split_once('_')
            .is_some_and(|(_, rest)| rest.replace('_', ".") == reported_ip)
}

/// What one IPAMBlock contributes to its pool's roll-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFacts {
    /// The pool the block was carved from.
    pub pool: String,
    /// The node holding its affinity, if any.
    pub node: Option<String>,
    /// Addresses assigned.
    pub in_use: u32,
    /// Addresses free.
    pub free: u32,
}

/// The facts of the block `cidr` as the IPAM engine holds it; None when the engine has no such
/// block or it lies in no usable pool (its addresses count nowhere).
pub fn block_facts(ipam: &Ipam, cidr: &IpNet) -> Option<BlockFacts> {
    let block = ipam.block(cidr)?;
    Some(BlockFacts {
        pool: ipam.pool_of(cidr)?.name.clone(),
        node: block.node().map(str::to_string),
        in_use: block.allocated(),
        free: block.free(),
    })
}

/// A source object whose status carries a roll-up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A FelixConfiguration (`default` counts every node, `node.<name>` that node).
    Felix(String),
    /// A BGPConfiguration (no node counters; dirty when the object itself changes).
    BgpConfig(String),
    /// A BGPPeer.
    Peer(String),
    /// An IPPool.
    Pool(String),
    /// Every IPPool (their shared node counters moved, or the cross-pool verdicts may have).
    AllPools,
}

/// Cluster-wide node counters (FelixConfiguration `default`, IPPools).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeTotals {
    /// Nodes known.
    pub nodes: u32,
    /// Nodes whose agent applied their current state.
    pub converged: u32,
    /// Nodes with WireGuard on.
    pub wireguard_enabled: u32,
    /// Of those, with WireGuard ready.
    pub wireguard_ready: u32,
}

impl NodeTotals {
    fn add(&mut self, f: &NodeFacts, sign: i64) {
        let step = |v: &mut u32, on: bool| {
            if on {
                *v = (i64::from(*v) + sign).max(0) as u32;
            }
        };
        step(&mut self.nodes, true);
        step(&mut self.converged, f.converged);
        step(&mut self.wireguard_enabled, f.wireguard_enabled);
        step(&mut self.wireguard_ready, f.wireguard_ready);
    }

    /// The totals of one node alone (for FelixConfiguration `node.<name>`).
    pub fn of(f: Option<&NodeFacts>) -> NodeTotals {
        let mut t = NodeTotals::default();
        if let Some(f) = f {
            t.add(f, 1);
        }
        t
    }
}

/// One BGPPeer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Nodes with at least one session from the peer.
    pub nodes: u32,
    /// Of those, nodes whose every session from it is Established.
    pub nodes_established: u32,
    /// Sessions, summed over the nodes.
    pub sessions: u32,
    /// Established sessions, summed over the nodes.
    pub sessions_established: u32,
}

impl PeerCounts {
    fn add(&mut self, s: Sessions, sign: i64) {
        let apply =
            |v: &mut u32, by: u32| *v = (i64::from(*v) + sign * i64::from(by)).max(0) as u32;
        apply(&mut self.nodes, 1);
        apply(
            &mut self.nodes_established,
            u32::from(s.expected > 0 && s.established == s.expected),
        );
        apply(&mut self.sessions, s.expected);
        apply(&mut self.sessions_established, s.established);
    }
}

/// One IPPool's counters, from its IPAMBlocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Blocks carved.
    pub blocks: u32,
    /// Nodes holding at least one of them.
    pub nodes_with_blocks: u32,
    /// Addresses assigned in them.
    pub in_use: u32,
    /// Addresses free in them.
    pub free: u32,
}

#[derive(Debug, Default)]
struct PoolAcc {
    counts: PoolCounts,
    /// Blocks per node, to count nodes holding one.
    per_node: HashMap<String, u32>,
}

/// The incremental roll-up counters.
#[derive(Debug, Default)]
pub struct Rollup {
    nodes: HashMap<String, NodeFacts>,
    totals: NodeTotals,
    peers: HashMap<String, PeerCounts>,
    blocks: HashMap<IpNet, BlockFacts>,
    pools: HashMap<String, PoolAcc>,
    dirty: BTreeSet<Source>,
}

impl Rollup {
    /// Empty counters.
    pub fn new() -> Rollup {
        Rollup::default()
    }

    /// Replaces `node`'s facts (None: the node is gone). Marks dirty what changed: FelixConfiguration
    /// `default` and `node.<node>` when the node's own counters moved, each BGPPeer whose counts
    /// moved, and every pool when the converged or node count moved (their `nodesApplied`).
    pub fn set_node(&mut self, node: &str, facts: Option<NodeFacts>) {
        let old = match &facts {
            Some(f) => self.nodes.insert(node.to_string(), f.clone()),
            None => self.nodes.remove(node),
        };
        if old == facts {
            return;
        }
        let before = self.totals;
        if let Some(o) = &old {
            self.totals.add(o, -1);
        }
        if let Some(n) = &facts {
            self.totals.add(n, 1);
        }
        let own = |f: &Option<NodeFacts>| {
            f.as_ref()
                .map(|f| (f.converged, f.wireguard_enabled, f.wireguard_ready))
        };
        if own(&old) != own(&facts) {
            self.dirty.insert(Source::Felix(format!("node.{node}")));
        }
        if before != self.totals {
            self.dirty.insert(Source::Felix("default".into()));
        }
        if (before.nodes, before.converged) != (self.totals.nodes, self.totals.converged) {
            self.dirty.insert(Source::AllPools);
        }
        let empty = BTreeMap::new();
        let old_peers = old.as_ref().map_or(&empty, |f| &f.peers);
        let new_peers = facts.as_ref().map_or(&empty, |f| &f.peers);
        let names: BTreeSet<&String> = old_peers.keys().chain(new_peers.keys()).collect();
        for name in names {
            let (o, n) = (old_peers.get(name), new_peers.get(name));
            if o == n {
                continue;
            }
            let c = self.peers.entry(name.clone()).or_default();
            if let Some(o) = o {
                c.add(*o, -1);
            }
            if let Some(n) = n {
                c.add(*n, 1);
            }
            if c.nodes == 0 {
                self.peers.remove(name);
            }
            self.dirty.insert(Source::Peer(name.clone()));
        }
    }

    /// Replaces the facts of the block `cidr` (None: the block is gone). Marks its pool (and the
    /// pool it was in before) dirty when a count moved.
    pub fn set_block(&mut self, cidr: IpNet, facts: Option<BlockFacts>) {
        let old = match &facts {
            Some(f) => self.blocks.insert(cidr, f.clone()),
            None => self.blocks.remove(&cidr),
        };
        if old == facts {
            return;
        }
        for (f, sign) in [(old, -1i64), (facts, 1)] {
            let Some(f) = f else { continue };
            let acc = self.pools.entry(f.pool.clone()).or_default();
            let c = &mut acc.counts;
            let apply = |v: &mut u32, by: u32| {
                *v = (i64::from(*v) + sign * i64::from(by)).max(0) as u32;
            };
            apply(&mut c.blocks, 1);
            apply(&mut c.in_use, f.in_use);
            apply(&mut c.free, f.free);
            if let Some(node) = &f.node {
                let held = acc.per_node.entry(node.clone()).or_default();
                apply(held, 1);
                match (sign, *held) {
                    (1, 1) => c.nodes_with_blocks += 1,
                    (-1, 0) => {
                        acc.per_node.remove(node);
                        c.nodes_with_blocks = c.nodes_with_blocks.saturating_sub(1);
                    }
                    _ => {}
                }
            }
            self.dirty.insert(Source::Pool(f.pool.clone()));
        }
    }

    /// The blocks counted, by CIDR.
    pub fn block_cidrs(&self) -> impl Iterator<Item = &IpNet> {
        self.blocks.keys()
    }

    /// Marks a source object dirty (it changed itself, or a write of its status failed).
    pub fn mark(&mut self, source: Source) {
        self.dirty.insert(source);
    }

    /// The source objects to look at now; clears the set.
    pub fn take_dirty(&mut self) -> BTreeSet<Source> {
        std::mem::take(&mut self.dirty)
    }

    /// Whether anything is dirty.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Cluster-wide node counters.
    pub fn totals(&self) -> NodeTotals {
        self.totals
    }

    /// One node's facts, if known.
    pub fn node(&self, node: &str) -> Option<&NodeFacts> {
        self.nodes.get(node)
    }

    /// A BGPPeer's counters (zero when it gives no node a session).
    pub fn peer(&self, name: &str) -> PeerCounts {
        self.peers.get(name).copied().unwrap_or_default()
    }

    /// An IPPool's counters (zero when it has no block).
    pub fn pool(&self, name: &str) -> PoolCounts {
        self.pools.get(name).map(|p| p.counts).unwrap_or_default()
    }
}
