//! Peer expansion: Calico's BGPPeer/BGPConfiguration semantics for one node, over a [`BgpView`].
//!
//! Invalid BGPPeers (both `node` and `nodeSelector`, an unparsable selector or peerIP, peerIP without
//! asNumber) contribute no session here; validation reports them on the object itself.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::api::bgp::{
    BGPConfiguration, BGPConfigurationSpec, BGPPeer, NextHopMode, ReversePeering,
};
use crate::api::node::Node;
use crate::api::nodestate::{BGPPeerTarget, NodeBGPState, PeerType, PrefixCommunities};
use crate::values::GoDuration;

use super::protocol_name;
use super::view::{BgpNode, BgpView, DEFAULT_LISTEN_PORT, ParsedPeer, Remote, SliceView};

/// The AS of a node when neither its Calico Node nor the default BGPConfiguration sets one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;

/// Everything peer expansion reads, as object lists. Order does not matter; output is sorted.
#[derive(Clone, Copy, Debug)]
pub struct BgpInputs<'a> {
    /// BGPConfiguration objects: `default` and any `node.<name>`.
    pub configs: &'a [BGPConfiguration],
    /// All BGPPeers.
    pub peers: &'a [BGPPeer],
    /// All Calico Nodes.
    pub nodes: &'a [Node],
}

/// Calico's Go templates compare addresses as strings (`gt $onode_ip $node_ip`), so 198.19.0.10
/// sorts before 198.19.0.9; both ends agree either way.
fn greater_as_string(a: IpAddr, b: Ipv4Addr) -> bool {
    a.to_string() > b.to_string()
}

/// None for BGP's default port: only another port is named (`_port_N`) and dialled explicitly.
fn non_default(port: u16) -> Option<u16> {
    (port != DEFAULT_LISTEN_PORT).then_some(port)
}

/// Seconds of a duration field, rounded as Calico rounds them; an unparsable value gives None
/// (validation reports it on the object).
fn seconds(d: Option<&str>) -> Option<u32> {
    d.and_then(|d| GoDuration::parse(d).ok())
        .map(GoDuration::rounded_seconds)
}

/// How a session came about: Calico copies some BGPPeer options only onto sessions to the
/// BGPPeer's own `peerIP`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// To the BGPPeer's `peerIP`: every option applies.
    PeerIP,
    /// To a node chosen by `peerSelector`, or a reverse peering: Calico's confd does not carry
    /// keepOriginalNextHop or numAllowedLocalASNumbers onto these.
    Derived,
}

/// The local end of every session.
struct Me<'a> {
    node: &'a BgpNode,
    as_number: u32,
}

/// A session from `me` to `ip` with the settings Calico copies from its BGPPeer.
#[allow(clippy::too_many_arguments)]
fn session_from(
    peer: &ParsedPeer,
    me: &Me,
    peer_type: PeerType,
    origin: Origin,
    ip: Ipv4Addr,
    port: Option<u16>,
    as_number: u32,
    remote: Option<&BgpNode>,
) -> BGPPeerTarget {
    let spec = &peer.spec;
    let local_as = spec.local_as_number.unwrap_or(me.as_number);
    let ebgp = as_number != local_as;
    let direct = origin == Origin::PeerIP;
    let keep =
        direct && (spec.keep_original_next_hop || spec.next_hop_mode == Some(NextHopMode::Keep));
    let ip = IpAddr::V4(ip);
    let my_rr = me.node.rr_cluster_id.as_deref();
    BGPPeerTarget {
        name: protocol_name(peer_type, &ip, port),
        source: peer.name.clone(),
        // Only a global session to another Calico node is made one-way (confd's template has no
        // `passive` on Node_ sessions: both ends dial).
        passive: peer_type == PeerType::Global
            && remote.is_some()
            && greater_as_string(ip, me.node.ip()),
        route_reflector_client: !ebgp
            && my_rr
                .is_some_and(|mine| remote.and_then(|r| r.rr_cluster_id.as_deref()) != Some(mine)),
        peer_ip: ip,
        port,
        as_number,
        peer_type,
        keep_original_next_hop: keep && ebgp,
        ttl_security: spec.ttl_security,
        source_address: spec.source_address,
        password: spec.password.clone(),
        restart_seconds: seconds(spec.max_restart_time.as_deref()),
        keepalive_seconds: seconds(spec.keepalive_time.as_deref()),
        num_allowed_local_as_numbers: spec.num_allowed_local_as_numbers.filter(|_| direct),
        reachable_by: spec
            .reachable_by
            .as_deref()
            .and_then(|g| g.parse::<IpAddr>().ok()),
        local_as_number: spec.local_as_number,
    }
}

/// A community given by name (looked up in `communities`) or as a literal `aa:nn` / `aa:nn:mm`.
fn community_value<'a>(
    name_or_value: &'a str,
    own: Option<&'a BGPConfigurationSpec>,
    default: Option<&'a BGPConfigurationSpec>,
) -> Option<&'a str> {
    let defined = [own, default]
        .into_iter()
        .flatten()
        .flat_map(|c| c.communities.iter())
        .find(|c| c.name == name_or_value)
        .map(|c| c.value.as_str());
    defined.or(Some(name_or_value))
}

