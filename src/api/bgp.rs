//! BGPPeer and BGPConfiguration.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// An explicit BGP peering (Calico `projectcalico.org/v3` BGPPeer). With neither `node` nor
/// `nodeSelector` it is a global peer of every node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "BGPPeer",
    plural = "bgppeers",
    status = "BGPPeerStatus",
    printcolumn(
        name = "PEERIP",
        type_ = "string",
        json_path = ".spec.peerIP",
        description = "Remote address"
    ),
    printcolumn(
        name = "NODE",
        type_ = "string",
        json_path = ".status.node",
        description = "Local nodes as calicoctl shows them: (global), the node or the nodeSelector (filled in by the operator)"
    ),
    printcolumn(
        name = "ASN",
        type_ = "integer",
        json_path = ".spec.asNumber",
        description = "Remote AS number"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The one local node that peers. Exclusive with nodeSelector; neither means all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Calico selector choosing the local nodes that peer. Exclusive with node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The remote address: `a.b.c.d`, `a.b.c.d:port`, an IPv6 address or `[v6]:port`. Exclusive with peerSelector.
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// Calico selector choosing Calico nodes as the remote peers. Exclusive with peerIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// The remote AS number (0-4294967295). Required with peerIP; must be empty with peerSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Keep the original next hop instead of rewriting it (eBGP only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// Session password from a Secret in the agent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    /// Source address of the session: UseNodeIP (default) or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Graceful-restart time, a duration such as 120s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Accept routes with the local AS in their path up to this many times.
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// TTL security: the number of hops the peer may be away (1-255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    /// Gateway through which the peer is reachable; adds a static route to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// Names of BGPFilter objects applied to the session, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Peer with local workloads selected by this selector (requires asNumber).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<String>,
    /// Local AS number to use for this session instead of the node's.
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<u32>,
    /// Next-hop handling: Auto, Self or Keep. Exclusive with keepOriginalNextHop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    /// BGP keepalive time, a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    /// Auto (default): generate the reverse peering for Calico-node peers; Manual: do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

/// A BGP session password reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPPassword {
    /// The Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
    /// When true, a missing Secret or key is not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Source address choice for a BGP session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceAddress {
    /// Use the node's BGP address as the source.
    UseNodeIP,
    /// Let the kernel choose.
    None,
}

/// Next-hop handling for a BGP session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NextHopMode {
    /// BIRD's default behaviour.
    Auto,
    /// Always set the next hop to self.
    #[serde(rename = "Self")]
    SelfHop,
    /// Keep the original next hop.
    Keep,
}

/// Whether reverse peerings are generated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReversePeering {
    /// Generate them.
    Auto,
    /// Do not generate them.
    Manual,
}

/// Observed state of a BGP peer, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerStatus {
    /// The metadata.generation the operator last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Supported (fields accepted but not acted on yet) and Established.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of nodes this peering gives at least one session (local and reverse sides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_selected: Option<u32>,
    /// Number of those nodes whose sessions from this peering are all Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_established: Option<u32>,
    /// BGP sessions this peering makes, summed over its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_expected: Option<u32>,
    /// Those of its sessions the nodes' agents report Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_established: Option<u32>,
    /// The local nodes as calicoctl's NODE column shows them: `(global)`, the node, or the
    /// nodeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Cluster-wide (`default`) or per-node (`node.<name>`) BGP settings (Calico BGPConfiguration).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    status = "BGPConfigurationStatus",
    printcolumn(
        name = "LOGSEVERITY",
        type_ = "string",
        json_path = ".spec.logSeverityScreen"
    ),
    printcolumn(
        name = "MESHENABLED",
        type_ = "boolean",
        json_path = ".status.meshEnabled",
        description = "Effective node-to-node mesh setting (filled in by the operator)"
    ),
    printcolumn(
        name = "ASNUMBER",
        type_ = "integer",
        json_path = ".status.asNumber",
        description = "Effective cluster AS number (filled in by the operator)"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// BIRD log level: Debug, Info (default), Warning, Error, Fatal or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full node-to-node iBGP mesh. Default true. Only in `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's default AS number. Default 64512. Only in `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Service cluster IP ranges to advertise. Only in `default`.
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<CidrEntry>,
    /// Service external IP ranges to advertise. Only in `default`.
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<CidrEntry>,
    /// Service LoadBalancer IP ranges to advertise. Only in `default`.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<CidrEntry>,
    /// TCP port BIRD listens on. Default 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Named BGP communities, value `aa:nn` or `aa:nn:mm`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities attached to advertised prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// None (default): listen on all addresses; NodeIP: only on the node's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// Password for the mesh sessions. Only in `default`, and only with the mesh on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Graceful-restart time of mesh sessions. Only in `default`, and only with the mesh on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    /// Interfaces whose addresses BIRD ignores (glob patterns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    /// IPv4 address used to peer with local workloads.
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv4: Option<String>,
    /// IPv6 address used to peer with local workloads.
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv6: Option<String>,
}

/// A CIDR list entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CidrEntry {
    /// The CIDR.
    pub cidr: String,
}

/// A named BGP community.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Community {
    /// Name used by prefixAdvertisements.
    pub name: String,
    /// Value `aa:nn` (standard) or `aa:nn:mm` (large).
    pub value: String,
}

/// Communities to attach to one advertised prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PrefixAdvertisement {
    /// The prefix.
    pub cidr: String,
    /// Community names or literal values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

/// Which addresses BIRD listens on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BindMode {
    /// All addresses.
    None,
    /// Only the node's address.
    NodeIP,
}

/// Observed state of a BGP configuration, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationStatus {
    /// The metadata.generation the operator last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Supported (fields accepted but not acted on yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Effective nodeToNodeMeshEnabled (default true); only on `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_enabled: Option<bool>,
    /// Effective cluster AS number (default 64512); only on `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
}
