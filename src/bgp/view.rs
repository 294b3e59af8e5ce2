//! What peer expansion reads, parsed once: Calico Nodes reduced to their BGP facts, BGPPeers with
//! their selectors and address parsed, and a [`BgpView`] over them. The cluster index keeps these
//! up to date incrementally; [`SliceView`] builds them from plain object lists (tests, `ocelotctl`).
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::api::bgp::{BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec};
use crate::api::node::Node;
use crate::api::nodestate::PeerType;
use crate::selector::Selector;
use crate::values::PeerAddress;

/// BIRD's BGP port when no BGPConfiguration sets `listenPort`.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// `spec.bgp.ipv4Address` (`198.19.0.2/20`) as an address with its prefix; a bare address counts
/// as a /32. The one parser of that field.
pub fn node_ipv4_net(node: &Node) -> Option<Ipv4Net> {
    let addr = node.spec.bgp.as_ref()?.ipv4_address.as_deref()?.trim();
    addr.parse::<Ipv4Net>()
        .ok()
        .or_else(|| addr.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
}

/// A Calico Node reduced to what peering needs. Only nodes with an IPv4 BGP address run BGP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpNode {
    /// Node name.
    pub name: String,
    /// Its labels (for nodeSelector and peerSelector).
    pub labels: BTreeMap<String, String>,
    /// `spec.bgp.ipv4Address` with its prefix (the address is the router ID).
    pub net: Ipv4Net,
    /// Its own AS, when set.
    pub as_number: Option<u32>,
    /// Its route reflector cluster ID, when it is a reflector.
    pub rr_cluster_id: Option<String>,
    /// The port its BIRD listens on, as published in its Calico Node status.
    pub listen_port: Option<u16>,
}

impl BgpNode {
    /// None when the node has no IPv4 BGP address (it runs no BGP).
    pub fn from_node(node: &Node) -> Option<BgpNode> {
        let bgp = node.spec.bgp.as_ref()?;
        Some(BgpNode {
            name: node.metadata.name.clone()?,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            net: node_ipv4_net(node)?,
            as_number: bgp.as_number,
            rr_cluster_id: bgp
                .route_reflector_cluster_id
                .clone()
                .filter(|c| !c.is_empty()),
            listen_port: node.status.as_ref().and_then(|s| s.bgp_listen_port),
        })
    }

    /// The router ID / peering address.
    pub fn ip(&self) -> Ipv4Addr {
        self.net.addr()
    }

    /// Its AS with the cluster's as default.
    pub fn as_or(&self, default_as: u32) -> u32 {
        self.as_number.unwrap_or(default_as)
    }
}

/// Which local nodes a BGPPeer applies to.
#[derive(Clone, Debug)]
pub enum LocalNodes {
    /// Neither node nor nodeSelector: a global peer.
    All,
    /// `node`.
    Named(String),
    /// `nodeSelector`.
    Selected(Selector),
}

impl LocalNodes {
    /// Whether `node` is one of them.
    pub fn includes(&self, node: &BgpNode) -> bool {
        match self {
            LocalNodes::All => true,
            LocalNodes::Named(n) => *n == node.name,
            LocalNodes::Selected(s) => s.matches(&node.labels),
        }
    }

    /// The session type of forward sessions: `Global_` for a global peer, else `Node_`.
    pub fn peer_type(&self) -> PeerType {
        match self {
            LocalNodes::All => PeerType::Global,
            _ => PeerType::NodeSpecific,
        }
    }
}

/// Whom a BGPPeer peers with.
#[derive(Clone, Debug)]
pub enum Remote {
    /// `peerIP` (IPv4) and `asNumber`.
    Address {
        /// The peer's address.
        ip: Ipv4Addr,
        /// The port given in peerIP.
        port: Option<u16>,
        /// The remote AS.
        as_number: u32,
    },
    /// `peerSelector`: the Calico nodes it selects, each with its own AS.
    Selected(Selector),
}

