//! Routing, NAT and cloud-integration types of FelixConfiguration.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An inclusive range of routing table indices.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RouteTableRange {
    /// First index (1-4294967295).
    pub min: i64,
    /// Last index.
    pub max: i64,
}

/// Source of pod routes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RouteSource {
    /// Routes come from IPAM blocks.
    CalicoIPAM,
    /// Routes come from workload addresses.
    WorkloadIPs,
}

/// Destinations exempt from natOutgoing.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NatOutgoingExclusions {
    /// Only addresses inside pools.
    IPPoolsOnly,
    /// Pools and host addresses.
    IPPoolsAndHostIPs,
}

/// Whether Felix, rather than BGP, programs routes to remote pods of pools with vxlanMode Never:
/// Enabled or Disabled (default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProgramClusterRoutesMode {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Answer ARP/NDP on host interfaces for local pod and LoadBalancer IPs in the host subnet:
/// Disabled (default) or PodsAndLoadBalancers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LocalSubnetL2ReachabilityMode {
    /// Turned off.
    Disabled,
    /// Pods and LoadBalancer IPs.
    PodsAndLoadBalancers,
}

/// What to do with the EC2 source/destination check of this instance: DoNothing (default), Enable
/// or Disable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AWSSrcDstCheckOption {
    /// Leave the setting alone.
    DoNothing,
    /// Turn the check on.
    Enable,
    /// Turn the check off.
    Disable,
}
