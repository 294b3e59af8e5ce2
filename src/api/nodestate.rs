//! NodeNetworkState: the desired-state contract between the operator (spec) and one node's agent
//! (status). It holds only the node's own data; other nodes are read from their Calico Node objects.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use super::Condition;
use super::bgp::{BGPPassword, BindMode, SourceAddress};
use super::ippool::EncapMode;

/// Desired dataplane state of one node, written only by the operator (field manager `ocelot-operator`).
/// Named after the node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ocelot.dev",
    version = "v1alpha1",
    kind = "NodeNetworkState",
    plural = "nodenetworkstates",
    shortname = "nns",
    status = "NodeNetworkStateStatus",
    printcolumn(
        name = "NODE",
        type_ = "string",
        json_path = ".spec.node",
        description = "Node name"
    ),
    printcolumn(
        name = "GENERATION",
        type_ = "integer",
        json_path = ".metadata.generation",
        description = "Spec generation"
    ),
    printcolumn(
        name = "APPLIED",
        type_ = "integer",
        json_path = ".status.observedGeneration",
        description = "Generation the agent applied"
    ),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "All subsystems applied"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkStateSpec {
    /// The node this state is for (equal to metadata.name).
    pub node: String,
    /// The node's own blocks, per pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<NodeBlock>,
    /// BGP settings for this node after merging BGPConfiguration and expanding BGPPeer selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPState>,
    /// Dataplane settings merged from FelixConfiguration default and node.<name>.
    #[serde(default)]
    pub dataplane: DataplaneSettings,
    /// Address of this node's WireGuard device, from one of its own blocks.
    #[serde(
        default,
        rename = "wireguardInterfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_ipv4_address: Option<String>,
    /// Address of this node's VXLAN device (`vxlan.calico`), from one of its own blocks (handle
    /// `vxlan-tunnel-addr-<node>`), while a VXLAN pool selects the node.
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    /// The pools that encapsulate (ipipMode or vxlanMode not Never); every other pool of
    /// `allPools` is routed unencapsulated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encapsulated_pools: Vec<PoolEncapsulation>,
    /// Pool CIDRs whose pods are masqueraded when leaving all pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_outgoing_pools: Vec<String>,
    /// All pool CIDRs (destinations never masqueraded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub all_pools: Vec<String>,
    /// Hash of the content above; the agent reports it back as status.appliedHash.
    #[serde(default)]
    pub hash: String,
}

/// The encapsulation of one pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolEncapsulation {
    /// The pool CIDR.
    pub cidr: String,
    /// The pool's ipipMode ("" stored as Never).
    pub ipip_mode: EncapMode,
    /// The pool's vxlanMode ("" stored as Never).
    pub vxlan_mode: EncapMode,
}

/// One block owned by the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NodeBlock {
    /// The pool the block was carved from.
    pub pool: String,
    /// The block CIDR.
    pub cidr: String,
}

/// BGP settings of one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBGPState {
    /// The node's AS number after defaulting.
    pub as_number: u32,
    /// The node's router ID and source address.
    #[serde(rename = "ipv4Address")]
    #[schemars(with = "String")]
    pub ipv4_address: Ipv4Addr,
    /// The node's own subnet on the BGP interface (from `spec.bgp.ipv4Address`'s prefix), for
    /// CrossSubnet decisions.
    #[serde(
        default,
        rename = "ipv4Network",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub ipv4_network: Option<Ipv4Net>,
    /// Whether this node takes part in the node-to-node mesh.
    pub mesh: bool,
    /// TCP port BIRD listens on.
    pub listen_port: u16,
    /// BIRD log severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity: Option<String>,
    /// Explicit peers of this node (global, node-specific and reverse), after selector expansion.
    /// Mesh sessions are not listed: the agent derives them from the Calico Nodes it watches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<BGPPeerTarget>,
    /// The cluster AS (default BGPConfiguration, else 64512): the AS of mesh peers without their own.
    #[serde(default, rename = "defaultASNumber")]
    pub default_as_number: u32,
    /// This node's route reflector cluster ID; set only on route reflectors, which skip the mesh.
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
    /// None: BIRD listens on all addresses; NodeIP: only on ipv4Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// Interfaces (glob patterns) whose routes BIRD ignores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    /// Password of the mesh sessions (a Secret reference the agent resolves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time of the mesh sessions in seconds (BGPConfiguration
    /// `nodeMeshMaxRestartTime`, rounded as Calico rounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_restart_seconds: Option<u32>,
    /// Communities to attach to advertised prefixes (BGPConfiguration `prefixAdvertisements`, with
    /// community names resolved to values; `node.<name>` replaces `default`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixCommunities>,
    /// Service address ranges this node advertises (serviceClusterIPs, serviceExternalIPs,
    /// serviceLoadBalancerIPs of BGPConfiguration `default`; IPv4 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub service_cidrs: Vec<Ipv4Net>,
}

/// Communities attached to one advertised prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrefixCommunities {
    /// The prefix (routes inside it get the communities).
    #[schemars(with = "String")]
    pub cidr: Ipv4Net,
    /// Standard communities `[asn, value]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standard: Vec<[u16; 2]>,
    /// Large communities `[global, local1, local2]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large: Vec<[u32; 3]>,
}

/// The kind of a BGP session, spelled as `calicoctl node status` prints it.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum PeerType {
    /// Node-to-node mesh session (BIRD protocol `Mesh_…`).
    #[serde(rename = "node-to-node mesh")]
    NodeMesh,
    /// Global BGPPeer session (BIRD protocol `Global_…`).
    #[default]
    #[serde(rename = "global")]
    Global,
    /// Node-specific, peerSelector or reverse session (BIRD protocol `Node_…`).
    #[serde(rename = "node specific")]
    NodeSpecific,
}

