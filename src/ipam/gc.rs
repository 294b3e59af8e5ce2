//! Garbage-collection decisions (Calico kube-controllers' IPAM GC, §6.6): which handles to release and
//! which blocks to free, given what is alive now. The engine only decides; the operator re-checks and
//! applies the decisions with [`Ipam::release_handle`] and [`Ipam::free_block`] and commits them.
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::{DEFAULT_LEAK_GRACE, Ipam, POD_HANDLE_PREFIX, affinity_name, block_name};

/// A pod that exists now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LivePod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it is scheduled on.
    pub node: String,
    /// Its sandbox's container ID (`cni.projectcalico.org/containerID`), if reported yet.
    pub container_id: Option<String>,
    /// The addresses it reports (`status.podIPs`); empty while not reported.
    pub ips: Vec<IpAddr>,
}

/// What GC looks at.
#[derive(Clone, Copy, Debug)]
pub struct GcInput<'a> {
    /// Every live pod.
    pub pods: &'a [LivePod],
    /// Every live node.
    pub nodes: &'a HashSet<String>,
    /// The current time.
    pub now: SystemTime,
    /// leakGracePeriod (Calico default 15 min, [`DEFAULT_LEAK_GRACE`]).
    pub grace: Duration,
}

impl<'a> GcInput<'a> {
    /// Input with the default grace period.
    pub fn new(pods: &'a [LivePod], nodes: &'a HashSet<String>, now: SystemTime) -> GcInput<'a> {
        GcInput {
            pods,
            nodes,
            now,
            grace: DEFAULT_LEAK_GRACE,
        }
    }
}

/// What GC remembers between runs: when each candidate was first seen, so the grace period is
/// measured from the first sighting. Pass the returned state into the next run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcState {
    /// Handle → first time its allocations looked leaked.
    pub leak_first_seen: HashMap<String, SystemTime>,
    /// Block → first time it was seen empty.
    pub empty_first_seen: HashMap<IpNet, SystemTime>,
    /// Deleted node that still owns blocks → first time it was seen gone. Its empty blocks are
    /// freed once it has been gone for the grace period (the Node object may be re-created).
    pub node_gone_since: HashMap<String, SystemTime>,
}

/// Why a handle is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakReason {
    /// Its node no longer exists (released at once, as Calico does).
    NodeGone,
    /// Its pod has been gone (or replaced) for longer than the grace period.
    PodGone,
}

/// A handle to release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseHandle {
    /// The handle.
    pub handle: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Why.
    pub reason: LeakReason,
}

/// Why a block is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeReason {
    /// Its node has been gone for the whole grace period.
    NodeGone,
    /// It lies outside every pool.
    PoolGone,
    /// It has no affinity (left behind by a released affinity).
    NoAffinity,
    /// An empty surplus block of a live node, empty for the whole grace period.
    Unused,
}

/// A block to free (after the handles of the same decision are released).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreeBlock {
    /// Block CIDR.
    pub cidr: IpNet,
    /// IPAMBlock name.
    pub name: String,
    /// The BlockAffinity to delete with it, if affine.
    pub affinity_name: Option<String>,
    /// Why.
    pub reason: FreeReason,
}

/// The outcome of one GC run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcDecision {
    /// Handles to release, sorted by handle.
    pub release: Vec<ReleaseHandle>,
    /// Blocks to free, by address.
    pub free_blocks: Vec<FreeBlock>,
    /// The state for the next run.
    pub state: GcState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    Leak(LeakReason),
    Candidate,
}

