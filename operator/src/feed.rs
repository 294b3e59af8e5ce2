//! Feeds watch events into the core's [`ClusterIndex`] and collects the nodes they affect. No
//! decisions here: the index decides what a change touches and what each node's state is.
use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;
use ocelot::api::{
    BGPConfiguration, BGPPeer, BlockAffinity, FelixConfiguration, IPPool, Node,
    NodeNetworkStateStatus,
};
use ocelot::control::{PoolVerdict, pool_verdicts};
use ocelot::index::{Affected, ClusterIndex};
use ocelot::ipam::{Ipam, IpamConfig};
use ocelot::rollup::{Rollup, Source, block_facts};

use crate::watch::KubeNode;

use crate::watch::{KINDS, Kind, Msg, Obj};

/// Nodes waiting to be reconciled.
#[derive(Debug, Default)]
pub enum Pending {
    #[default]
    Empty,
    All,
    Nodes(BTreeSet<String>),
}

impl Pending {
    pub fn add(&mut self, a: Affected) {
        match (std::mem::take(self), a) {
            (Pending::All, _) | (_, Affected::All) => *self = Pending::All,
            (Pending::Empty, Affected::Nodes(n)) if n.is_empty() => {}
            (Pending::Empty, Affected::Nodes(n)) => *self = Pending::Nodes(n),
            (Pending::Nodes(mut m), Affected::Nodes(n)) => {
                m.extend(n);
                *self = Pending::Nodes(m);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Pending::Empty)
    }
}

/// The index plus what the operator must remember to feed it correctly.
pub struct Feed {
    pub index: ClusterIndex,
    /// Names currently known per kind, to prune on relist.
    names: BTreeMap<Kind, BTreeSet<String>>,
    /// Names seen since a kind's Init, until its InitDone.
    relisting: BTreeMap<Kind, BTreeSet<String>>,
    /// Kinds that finished their first list.
    synced: BTreeSet<Kind>,
    /// BlockAffinities as last seen: the index drops an affinity whose pool it does not know yet
    /// and a deleted node's blocks, so they are fed again when pools or the node arrive.
    affinities: BTreeMap<String, BlockAffinity>,
    /// Spec hash currently stored in each NodeNetworkState (what the API server holds).
    pub written: BTreeMap<String, String>,
    pub pending: Pending,
    /// The IPAM engine: pools that may be allocated from, and every IPAMBlock as last seen.
    pub ipam: Ipam,
    /// IPPools as last seen, and each one's verdict.
    pub pools: BTreeMap<String, IPPool>,
    pub verdicts: BTreeMap<String, PoolVerdict>,
    /// IPAMBlock name → metadata as last seen: its resourceVersion conditions the next write,
    /// the rest (others' labels, annotations, finalizers) is carried over by it.
    pub block_meta: BTreeMap<String, ObjectMeta>,
    /// Kubernetes Nodes and Calico Nodes as last seen.
    pub kube_nodes: BTreeMap<String, KubeNode>,
    pub calico_nodes: BTreeMap<String, Node>,
    /// What each node's agent reports.
    pub agent_status: BTreeMap<String, NodeNetworkStateStatus>,
    /// Namespace → its annotations (only the pool ones matter).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// NetworkPolicies, as `<namespace>/<name>`.
    pub policies: BTreeSet<String>,
    /// Something changed since the last cluster pass (nodes, blocks, pools, statuses).
    pub control_dirty: bool,
    /// Source objects as last seen, for their status roll-ups.
    pub peers: BTreeMap<String, BGPPeer>,
    pub bgp_configs: BTreeMap<String, BGPConfiguration>,
    pub felix_configs: BTreeMap<String, FelixConfiguration>,
    /// Roll-up counters of node and block status, and the source objects to rewrite.
    pub rollup: Rollup,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            index: ClusterIndex::new(),
            names: BTreeMap::new(),
            relisting: BTreeMap::new(),
            synced: BTreeSet::new(),
            affinities: BTreeMap::new(),
            written: BTreeMap::new(),
            pending: Pending::Empty,
            ipam: Ipam::new(IpamConfig::default()),
            pools: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            block_meta: BTreeMap::new(),
            kube_nodes: BTreeMap::new(),
            calico_nodes: BTreeMap::new(),
            agent_status: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            policies: BTreeSet::new(),
            control_dirty: true,
            peers: BTreeMap::new(),
            bgp_configs: BTreeMap::new(),
            felix_configs: BTreeMap::new(),
            rollup: Rollup::new(),
        }
    }
}

