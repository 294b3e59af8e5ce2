//! What the overlay plan reads, extracted from Calico's objects.
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::api::felix::routing::ProgramClusterRoutesMode;
use crate::api::ippool::EncapMode;
use crate::api::nodestate::DataplaneSettings;
use crate::api::{FelixConfigurationSpec, IPPoolSpec, Node};

/// Felix's IPv4 VXLAN device.
pub const VXLAN_DEVICE: &str = "vxlan.calico";
/// The IP-in-IP fallback device the `ipip` module creates; Felix configures it, never creates it.
pub const IPIP_DEVICE: &str = "tunl0";
/// FelixConfiguration `vxlanVNI` default.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// FelixConfiguration `vxlanPort` default (IANA's VXLAN port).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// A pool as the overlay sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayPool {
    /// Pool CIDR.
    pub cidr: Ipv4Net,
    /// `ipipMode` ("" and absent are Never).
    pub ipip_mode: EncapMode,
    /// `vxlanMode` ("" and absent are Never).
    pub vxlan_mode: EncapMode,
}

impl OverlayPool {
    /// From an IPPool spec; None for IPv6 or unparsable pools (single-object validation reports
    /// those).
    pub fn from_spec(spec: &IPPoolSpec) -> Option<Self> {
        Some(OverlayPool {
            cidr: spec.cidr.parse::<Ipv4Net>().ok()?.trunc(),
            ipip_mode: spec.ipip_mode.unwrap_or_default(),
            vxlan_mode: spec.vxlan_mode.unwrap_or_default(),
        })
    }
}

/// What the plan needs from one Calico Node (this node's own included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayNode {
    /// Node name.
    pub name: String,
    /// `spec.bgp.ipv4Address` with its prefix length (e.g. 198.19.0.2/20): the host address is
    /// the tunnel endpoint, the prefix gives the subnet CrossSubnet compares against.
    pub address: Option<Ipv4Net>,
    /// The node's blocks (`status.podCIDRs`).
    pub blocks: Vec<Ipv4Net>,
    /// `spec.ipv4VXLANTunnelAddr`: the node's VTEP address.
    pub vxlan_tunnel_addr: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`, as published (parsed by the plan).
    pub vxlan_tunnel_mac: Option<String>,
    /// `spec.bgp.ipv4IPIPTunnelAddr`: the address of the node's `tunl0`.
    pub ipip_tunnel_addr: Option<Ipv4Addr>,
}

fn host(s: &str) -> Option<Ipv4Addr> {
    s.split('/').next()?.trim().parse().ok()
}

/// `198.19.0.2/20` keeps its host bits; a bare address is a /32.
fn address_with_prefix(s: &str) -> Option<Ipv4Net> {
    let s = s.trim();
    if s.contains('/') {
        s.parse().ok()
    } else {
        s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
    }
}

impl OverlayNode {
    /// Extracts the overlay's fields; None for a node without a name. Unparsable values count as
    /// absent.
    pub fn from_calico_node(node: &Node) -> Option<Self> {
        let bgp = node.spec.bgp.as_ref();
        let mut blocks: Vec<Ipv4Net> = node
            .status
            .as_ref()
            .map(|s| s.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect())
            .unwrap_or_default();
        blocks.sort();
        Some(OverlayNode {
            name: node.metadata.name.clone()?,
            address: bgp
                .and_then(|b| b.ipv4_address.as_deref())
                .and_then(address_with_prefix),
            blocks,
            vxlan_tunnel_addr: node.spec.ipv4_vxlan_tunnel_addr.as_deref().and_then(host),
            vxlan_tunnel_mac: node
                .spec
                .vxlan_tunnel_mac_addr
                .clone()
                .filter(|m| !m.trim().is_empty()),
            ipip_tunnel_addr: bgp
                .and_then(|b| b.ipv4_ipip_tunnel_addr.as_deref())
                .and_then(host),
        })
    }

    /// The node's own address (the tunnel endpoint), without the prefix.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.address.map(|a| a.addr())
    }
}

/// The FelixConfiguration values the overlay uses, Calico's defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlaySettings {
    /// `ipipEnabled`; None derives it from the pools (on when any pool has ipipMode ≠ Never).
    pub ipip_enabled: Option<bool>,
    /// `vxlanEnabled`; None derives it from the pools.
    pub vxlan_enabled: Option<bool>,
    /// `vxlanVNI`.
    pub vxlan_vni: u32,
    /// `vxlanPort`.
    pub vxlan_port: u16,
    /// `vxlanMTU`; 0 is auto (host MTU − 50).
    pub vxlan_mtu: i32,
    /// `ipipMTU`; 0 is auto (host MTU − 20).
    pub ipip_mtu: i32,
    /// `wireguardMTU` when `wireguardEnabled`, for the pod MTU; 0 is auto (host MTU − 60).
    pub wireguard_mtu: Option<i32>,
    /// `programClusterRoutes: Enabled`: the agent, not BIRD, programs IPIP and same-subnet
    /// no-encapsulation routes (see the module's routing-ownership table).
    pub program_cluster_routes: bool,
}

impl Default for OverlaySettings {
    fn default() -> Self {
        OverlaySettings {
            ipip_enabled: None,
            vxlan_enabled: None,
            vxlan_vni: DEFAULT_VXLAN_VNI,
            vxlan_port: DEFAULT_VXLAN_PORT,
            vxlan_mtu: 0,
            ipip_mtu: 0,
            wireguard_mtu: None,
            program_cluster_routes: false,
        }
    }
}

impl OverlaySettings {
    /// From a node's merged FelixConfiguration ([`crate::desired::felix::merge_felix`]).
    /// Out-of-range VNI (VXLAN's is 24 bits) and port values fall back to Calico's defaults.
    pub fn from_felix(spec: &FelixConfigurationSpec) -> Self {
        let d = OverlaySettings::default();
        OverlaySettings {
            ipip_enabled: spec.ipip_enabled,
            vxlan_enabled: spec.vxlan_enabled,
            vxlan_vni: spec
                .vxlan_vni
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| (1..1 << 24).contains(v))
                .unwrap_or(d.vxlan_vni),
            vxlan_port: spec
                .vxlan_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .unwrap_or(d.vxlan_port),
            vxlan_mtu: spec.vxlan_mtu.unwrap_or(0).max(0),
            ipip_mtu: spec.ipip_mtu.unwrap_or(0).max(0),
            wireguard_mtu: spec
                .wireguard_enabled
                .unwrap_or(false)
                .then(|| spec.wireguard_mtu.unwrap_or(0).max(0)),
            program_cluster_routes: spec.program_cluster_routes
                == Some(ProgramClusterRoutesMode::Enabled),
        }
    }

    /// From a node's NodeNetworkState `spec.dataplane` (what the agent reads; the operator
    /// filled it with [`OverlaySettings::from_felix`]).
    pub fn from_dataplane(d: &DataplaneSettings) -> Self {
        let dflt = OverlaySettings::default();
        OverlaySettings {
            ipip_enabled: d.ipip_enabled,
            vxlan_enabled: d.vxlan_enabled,
            vxlan_vni: d.vxlan_vni.unwrap_or(dflt.vxlan_vni),
            vxlan_port: d.vxlan_port.unwrap_or(dflt.vxlan_port),
            vxlan_mtu: d.vxlan_mtu.unwrap_or(0).max(0),
            ipip_mtu: d.ipip_mtu.unwrap_or(0).max(0),
            wireguard_mtu: d
                .wireguard_enabled
                .then(|| d.wireguard_mtu.unwrap_or(0).max(0)),
            program_cluster_routes: d.program_cluster_routes,
        }
    }
}
