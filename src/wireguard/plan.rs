//! The WireGuard dataplane of one node: peers, the routing table that steers pod traffic into
//! `wireguard.cali`, and the rule that selects that table. Computed from the node's dataplane
//! settings and the Calico Nodes (and their blocks) the agent watches.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;

use super::keys::{KeyError, PublicKey};
use crate::api::Node;
use crate::api::nodestate::DataplaneSettings;
use crate::desired::felix::DEFAULTS;
use crate::routes::{Route, RouteKind};

/// What the plan needs from one Calico Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireguardNode {
    /// Node name.
    pub name: String,
    /// `spec.bgp.ipv4Address` without its prefix length: the peer's endpoint address.
    pub ipv4_address: Option<Ipv4Addr>,
    /// `status.wireguardPublicKey`, as published.
    pub public_key: Option<String>,
    /// `spec.wireguard.interfaceIPv4Address`.
    pub interface_ipv4_address: Option<Ipv4Addr>,
}

impl WireguardNode {
    /// Extracts the WireGuard-relevant fields; None for a node without a name. Unparsable addresses
    /// count as absent (single-object validation reports them).
    pub fn from_calico_node(node: &Node) -> Option<Self> {
        let ip = |s: &str| s.split('/').next()?.trim().parse::<Ipv4Addr>().ok();
        Some(WireguardNode {
            name: node.metadata.name.clone()?,
            ipv4_address: node
                .spec
                .bgp
                .as_ref()
                .and_then(|b| b.ipv4_address.as_deref())
                .and_then(ip),
            public_key: node
                .status
                .as_ref()
                .and_then(|s| s.wireguard_public_key.clone())
                .filter(|k| !k.is_empty()),
            interface_ipv4_address: node
                .spec
                .wireguard
                .as_ref()
                .and_then(|w| w.interface_ipv4_address.as_deref())
                .and_then(ip),
        })
    }
}

/// The blocks a Calico Node publishes (`status.podCIDRs`), for [`plan_wireguard`]'s `blocks`;
/// unparsable entries are skipped (the operator writes them).
pub fn published_blocks(node: &Node) -> Vec<Ipv4Net> {
    node.status
        .as_ref()
        .map(|s| s.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_default()
}

/// The IPv4 addresses a Calico Node publishes as borrowed (`status.borrowedAddresses`), for
/// [`plan_wireguard`]'s `borrowed`; other entries are skipped (the operator writes them).
pub fn published_borrowed(node: &Node) -> Vec<Ipv4Addr> {
    node.status
        .as_ref()
        .map(|s| {
            s.borrowed_addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One WireGuard peer of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's node name (for logs and status; WireGuard itself knows only the key).
    pub node: String,
    /// The peer's public key.
    pub public_key: PublicKey,
    /// `<peer node IP>:<our own listening port>`: Calico assumes every node listens on the same port.
    pub endpoint: SocketAddrV4,
    /// The peer's blocks, its WireGuard interface address (as /32 unless a block covers it) and
    /// the /32s of addresses its workloads borrowed from other nodes' blocks.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Persistent keepalive in seconds; None when off.
    pub persistent_keepalive: Option<u16>,
}

/// What a route in the WireGuard table does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteAction {
    /// `dev <wireguard interface>`: encrypt to the peer that owns the destination.
    Dev,
    /// `throw`: leave the table, so the main table routes the packet unencrypted.
    Throw,
}

/// One route in the WireGuard routing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableRoute {
    /// Destination.
    pub cidr: Ipv4Net,
    /// Where it goes.
    pub action: RouteAction,
}

/// The policy rule that sends traffic to the WireGuard table (Calico: priority 99,
/// `not fwmark <wg mark> lookup <table>`; the mark is the agent's business).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingRule {
    /// Rule priority (`wireguardRoutingRulePriority`).
    pub priority: u32,
    /// Routing table index.
    pub table: u32,
}

