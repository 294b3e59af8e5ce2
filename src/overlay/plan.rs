//! The overlay of one node: its tunnel devices, the route to every remote block, the VXLAN ARP and
//! FDB entries Felix programs, and the MTUs, from the pools and the Calico Nodes.
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::input::{IPIP_DEVICE, OverlayNode, OverlayPool, OverlaySettings, VXLAN_DEVICE};
use super::mac::{MacAddr, vxlan_mac};
use crate::api::ippool::EncapMode;
use crate::desired::mtu::{Encaps, MtuPlan, plan_mtu};
use crate::routes::Route;

/// Everything the plan of one node reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayInput {
    /// This node, as its own Calico Node publishes it (address with prefix, blocks, tunnel
    /// addresses, MAC).
    pub node: OverlayNode,
    /// The interface holding the node's address: the VXLAN device's parent and the device of
    /// native (same-subnet) routes, e.g. `ens4`.
    pub uplink: String,
    /// Host MTU: the smallest MTU of the uplinks (`mtuIfacePattern`).
    pub host_mtu: i32,
    /// Whether this node runs BGP (its NodeNetworkState has `spec.bgp`): BIRD then programs the
    /// routes the agent leaves to it.
    pub bgp: bool,
    /// All IPv4 pools.
    pub pools: Vec<OverlayPool>,
    /// Every Calico Node; this node's own entry is skipped by name.
    pub nodes: Vec<OverlayNode>,
    /// FelixConfiguration values.
    pub settings: OverlaySettings,
}

/// `vxlan.calico`: `ip link add vxlan.calico address <mac> mtu <mtu> type vxlan id <vni> local
/// <local> dev <parent> dstport <port> nolearning`, address `<address>/32`, up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanDevice {
    /// VNI (`vxlanVNI`).
    pub vni: u32,
    /// UDP destination port (`vxlanPort`).
    pub port: u16,
    /// Device MTU (`vxlanMTU`, auto host − 50).
    pub mtu: i32,
    /// Outer source address: the node's own address.
    pub local: Ipv4Addr,
    /// The uplink carrying the encapsulated packets.
    pub parent: String,
    /// The VTEP address (`spec.ipv4VXLANTunnelAddr`), as a /32.
    pub address: Ipv4Addr,
    /// The device MAC (`spec.vxlanTunnelMACAddr`, see [`vxlan_mac`]).
    pub mac: MacAddr,
}

/// `tunl0`: up, MTU, and the tunnel address as a /32 once one is assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpipDevice {
    /// Device MTU (`ipipMTU`, auto host − 20).
    pub mtu: i32,
    /// `spec.bgp.ipv4IPIPTunnelAddr`; None until assigned.
    pub address: Option<Ipv4Addr>,
}

/// A permanent ARP entry on `vxlan.calico`: `ip neigh replace <ip> lladdr <mac> dev <dev> nud
/// permanent` (the device does no learning). Identified by (dev, ip).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    pub dev: String,
    /// The remote VTEP address.
    pub ip: Ipv4Addr,
    /// The remote VTEP MAC.
    pub mac: MacAddr,
}

/// A permanent forwarding entry: `bridge fdb replace <mac> dev <dev> dst <remote node> self
/// permanent`. Identified by (dev, mac).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    pub dev: String,
    /// The remote VTEP MAC.
    pub mac: MacAddr,
    /// The remote node's address (the outer destination).
    pub dst: Ipv4Addr,
}

/// How traffic to a remote block leaves this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `<block> via <vtep> dev vxlan.calico onlink` (agent).
    Vxlan { vtep: Ipv4Addr },
    /// `<block> via <node> dev tunl0 onlink` (agent).
    Ipip,
    /// `<block> via <node> dev <uplink>`: CrossSubnet to a node on this node's subnet, or a
    /// no-encapsulation pool under `programClusterRoutes` (agent).
    Native,
    /// Left to BIRD: it programs the BGP-learned route (with `tunl0` for IPIP pools).
    Bird,
}

/// Why no one programs a route to a remote block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// The route is BGP's job (no encapsulation, or IPIP while BIRD owns IPIP routes), and this
    /// node runs no BGP.
    NoBGP,
    /// The remote node publishes no `spec.bgp.ipv4Address`, so there is no tunnel endpoint.
    NoNodeAddress,
    /// The remote node has not published `spec.ipv4VXLANTunnelAddr` and a valid
    /// `spec.vxlanTunnelMACAddr` yet.
    NoVTEP,
    /// Another node (named) publishes the same VTEP address or MAC; the first by name keeps it.
    VTEPConflict(String),
    /// This node has no VXLAN device yet: no own address or no `spec.ipv4VXLANTunnelAddr`.
    LocalVTEPPending,
    /// The pool asks for VXLAN but FelixConfiguration `vxlanEnabled` is false.
    VXLANDisabled,
    /// The pool asks for IP-in-IP but FelixConfiguration `ipipEnabled` is false.
    IPIPDisabled,
}