/// The prefix advertisements of a node (`node.<name>` replaces `default`), communities resolved.
/// Entries that do not parse are dropped here; validation reports them on the object.
fn prefix_advertisements(
    own: Option<&BGPConfigurationSpec>,
    default: Option<&BGPConfigurationSpec>,
) -> Vec<PrefixCommunities> {
    let source = own
        .filter(|c| !c.prefix_advertisements.is_empty())
        .or(default);
    let Some(source) = source else {
        return Vec::new();
    };
    let mut out: Vec<PrefixCommunities> = source
        .prefix_advertisements
        .iter()
        .filter_map(|pa| {
            let cidr: Ipv4Net = pa.cidr.parse().ok()?;
            let mut e = PrefixCommunities {
                cidr: cidr.trunc(),
                ..Default::default()
            };
            for c in &pa.communities {
                match crate::validation::parse_community(community_value(c, own, default)?)? {
                    crate::validation::CommunityValue::Standard(a, b) => e.standard.push([a, b]),
                    crate::validation::CommunityValue::Large(a, b, c) => e.large.push([a, b, c]),
                }
            }
            Some(e)
        })
        .collect();
    out.sort_by_key(|a| a.cidr);
    out
}

/// The IPv4 service ranges of BGPConfiguration `default`, sorted and without duplicates.
fn service_cidrs(default: Option<&BGPConfigurationSpec>) -> Vec<Ipv4Net> {
    let Some(d) = default else {
        return Vec::new();
    };
    let mut out: Vec<Ipv4Net> = d
        .service_cluster_ips
        .iter()
        .chain(&d.service_external_ips)
        .chain(&d.service_load_balancer_ips)
        .filter_map(|e| e.cidr.parse::<Ipv4Net>().ok().map(|n| n.trunc()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The BGP state of node `node_name`, or None when it has no Calico Node with an IPv4 BGP address
/// (such a node runs no BGP). Builds a [`SliceView`] first: for one-off use.
pub fn node_bgp_state(node_name: &str, inputs: &BgpInputs) -> Option<NodeBGPState> {
    let view = SliceView::new(inputs.configs, inputs.peers, inputs.nodes);
    node_bgp_state_in(&view, node_name)
}

/// The BGP state of node `node_name` over any view. Cost: O(peers) plus the sessions made (and
/// the nodes each peerSelector matches, which a caching view answers directly).
pub fn node_bgp_state_in(view: &impl BgpView, node_name: &str) -> Option<NodeBGPState> {
    let default = view.config("default");
    let own = view.config(&format!("node.{node_name}"));
    let default_as = default
        .and_then(|d| d.as_number)
        .unwrap_or(DEFAULT_AS_NUMBER);
    let me_node = view.node(node_name)?;
    let me = Me {
        node: me_node,
        as_number: me_node.as_or(default_as),
    };
    let mesh_enabled = default
        .and_then(|d| d.node_to_node_mesh_enabled)
        .unwrap_or(true);

    // Forward sessions first; implied reverse ones only fill addresses nobody peers with yet.
    let mut forward: BTreeMap<String, BGPPeerTarget> = BTreeMap::new();
    let mut reverse: BTreeMap<String, BGPPeerTarget> = BTreeMap::new();
    for peer in view.peers() {
        let Some((locals, remote)) = &peer.usable else {
            continue;
        };
        match remote {
            Remote::Address {
                ip,
                port,
                as_number,
            } => {
                let (ip, as_number) = (*ip, *as_number);
                let remote_node = view.nodes_at(ip).find(|n| n.as_or(default_as) == as_number);
                let port = port
                    .or_else(|| remote_node.map(|n| view.listen_port(&n.name)))
                    .and_then(non_default);
                if locals.includes(me.node) && ip != me.node.ip() {
                    let s = session_from(
                        peer,
                        &me,
                        locals.peer_type(),
                        Origin::PeerIP,
                        ip,
                        port,
                        as_number,
                        remote_node,
                    );
                    forward.entry(s.name.clone()).or_insert(s);
                }
                // The Calico node at peerIP peers back with every local node of this BGPPeer.
                let reverse_on = peer.spec.reverse_peering != Some(ReversePeering::Manual);
                if reverse_on && remote_node.is_some_and(|r| r.name == me.node.name) {
                    for local in view.locals_of(peer).filter(|n| n.name != me.node.name) {
                        let port = non_default(view.listen_port(&local.name));
                        let s = session_from(
                            peer,
                            &me,
                            PeerType::NodeSpecific,
                            Origin::Derived,
                            local.ip(),
                            port,
                            local.as_or(default_as),
                            Some(local),
                        );
                        reverse.entry(s.name.clone()).or_insert(s);
                    }
                }
            }
            Remote::Selected(sel) => {
                let session_to = |remote: &BgpNode, peer_type: PeerType| {
                    let port = non_default(view.listen_port(&remote.name));
                    session_from(
                        peer,
                        &me,
                        peer_type,
                        Origin::Derived,
                        remote.ip(),
                        port,
                        remote.as_or(default_as),
                        Some(remote),
                    )
                };
                if locals.includes(me.node) {
                    // With neither node nor nodeSelector the BGPPeer is global: `Global_` sessions.
                    for remote in view.selected_by(peer).filter(|n| n.name != me.node.name) {
                        let s = session_to(remote, locals.peer_type());
                        forward.entry(s.name.clone()).or_insert(s);
                    }
                }
                // Each selected node peers back with every local node of this BGPPeer.
                if sel.matches(&me.node.labels) {
                    for local in view.locals_of(peer).filter(|n| n.name != me.node.name) {
                        let s = session_to(local, PeerType::NodeSpecific);
                        reverse.entry(s.name.clone()).or_insert(s);
                    }
                }
            }
        }
    }

    let global_ips: BTreeSet<IpAddr> = forward
        .values()
        .filter(|s| s.peer_type == PeerType::Global)
        .map(|s| s.peer_ip)
        .collect();
    // A node-specific peering to an address that already has a global one is dropped.
    forward.retain(|_, s| s.peer_type == PeerType::Global || !global_ips.contains(&s.peer_ip));
    let forward_ips: BTreeSet<IpAddr> = forward.values().map(|s| s.peer_ip).collect();
    let mut sessions: Vec<BGPPeerTarget> = forward.into_values().collect();
    sessions.extend(
        reverse
            .into_values()
            .filter(|s| !forward_ips.contains(&s.peer_ip)),
    );
    sessions.sort_by(|a, b| (a.peer_type, &a.name).cmp(&(b.peer_type, &b.name)));

    Some(NodeBGPState {
        as_number: me.as_number,
        ipv4_address: me.node.ip(),
        ipv4_network: Some(me.node.net.trunc()),
        // A route reflector never meshes.
        mesh: mesh_enabled && me.node.rr_cluster_id.is_none(),
        listen_port: view.listen_port(node_name),
        log_severity: Some(
            own.and_then(|c| c.log_severity_screen.clone())
                .or_else(|| default.and_then(|d| d.log_severity_screen.clone()))
                .unwrap_or_else(|| "Info".to_string()),
        ),
        peers: sessions,
        default_as_number: default_as,
        route_reflector_cluster_id: me.node.rr_cluster_id.clone(),
        bind_mode: own
            .and_then(|c| c.bind_mode)
            .or_else(|| default.and_then(|d| d.bind_mode)),
        ignored_interfaces: own
            .map(|c| c.ignored_interfaces.clone())
            .filter(|v| !v.is_empty())
            .or_else(|| default.map(|d| d.ignored_interfaces.clone()))
            .unwrap_or_default(),
        node_mesh_password: default.and_then(|d| d.node_mesh_password.clone()),
        node_mesh_restart_seconds: seconds(
            default.and_then(|d| d.node_mesh_max_restart_time.as_deref()),
        ),
        prefix_advertisements: prefix_advertisements(own, default),
        service_cidrs: service_cidrs(default),
    })
}

/// The node-to-node mesh sessions of the node described by `me`: one per other Calico Node with an
/// IPv4 BGP address that is not a route reflector. Empty when `me` does not mesh.
///
/// As confd does, a mesh session is named `Mesh_<ip>` whatever the port, and dials the *other*
/// node's listen port, which its Calico Node publishes in `status.bgpListenPort` (179 when absent).
pub fn mesh_sessions(me: &NodeBGPState, nodes: &[Node]) -> Vec<BGPPeerTarget> {
    let nodes: Vec<BgpNode> = nodes.iter().filter_map(BgpNode::from_node).collect();
    mesh_sessions_of(me, nodes.iter())
}

/// [`mesh_sessions`] over already-parsed nodes (the agent keeps them parsed).
pub fn mesh_sessions_of<'a>(
    me: &NodeBGPState,
    nodes: impl Iterator<Item = &'a BgpNode>,
) -> Vec<BGPPeerTarget> {
    if !me.mesh {
        return Vec::new();
    }
    let mut out: Vec<BGPPeerTarget> = nodes
        .filter(|n| n.ip() != me.ipv4_address && n.rr_cluster_id.is_none())
        .map(|n| {
            let ip = IpAddr::V4(n.ip());
            BGPPeerTarget {
                name: protocol_name(PeerType::NodeMesh, &ip, None),
                source: n.name.clone(),
                // Unidirectional: the node with the greater address (as a string) dials.
                passive: greater_as_string(ip, me.ipv4_address),
                peer_ip: ip,
                port: non_default(n.listen_port.unwrap_or(DEFAULT_LISTEN_PORT)),
                as_number: n.as_or(me.default_as_number),
                peer_type: PeerType::NodeMesh,
                password: me.node_mesh_password.clone(),
                restart_seconds: me.node_mesh_restart_seconds,
                ..BGPPeerTarget::default()
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}