/// Why another node is not a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// No `spec.bgp.ipv4Address`, so no endpoint.
    NoEndpoint,
    /// No `status.wireguardPublicKey` yet (WireGuard still starting, or off on that node).
    NoPublicKey,
    /// The published key does not parse.
    InvalidPublicKey(KeyError),
    /// The published key is all zeros.
    ZeroPublicKey,
    /// The same key is published by these other nodes (sorted); none of them is programmed.
    DuplicatePublicKey(Vec<String>),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoEndpoint => f.write_str("no spec.bgp.ipv4Address to use as endpoint"),
            SkipReason::NoPublicKey => f.write_str("no status.wireguardPublicKey published"),
            SkipReason::InvalidPublicKey(e) => write!(f, "status.wireguardPublicKey: {e}"),
            SkipReason::ZeroPublicKey => f.write_str("status.wireguardPublicKey is all zeros"),
            SkipReason::DuplicatePublicKey(others) => write!(
                f,
                "status.wireguardPublicKey is also published by {}",
                others.join(", ")
            ),
        }
    }
}

/// A node that is not a peer, and why. Its blocks get `throw` routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedNode {
    /// Node name.
    pub node: String,
    /// Why.
    pub reason: SkipReason,
}

/// The WireGuard state the agent applies on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireguardPlan {
    /// When true WireGuard is off: delete the device, remove the rule, flush the table (when its
    /// index is > 0) and publish an empty public key. Peers and routes are then empty.
    pub remove_device: bool,
    /// Device name (`wireguardInterfaceName`).
    pub interface_name: String,
    /// UDP port the device listens on, and the port of every peer's endpoint.
    pub listen_port: u16,
    /// The rule to install (or, with `remove_device`, to remove).
    pub rule: RoutingRule,
    /// Peers, by node name.
    pub peers: Vec<Peer>,
    /// Routes of the WireGuard table, by CIDR.
    pub table_routes: Vec<TableRoute>,
    /// Other nodes that are not peers, by node name.
    pub skipped: Vec<SkippedNode>,
}

impl WireguardPlan {
    /// The WireGuard table's routes as kernel routes: `dev <interface> scope link` into the
    /// tunnel, `throw` out of the table. Empty when WireGuard is off.
    pub fn routes(&self) -> Vec<Route> {
        self.table_routes
            .iter()
            .map(|r| {
                let mut route = Route::blackhole(r.cidr);
                route.kind = match r.action {
                    RouteAction::Dev => RouteKind::Link {
                        dev: self.interface_name.clone(),
                    },
                    RouteAction::Throw => RouteKind::Throw,
                };
                route.table = self.rule.table;
                route
            })
            .collect()
    }
}

