//! Calico's Node: each node's BGP address, tunnel addresses and WireGuard public key, published once
//! so that every other node can read them (O(nodes) data in total).
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A node as Calico sees it (Calico `projectcalico.org/v3` Node). Written by Ocelot.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "Node",
    plural = "nodes",
    status = "NodeStatus",
    printcolumn(
        name = "ASN",
        type_ = "string",
        json_path = ".status.asNumber",
        description = "The node's AS, or the inherited cluster AS in parentheses (filled in by the operator)"
    ),
    printcolumn(name = "IPV4", type_ = "string", json_path = ".spec.bgp.ipv4Address"),
    printcolumn(name = "IPV6", type_ = "string", json_path = ".spec.bgp.ipv6Address"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// BGP settings of the node; absent when the node does not run BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    /// IPv4 address of the node's VXLAN device.
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// MAC address of the node's IPv4 VXLAN device.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    /// IPv6 address of the node's VXLAN device.
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    /// MAC address of the node's IPv6 VXLAN device.
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    /// Addresses of the node's WireGuard devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    /// The orchestrator objects this node corresponds to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    /// The node's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// BGP settings of one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBGPSpec {
    /// The node's AS number; absent means the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// The node's IPv4 address with prefix length, e.g. 198.19.0.2/20.
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    /// The node's IPv6 address with prefix length.
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// IPv4 address of the node's IPIP device.
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// Route reflector cluster ID; set only on route reflectors.
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// Addresses of a node's WireGuard devices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeWireguardSpec {
    /// IPv4 address of wireguard.cali, assigned from one of the node's own blocks.
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    /// IPv6 address of wg-v6.cali.
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

/// A reference to the orchestrator's node object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrchRef {
    /// Node name in the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The orchestrator, e.g. k8s.
    pub orchestrator: String,
}

/// One address of a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeAddress {
    /// The address.
    pub address: String,
    /// CalicoNodeIP, InternalIP or ExternalIP.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// Observed state of a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Base64 public key of the node's IPv4 WireGuard device; absent when WireGuard is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    /// Base64 public key of the node's IPv6 WireGuard device.
    #[serde(
        default,
        rename = "wireguardPublicKeyV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_public_key_v6: Option<String>,
    /// Pod CIDRs of the Kubernetes node.
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
    /// Addresses this node's workloads hold in blocks not affine to it (borrowed, with
    /// strictAffinity off; e.g. blocks carried over from Calico), published by the operator
    /// (Ocelot's addition to Calico's schema) so WireGuard peers route them to this node as
    /// Felix does. Felix reads them from every IPAMBlock; agents here watch only their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub borrowed_addresses: Vec<String>,
    /// The TCP port this node's BIRD listens on, published by the operator (Ocelot's addition to
    /// Calico's schema) so mesh peers dial it: confd reads it from `node.<name>` BGPConfiguration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp_listen_port: Option<u16>,
    /// The node's AS as calicoctl's ASN column shows it: its own, or the inherited cluster AS in
    /// parentheses, e.g. `(64512)` (Ocelot's addition, for the printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<String>,
}
