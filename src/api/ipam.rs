//! IPAMBlock and BlockAffinity: the system-owned IPAM records, schema-compatible with Calico's
//! `projectcalico.org/v3` CRDs so stored objects carry over between the two implementations.
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A block of addresses affine to one node, with its allocations kept in spec as Calico does.
/// Name: the CIDR with `.`, `:` and `/` replaced by `-` (e.g. `198-19-22-128-26`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    printcolumn(
        name = "CIDR",
        type_ = "string",
        json_path = ".spec.cidr",
        description = "Block CIDR"
    ),
    printcolumn(
        name = "AFFINITY",
        type_ = "string",
        json_path = ".spec.affinity",
        description = "Owner, e.g. host:node1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    /// The block's network in CIDR notation.
    pub cidr: String,
    /// The block's owner: `host:<node>` for a node, `virtual:<name>` for load-balancer pools; absent when orphaned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// When the affinity was claimed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    /// One entry per address ordinal: null when free, otherwise an index into attributes.
    pub allocations: Vec<Option<i64>>,
    /// Free ordinals in the order they will be handed out (released ordinals are appended).
    pub unallocated: Vec<i64>,
    /// Allocation records: the handle (e.g. `k8s-pod-network.<containerID>`) and its attributes.
    pub attributes: Vec<AllocationAttribute>,
    /// Deprecated in Calico; kept for schema compatibility.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Set while the block is being deleted, so concurrent writers back off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Increases by one on every write of the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
    /// The sequence number at which each ordinal (as a string key) was allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number_for_allocation: Option<BTreeMap<String, i64>>,
}

/// One allocation record of a block.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AllocationAttribute {
    /// The handle the address was assigned under, e.g. `k8s-pod-network.<containerID>` or `wireguard-tunnel-addr-<node>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Attributes of the allocation: node, namespace, pod, timestamp, type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// Records that a block belongs to a node. Name: `<node>-<block name>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    shortname = "affinity",
    shortname = "affinities",
    printcolumn(
        name = "CIDR",
        type_ = "string",
        json_path = ".spec.cidr",
        description = "Block CIDR"
    ),
    printcolumn(
        name = "NODE",
        type_ = "string",
        json_path = ".spec.node",
        description = "Owning node"
    ),
    printcolumn(
        name = "TYPE",
        type_ = "string",
        json_path = ".spec.type",
        description = "host or virtual"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinitySpec {
    /// The block's CIDR.
    pub cidr: String,
    /// The node that owns the block.
    pub node: String,
    /// Claim state: "" or confirmed (usable), pending (being claimed), pendingDeletion (being released).
    pub state: AffinityState,
    /// host for node blocks, virtual for load-balancer blocks.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Set while the affinity is being deleted.
    #[serde(default)]
    pub deleted: bool,
}

/// Claim state of a block affinity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AffinityState {
    /// Confirmed (Calico treats the empty state as confirmed).
    #[serde(rename = "")]
    Unset,
    /// The block is owned and usable.
    #[default]
    #[serde(rename = "confirmed")]
    Confirmed,
    /// The claim is in progress.
    #[serde(rename = "pending")]
    Pending,
    /// The release is in progress.
    #[serde(rename = "pendingDeletion")]
    PendingDeletion,
}
