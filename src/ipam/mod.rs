//! IPAM engine: pools, blocks, affinities, assignment, release, group commit and GC decisions.
//!
//! Pure and synchronous: callers pass objects read from the API and the current time in, and get back
//! decisions and the exact block writes to make. The same engine serves the operator (claims blocks,
//! decides GC) and the agent (assigns addresses from its node's blocks, commits them in groups).
//! Behaviour follows Calico's libcalico-go IPAM (reference/calico-semantics.md §6).
mod attr;
pub mod block;
pub mod engine;
pub mod error;
pub mod gc;
mod gorand;
mod gorand_cooked;
pub mod pool;
pub mod release;
pub mod report;
mod stamp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use block::{Attr, Block, affinity_name, block_name, host_affinity};
pub use engine::{
    AssignKind, AssignRequest, Assignment, BlockWrite, Claim, CommitTicket, Durability, Ipam,
    IpamConfig, Op, OpKind, WriteKind,
};
pub use error::{IpamError, PoolSource};
pub use gc::{
    FreeBlock, FreeReason, GcDecision, GcInput, GcState, LeakReason, LivePod, ReleaseHandle,
};
pub use gorand::block_walk_start;
pub use pool::{
    ANNOTATION_IP_ADDRS, ANNOTATION_IPV4_POOLS, ANNOTATION_IPV6_POOLS, FamilyPools, PodContext,
    Pool, PoolSelection, check_annotations,
};
pub use release::{Release, ReleaseRefused};
pub use report::{BlockUsage, CheckReport, PoolUsage, ShowReport};
pub use stamp::{go_utc_string, rfc3339};

/// Calico's block limit per host when IPAMConfiguration maxBlocksPerHost is 0.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;
/// Calico kube-controllers' default leakGracePeriod.
pub const DEFAULT_LEAK_GRACE: Duration = Duration::from_secs(15 * 60);
/// Handle prefix of pod allocations: `<netconf name>.<containerID>` with Calico's netconf name.
pub const POD_HANDLE_PREFIX: &str = "k8s-pod-network.";
/// Handle prefix of WireGuard interface addresses.
pub const WIREGUARD_HANDLE_PREFIX: &str = "wireguard-tunnel-addr-";
/// Handle prefix of IPIP tunnel addresses.
pub const IPIP_HANDLE_PREFIX: &str = "ipip-tunnel-addr-";
/// Handle prefix of VXLAN tunnel addresses.
pub const VXLAN_HANDLE_PREFIX: &str = "vxlan-tunnel-addr-";

/// The handle of a pod sandbox's allocation.
pub fn pod_handle(container_id: &str) -> String {
    format!("{POD_HANDLE_PREFIX}{container_id}")
}

/// The handle of a node's WireGuard interface address.
pub fn wireguard_handle(node: &str) -> String {
    format!("{WIREGUARD_HANDLE_PREFIX}{node}")
}

/// The handle of a node's VXLAN tunnel address (Calico's).
pub fn vxlan_handle(node: &str) -> String {
    format!("{VXLAN_HANDLE_PREFIX}{node}")
}

/// Label Ocelot puts on each IPAMBlock with host affinity, naming the node, so a node's agent
/// watches only its own blocks (IPAMBlock has no field to select on; Calico's schema is kept).
pub const BLOCK_NODE_LABEL: &str = "ocelot.dev/node";

/// The node of a block's `host:<node>` affinity.
pub fn affinity_node(spec: &crate::api::ipam::IPAMBlockSpec) -> Option<&str> {
    spec.affinity.as_deref()?.strip_prefix("host:")
}

/// The labels an IPAMBlock object carries: [`BLOCK_NODE_LABEL`] for an affine block.
pub fn block_labels(
    spec: &crate::api::ipam::IPAMBlockSpec,
) -> Option<std::collections::BTreeMap<String, String>> {
    affinity_node(spec).map(|n| [(BLOCK_NODE_LABEL.to_string(), n.to_string())].into())
}

/// What a block writer keeps of a stored IPAMBlock's metadata for its next [`block_update`]:
/// all of it but managedFields (only the server reads those), or nothing when the object was
/// never stored (no resourceVersion to swap against).
pub fn block_meta_to_keep(meta: &kube::core::ObjectMeta) -> Option<kube::core::ObjectMeta> {
    meta.resource_version.as_ref()?;
    let mut meta = meta.clone();
    meta.managed_fields = None;
    Some(meta)
}

/// The object a compare-and-swap update replaces a stored IPAMBlock with: the new spec under the
/// stored metadata (its resourceVersion is the swap's condition). A replace sets the whole
/// object, so what others put there (labels, annotations, finalizers, owners) is carried over;
/// only [`BLOCK_NODE_LABEL`] follows the new spec's affinity. managedFields is left out so the
/// API server keeps the stored ones.
pub fn block_update(
    stored: &kube::core::ObjectMeta,
    spec: crate::api::ipam::IPAMBlockSpec,
) -> crate::api::IPAMBlock {
    let mut meta = stored.clone();
    meta.managed_fields = None;
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.remove(BLOCK_NODE_LABEL);
    labels.extend(block_labels(&spec).unwrap_or_default());
    meta.labels = (!labels.is_empty()).then_some(labels);
    crate::api::IPAMBlock {
        metadata: meta,
        spec,
    }
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Family of an address.
    pub fn of(a: &IpAddr) -> Family {
        if a.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

pub(crate) fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn u128_to_addr(v: u128, f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// FNV-1 32-bit, the hash Calico seeds its block walk with (Go's hash/fnv New32).
pub fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// Nanoseconds since the epoch, Calico's starting sequence number for a new block.
pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests;