/// Computes the WireGuard plan of node `me`.
///
/// `nodes` are all Calico Nodes the agent watches (its own included or not; it is ignored),
/// `blocks` maps node names to the CIDRs of the blocks affine to them, and `borrowed` maps node
/// names to the addresses their workloads hold in blocks not affine to them (strictAffinity off;
/// [`crate::ipam::Ipam::borrowed_addresses`]). A node is a peer when it has an endpoint and a
/// valid, non-zero key that no other node (this one included) also publishes. Every other node's
/// blocks get `throw` routes; this node's own blocks never appear.
///
/// Borrowed addresses follow Felix's wireguard.go: a peer's borrowed /32s are in its allowed IPs
/// and routed into the tunnel; an address one of this node's own workloads borrowed gets a `throw`
/// /32, more specific than the owner's block, so it stays local instead of entering the tunnel.
pub fn plan_wireguard(
    me: &str,
    settings: &DataplaneSettings,
    nodes: &[WireguardNode],
    blocks: &BTreeMap<String, Vec<Ipv4Net>>,
    borrowed: &BTreeMap<String, Vec<Ipv4Addr>>,
) -> WireguardPlan {
    let d = &DEFAULTS;
    // Out-of-range values are refused by FelixConfiguration validation; defaults keep the plan total.
    let listen_port = settings
        .wireguard_listening_port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(d.wireguard_listening_port as u16);
    let interface_name = settings
        .wireguard_interface_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| d.wireguard_interface_name.to_string());
    let rule = RoutingRule {
        priority: settings
            .wireguard_routing_rule_priority
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(d.wireguard_routing_rule_priority as u32),
        table: settings
            .wireguard_routing_table
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(1),
    };
    let mut plan = WireguardPlan {
        remove_device: !settings.wireguard_enabled,
        interface_name,
        listen_port,
        rule,
        peers: Vec::new(),
        table_routes: Vec::new(),
        skipped: Vec::new(),
    };
    if plan.remove_device {
        return plan;
    }
    let keepalive = settings
        .wireguard_keep_alive_seconds
        .filter(|s| *s > 0)
        .map(|s| u16::try_from(s).unwrap_or(u16::MAX));

    // One entry per name, sorted, so the output does not depend on watch order.
    let mut by_name: BTreeMap<&str, &WireguardNode> = BTreeMap::new();
    for n in nodes {
        by_name.entry(n.name.as_str()).or_insert(n);
    }

    // Who claims which key, over all nodes including this one: a key claimed twice is unusable for
    // every claimant, since WireGuard could not tell them apart.
    let mut claims: BTreeMap<PublicKey, BTreeSet<&str>> = BTreeMap::new();
    for (name, n) in &by_name {
        if let Some(Ok(k)) = n.public_key.as_deref().map(PublicKey::from_base64) {
            claims.entry(k).or_default().insert(name);
        }
    }

    // Should a remote node list one of this node's blocks (an affinity race), the block still routes
    // locally, never into the tunnel.
    let own: BTreeSet<Ipv4Net> = blocks
        .get(me)
        .into_iter()
        .flatten()
        .map(Ipv4Net::trunc)
        .collect();
    let mut routes: BTreeMap<Ipv4Net, RouteAction> = BTreeMap::new();
    for (&name, n) in &by_name {
        if name == me {
            continue;
        }
        let node_blocks = blocks.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let mut cidrs: Vec<Ipv4Net> = node_blocks
            .iter()
            .map(Ipv4Net::trunc)
            .filter(|c| !own.contains(c))
            .collect();
        let singles = n
            .interface_ipv4_address
            .into_iter()
            .chain(borrowed.get(name).into_iter().flatten().copied());
        for a in singles {
            // An address inside one of the node's blocks is already covered by that block.
            if !cidrs.iter().any(|b| b.contains(&a)) {
                cidrs.push(Ipv4Net::from(a));
            }
        }
        cidrs.sort();
        cidrs.dedup();
        match peer_key(n, &claims) {
            Ok(public_key) => {
                let endpoint_ip = n.ipv4_address.expect("peer_key checked the endpoint");
                for c in &cidrs {
                    routes.insert(*c, RouteAction::Dev);
                }
                plan.peers.push(Peer {
                    node: name.to_string(),
                    public_key,
                    endpoint: SocketAddrV4::new(endpoint_ip, listen_port),
                    allowed_ips: cidrs,
                    persistent_keepalive: keepalive,
                });
            }
            Err(reason) => {
                for c in &cidrs {
                    // Should two nodes ever list one CIDR, encrypting beats falling back.
                    routes.entry(*c).or_insert(RouteAction::Throw);
                }
                plan.skipped.push(SkippedNode {
                    node: name.to_string(),
                    reason,
                });
            }
        }
    }
    // Our own workloads' borrowed addresses: out of the table, whoever owns the block around them.
    for a in borrowed.get(me).into_iter().flatten() {
        if !own.iter().any(|b| b.contains(a)) {
            routes.insert(Ipv4Net::from(*a), RouteAction::Throw);
        }
    }
    plan.table_routes = routes
        .into_iter()
        .map(|(cidr, action)| TableRoute { cidr, action })
        .collect();
    plan
}

fn peer_key(
    n: &WireguardNode,
    claims: &BTreeMap<PublicKey, BTreeSet<&str>>,
) -> Result<PublicKey, SkipReason> {
    let raw = n.public_key.as_deref().ok_or(SkipReason::NoPublicKey)?;
    let key = PublicKey::from_base64(raw).map_err(SkipReason::InvalidPublicKey)?;
    if key.is_zero() {
        return Err(SkipReason::ZeroPublicKey);
    }
    let others: Vec<String> = claims
        .get(&key)
        .into_iter()
        .flatten()
        .filter(|o| **o != n.name)
        .map(|o| o.to_string())
        .collect();
    if !others.is_empty() {
        return Err(SkipReason::DuplicatePublicKey(others));
    }
    if n.ipv4_address.is_none() {
        return Err(SkipReason::NoEndpoint);
    }
    Ok(key)
}