impl Feed {
    /// Whether every kind finished its first list (before that, an absent object may just not
    /// have been listed yet, so nothing is written or deleted).
    pub fn synced(&self) -> bool {
        KINDS.iter().all(|k| self.synced.contains(k))
    }

    pub fn handle(&mut self, msg: Msg) {
        let was_dirty = std::mem::replace(&mut self.control_dirty, true);
        match msg {
            Msg::Init(kind) => {
                self.relisting.insert(kind, BTreeSet::new());
            }
            Msg::Apply(obj) => {
                let Some(name) = obj.name().map(str::to_string) else {
                    return;
                };
                let kind = obj.kind();
                if let Some(seen) = self.relisting.get_mut(&kind) {
                    seen.insert(name.clone());
                }
                let new = self.names.entry(kind).or_default().insert(name.clone());
                // Only a source object's status changed (typically the operator's own roll-up
                // write coming back): it is looked at again, nothing else is.
                if self.status_only(&obj, &name) {
                    self.control_dirty = was_dirty;
                    return;
                }
                let affected = self.upsert(obj, &name, new);
                self.pending.add(affected);
            }
            Msg::Delete(obj) => {
                let Some(name) = obj.name().map(str::to_string) else {
                    return;
                };
                let kind = obj.kind();
                self.names.entry(kind).or_default().remove(&name);
                let affected = self.delete(kind, &name);
                self.pending.add(affected);
            }
            Msg::InitDone(kind) => {
                let seen = self.relisting.remove(&kind).unwrap_or_default();
                let known = self.names.entry(kind).or_default();
                let gone: Vec<String> = known.difference(&seen).cloned().collect();
                *known = seen;
                for name in gone {
                    tracing::info!(?kind, %name, "gone after relist");
                    let affected = self.delete(kind, &name);
                    self.pending.add(affected);
                }
                if self.synced.insert(kind) {
                    tracing::info!(?kind, objects = self.names[&kind].len(), "listed");
                }
            }
        }
    }

    /// Stores `obj` and marks it for a status look if it is a source object whose spec (and, for a
    /// pool, creation time, which orders overlap verdicts) is what the index already has.
    fn status_only(&mut self, obj: &Obj, name: &str) -> bool {
        let n = name.to_string();
        match obj {
            Obj::IPPool(p) => {
                let same = self.pools.get(name).is_some_and(|o| {
                    o.spec == p.spec
                        && o.metadata.creation_timestamp == p.metadata.creation_timestamp
                });
                if same {
                    self.rollup.mark(Source::Pool(n.clone()));
                    self.pools.insert(n, (**p).clone());
                }
                same
            }
            Obj::BGPPeer(p) => {
                let same = self.peers.get(name).is_some_and(|o| o.spec == p.spec);
                if same {
                    self.rollup.mark(Source::Peer(n.clone()));
                    self.peers.insert(n, (**p).clone());
                }
                same
            }
            Obj::BGPConfiguration(c) => {
                let same = self.bgp_configs.get(name).is_some_and(|o| o.spec == c.spec);
                if same {
                    self.rollup.mark(Source::BgpConfig(n.clone()));
                    self.bgp_configs.insert(n, (**c).clone());
                }
                same
            }
            Obj::FelixConfiguration(f) => {
                let same = self
                    .felix_configs
                    .get(name)
                    .is_some_and(|o| o.spec == f.spec);
                if same {
                    self.rollup.mark(Source::Felix(n.clone()));
                    self.felix_configs.insert(n, (**f).clone());
                }
                same
            }
            _ => false,
        }
    }

