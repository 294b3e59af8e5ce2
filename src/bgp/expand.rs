//! Peer expansion: Calico's BGPPeer/BGPConfiguration semantics for one node.
//!
//! Invalid BGPPeers (both `node` and `nodeSelector`, an unparsable selector or peerIP, peerIP without
//! asNumber) contribute no session here; validation reports them on the object itself.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::api::bgp::{BGPConfiguration, BGPConfigurationSpec, BGPPeer, ReversePeering};
use crate::api::node::Node;
use crate::api::nodestate::{BGPPeerTarget, NodeBGPState, PeerType, PrefixCommunities};
use crate::selector::Selector;
use crate::values::{GoDuration, PeerAddress};

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
    /// Bare address (the prefix length is dropped).
    ip: Ipv4Addr,
    as_number: u32,
    rr_cluster_id: Option<&'a str>,
}

fn config<'a>(configs: &'a [BGPConfiguration], name: &str) -> Option<&'a BGPConfiguration> {
    configs
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
}

/// `spec.bgp.ipv4Address` (`198.19.0.2/20`) as an address with its prefix; a bare address counts
/// as a /32. The one parser of that field.
pub fn node_ipv4_net(node: &Node) -> Option<Ipv4Net> {
    let addr = node.spec.bgp.as_ref()?.ipv4_address.as_deref()?.trim();
    addr.parse::<Ipv4Net>()
        .ok()
        .or_else(|| addr.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
}

fn node_ipv4(node: &Node) -> Option<Ipv4Addr> {
    node_ipv4_net(node).map(|n| n.addr())
}

/// Calico's Go templates compare addresses as strings (`gt $onode_ip $node_ip`), so 198.19.0.10
/// sorts before 198.19.0.9; both ends agree either way.
fn greater_as_string(a: IpAddr, b: Ipv4Addr) -> bool {
    a.to_string() > b.to_string()
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

/// A v4 `peerIP` (`a.b.c.d` or `a.b.c.d:port`); IPv6 peers are skipped (IPv4-only BGP for now).
fn peer_ipv4(s: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    match PeerAddress::parse(s).ok()? {
        PeerAddress {
            ip: IpAddr::V4(ip),
            port,
        } => Some((ip, port)),
        _ => None,
    }
}

/// Seconds of a duration field, rounded as Calico rounds them; an unparsable value gives None
/// (validation reports it on the object).
fn seconds(d: Option<&str>) -> Option<u32> {
    d.and_then(|d| GoDuration::parse(d).ok())
        .map(GoDuration::rounded_seconds)
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

/// A session from `me` to `ip` with the settings Calico copies from its BGPPeer.
#[allow(clippy::too_many_arguments)]
fn session_from(
    peer: &BGPPeer,
    me: &PeerNode,
    peer_type: PeerType,
    origin: Origin,
    ip: Ipv4Addr,
    port: Option<u16>,
    as_number: u32,
    remote: Option<&PeerNode>,
) -> BGPPeerTarget {
    let spec = &peer.spec;
    let local_as = spec.local_as_number.unwrap_or(me.as_number);
    let ebgp = as_number != local_as;
    let direct = origin == Origin::PeerIP;
    let keep = direct
        && (spec.keep_original_next_hop
            || spec.next_hop_mode == Some(crate::api::bgp::NextHopMode::Keep));
    let ip = IpAddr::V4(ip);
    BGPPeerTarget {
        name: protocol_name(peer_type, &ip, port),
        source: peer.metadata.name.clone().unwrap_or_default(),
        // Only a global session to another Calico node is made one-way (confd's template has no
        // `passive` on Node_ sessions: both ends dial).
        passive: peer_type == PeerType::Global && remote.is_some() && greater_as_string(ip, me.ip),
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
    let port_of = |ip: Ipv4Addr, as_number: u32| {
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
                let (Some((ip, port)), Some(as_number)) = (peer_ipv4(peer_ip), spec.as_number)
                else {
                    continue;
                };
                let remote = nodes
                    .iter()
                    .find(|n| n.ip == ip && n.as_number == as_number);
                let port = port
                    .or_else(|| port_of(ip, as_number))
                    .and_then(non_default);
                if locals.includes(me) && ip != me.ip {
                    let s = session_from(
                        peer,
                        me,
                        locals.peer_type(),
                        Origin::PeerIP,
                        ip,
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
                            Origin::Derived,
                            local.ip,
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
                let session_to = |remote: &PeerNode, peer_type: PeerType| {
                    let port = non_default(listen_port(inputs.configs, remote.name));
                    session_from(
                        peer,
                        me,
                        peer_type,
                        Origin::Derived,
                        remote.ip,
                        port,
                        remote.as_number,
                        Some(remote),
                    )
                };
                if locals.includes(me) {
                    // With neither node nor nodeSelector the BGPPeer is global: `Global_` sessions.
                    for remote in nodes
                        .iter()
                        .filter(|n| n.name != me.name && sel.matches(n.labels))
                    {
                        let s = session_to(remote, locals.peer_type());
                        forward.entry(s.name.clone()).or_insert(s);
                    }
                }
                // Each selected node peers back with every local node of this BGPPeer.
                if sel.matches(me.labels) {
                    for local in nodes
                        .iter()
                        .filter(|n| n.name != me.name && locals.includes(n))
                    {
                        let s = session_to(local, PeerType::NodeSpecific);
                        reverse.entry(s.name.clone()).or_insert(s);
                    }
                }
            }
            _ => continue,
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

    let me_node = inputs
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))?;
    Some(NodeBGPState {
        as_number: me.as_number,
        ipv4_address: me.ip,
        ipv4_network: node_ipv4_net(me_node).map(|n| n.trunc()),
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
    if !me.mesh {
        return Vec::new();
    }
    let mut out: Vec<BGPPeerTarget> = nodes
        .iter()
        .filter_map(|n| {
            let bgp = n.spec.bgp.as_ref()?;
            let ip = node_ipv4(n)?;
            let rr = bgp
                .route_reflector_cluster_id
                .as_deref()
                .is_some_and(|c| !c.is_empty());
            if ip == me.ipv4_address || rr {
                return None;
            }
            let listen = n
                .status
                .as_ref()
                .and_then(|s| s.bgp_listen_port)
                .unwrap_or(DEFAULT_LISTEN_PORT);
            let ip = IpAddr::V4(ip);
            Some(BGPPeerTarget {
                name: protocol_name(PeerType::NodeMesh, &ip, None),
                source: n.metadata.name.clone().unwrap_or_default(),
                // Unidirectional: the node with the greater address (as a string) dials.
                passive: greater_as_string(ip, me.ipv4_address),
                peer_ip: ip,
                port: non_default(listen),
                as_number: bgp.as_number.unwrap_or(me.default_as_number),
                peer_type: PeerType::NodeMesh,
                password: me.node_mesh_password.clone(),
                restart_seconds: me.node_mesh_restart_seconds,
                ..BGPPeerTarget::default()
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}
