//! Peer expansion: Calico's BGPPeer/BGPConfiguration semantics for one node.
//!
//! Invalid BGPPeers (both `node` and `nodeSelector`, an unparsable selector or peerIP, peerIP without
//! asNumber) contribute no session here; validation reports them on the object itself.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::api::bgp::{BGPConfiguration, BGPPeer, ReversePeering};
use crate::api::node::Node;
use crate::api::nodestate::{BGPPeerTarget, NodeBGPState, PeerType};
use crate::selector::Selector;

use super::protocol_name;

/// The AS of a node when neither its Calico Node nor the default BGPConfiguration sets one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// BIRD's BGP port when no BGPConfiguration sets `listenPort`.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// Everything peer expansion reads. Order does not matter; output is sorted.
#[derive(Clone, Copy, Debug)]
pub struct BgpInputs<'a> {
    /// BGPConfiguration objects: `default` and any `node.<name>`.
    pub configs: &'a [BGPConfiguration],
    /// All BGPPeers.
    pub peers: &'a [BGPPeer],
    /// All Calico Nodes.
    pub nodes: &'a [Node],
}

/// A Calico Node reduced to what peering needs.
struct PeerNode<'a> {
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    /// Bare address, as Calico compares and names it (the prefix length is dropped).
    ip: String,
    as_number: u32,
    rr_cluster_id: Option<&'a str>,
}

fn config<'a>(configs: &'a [BGPConfiguration], name: &str) -> Option<&'a BGPConfiguration> {
    configs
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

/// The bare IPv4 of `spec.bgp.ipv4Address` (`198.19.0.2/20` → `198.19.0.2`).
fn node_ipv4(node: &Node) -> Option<String> {
    let addr = node.spec.bgp.as_ref()?.ipv4_address.as_deref()?;
    let ip = addr.split('/').next()?.trim();
    ip.parse::<Ipv4Addr>().ok().map(|a| a.to_string())
}