impl Ipam {
    /// Decide what to release. Never releases an address a live pod reports, nor one whose sandbox
    /// (container ID) is alive; allocations without pod attributes that are not tunnel addresses are
    /// left alone (Calico treats unknown types as valid).
    pub fn gc(&self, input: &GcInput<'_>, state: &GcState) -> GcDecision {
        let by_cid: HashSet<&str> = input
            .pods
            .iter()
            .filter_map(|p| p.container_id.as_deref())
            .collect();
        // Built only if some allocation's sandbox is not alive (rare in a steady cluster).
        let by_name: OnceCell<HashMap<(&str, &str), &LivePod>> = OnceCell::new();
        let by_name = || {
            by_name.get_or_init(|| {
                input
                    .pods
                    .iter()
                    .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
                    .collect()
            })
        };
        let live_ips: HashSet<IpAddr> = input
            .pods
            .iter()
            .flat_map(|p| p.ips.iter().copied())
            .collect();

        let mut next = GcState::default();
        // Per handle: the worst verdict over its addresses decides (any valid address keeps it).
        let mut verdicts: HashMap<&str, Verdict> = HashMap::with_capacity(self.handle_count());
        for (_, b) in self.entries() {
            for (ord, a) in b.allocations() {
                let Some(handle) = a.handle() else { continue };
                let addr = b.address(ord);
                let node = a.node().or(b.node());
                let node_live = node.is_some_and(|n| input.nodes.contains(n));
                let v = if live_ips.contains(&addr) {
                    Verdict::Valid
                } else if let Some(tn) = Ipam::tunnel_node(handle) {
                    if input.nodes.contains(tn) {
                        Verdict::Valid
                    } else {
                        Verdict::Leak(LeakReason::NodeGone)
                    }
                } else if a.kind().is_some_and(|t| t.ends_with("TunnelAddress")) {
                    if node_live {
                        Verdict::Valid
                    } else {
                        Verdict::Leak(LeakReason::NodeGone)
                    }
                } else if let (Some(ns), Some(pod)) = (a.namespace(), a.pod()) {
                    let cid = handle.strip_prefix(POD_HANDLE_PREFIX);
                    let same_sandbox = cid.is_some_and(|c| by_cid.contains(c));
                    let named = || {
                        by_name().get(&(ns, pod)).is_some_and(|p| {
                            // The pod exists, here, and has not yet said which sandbox or address is its own.
                            node.is_none_or(|n| n == p.node)
                                && p.container_id.is_none()
                                && p.ips.is_empty()
                        })
                    };
                    if same_sandbox || named() {
                        Verdict::Valid
                    } else if !node_live {
                        Verdict::Leak(LeakReason::NodeGone)
                    } else {
                        Verdict::Candidate
                    }
                } else {
                    Verdict::Valid
                };
                let slot = verdicts.entry(handle).or_insert(v);
                *slot = match (*slot, v) {
                    (Verdict::Valid, _) | (_, Verdict::Valid) => Verdict::Valid,
                    (Verdict::Candidate, _) | (_, Verdict::Candidate) => Verdict::Candidate,
                    (Verdict::Leak(LeakReason::PodGone), _)
                    | (_, Verdict::Leak(LeakReason::PodGone)) => Verdict::Leak(LeakReason::PodGone),
                    _ => Verdict::Leak(LeakReason::NodeGone),
                };
            }
        }
        let mut release = Vec::new();
        let mut released: HashSet<IpAddr> = HashSet::new();
        for (handle, v) in verdicts {
            let reason = match v {
                Verdict::Valid => continue,
                Verdict::Leak(r) => r,
                Verdict::Candidate => {
                    let first = state
                        .leak_first_seen
                        .get(handle)
                        .copied()
                        .unwrap_or(input.now);
                    if elapsed(first, input.now) < input.grace {
                        next.leak_first_seen.insert(handle.to_string(), first);
                        continue;
                    }
                    LeakReason::PodGone
                }
            };
            // Addresses only for the few released handles: most GC runs release almost nothing.
            let addrs = self.handle_addresses(handle);
            released.extend(addrs.iter().copied());
            release.push(ReleaseHandle {
                handle: handle.to_string(),
                addresses: addrs,
                reason,
            });
        }
        release.sort_by(|a, b| a.handle.cmp(&b.handle));

        // Deleted nodes that still own blocks: their blocks wait out the grace period, measured
        // from the first run that saw the node gone (a node that comes back drops out of the state).
        let gone_long = |n: &str| -> bool {
            let first = state.node_gone_since.get(n).copied().unwrap_or(input.now);
            elapsed(first, input.now) >= input.grace
        };
        for n in self.nodes_with_blocks() {
            if !input.nodes.contains(n) {
                let first = state.node_gone_since.get(n).copied().unwrap_or(input.now);
                next.node_gone_since.insert(n.to_string(), first);
            }
        }

        // Blocks: empty once this decision's releases are applied.
        let mut free_blocks = Vec::new();
        let mut freed_per_node: HashMap<&str, usize> = HashMap::new();
        let mut live_empty: Vec<(&str, IpNet)> = Vec::new();
        for (_, b) in self.entries() {
            let empty = b
                .allocations()
                .all(|(o, _)| released.contains(&b.address(o)));
            if !empty {
                continue;
            }
            let cidr = b.cidr();
            let reason = if b.affinity.is_none() {
                Some(FreeReason::NoAffinity)
            } else if self.pool_of(&cidr).is_none() {
                Some(FreeReason::PoolGone)
            } else if let Some(n) = b.node().filter(|n| !input.nodes.contains(*n)) {
                if !gone_long(n) {
                    continue;
                }
                Some(FreeReason::NodeGone)
            } else {
                None
            };
            match (reason, b.node()) {
                (Some(r), node) => {
                    if let Some(n) = node {
                        *freed_per_node.entry(n).or_default() += 1;
                    }
                    free_blocks.push(free(b.cidr(), node, r));
                }
                // Virtual (load-balancer) affinities are not node blocks; leave them.
                (None, None) => {}
                (None, Some(n)) => live_empty.push((n, cidr)),
            }
        }
        // Empty blocks of live nodes: keep each node's last block; free the rest after the grace period.
        for (node, cidr) in live_empty {
            let first = state
                .empty_first_seen
                .get(&cidr)
                .copied()
                .unwrap_or(input.now);
            let remaining =
                self.node_block_count(node) - freed_per_node.get(node).copied().unwrap_or(0);
            if remaining > 1 && elapsed(first, input.now) >= input.grace {
                *freed_per_node.entry(node).or_default() += 1;
                free_blocks.push(free(cidr, Some(node), FreeReason::Unused));
            } else {
                next.empty_first_seen.insert(cidr, first);
            }
        }
        free_blocks.sort_by_key(|f| f.cidr);
        GcDecision {
            release,
            free_blocks,
            state: next,
        }
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

fn free(cidr: IpNet, node: Option<&str>, reason: FreeReason) -> FreeBlock {
    FreeBlock {
        cidr,
        name: block_name(&cidr),
        affinity_name: node.map(|n| affinity_name(n, &cidr)),
        reason,
    }
}
