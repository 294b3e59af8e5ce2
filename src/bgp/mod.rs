//! BGP: which sessions a node has, the BIRD 2 config that realises them, and how BIRD reports them.
//!
//! - [`expand`]: BGPConfiguration + BGPPeer + Calico Nodes → one node's [`NodeBGPState`] (explicit
//!   peers only) and, separately, its mesh sessions. The mesh is not part of NodeNetworkState because
//!   that object never lists other nodes (it would make the total O(N²)); the agent computes the mesh
//!   with [`mesh_sessions`] from the Calico Node objects it already watches.
//! - [`bird`]: a complete `bird.conf` for BIRD 2 from those sessions and the node's blocks and pools.
//! - [`status`]: `birdc show protocols` parsing and the `calicoctl node status` table.
//!
//! Only IPv4 is handled; IPv6 peers and addresses are skipped.
//!
//! [`NodeBGPState`]: crate::api::nodestate::NodeBGPState

pub mod bird;
pub mod columns;
pub mod expand;
pub mod node_input;
pub mod status;
pub mod support;
pub mod view;

pub use crate::api::nodestate::{BGPPeerTarget as Session, PeerType};
pub use bird::{BirdConfigError, ExportPool, NodeBirdInput, render_bird_config};
pub use expand::{
    BgpInputs, DEFAULT_AS_NUMBER, mesh_sessions, mesh_sessions_of, node_bgp_state,
    node_bgp_state_in,
};
pub use node_input::{PasswordError, node_bird_input, password_refs, resolve_passwords};
pub use status::{parse_birdc_protocols, render_bgp_status, render_peer_table};
pub use view::{BgpNode, BgpView, DEFAULT_LISTEN_PORT, ParsedPeer, SliceView, node_ipv4_net};

impl PeerType {
    /// The BIRD protocol-name prefix Calico uses for this kind of session.
    pub fn protocol_prefix(self) -> &'static str {
        match self {
            PeerType::NodeMesh => "Mesh",
            PeerType::Global => "Global",
            PeerType::NodeSpecific => "Node",
        }
    }

    /// The PEER TYPE column of `calicoctl node status`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::NodeMesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
        }
    }

    /// The type named by a protocol-name prefix (`Mesh`, `Global`, `Node`).
    pub fn from_protocol_prefix(prefix: &str) -> Option<PeerType> {
        match prefix {
            "Mesh" => Some(PeerType::NodeMesh),
            "Global" => Some(PeerType::Global),
            "Node" => Some(PeerType::NodeSpecific),
            _ => None,
        }
    }
}

/// Calico's BIRD protocol name: `<Prefix>_<ip with . as _>`, plus `_port_<N>` for a non-179 port
/// (mesh sessions never carry the port suffix: pass None for them).
pub fn protocol_name(peer_type: PeerType, ip: &std::net::IpAddr, port: Option<u16>) -> String {
    let mut name = format!(
        "{}_{}",
        peer_type.protocol_prefix(),
        ip.to_string().replace(['.', ':'], "_")
    );
    if let Some(p) = port {
        name.push_str(&format!("_port_{p}"));
    }
    name
}

#[cfg(test)]
mod kernel_filter_tests;
#[cfg(test)]
mod output_tests;
#[cfg(test)]
mod tests;
