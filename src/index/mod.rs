//! The cluster index: every object the operator decides from, parsed once and updated one object
//! at a time, and the one composer of a node's desired state, [`ClusterIndex::node_state`].
//!
//! Each `upsert_*`/`delete_*` returns the nodes whose desired state the change can alter
//! ([`Affected`]), computed from the object before and after, so the operator recomputes only
//! those: one BGPPeer edit touches the nodes its selectors match, not the cluster. Composing one
//! node costs O(pools + peers + its sessions): the peerSelector and nodeSelector matches are
//! cached per peer and kept current as nodes change.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::api::bgp::{BGPConfigurationSpec, BGPPeer};
use crate::api::felix::FelixConfigurationSpec;
use crate::api::ipam::BlockAffinity;
use crate::api::ippool::{EncapMode, IPPool};
use crate::api::node::Node;
use crate::api::nodestate::{
    DataplaneSettings, NodeBlock, NodeNetworkStateSpec, PoolEncapsulation,
};
use crate::bgp::node_bgp_state_in;
use crate::bgp::view::{BgpNode, BgpView, LocalNodes, ParsedPeer, Remote};
use crate::desired::{dataplane_settings, merge_felix, spec_hash};

#[cfg(test)]
mod tests;

/// Which nodes a change can alter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Affected {
    /// Every node (a cluster-wide setting changed).
    All,
    /// These nodes only (possibly none).
    Nodes(BTreeSet<String>),
}

impl Affected {
    fn none() -> Affected {
        Affected::Nodes(BTreeSet::new())
    }

    fn one(node: &str) -> Affected {
        Affected::Nodes([node.to_string()].into())
    }

    /// Whether `node` is affected.
    pub fn contains(&self, node: &str) -> bool {
        match self {
            Affected::All => true,
            Affected::Nodes(n) => n.contains(node),
        }
    }
}

/// A pool as the composer needs it.
#[derive(Clone, Debug)]
struct PoolEntry {
    cidr: Option<IpNet>,
    nat_outgoing: bool,
    ipip_mode: EncapMode,
    vxlan_mode: EncapMode,
}

/// A peer's cached matches: its local nodes and, for peerSelector peers, the selected nodes.
#[derive(Clone, Debug, Default)]
struct PeerMatches {
    locals: BTreeSet<String>,
    selected: BTreeSet<String>,
}

/// Everything the operator decides from, parsed once.
#[derive(Default)]
pub struct ClusterIndex {
    pools: BTreeMap<String, PoolEntry>,
    nodes: BTreeMap<String, BgpNode>,
    /// Node names that exist (Kubernetes or Calico Node), with or without BGP.
    known: BTreeSet<String>,
    by_ip: HashMap<Ipv4Addr, BTreeSet<String>>,
    peers: BTreeMap<String, ParsedPeer>,
    matches: HashMap<String, PeerMatches>,
    bgp_configs: BTreeMap<String, BGPConfigurationSpec>,
    felix: BTreeMap<String, FelixConfigurationSpec>,
    /// Dataplane settings from `default` alone: most nodes have no `node.<name>` object.
    default_dataplane: DataplaneSettings,
    /// Confirmed block affinities per node: (pool, block CIDR).
    blocks: BTreeMap<String, BTreeSet<(String, String)>>,
    /// BlockAffinity name → (node, pool, cidr), to undo on delete.
    affinities: HashMap<String, (String, String, String)>,
    /// WireGuard interface addresses given to nodes.
    wireguard: BTreeMap<String, Ipv4Addr>,
    /// VXLAN tunnel addresses given to nodes.
    vxlan: BTreeMap<String, Ipv4Addr>,
}

impl ClusterIndex {
    /// An empty index.
    pub fn new() -> ClusterIndex {
        ClusterIndex {
            default_dataplane: dataplane_settings(&FelixConfigurationSpec::default()),
            ..Default::default()
        }
    }

