//! Overlays: VXLAN (`vxlan.calico`) and IP-in-IP (`tunl0`), Always and CrossSubnet, as Felix
//! programs them (issue 14).
//!
//! - [`input`]: what the plan reads: this node, the pools, the other Calico Nodes, and the
//!   FelixConfiguration values that matter ([`OverlaySettings`]).
//! - [`mac`]: the VXLAN tunnel MAC of a node ([`vxlan_mac`]).
//! - [`plan`]: [`plan_overlay`]: devices, routes, ARP neighbours, FDB entries and the MTUs of one
//!   node, plus why a remote block has no route.
//! - [`mod@transition`]: [`transition()`]: the ordered kernel operations from one plan to the next,
//!   make-before-break.
//!
//! # Routing ownership: who programs which route
//!
//! Ocelot follows Calico ≥ 3.31, where the owner of the *cluster routes* (routes to other nodes'
//! blocks) depends on the pool's encapsulation and on FelixConfiguration `programClusterRoutes`
//! (Felix side; confd's BGPConfiguration `programClusterRoutes` is its mirror for BIRD):
//!
//! | pool | `programClusterRoutes` Disabled (Calico's default) | Enabled |
//! |---|---|---|
//! | `vxlanMode` Always / CrossSubnet | agent (Felix's role): `via <VTEP> dev vxlan.calico onlink`, or native `via <node> dev <uplink>` on the same subnet | agent, the same |
//! | `ipipMode` Always / CrossSubnet | BIRD: BGP-learned, `via <node> dev tunl0 onlink` from the kernel filter (`krt_tunnel` in Calico's BIRD 1 templates) | agent: `via <node> dev tunl0 onlink`, or native on the same subnet |
//! | both Never (no encapsulation) | BIRD: BGP-learned `via <node>` | agent on the same subnet (`via <node> dev <uplink>`); off the subnet, BIRD (BGP-learned) |
//!
//! In every case the agent owns the tunnel devices (`vxlan.calico`, `tunl0`), the VXLAN ARP and FDB
//! entries, and, when the node runs no BGP, the `blackhole` routes of its own VXLAN blocks (BIRD's
//! static protocol writes them otherwise). BIRD programs only BGP-learned routes, and never one
//! the agent owns: its kernel filter rejects VXLAN pools always and, when `programClusterRoutes`
//! is Enabled, IPIP pools and no-encapsulation routes whose next hop is on this node's subnet
//! ([`crate::bgp::NodeBirdInput::program_cluster_routes`]). A block no one can route (no
//! encapsulation, or IPIP left to BIRD, on a node without BGP) is reported with
//! [`Unreachable::NoBGP`], never dropped silently.
//!
//! Why: the default keeps Calico's behaviour and the seed's `proto bird` routes, so a cluster moved
//! from Calico looks the same in `ip route`. One owner per pool class keeps the two writers off
//! each other's keys ([`crate::routes::plan`] never overwrites a foreign route). When the agent
//! owns a block's route, a mode switch is one in-place `replace` of that route
//! ([`transition()`]), hence make-before-break; a switch that hands a block between BIRD and the
//! agent (e.g. IPIP ↔ VXLAN under the default) is BIRD's withdraw plus the agent's add, which is
//! why `programClusterRoutes: Enabled` is the setting for clusters that switch modes live.
//!
//! IPv4 only (`vxlan-v6.calico` is not planned).

pub mod input;
pub mod mac;
pub mod plan;
pub mod transition;

pub use input::{
    DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI, IPIP_DEVICE, OverlayNode, OverlayPool, OverlaySettings,
    VXLAN_DEVICE,
};
pub use mac::{MacAddr, MacError, derived_vxlan_mac, vxlan_mac};
pub use plan::{
    FdbEntry, IpipDevice, Neighbour, OverlayInput, OverlayPlan, Path, RemoteBlock, Unreachable,
    VxlanDevice, plan_overlay,
};
pub use transition::{Device, Op, transition};

#[cfg(test)]
mod tests;
