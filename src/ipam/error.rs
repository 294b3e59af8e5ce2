//! IPAM errors. Each message names the pool, address, handle or node involved and says what to do,
//! because these strings end up in CNI error results and Events that an admin reads.
use std::net::IpAddr;

use ipnet::IpNet;

use super::Family;

/// Where a pool request came from, so an error can point at the object to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolSource {
    /// A `cni.projectcalico.org/*` annotation on the pod.
    PodAnnotation,
    /// A `cni.projectcalico.org/*` annotation on the pod's namespace.
    NamespaceAnnotation,
    /// No annotation: the enabled Automatic pools whose nodeSelector matches the node.
    NodeSelector,
    /// A block claim or explicit request made by a controller.
    Claim,
}

impl std::fmt::Display for PoolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolSource::PodAnnotation => "pod annotation",
            PoolSource::NamespaceAnnotation => "namespace annotation",
            PoolSource::NodeSelector => "pool nodeSelector",
            PoolSource::Claim => "block claim",
        })
    }
}

/// Everything the IPAM engine can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// An IPPool spec the engine cannot use.
    #[error("IP pool {pool}: {reason}; fix the IPPool spec")]
    InvalidPool {
        /// Pool name.
        pool: String,
        /// What is wrong.
        reason: String,
    },
    /// An annotation value that is not a JSON list of strings.
    #[error(
        "{source_kind} {annotation} is not a JSON list of strings ({reason}); write it like '[\"default-ipv4-ippool\"]'"
    )]
    MalformedAnnotation {
        /// Annotation key.
        annotation: String,
        /// Pod or namespace.
        source_kind: PoolSource,
        /// Parser message.
        reason: String,
    },
    /// An annotation names a pool (by name or CIDR) that does not exist.
    #[error(
        "the {source_kind} names IP pool {pool}, which does not exist; create the pool or fix the annotation"
    )]
    UnknownPool {
        /// The pool name or CIDR as written.
        pool: String,
        /// Pod or namespace.
        source_kind: PoolSource,
    },
    /// An annotation names a disabled pool.
    #[error(
        "the {source_kind} names IP pool {pool}, which is disabled; enable the pool or name another one"
    )]
    PoolDisabled {
        /// Pool name.
        pool: String,
        /// Pod or namespace.
        source_kind: PoolSource,
    },
    /// An annotation names a pool of the other address family.
    #[error(
        "the {source_kind} lists IP pool {pool} under the {wanted} key, but the pool is {actual}; move it to the matching ipv4pools/ipv6pools annotation"
    )]
    PoolWrongFamily {
        /// Pool name.
        pool: String,
        /// Pod or namespace.
        source_kind: PoolSource,
        /// The family of the annotation key.
        wanted: Family,
        /// The pool's family.
        actual: Family,
    },
    /// A pool whose allowedUses exclude what the address is for.
    #[error(
        "IP pool {pool} does not allow {usage} addresses (allowedUses); add it to allowedUses or pick another pool"
    )]
    PoolNotForUse {
        /// Pool name.
        pool: String,
        /// Workload, Tunnel or LoadBalancer.
        usage: String,
    },
    /// No pool qualifies for the node.
    #[error(
        "no enabled {family} IP pool selects node {node}; create a pool whose nodeSelector matches the node, or annotate the namespace or pod with cni.projectcalico.org/ipv4pools"
    )]
    NoPoolForNode {
        /// Node name.
        node: String,
        /// Address family.
        family: Family,
    },
    /// The `ipAddrs` annotation is unusable.
    #[error("pod annotation cni.projectcalico.org/ipAddrs: {reason}")]
    BadExplicitAddress {
        /// What is wrong.
        reason: String,
    },
    /// An explicitly requested address is not inside any enabled pool.
    #[error(
        "address {address} is outside every enabled IP pool; request an address inside a pool or create a pool covering it"
    )]
    AddressOutsidePools {
        /// The requested address.
        address: IpAddr,
    },
    /// strictAffinity forbids using another node's block.
    #[error(
        "address {address} is in block {block} of {owner}, and strictAffinity forbids using another node's block; request an address in a block of this node"
    )]
    NotAffine {
        /// The requested address.
        address: IpAddr,
        /// Its block.
        block: IpNet,
        /// The block's affinity.
        owner: String,
    },
    /// An explicitly requested address is already assigned.
    #[error(
        "address {address} is already in use by handle {handle}; release it first (ocelotctl ipam release --ip={address}) or request another address"
    )]
    AddressInUse {
        /// The requested address.
        address: IpAddr,
        /// The handle that holds it.
        handle: String,
    },
    /// The node has no free address in its blocks of these pools and may claim one: the operator should
    /// claim a block from `pool` for `node` (this is the agent's "need a block" signal, not a failure).
    #[error(
        "node {node} has no free address in its blocks of IP pool {pool}; a new block from {pool} must be claimed for it"
    )]
    NeedBlock {
        /// Node name.
        node: String,
        /// The first requested pool that still has room for a block.
        pool: String,
    },
    /// The node already has `maxBlocksPerHost` blocks.
    #[error(
        "node {node} has reached the limit of {limit} blocks per host and they are full; raise IPAMConfiguration maxBlocksPerHost or use a larger blockSize"
    )]
    BlockLimit {
        /// Node name.
        node: String,
        /// The effective limit.
        limit: u32,
    },
    /// Every block-sized range of the pools is taken and nothing can be borrowed.
    #[error("no addresses available in IP pools [{}]; add a pool or free addresses (ocelotctl ipam check)", .pools.join(", "))]
    PoolsExhausted {
        /// Pool names in the order tried.
        pools: Vec<String>,
    },
    /// A block record that is not internally consistent.
    #[error("IPAM block {block}: {reason}; inspect it with ocelotctl ipam check")]
    InvalidBlock {
        /// Block CIDR or name.
        block: String,
        /// What is wrong.
        reason: String,
    },
    /// A block that should be empty still holds addresses.
    #[error(
        "IPAM block {block} still has {allocated} addresses allocated; release them before freeing the block"
    )]
    BlockNotEmpty {
        /// Block CIDR.
        block: IpNet,
        /// Addresses still allocated.
        allocated: u32,
    },
    /// A block that is not known to the engine.
    #[error("IPAM block {block} is not known; reload blocks from the API")]
    UnknownBlock {
        /// Block CIDR.
        block: IpNet,
    },
    /// A commit acknowledgement that does not match the write in flight.
    #[error("IPAM block {block}: no write with sequence number {sequence} is in flight")]
    NoSuchWrite {
        /// Block CIDR.
        block: IpNet,
        /// The sequence number given.
        sequence: i64,
    },
}

impl IpamError {
    /// The `(node, pool)` of a "need a block" signal, so a caller can tell demand from failure.
    pub fn needs_block(&self) -> Option<(&str, &str)> {
        match self {
            IpamError::NeedBlock { node, pool } => Some((node, pool)),
            _ => None,
        }
    }
}
