//! IPPool: a range of pod addresses, carved into per-node blocks.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired state of an IP pool (Calico `projectcalico.org/v3` IPPool).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "IPPool",
    plural = "ippools",
    status = "IPPoolStatus",
    printcolumn(
        name = "CIDR",
        type_ = "string",
        json_path = ".spec.cidr",
        description = "Pool CIDR"
    ),
    printcolumn(
        name = "SELECTOR",
        type_ = "string",
        json_path = ".spec.nodeSelector",
        description = "Nodes that allocate blocks from this pool automatically"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pool's network in CIDR notation, e.g. 198.19.16.0/21. Host bits must be zero. Immutable.
    /// Deliberately stricter than Calico: loopback (127.0.0.0/8, ::1) and multicast (224.0.0.0/4,
    /// ff00::/8) ranges are refused, as no pod can use them.
    pub cidr: String,
    /// VXLAN encapsulation for traffic to pods in this pool: Never (default), Always or CrossSubnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    /// IP-in-IP encapsulation for traffic to pods in this pool: Never (default), Always or CrossSubnet. IPv4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    /// Masquerade traffic from pods in this pool to destinations outside all pools. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    /// When true no new addresses are assigned from this pool; existing ones stay. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// When true the pool's routes are not advertised over BGP. Default false.
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    /// Prefix length of the per-node blocks carved from this pool: 20-32 for IPv4 (default 26),
    /// 116-128 for IPv6 (default 122). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// Calico selector over node labels choosing the nodes that get blocks from this pool automatically.
    /// Empty means all(). Pools named in a namespace or pod annotation are used regardless of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Calico selector over namespace labels; must match as well as nodeSelector for automatic assignment.
    /// Empty means all().
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// What addresses of this pool may be used for: Workload, Tunnel, LoadBalancer. Empty means [Workload, Tunnel].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_uses: Option<Vec<AllowedUse>>,
    /// Automatic (default): used for automatic assignment; Manual: only when requested by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

/// Encapsulation mode of a pool.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema,
)]
pub enum EncapMode {
    /// No encapsulation.
    #[default]
    Never,
    /// Always encapsulate.
    Always,
    /// Encapsulate only across subnet boundaries.
    CrossSubnet,
}

/// A use a pool's addresses may be put to.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum AllowedUse {
    /// Pod addresses.
    Workload,
    /// Tunnel device addresses (IPIP, VXLAN, WireGuard).
    Tunnel,
    /// Service LoadBalancer addresses.
    LoadBalancer,
}

/// How a pool takes part in assignment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AssignmentMode {
    /// Used for automatic assignment.
    #[default]
    Automatic,
    /// Used only when requested explicitly.
    Manual,
}

/// Observed state of an IP pool, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// The metadata.generation the operator last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Allocatable (reasons OK, CIDROverlap, PoolDisabled, Invalid), Ready, and
    /// Supported (False: spec.ipipMode or spec.vxlanMode asks for encapsulation Ocelot does not do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The effective block size after defaulting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// The effective node selector after defaulting, in canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Number of blocks carved from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u32>,
    /// Number of nodes whose agent applied their current desired state, this generation of the pool
    /// included (NodeNetworkState `status.appliedHash` equal to the spec's hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_applied: Option<u32>,
    /// Number of nodes this pool concerns (every node: each NodeNetworkState lists every pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_total: Option<u32>,
    /// Number of nodes holding at least one block of this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_with_blocks: Option<u32>,
    /// Addresses assigned in this pool's blocks (pods and tunnel addresses), from the IPAMBlocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_in_use: Option<u32>,
    /// Free addresses in this pool's blocks (the rest of the pool is not carved yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_free: Option<u32>,
}

impl IPPoolSpec {
    /// Default block size for the pool's family (26 for IPv4, 122 for IPv6), as Calico applies it.
    pub fn effective_block_size(&self, is_v6: bool) -> i32 {
        match self.block_size {
            Some(b) if b != 0 => b,
            _ if is_v6 => 122,
            _ => 26,
        }
    }

    /// The node selector with Calico's default: empty or absent means all().
    pub fn effective_node_selector(&self) -> &str {
        match self.node_selector.as_deref().map(str::trim) {
            None | Some("") => "all()",
            Some(s) => s,
        }
    }

    /// The allowed uses with Calico's default of [Workload, Tunnel].
    pub fn effective_allowed_uses(&self) -> Vec<AllowedUse> {
        match &self.allowed_uses {
            Some(u) if !u.is_empty() => u.clone(),
            _ => vec![AllowedUse::Workload, AllowedUse::Tunnel],
        }
    }
}