impl Unreachable {
    /// The condition reason, CamelCase as in Calico's vocabulary.
    pub fn reason(&self) -> &'static str {
        match self {
            Unreachable::NoBGP => "NoBGP",
            Unreachable::NoNodeAddress => "NoNodeAddress",
            Unreachable::NoVTEP => "NoVTEP",
            Unreachable::VTEPConflict(_) => "VTEPConflict",
            Unreachable::LocalVTEPPending => "LocalVTEPPending",
            Unreachable::VXLANDisabled => "VXLANDisabled",
            Unreachable::IPIPDisabled => "IPIPDisabled",
        }
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreachable::NoBGP => f.write_str(
                "the pool does not encapsulate to this node, so its route comes from BGP, and this node runs no BGP",
            ),
            Unreachable::NoNodeAddress => f.write_str("the node has no spec.bgp.ipv4Address"),
            Unreachable::NoVTEP => f.write_str(
                "the node has not published spec.ipv4VXLANTunnelAddr and a valid spec.vxlanTunnelMACAddr",
            ),
            Unreachable::VTEPConflict(other) => {
                write!(f, "node {other} publishes the same VXLAN tunnel address or MAC")
            }
            Unreachable::LocalVTEPPending => f.write_str(
                "this node's vxlan.calico is not up yet (no own address or VXLAN tunnel address)",
            ),
            Unreachable::VXLANDisabled => {
                f.write_str("the pool uses VXLAN but FelixConfiguration vxlanEnabled is false")
            }
            Unreachable::IPIPDisabled => {
                f.write_str("the pool uses IP-in-IP but FelixConfiguration ipipEnabled is false")
            }
        }
    }
}

/// One remote block and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteBlock {
    /// The node owning the block.
    pub node: String,
    pub block: Ipv4Net,
    /// The pool the block belongs to.
    pub pool: Ipv4Net,
    pub path: Result<Path, Unreachable>,
}

/// The overlay of one node. Every list is sorted, so equal inputs give equal plans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayPlan {
    /// `vxlan.calico`, when VXLAN is enabled and this node's VTEP is known.
    pub vxlan: Option<VxlanDevice>,
    /// `tunl0`, when IP-in-IP is enabled.
    pub ipip: Option<IpipDevice>,
    /// The agent's routes: tunnel and native routes to remote blocks, and, on a node without BGP,
    /// the blackholes of its own VXLAN blocks (Felix's, as BIRD's static protocol is not there).
    pub routes: Vec<Route>,
    /// ARP entries for every remote VTEP.
    pub neighbours: Vec<Neighbour>,
    /// FDB entries for every remote VTEP.
    pub fdb: Vec<FdbEntry>,
    /// Every remote block inside a pool, with its path or why it has none.
    pub blocks: Vec<RemoteBlock>,
    /// Pod and tunnel device MTUs.
    pub mtu: MtuPlan,
}

impl OverlayPlan {
    /// The remote blocks no one routes, with the reason.
    pub fn unreachable(&self) -> impl Iterator<Item = (&RemoteBlock, &Unreachable)> {
        self.blocks.iter().filter_map(|b| match &b.path {
            Err(why) => Some((b, why)),
            Ok(_) => None,
        })
    }
}

/// A remote VTEP, validated and free of conflicts.
struct Vtep {
    ip: Ipv4Addr,
    mac: MacAddr,
    node_ip: Ipv4Addr,
}

/// Remote VTEPs by node name; a node whose address or MAC another node (earlier by name) already
/// published maps to the conflict.
fn remote_vteps(remotes: &[&OverlayNode]) -> BTreeMap<String, Result<Vtep, Unreachable>> {
    let mut by_ip: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    let mut by_mac: BTreeMap<MacAddr, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for n in remotes {
        let vtep = match (
            n.ip(),
            n.vxlan_tunnel_addr,
            n.vxlan_tunnel_mac.as_deref().map(str::parse::<MacAddr>),
        ) {
            (None, _, _) => Err(Unreachable::NoNodeAddress),
            (Some(node_ip), Some(ip), Some(Ok(mac))) => match (by_ip.get(&ip), by_mac.get(&mac)) {
                (Some(other), _) | (_, Some(other)) => {
                    Err(Unreachable::VTEPConflict(other.to_string()))
                }
                _ => {
                    by_ip.insert(ip, &n.name);
                    by_mac.insert(mac, &n.name);
                    Ok(Vtep { ip, mac, node_ip })
                }
            },
            _ => Err(Unreachable::NoVTEP),
        };
        out.insert(n.name.clone(), vtep);
    }
    out
}

/// Whether `remote` is on this node's subnet (CrossSubnet's test: the local address's prefix
/// contains the remote address).
fn same_subnet(local: Option<Ipv4Net>, remote: Option<Ipv4Addr>) -> bool {
    matches!((local, remote), (Some(l), Some(r)) if l.trunc().contains(&r))
}