/// One explicit BGP session of the node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerTarget {
    /// BIRD protocol name, e.g. Global_198_19_15_254.
    pub name: String,
    /// The BGPPeer object this came from.
    pub source: String,
    /// Peer address.
    #[serde(rename = "peerIP")]
    #[schemars(with = "String")]
    pub peer_ip: IpAddr,
    /// Peer port, when not 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Peer AS number.
    pub as_number: u32,
    /// node-to-node mesh, global or node specific.
    pub peer_type: PeerType,
    /// Keep the original next hop (eBGP only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// TTL security hops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// Passive: wait for the peer to connect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// This node is a route reflector and the peer is one of its clients.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub route_reflector_client: bool,
    /// Source address of the session: UseNodeIP (default) or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Session password (a Secret reference the agent resolves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// Graceful-restart time in seconds (BGPPeer `maxRestartTime`, rounded as Calico rounds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_seconds: Option<u32>,
    /// BGP keepalive time in seconds (BGPPeer `keepaliveTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_seconds: Option<u32>,
    /// Accept routes with the local AS in their path up to this many times.
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// Gateway through which the peer is reached (a static /32 route to the peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reachable_by: Option<IpAddr>,
    /// Local AS of this session when it differs from the node's.
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<u32>,
}

// No derived Default: an address has none. These defaults exist for struct-update syntax in
// builders and tests; every real value sets the addresses.
impl Default for NodeBGPState {
    fn default() -> Self {
        NodeBGPState {
            as_number: 0,
            ipv4_address: Ipv4Addr::UNSPECIFIED,
            ipv4_network: None,
            mesh: false,
            listen_port: 0,
            log_severity: None,
            peers: Vec::new(),
            default_as_number: 0,
            route_reflector_cluster_id: None,
            bind_mode: None,
            ignored_interfaces: Vec::new(),
            node_mesh_password: None,
            node_mesh_restart_seconds: None,
            prefix_advertisements: Vec::new(),
            service_cidrs: Vec::new(),
        }
    }
}

impl Default for BGPPeerTarget {
    fn default() -> Self {
        BGPPeerTarget {
            name: String::new(),
            source: String::new(),
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: None,
            as_number: 0,
            peer_type: PeerType::default(),
            keep_original_next_hop: false,
            ttl_security: None,
            passive: false,
            route_reflector_client: false,
            source_address: None,
            password: None,
            restart_seconds: None,
            keepalive_seconds: None,
            num_allowed_local_as_numbers: None,
            reachable_by: None,
            local_as_number: None,
        }
    }
}

/// Dataplane settings of one node after merging FelixConfiguration objects and defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneSettings {
    /// WireGuard IPv4 on or off.
    #[serde(default)]
    pub wireguard_enabled: bool,
    /// WireGuard UDP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port: Option<i32>,
    /// WireGuard device name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name: Option<String>,
    /// WireGuard device MTU (0 = auto).
    #[serde(
        default,
        rename = "wireguardMTU",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i32>,
    /// Routing rule priority for the WireGuard table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_routing_rule_priority: Option<i32>,
    /// Routing table index for WireGuard routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_routing_table: Option<i64>,
    /// WireGuard persistent keepalive in seconds (0 = off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_keep_alive_seconds: Option<u32>,
    /// Pod veth MTU (0 = auto from the host MTU and enabled encapsulations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_mtu: Option<i32>,
    /// Prefix of host-side pod interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    /// Route protocol of the host routes to pods (FelixConfiguration `deviceRouteProtocol`,
    /// default 3, `boot`, which `ip route` does not print).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<u8>,
    /// FelixConfiguration `vxlanEnabled`; unset: on when any pool uses VXLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    /// VXLAN network identifier (`vxlanVNI`, default 4096).
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<u32>,
    /// VXLAN UDP port (`vxlanPort`, default 4789).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<u16>,
    /// `vxlan.calico`'s MTU (`vxlanMTU`, 0 = host MTU − 50).
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i32>,
    /// FelixConfiguration `ipipEnabled`; unset: on when any pool uses IP-in-IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    /// `tunl0`'s MTU (`ipipMTU`, 0 = host MTU − 20).
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i32>,
    /// FelixConfiguration `programClusterRoutes: Enabled`: the agent, not BIRD, programs IP-in-IP
    /// and same-subnet unencapsulated routes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub program_cluster_routes: bool,
}

/// What the node's agent reports. Written only by that node's agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkStateStatus {
    /// The spec generation the agent last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The spec hash the agent last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// Conditions per subsystem: Routes, BGP, WireGuard, IPAM, NAT, and Ready for all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Base64 public key of this node's WireGuard device (the private key never leaves the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    /// BGP sessions as BIRD reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp_peers: Vec<BGPPeerStatusEntry>,
    /// Address usage per pool on this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipam: Vec<PoolUsage>,
    /// Pools the node needs a new block from (the operator claims it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_demand: Vec<BlockDemand>,
}

/// One BGP session as seen by BIRD.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerStatusEntry {
    /// Peer address.
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    /// node-to-node mesh, global or node specific.
    pub peer_type: PeerType,
    /// BIRD protocol state: up, start, down.
    pub state: String,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// BGP state and details, e.g. Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
}

/// Address usage of one pool on this node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Blocks of the pool owned by the node.
    pub blocks: u32,
    /// Addresses in use.
    pub in_use: u32,
    /// Free addresses in the node's blocks.
    pub free: u32,
}

/// A request for a new block.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDemand {
    /// Pool name.
    pub pool: String,
    /// Why, e.g. "no free address for pod external-ns/nginx".
    pub reason: String,
}