    /// Number of nodes known.
    pub fn node_count(&self) -> usize {
        self.known.len()
    }

    /// Node names, in order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.known.iter().map(String::as_str)
    }

    // ---- pools -------------------------------------------------------------------------------

    /// Adds or replaces an IPPool. Pools appear in every node's spec (NAT and pool lists).
    pub fn upsert_pool(&mut self, pool: &IPPool) -> Affected {
        let Some(name) = pool.metadata.name.clone() else {
            return Affected::none();
        };
        let entry = PoolEntry {
            cidr: pool.spec.cidr.parse::<IpNet>().ok().map(|n| n.trunc()),
            nat_outgoing: pool.spec.nat_outgoing,
            ipip_mode: pool.spec.ipip_mode.unwrap_or_default(),
            vxlan_mode: pool.spec.vxlan_mode.unwrap_or_default(),
        };
        self.pools.insert(name, entry);
        Affected::All
    }

    /// Removes an IPPool.
    pub fn delete_pool(&mut self, name: &str) -> Affected {
        if self.pools.remove(name).is_some() {
            Affected::All
        } else {
            Affected::none()
        }
    }

    /// The pool a block belongs to: the pool whose CIDR contains it.
    fn pool_of(&self, cidr: &str) -> Option<String> {
        let net: IpNet = cidr.parse().ok()?;
        self.pools
            .iter()
            .find(|(_, p)| p.cidr.is_some_and(|c| c.contains(&net)))
            .map(|(n, _)| n.clone())
    }

    // ---- nodes -------------------------------------------------------------------------------

    /// Adds or replaces a Calico Node.
    pub fn upsert_node(&mut self, node: &Node) -> Affected {
        let Some(name) = node.metadata.name.clone() else {
            return Affected::none();
        };
        self.known.insert(name.clone());
        let new = BgpNode::from_node(node);
        let old = self.nodes.get(&name).cloned();
        if old == new {
            return Affected::one(&name);
        }
        let mut affected = BTreeSet::from([name.clone()]);
        for n in [&old, &new].into_iter().flatten() {
            self.collect_peering_nodes(n, &mut affected);
        }
        if let Some(o) = &old {
            self.unindex_node(o);
        }
        if let Some(n) = &new {
            self.index_node(n.clone());
        }
        for n in [&old, &new].into_iter().flatten() {
            self.collect_peering_nodes(n, &mut affected);
        }
        Affected::Nodes(affected)
    }

    /// Removes a node (its BGP data, blocks and WireGuard address).
    pub fn delete_node(&mut self, name: &str) -> Affected {
        self.known.remove(name);
        self.blocks.remove(name);
        self.wireguard.remove(name);
        // The node itself is affected too: its state is gone (the operator deletes its object).
        let mut affected = BTreeSet::from([name.to_string()]);
        if let Some(old) = self.nodes.get(name).cloned() {
            self.collect_peering_nodes(&old, &mut affected);
            self.unindex_node(&old);
        }
        Affected::Nodes(affected)
    }

    fn index_node(&mut self, n: BgpNode) {
        self.by_ip.entry(n.ip()).or_default().insert(n.name.clone());
        for (peer, m) in self.matches.iter_mut() {
            let Some((locals, remote)) = self.peers.get(peer).and_then(|p| p.usable.as_ref())
            else {
                continue;
            };
            if locals.includes(&n) {
                m.locals.insert(n.name.clone());
            }
            if let Remote::Selected(sel) = remote
                && sel.matches(&n.labels)
            {
                m.selected.insert(n.name.clone());
            }
        }
        self.nodes.insert(n.name.clone(), n);
    }

    fn unindex_node(&mut self, n: &BgpNode) {
        if let Some(set) = self.by_ip.get_mut(&n.ip()) {
            set.remove(&n.name);
            if set.is_empty() {
                self.by_ip.remove(&n.ip());
            }
        }
        for m in self.matches.values_mut() {
            m.locals.remove(&n.name);
            m.selected.remove(&n.name);
        }
        self.nodes.remove(&n.name);
    }

    /// Nodes whose sessions mention `n`: for each peer where `n` is a remote (selected, or at the
    /// peerIP) its local nodes; for each peer where `n` is local, its remote nodes.
    fn collect_peering_nodes(&self, n: &BgpNode, out: &mut BTreeSet<String>) {
        for (name, peer) in &self.peers {
            let Some((locals, remote)) = &peer.usable else {
                continue;
            };
            let m = &self.matches[name];
            let is_remote = match remote {
                Remote::Selected(sel) => sel.matches(&n.labels),
                Remote::Address { ip, .. } => *ip == n.ip(),
            };
            if is_remote {
                out.extend(m.locals.iter().cloned());
            }
            if locals.includes(n) {
                match remote {
                    Remote::Selected(_) => out.extend(m.selected.iter().cloned()),
                    Remote::Address { ip, .. } => {
                        out.extend(self.by_ip.get(ip).into_iter().flatten().cloned())
                    }
                }
            }
        }
    }

    // ---- BGP peers and configuration ---------------------------------------------------------

    fn peer_matches(&self, peer: &ParsedPeer) -> PeerMatches {
        let Some((locals, remote)) = &peer.usable else {
            return PeerMatches::default();
        };
        let selected = match remote {
            Remote::Selected(sel) => self
                .nodes
                .values()
                .filter(|n| sel.matches(&n.labels))
                .map(|n| n.name.clone())
                .collect(),
            Remote::Address { .. } => BTreeSet::new(),
        };
        PeerMatches {
            locals: self
                .nodes
                .values()
                .filter(|n| locals.includes(n))
                .map(|n| n.name.clone())
                .collect(),
            selected,
        }
    }

    /// The nodes one peer's sessions touch: its locals and its remote side.
    fn peer_nodes(&self, peer: &ParsedPeer, m: &PeerMatches) -> Affected {
        let Some((locals, remote)) = &peer.usable else {
            return Affected::none();
        };
        if matches!(locals, LocalNodes::All) {
            return Affected::All;
        }
        let mut out = m.locals.clone();
        match remote {
            Remote::Selected(_) => out.extend(m.selected.iter().cloned()),
            Remote::Address { ip, .. } => {
                out.extend(self.by_ip.get(ip).into_iter().flatten().cloned())
            }
        }
        Affected::Nodes(out)
    }

    /// Adds or replaces a BGPPeer; affected are the nodes its sessions touched before or touch now.
    pub fn upsert_peer(&mut self, peer: &BGPPeer) -> Affected {
        let parsed = ParsedPeer::parse(peer);
        let before = self.delete_peer(&parsed.name);
        let m = self.peer_matches(&parsed);
        let after = self.peer_nodes(&parsed, &m);
        self.matches.insert(parsed.name.clone(), m);
        self.peers.insert(parsed.name.clone(), parsed);
        union(before, after)
    }

    /// Removes a BGPPeer.
    pub fn delete_peer(&mut self, name: &str) -> Affected {
        let Some(old) = self.peers.remove(name) else {
            return Affected::none();
        };
        let m = self.matches.remove(name).unwrap_or_default();
        self.peer_nodes(&old, &m)
    }

    /// Adds or replaces a BGPConfiguration (`default` or `node.<name>`).
    pub fn upsert_bgp_config(&mut self, name: &str, spec: &BGPConfigurationSpec) -> Affected {
        let old = self.bgp_configs.insert(name.to_string(), spec.clone());
        config_affected(name, old.as_ref(), Some(spec))
    }

    /// Removes a BGPConfiguration.
    pub fn delete_bgp_config(&mut self, name: &str) -> Affected {
        let old = self.bgp_configs.remove(name);
        config_affected(name, old.as_ref(), None)
    }

    // ---- FelixConfiguration ------------------------------------------------------------------

    /// Adds or replaces a FelixConfiguration (`default` or `node.<name>`).
    pub fn upsert_felix(&mut self, name: &str, spec: &FelixConfigurationSpec) -> Affected {
        self.felix.insert(name.to_string(), spec.clone());
        self.felix_changed(name)
    }

    /// Removes a FelixConfiguration.
    pub fn delete_felix(&mut self, name: &str) -> Affected {
        self.felix.remove(name);
        self.felix_changed(name)
    }

    fn felix_changed(&mut self, name: &str) -> Affected {
        if name == "default" {
            self.default_dataplane =
                dataplane_settings(&merge_felix(self.felix.get("default"), None));
            return Affected::All;
        }
        match name.strip_prefix("node.") {
            Some(node) => Affected::one(node),
            None => Affected::none(),
        }
    }

    /// The node's merged dataplane settings.
    pub fn dataplane(&self, node: &str) -> DataplaneSettings {
        match self.felix.get(&format!("node.{node}")) {
            Some(own) => dataplane_settings(&merge_felix(self.felix.get("default"), Some(own))),
            None => self.default_dataplane.clone(),
        }
    }

    // ---- IPAM ----------------------------------------------------------------------------------

    /// Adds or replaces a BlockAffinity; only confirmed, undeleted affinities give a node a block.
    pub fn upsert_affinity(&mut self, aff: &BlockAffinity) -> Affected {
        let Some(name) = aff.metadata.name.clone() else {
            return Affected::none();
        };
        let mut affected = self.delete_affinity(&name);
        let s = &aff.spec;
        let confirmed = s.state == crate::api::ipam::AffinityState::Confirmed && !s.deleted;
        if confirmed && let Some(pool) = self.pool_of(&s.cidr) {
            self.blocks
                .entry(s.node.clone())
                .or_default()
                .insert((pool.clone(), s.cidr.clone()));
            self.affinities
                .insert(name, (s.node.clone(), pool, s.cidr.clone()));
            affected = union(affected, Affected::one(&s.node));
        }
        affected
    }

    /// Removes a BlockAffinity.
    pub fn delete_affinity(&mut self, name: &str) -> Affected {
        let Some((node, pool, cidr)) = self.affinities.remove(name) else {
            return Affected::none();
        };
        if let Some(set) = self.blocks.get_mut(&node) {
            set.remove(&(pool, cidr));
        }
        Affected::one(&node)
    }

    /// Sets or clears the WireGuard interface address the operator gave `node`.
    pub fn set_wireguard_address(&mut self, node: &str, addr: Option<Ipv4Addr>) -> Affected {
        let changed = match addr {
            Some(a) => self.wireguard.insert(node.to_string(), a) != Some(a),
            None => self.wireguard.remove(node).is_some(),
        };
        if changed {
            Affected::one(node)
        } else {
            Affected::none()
        }
    }

    /// Sets or clears the VXLAN tunnel address the operator gave `node`.
    pub fn set_vxlan_address(&mut self, node: &str, addr: Option<Ipv4Addr>) -> Affected {
        let changed = match addr {
            Some(a) => self.vxlan.insert(node.to_string(), a) != Some(a),
            None => self.vxlan.remove(node).is_some(),
        };
        if changed {
            Affected::one(node)
        } else {
            Affected::none()
        }
    }

    // ---- the composer --------------------------------------------------------------------------

    /// The desired state of one node, with its content hash; None for an unknown node.
    pub fn node_state(&self, node: &str) -> Option<NodeNetworkStateSpec> {
        if !self.known.contains(node) {
            return None;
        }
        let dataplane = self.dataplane(node);
        let mut all_pools = Vec::new();
        let mut nat_outgoing_pools = Vec::new();
        let mut encapsulated_pools = Vec::new();
        for p in self.pools.values() {
            let Some(cidr) = p.cidr else { continue };
            all_pools.push(cidr.to_string());
            if (p.ipip_mode, p.vxlan_mode) != (EncapMode::Never, EncapMode::Never) {
                encapsulated_pools.push(PoolEncapsulation {
                    cidr: cidr.to_string(),
                    ipip_mode: p.ipip_mode,
                    vxlan_mode: p.vxlan_mode,
                });
            }
            // Felix is not told about `disabled`: a disabled pool's pods keep their NAT.
            if p.nat_outgoing {
                nat_outgoing_pools.push(cidr.to_string());
            }
        }
        all_pools.sort();
        nat_outgoing_pools.sort();
        encapsulated_pools.sort_by(|a, b| a.cidr.cmp(&b.cidr));
        let blocks = self
            .blocks
            .get(node)
            .into_iter()
            .flatten()
            .map(|(pool, cidr)| NodeBlock {
                pool: pool.clone(),
                cidr: cidr.clone(),
            })
            .collect();
        let wireguard_interface_ipv4_address = dataplane
            .wireguard_enabled
            .then(|| self.wireguard.get(node).map(Ipv4Addr::to_string))
            .flatten();
        let mut spec = NodeNetworkStateSpec {
            node: node.to_string(),
            blocks,
            bgp: node_bgp_state_in(self, node),
            dataplane,
            wireguard_interface_ipv4_address,
            ipv4_vxlan_tunnel_addr: self.vxlan.get(node).map(Ipv4Addr::to_string),
            encapsulated_pools,
            nat_outgoing_pools,
            all_pools,
            hash: String::new(),
        };
        spec.hash = spec_hash(&spec);
        Some(spec)
    }
}

