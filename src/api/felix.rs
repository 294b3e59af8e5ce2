//! FelixConfiguration: dataplane settings. `default` applies to all nodes; `node.<name>` overrides
//! individual fields for one node.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Dataplane settings (Calico `projectcalico.org/v3` FelixConfiguration). Ocelot types the fields
/// that shape routing, encapsulation, WireGuard, MTU and NAT.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "FelixConfiguration",
    plural = "felixconfigurations",
    status = "FelixConfigurationStatus",
    printcolumn(
        name = "WIREGUARD",
        type_ = "boolean",
        json_path = ".spec.wireguardEnabled",
        description = "WireGuard IPv4 encryption"
    ),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.summary",
        description = "Node roll-up"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Encrypt IPv4 pod traffic between nodes with WireGuard. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    /// Encrypt IPv6 pod traffic between nodes with WireGuard. Default false.
    #[serde(
        default,
        rename = "wireguardEnabledV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    /// UDP port of the IPv4 WireGuard device. Default 51820.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port: Option<i32>,
    /// UDP port of the IPv6 WireGuard device. Default 51821.
    #[serde(
        default,
        rename = "wireguardListeningPortV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i32>,
    /// Name of the IPv4 WireGuard device. Default wireguard.cali.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name: Option<String>,
    /// Name of the IPv6 WireGuard device. Default wg-v6.cali.
    #[serde(
        default,
        rename = "wireguardInterfaceNameV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name_v6: Option<String>,
    /// MTU of the IPv4 WireGuard device; 0 means host MTU minus 60.
    #[serde(
        default,
        rename = "wireguardMTU",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i32>,
    /// MTU of the IPv6 WireGuard device; 0 means host MTU minus 80.
    #[serde(
        default,
        rename = "wireguardMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu_v6: Option<i32>,
    /// Priority of the routing rule that sends pod traffic to the WireGuard table (1-32765). Default 99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_routing_rule_priority: Option<i32>,
    /// Also encrypt host-to-host traffic. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_host_encryption_enabled: Option<bool>,
    /// WireGuard persistent keepalive, a duration such as 25s; 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_keep_alive: Option<String>,
    /// Threaded NAPI on the WireGuard device. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_threading_enabled: Option<bool>,
    /// Enable IP-in-IP; unset means on when any pool uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    /// MTU of the IPIP device; 0 means host MTU minus 20.
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i32>,
    /// Enable VXLAN; unset means on when any pool uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    /// MTU of the IPv4 VXLAN device; 0 means host MTU minus 50.
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i32>,
    /// MTU of the IPv6 VXLAN device; 0 means host MTU minus 70.
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<i32>,
    /// UDP port of VXLAN. Default 4789.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i32>,
    /// VXLAN network identifier. Default 4096.
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i32>,
    /// Regular expression of interfaces whose smallest MTU is the host MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    /// How often routes are re-checked, a duration. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// How often interfaces are re-checked, a duration. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_refresh_interval: Option<String>,
    /// Source of pod routes: CalicoIPAM (default) or WorkloadIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<RouteSource>,
    /// Routing table indices the dataplane may use. Default 1-250.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_ranges: Option<Vec<RouteTableRange>>,
    /// Deprecated single routing table range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_range: Option<RouteTableRange>,
    /// Turn off route programming. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_sync_disabled: Option<bool>,
    /// Protocol number of pod routes. Default 3 (boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<i32>,
    /// Source address set on IPv4 pod routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_source_address: Option<String>,
    /// Source address set on IPv6 pod routes.
    #[serde(
        default,
        rename = "deviceRouteSourceAddressIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    /// Remove routes to pod CIDRs that the dataplane did not add. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_external_routes: Option<bool>,
    /// Prefix of host-side pod interfaces. Default cali.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    /// SNAT to this address instead of masquerading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_address: Option<String>,
    /// Port range used for masquerade, e.g. 32768:65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_port_range: Option<String>,
    /// IPPoolsOnly (default) or IPPoolsAndHostIPs: destinations exempt from natOutgoing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_exclusions: Option<NatOutgoingExclusions>,
    /// Log level: Debug, Info, Warning, Error, Fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// How often status is reported, a duration; 0s turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
    /// Action for traffic from pods to their host: Drop (default), Accept or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    /// Enable IPv6 support. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    /// eBPF dataplane. Default false (not supported by Ocelot; kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_enabled: Option<bool>,
    /// Floating IPs: Enabled or Disabled (default).
    #[serde(
        default,
        rename = "floatingIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<String>,
    /// IP forwarding on the host: Enabled (default) or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_forwarding: Option<String>,
}

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

/// Observed state of a FelixConfiguration, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationStatus {
    /// The metadata.generation the operator last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Valid, and Ready once every affected node applied this generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Human summary, e.g. "WireGuard: 3/3 nodes ready".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Number of nodes that applied this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_ready: Option<u32>,
    /// Number of nodes this configuration applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_total: Option<u32>,
}