    fn upsert(&mut self, obj: Obj, name: &str, new: bool) -> Affected {
        let ix = &mut self.index;
        match obj {
            Obj::IPPool(p) => {
                let a = ix.upsert_pool(&p);
                self.pools.insert(name.to_string(), *p);
                self.refresh_pools();
                self.refeed_affinities(|_| true);
                a
            }
            Obj::BGPPeer(p) => {
                self.rollup.mark(Source::Peer(name.to_string()));
                let a = ix.upsert_peer(&p);
                self.peers.insert(name.to_string(), *p);
                a
            }
            Obj::BGPConfiguration(c) => {
                self.rollup.mark(Source::BgpConfig(name.to_string()));
                let a = ix.upsert_bgp_config(name, &c.spec);
                self.bgp_configs.insert(name.to_string(), *c);
                a
            }
            Obj::FelixConfiguration(f) => {
                self.rollup.mark(Source::Felix(name.to_string()));
                let a = ix.upsert_felix(name, &f.spec);
                self.felix_configs.insert(name.to_string(), *f);
                a
            }
            Obj::Node(n) => {
                let a = ix.upsert_node(&n);
                self.calico_nodes.insert(name.to_string(), *n);
                if new {
                    self.refeed_affinities(|aff| aff.spec.node == name);
                }
                a
            }
            Obj::KubeNode(n) => {
                self.kube_nodes.insert(name.to_string(), *n);
                Affected::Nodes(Default::default())
            }
            Obj::Namespace(n) => {
                let ann = n.metadata.annotations.unwrap_or_default();
                self.namespaces.insert(name.to_string(), ann);
                Affected::Nodes(Default::default())
            }
            Obj::NetworkPolicy(_) => {
                self.policies.insert(name.to_string());
                Affected::Nodes(Default::default())
            }
            Obj::IPAMBlock(b) => {
                if let Some(meta) = ocelot::ipam::block_meta_to_keep(&b.metadata) {
                    self.block_meta.insert(name.to_string(), meta);
                }
                match self.ipam.observe_block(&b.spec) {
                    Ok(lost) if !lost.is_empty() => {
                        tracing::info!(block = %name, lost = lost.len(), "another writer changed the block; redoing our changes")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(block = %name, error = %e, "IPAMBlock ignored"),
                }
                if let Ok(cidr) = b.spec.cidr.parse::<ipnet::IpNet>() {
                    let cidr = cidr.trunc();
                    self.rollup.set_block(cidr, block_facts(&self.ipam, &cidr));
                }
                Affected::Nodes(Default::default())
            }
            Obj::BlockAffinity(b) => {
                let a = ix.upsert_affinity(&b);
                self.affinities.insert(name.to_string(), *b);
                a
            }
            Obj::NodeNetworkState(s) => {
                self.agent_status
                    .insert(name.to_string(), s.status.unwrap_or_default());
                self.written.insert(name.to_string(), s.spec.hash);
                // Someone else may have edited it: the reconcile compares hashes and rewrites.
                Affected::Nodes([name.to_string()].into())
            }
        }
    }

    fn delete(&mut self, kind: Kind, name: &str) -> Affected {
        let ix = &mut self.index;
        match kind {
            Kind::IPPool => {
                let a = ix.delete_pool(name);
                self.pools.remove(name);
                self.refresh_pools();
                self.refeed_affinities(|_| true);
                a
            }
            Kind::BGPPeer => {
                self.peers.remove(name);
                ix.delete_peer(name)
            }
            Kind::BGPConfiguration => {
                self.bgp_configs.remove(name);
                ix.delete_bgp_config(name)
            }
            Kind::FelixConfiguration => {
                self.felix_configs.remove(name);
                ix.delete_felix(name)
            }
            Kind::Node => {
                self.calico_nodes.remove(name);
                ix.delete_node(name)
            }
            Kind::KubeNode => {
                self.kube_nodes.remove(name);
                Affected::Nodes(Default::default())
            }
            Kind::Namespace => {
                self.namespaces.remove(name);
                Affected::Nodes(Default::default())
            }
            Kind::NetworkPolicy => {
                self.policies.remove(name);
                Affected::Nodes(Default::default())
            }
            Kind::IPAMBlock => {
                self.block_meta.remove(name);
                if let Some(cidr) = block_cidr(name) {
                    self.ipam.observe_block_deleted(&cidr);
                    self.rollup.set_block(cidr, None);
                }
                Affected::Nodes(Default::default())
            }
            Kind::BlockAffinity => {
                self.affinities.remove(name);
                ix.delete_affinity(name)
            }
            Kind::NodeNetworkState => {
                self.agent_status.remove(name);
                self.written.remove(name);
                Affected::Nodes([name.to_string()].into())
            }
        }
    }

    /// Recomputes every pool's verdict and keeps the IPAM engine to the allocatable and disabled
    /// ones: an invalid or overlapping pool is never claimed or assigned from.
    fn refresh_pools(&mut self) {
        let pools: Vec<IPPool> = self.pools.values().cloned().collect();
        self.verdicts = pool_verdicts(&pools);
        for (name, pool) in &self.pools {
            let usable = self.verdicts.get(name).is_some_and(PoolVerdict::is_valid);
            if usable {
                if let Err(e) = self.ipam.upsert_pool(name, &pool.spec) {
                    tracing::warn!(pool = %name, error = %e, "pool not usable for IPAM");
                    self.ipam.remove_pool(name);
                }
            } else {
                self.ipam.remove_pool(name);
            }
        }
        let gone: Vec<String> = self
            .ipam
            .pools()
            .map(|p| p.name.clone())
            .filter(|n| !self.pools.contains_key(n))
            .collect();
        for n in gone {
            self.ipam.remove_pool(&n);
        }
        // Verdicts are cross-pool and a block's pool may have changed: every pool is looked at
        // again (pool changes are rare; blocks are re-counted once per pool change).
        self.rollup.mark(Source::AllPools);
        let cidrs: BTreeSet<ipnet::IpNet> = self
            .ipam
            .blocks()
            .map(|b| b.cidr())
            .chain(self.rollup.block_cidrs().copied())
            .collect();
        for cidr in cidrs {
            self.rollup.set_block(cidr, block_facts(&self.ipam, &cidr));
        }
    }

    /// Every source object's status is looked at again (a new leader's first pass).
    pub fn mark_all_sources(&mut self) {
        let r = &mut self.rollup;
        r.mark(Source::AllPools);
        for n in self.peers.keys() {
            r.mark(Source::Peer(n.clone()));
        }
        for n in self.bgp_configs.keys() {
            r.mark(Source::BgpConfig(n.clone()));
        }
        for n in self.felix_configs.keys() {
            r.mark(Source::Felix(n.clone()));
        }
    }

    /// Whether a BlockAffinity of this name exists (as last seen).
    pub fn has_affinity(&self, name: &str) -> bool {
        self.affinities.contains_key(name)
    }

    fn refeed_affinities(&mut self, which: impl Fn(&BlockAffinity) -> bool) {
        for aff in self.affinities.values().filter(|a| which(a)) {
            let a = self.index.upsert_affinity(aff);
            self.pending.add(a);
        }
    }

    /// The nodes to look at now: the pending ones, or every node known to the index or holding a
    /// NodeNetworkState. Clears the pending set.
    pub fn take_pending(&mut self) -> BTreeSet<String> {
        match std::mem::take(&mut self.pending) {
            Pending::Empty => BTreeSet::new(),
            Pending::Nodes(n) => n,
            Pending::All => self
                .index
                .node_names()
                .map(str::to_string)
                .chain(self.written.keys().cloned())
                .collect(),
        }
    }
}

/// The CIDR an IPAMBlock name stands for (`198-19-22-128-26` → 198.19.22.128/26; IPv6 names use
/// `-` for `:`), to forget a deleted block whose object is gone.
fn block_cidr(name: &str) -> Option<ipnet::IpNet> {
    let (addr, len) = name.rsplit_once('-')?;
    let v4 = addr.replace('-', ".");
    let text = if v4.parse::<std::net::Ipv4Addr>().is_ok() {
        v4
    } else {
        addr.replace('-', ":")
    };
    format!("{text}/{len}").parse().ok()
}

#[cfg(test)]
mod tests;