/// A BGPPeer parsed once. `usable` is None for a peer that contributes no session (both node and
/// nodeSelector, an unparsable selector or peerIP, peerIP without asNumber, an IPv6 peer):
/// validation reports such objects; expansion skips them.
#[derive(Clone, Debug)]
pub struct ParsedPeer {
    /// metadata.name.
    pub name: String,
    /// The spec, for the options sessions copy.
    pub spec: BGPPeerSpec,
    /// Local nodes and remote, when usable.
    pub usable: Option<(LocalNodes, Remote)>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ParsedPeer {
    /// Parses a BGPPeer's selectors and address.
    pub fn parse(peer: &BGPPeer) -> ParsedPeer {
        let spec = &peer.spec;
        let locals = match (non_empty(&spec.node), non_empty(&spec.node_selector)) {
            (Some(_), Some(_)) => None,
            (Some(n), None) => Some(LocalNodes::Named(n.to_string())),
            (None, Some(s)) => Selector::parse(s).ok().map(LocalNodes::Selected),
            (None, None) => Some(LocalNodes::All),
        };
        let remote = match (non_empty(&spec.peer_ip), non_empty(&spec.peer_selector)) {
            (Some(ip), None) => match (PeerAddress::parse(ip), spec.as_number) {
                (
                    Ok(PeerAddress {
                        ip: IpAddr::V4(ip),
                        port,
                    }),
                    Some(as_number),
                ) => Some(Remote::Address {
                    ip,
                    port,
                    as_number,
                }),
                _ => None,
            },
            (None, Some(sel)) if spec.as_number.is_none() => {
                Selector::parse(sel).ok().map(Remote::Selected)
            }
            _ => None,
        };
        ParsedPeer {
            name: peer.metadata.name.clone().unwrap_or_default(),
            spec: spec.clone(),
            usable: locals.zip(remote),
        }
    }
}

/// Read access to everything expansion needs. Implementations return nodes and peers in name order.
pub trait BgpView {
    /// The BGPConfiguration `default` or `node.<name>`.
    fn config(&self, name: &str) -> Option<&BGPConfigurationSpec>;
    /// Every BGPPeer, in name order.
    fn peers(&self) -> impl Iterator<Item = &ParsedPeer>;
    /// The BGP node of that name.
    fn node(&self, name: &str) -> Option<&BgpNode>;
    /// Every BGP node, in name order.
    fn nodes(&self) -> impl Iterator<Item = &BgpNode>;
    /// The BGP nodes with this address (normally one).
    fn nodes_at(&self, ip: Ipv4Addr) -> impl Iterator<Item = &BgpNode>;
    /// The nodes a peer's `peerSelector` selects (none for a peerIP peer). Implementations may
    /// cache this per peer.
    fn selected_by<'a>(&'a self, peer: &'a ParsedPeer) -> impl Iterator<Item = &'a BgpNode> {
        let sel = match &peer.usable {
            Some((_, Remote::Selected(sel))) => Some(sel),
            _ => None,
        };
        self.nodes()
            .filter(move |n| sel.is_some_and(|s| s.matches(&n.labels)))
    }
    /// The local nodes of a peer. Implementations may cache this per peer.
    fn locals_of<'a>(&'a self, peer: &'a ParsedPeer) -> impl Iterator<Item = &'a BgpNode> {
        let locals = peer.usable.as_ref().map(|(l, _)| l);
        self.nodes()
            .filter(move |n| locals.is_some_and(|l| l.includes(n)))
    }

    /// The listen port of a node: `node.<name>`, else `default`, else 179.
    fn listen_port(&self, node: &str) -> u16 {
        self.config(&format!("node.{node}"))
            .and_then(|c| c.listen_port)
            .or_else(|| self.config("default").and_then(|c| c.listen_port))
            .unwrap_or(DEFAULT_LISTEN_PORT)
    }
}

/// A [`BgpView`] built from object lists: O(N log N) to build, for callers that expand a few
/// nodes once. The operator keeps a [`crate::index::ClusterIndex`] instead.
pub struct SliceView {
    configs: BTreeMap<String, BGPConfigurationSpec>,
    peers: Vec<ParsedPeer>,
    nodes: BTreeMap<String, BgpNode>,
}

impl SliceView {
    /// Parses every object once.
    pub fn new(configs: &[BGPConfiguration], peers: &[BGPPeer], nodes: &[Node]) -> SliceView {
        let mut peers: Vec<ParsedPeer> = peers.iter().map(ParsedPeer::parse).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        SliceView {
            configs: configs
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, c.spec.clone())))
                .collect(),
            peers,
            nodes: nodes
                .iter()
                .filter_map(BgpNode::from_node)
                .map(|n| (n.name.clone(), n))
                .collect(),
        }
    }
}

impl BgpView for SliceView {
    fn config(&self, name: &str) -> Option<&BGPConfigurationSpec> {
        self.configs.get(name)
    }
    fn peers(&self) -> impl Iterator<Item = &ParsedPeer> {
        self.peers.iter()
    }
    fn node(&self, name: &str) -> Option<&BgpNode> {
        self.nodes.get(name)
    }
    fn nodes(&self) -> impl Iterator<Item = &BgpNode> {
        self.nodes.values()
    }
    fn nodes_at(&self, ip: Ipv4Addr) -> impl Iterator<Item = &BgpNode> {
        self.nodes.values().filter(move |n| n.ip() == ip)
    }
}