fn peer_nodes(nodes: &[Node], default_as: u32) -> Vec<PeerNode<'_>> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<PeerNode> = nodes
        .iter()
        .filter_map(|n| {
            let bgp = n.spec.bgp.as_ref()?;
            Some(PeerNode {
                name: n.metadata.name.as_deref()?,
                labels: n.metadata.labels.as_ref().unwrap_or(&EMPTY),
                ip: node_ipv4(n)?,
                as_number: bgp.as_number.unwrap_or(default_as),
                rr_cluster_id: bgp
                    .route_reflector_cluster_id
                    .as_deref()
                    .filter(|c| !c.is_empty()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(b.name));
    out
}

/// `node.<name>` overrides, else `default`, else the built-in default.
fn listen_port(configs: &[BGPConfiguration], node: &str) -> u16 {
    config(configs, &format!("node.{node}"))
        .and_then(|c| c.spec.listen_port)
        .or_else(|| config(configs, "default").and_then(|c| c.spec.listen_port))
        .unwrap_or(DEFAULT_LISTEN_PORT)
}

/// Splits a v4 `peerIP` (`a.b.c.d` or `a.b.c.d:port`). IPv6 forms give None.
fn parse_peer_ip(s: &str) -> Option<(String, Option<u16>)> {
    let (ip, port) = match s.split_once(':') {
        Some((ip, port)) => (ip, Some(port.parse::<u16>().ok()?)),
        None => (s, None),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some((ip.to_string(), port))
}

/// Which local nodes a BGPPeer applies to. None: the peer is invalid.
enum LocalNodes {
    All,
    Named(String),
    Selected(Selector),
}

impl LocalNodes {
    fn of(peer: &BGPPeer) -> Option<LocalNodes> {
        let node = peer.spec.node.as_deref().filter(|s| !s.is_empty());
        let sel = peer
            .spec
            .node_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        match (node, sel) {
            (Some(_), Some(_)) => None,
            (Some(n), None) => Some(LocalNodes::Named(n.to_string())),
            (None, Some(s)) => Selector::parse(s).ok().map(LocalNodes::Selected),
            (None, None) => Some(LocalNodes::All),
        }
    }

    fn includes(&self, node: &PeerNode) -> bool {
        match self {
            LocalNodes::All => true,
            LocalNodes::Named(n) => n == node.name,
            LocalNodes::Selected(s) => s.matches(node.labels),
        }
    }

    fn peer_type(&self) -> PeerType {
        match self {
            LocalNodes::All => PeerType::Global,
            _ => PeerType::NodeSpecific,
        }
    }
}

/// None for BGP's default port: only another port is named (`_port_N`) and dialled explicitly.
fn non_default(port: u16) -> Option<u16> {
    (port != DEFAULT_LISTEN_PORT).then_some(port)
}

/// A session from `me` to `ip`, with the settings every explicit session copies from its BGPPeer.
fn session_from(
    peer: &BGPPeer,
    me: &PeerNode,
    peer_type: PeerType,
    ip: String,
    port: Option<u16>,
    as_number: u32,
    remote: Option<&PeerNode>,
) -> BGPPeerTarget {
    let spec = &peer.spec;
    let local_as = spec.local_as_number.unwrap_or(me.as_number);
    let ebgp = as_number != local_as;
    let keep = spec.keep_original_next_hop
        || spec.next_hop_mode == Some(crate::api::bgp::NextHopMode::Keep);
    BGPPeerTarget {
        name: protocol_name(peer_type, &ip, port),
        source: peer.metadata.name.clone().unwrap_or_default(),
        // Calico compares the address strings, not the numbers; both ends agree either way.
        passive: remote.is_some() && ip.as_str() > me.ip.as_str(),
        route_reflector_client: !ebgp
            && me
                .rr_cluster_id
                .is_some_and(|mine| remote.and_then(|r| r.rr_cluster_id) != Some(mine)),
        peer_ip: ip,
        port,
        as_number,
        peer_type,
        keep_original_next_hop: keep && ebgp,
        ttl_security: spec.ttl_security,
        source_address: spec.source_address,
        password: spec.password.clone(),
        max_restart_time: spec.max_restart_time.clone(),
        num_allowed_local_as_numbers: spec.num_allowed_local_as_numbers,
        reachable_by: spec.reachable_by.clone(),
        local_as_number: spec.local_as_number,
    }
}

/// The BGP state of node `node_name`, or None when it has no Calico Node with an IPv4 BGP address
/// (such a node runs no BGP).
pub fn node_bgp_state(node_name: &str, inputs: &BgpInputs) -> Option<NodeBGPState> {
    let default = config(inputs.configs, "default").map(|c| &c.spec);
    let own = config(inputs.configs, &format!("node.{node_name}")).map(|c| &c.spec);
    let default_as = default
        .and_then(|d| d.as_number)
        .unwrap_or(DEFAULT_AS_NUMBER);
    let nodes = peer_nodes(inputs.nodes, default_as);
    let me = nodes.iter().find(|n| n.name == node_name)?;
    let mesh_enabled = default
        .and_then(|d| d.node_to_node_mesh_enabled)
        .unwrap_or(true);
    let port_of = |ip: &str, as_number: u32| {
        nodes
            .iter()
            .find(|n| n.ip == ip && n.as_number == as_number)
            .map(|n| listen_port(inputs.configs, n.name))
    };

    let mut peers: Vec<&BGPPeer> = inputs.peers.iter().collect();
    peers.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    // Forward sessions first; implied reverse ones only fill addresses nobody peers with yet.
    let mut forward: BTreeMap<String, BGPPeerTarget> = BTreeMap::new();
    let mut reverse: BTreeMap<String, BGPPeerTarget> = BTreeMap::new();
    for peer in peers {
        let spec = &peer.spec;
        let Some(locals) = LocalNodes::of(peer) else {
            continue;
        };
        let peer_ip = spec.peer_ip.as_deref().filter(|s| !s.is_empty());
        let peer_sel = spec
            .peer_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        match (peer_ip, peer_sel) {
            (Some(peer_ip), None) => {
                let (Some((ip, port)), Some(as_number)) = (parse_peer_ip(peer_ip), spec.as_number)
                else {
                    continue;
                };
                let remote = nodes
                    .iter()
                    .find(|n| n.ip == ip && n.as_number == as_number);
                let port = port
                    .or_else(|| port_of(&ip, as_number))
                    .and_then(non_default);
                if locals.includes(me) && ip != me.ip {
                    let s = session_from(
                        peer,
                        me,
                        locals.peer_type(),
                        ip.clone(),
                        port,
                        as_number,
                        remote,
                    );
                    forward.entry(s.name.clone()).or_insert(s);
                }
                // The Calico node at peerIP peers back with every local node of this BGPPeer.
                let reverse_on = spec.reverse_peering != Some(ReversePeering::Manual);
                if reverse_on && remote.is_some_and(|r| r.name == me.name) {
                    for local in nodes
                        .iter()
                        .filter(|n| n.name != me.name && locals.includes(n))
                    {
                        let port = non_default(listen_port(inputs.configs, local.name));
                        let s = session_from(
                            peer,
                            me,
                            PeerType::NodeSpecific,
                            local.ip.clone(),
                            port,
                            local.as_number,
                            Some(local),
                        );
                        reverse.entry(s.name.clone()).or_insert(s);
                    }
                }
            }
            (None, Some(sel)) => {
                if spec.as_number.is_some() {
                    continue;
                }
                let Ok(sel) = Selector::parse(sel) else {
                    continue;
                };
                let session_to = |remote: &PeerNode| {
                    let port = non_default(listen_port(inputs.configs, remote.name));
                    session_from(
                        peer,
                        me,
                        PeerType::NodeSpecific,
                        remote.ip.clone(),
                        port,
                        remote.as_number,
                        Some(remote),
                    )
                };
                if locals.includes(me) {
                    for remote in nodes
                        .iter()
                        .filter(|n| n.name != me.name && sel.matches(n.labels))
                    {
                        let s = session_to(remote);
                        forward.entry(s.name.clone()).or_insert(s);
                    }
                }
                // Each selected node peers back with every local node of this BGPPeer.
                if sel.matches(me.labels) {
                    for local in nodes
                        .iter()
                        .filter(|n| n.name != me.name && locals.includes(n))
                    {
                        let s = session_to(local);
                        reverse.entry(s.name.clone()).or_insert(s);
                    }
                }
            }
            _ => continue,
        }
    }

    let global_ips: BTreeSet<String> = forward
        .values()
        .filter(|s| s.peer_type == PeerType::Global)
        .map(|s| s.peer_ip.clone())
        .collect();
    // A node-specific peering to an address that already has a global one is dropped.
    forward.retain(|_, s| s.peer_type == PeerType::Global || !global_ips.contains(&s.peer_ip));
    let forward_ips: BTreeSet<String> = forward.values().map(|s| s.peer_ip.clone()).collect();
    let mut sessions: Vec<BGPPeerTarget> = forward.into_values().collect();
    sessions.extend(
        reverse
            .into_values()
            .filter(|s| !forward_ips.contains(&s.peer_ip)),
    );
    sessions.sort_by(|a, b| (a.peer_type, &a.name).cmp(&(b.peer_type, &b.name)));

    Some(NodeBGPState {
        as_number: me.as_number,
        ipv4_address: me.ip.clone(),
        // A route reflector never meshes.
        mesh: mesh_enabled && me.rr_cluster_id.is_none(),
        listen_port: listen_port(inputs.configs, node_name),
        log_severity: Some(
            own.and_then(|c| c.log_severity_screen.clone())
                .or_else(|| default.and_then(|d| d.log_severity_screen.clone()))
                .unwrap_or_else(|| "Info".to_string()),
        ),
        peers: sessions,
        default_as_number: default_as,
        route_reflector_cluster_id: me.rr_cluster_id.map(str::to_string),
        bind_mode: own
            .and_then(|c| c.bind_mode)
            .or_else(|| default.and_then(|d| d.bind_mode)),
        ignored_interfaces: own
            .map(|c| c.ignored_interfaces.clone())
            .filter(|v| !v.is_empty())
            .or_else(|| default.map(|d| d.ignored_interfaces.clone()))
            .unwrap_or_default(),
        node_mesh_password: default.and_then(|d| d.node_mesh_password.clone()),
        node_mesh_max_restart_time: default.and_then(|d| d.node_mesh_max_restart_time.clone()),
    })
}

/// The node-to-node mesh sessions of the node described by `me`: one per other Calico Node with an
/// IPv4 BGP address that is not a route reflector. Empty when `me` does not mesh.
///
/// Mesh peers are assumed to listen on `me.listen_port`: a `node.<name>` listenPort override on a
/// peer is not visible here (the agent watches Calico Nodes, not other nodes' BGPConfigurations).
pub fn mesh_sessions(me: &NodeBGPState, nodes: &[Node]) -> Vec<BGPPeerTarget> {
    if !me.mesh {
        return Vec::new();
    }
    let mut out: Vec<BGPPeerTarget> = peer_nodes(nodes, me.default_as_number)
        .into_iter()
        .filter(|n| n.ip != me.ipv4_address && n.rr_cluster_id.is_none())
        .map(|n| {
            let port = non_default(me.listen_port);
            BGPPeerTarget {
                name: protocol_name(PeerType::NodeMesh, &n.ip, port),
                source: n.name.to_string(),
                // Unidirectional: the node with the greater address (as a string) dials.
                passive: n.ip.as_str() > me.ipv4_address.as_str(),
                peer_ip: n.ip,
                port,
                as_number: n.as_number,
                peer_type: PeerType::NodeMesh,
                password: me.node_mesh_password.clone(),
                max_restart_time: me.node_mesh_max_restart_time.clone(),
                ..BGPPeerTarget::default()
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}