/// The overlay plan of `input.node`.
pub fn plan_overlay(input: &OverlayInput) -> OverlayPlan {
    let s = &input.settings;
    let mut pools = input.pools.clone();
    pools.sort();
    let vxlan_on = s
        .vxlan_enabled
        .unwrap_or_else(|| pools.iter().any(|p| p.vxlan_mode != EncapMode::Never));
    let ipip_on = s
        .ipip_enabled
        .unwrap_or_else(|| pools.iter().any(|p| p.ipip_mode != EncapMode::Never));
    let mtu = plan_mtu(
        input.host_mtu,
        Encaps {
            ipip: ipip_on.then_some(s.ipip_mtu),
            vxlan: vxlan_on.then_some(s.vxlan_mtu),
            wireguard: s.wireguard_mtu,
        },
    );
    let me = &input.node;
    let vxlan = match (vxlan_on, me.ip(), me.vxlan_tunnel_addr, mtu.vxlan) {
        (true, Some(local), Some(address), Some(dev_mtu)) => Some(VxlanDevice {
            vni: s.vxlan_vni,
            port: s.vxlan_port,
            mtu: dev_mtu,
            local,
            parent: input.uplink.clone(),
            address,
            mac: vxlan_mac(&me.name, me.vxlan_tunnel_mac.as_deref()),
        }),
        _ => None,
    };
    let ipip = mtu.ipip.map(|dev_mtu| IpipDevice {
        mtu: dev_mtu,
        address: me.ipip_tunnel_addr,
    });

    let mut remotes: Vec<&OverlayNode> = input.nodes.iter().filter(|n| n.name != me.name).collect();
    remotes.sort_by(|a, b| a.name.cmp(&b.name));
    remotes.dedup_by(|a, b| a.name == b.name);
    let vteps = remote_vteps(&remotes);

    let mut plan = OverlayPlan {
        vxlan,
        ipip,
        routes: Vec::new(),
        neighbours: Vec::new(),
        fdb: Vec::new(),
        blocks: Vec::new(),
        mtu,
    };
    if plan.vxlan.is_some() {
        for vtep in vteps.values().flatten() {
            plan.neighbours.push(Neighbour {
                dev: VXLAN_DEVICE.into(),
                ip: vtep.ip,
                mac: vtep.mac,
            });
            plan.fdb.push(FdbEntry {
                dev: VXLAN_DEVICE.into(),
                mac: vtep.mac,
                dst: vtep.node_ip,
            });
        }
    }
    let pool_of = |block: &Ipv4Net| pools.iter().find(|p| p.cidr.contains(block));
    for remote in &remotes {
        let near = same_subnet(me.address, remote.ip());
        for block in &remote.blocks {
            let Some(pool) = pool_of(block) else { continue };
            let path = if pool.vxlan_mode != EncapMode::Never {
                if !vxlan_on {
                    Err(Unreachable::VXLANDisabled)
                } else if remote.ip().is_none() {
                    Err(Unreachable::NoNodeAddress)
                } else if pool.vxlan_mode == EncapMode::CrossSubnet && near {
                    Ok(Path::Native)
                } else if plan.vxlan.is_none() {
                    Err(Unreachable::LocalVTEPPending)
                } else {
                    match &vteps[&remote.name] {
                        Ok(v) => Ok(Path::Vxlan { vtep: v.ip }),
                        Err(why) => Err(why.clone()),
                    }
                }
            } else if pool.ipip_mode != EncapMode::Never {
                if !ipip_on {
                    Err(Unreachable::IPIPDisabled)
                } else if !s.program_cluster_routes {
                    if input.bgp {
                        Ok(Path::Bird)
                    } else {
                        Err(Unreachable::NoBGP)
                    }
                } else if remote.ip().is_none() {
                    Err(Unreachable::NoNodeAddress)
                } else if pool.ipip_mode == EncapMode::CrossSubnet && near {
                    Ok(Path::Native)
                } else {
                    Ok(Path::Ipip)
                }
            } else if s.program_cluster_routes && near {
                Ok(Path::Native)
            } else if input.bgp {
                Ok(Path::Bird)
            } else {
                Err(Unreachable::NoBGP)
            };
            let remote_ip = remote.ip().unwrap_or(Ipv4Addr::UNSPECIFIED);
            match path {
                Ok(Path::Vxlan { vtep }) => {
                    plan.routes
                        .push(Route::via_onlink(*block, vtep, VXLAN_DEVICE));
                }
                Ok(Path::Ipip) => {
                    plan.routes
                        .push(Route::via_onlink(*block, remote_ip, IPIP_DEVICE));
                }
                Ok(Path::Native) => {
                    plan.routes
                        .push(Route::via(*block, remote_ip, &input.uplink));
                }
                Ok(Path::Bird) | Err(_) => {}
            }
            plan.blocks.push(RemoteBlock {
                node: remote.name.clone(),
                block: *block,
                pool: pool.cidr,
                path,
            });
        }
    }
    if vxlan_on && !input.bgp {
        for block in &me.blocks {
            if pool_of(block).is_some_and(|p| p.vxlan_mode != EncapMode::Never) {
                plan.routes.push(Route::blackhole(*block));
            }
        }
    }
    plan.routes.sort();
    plan.routes.dedup_by(|a, b| a.key() == b.key());
    plan.neighbours.sort();
    plan.fdb.sort();
    plan.blocks.sort_by_key(|b| b.block);
    plan
}