fn union(a: Affected, b: Affected) -> Affected {
    match (a, b) {
        (Affected::Nodes(mut x), Affected::Nodes(y)) => {
            x.extend(y);
            Affected::Nodes(x)
        }
        _ => Affected::All,
    }
}

/// `default` reaches every node; `node.<name>` reaches that node, and every node when its listen
/// port changed (peers dial it).
fn config_affected(
    name: &str,
    old: Option<&BGPConfigurationSpec>,
    new: Option<&BGPConfigurationSpec>,
) -> Affected {
    let Some(node) = name.strip_prefix("node.") else {
        return if name == "default" {
            Affected::All
        } else {
            Affected::none()
        };
    };
    if old.and_then(|c| c.listen_port) != new.and_then(|c| c.listen_port) {
        Affected::All
    } else {
        Affected::one(node)
    }
}

impl BgpView for ClusterIndex {
    fn config(&self, name: &str) -> Option<&BGPConfigurationSpec> {
        self.bgp_configs.get(name)
    }
    fn peers(&self) -> impl Iterator<Item = &ParsedPeer> {
        self.peers.values()
    }
    fn node(&self, name: &str) -> Option<&BgpNode> {
        self.nodes.get(name)
    }
    fn nodes(&self) -> impl Iterator<Item = &BgpNode> {
        self.nodes.values()
    }
    fn nodes_at(&self, ip: Ipv4Addr) -> impl Iterator<Item = &BgpNode> {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flatten()
            .filter_map(|n| self.nodes.get(n))
    }
    fn selected_by<'a>(&'a self, peer: &'a ParsedPeer) -> impl Iterator<Item = &'a BgpNode> {
        self.matches
            .get(&peer.name)
            .into_iter()
            .flat_map(|m| m.selected.iter())
            .filter_map(|n| self.nodes.get(n))
    }
    fn locals_of<'a>(&'a self, peer: &'a ParsedPeer) -> impl Iterator<Item = &'a BgpNode> {
        self.matches
            .get(&peer.name)
            .into_iter()
            .flat_map(|m| m.locals.iter())
            .filter_map(|n| self.nodes.get(n))
    }
}
