//! `ocelotctl plan -f FILE`: which nodes' desired state would change if the manifests were
//! applied, and how, computed by the composer the operator uses ([`ClusterIndex::node_state`]).
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::api::bgp::{BGPConfiguration, BGPPeer};
use crate::api::felix::FelixConfiguration;
use crate::api::ipam::BlockAffinity;
use crate::api::ippool::IPPool;
use crate::api::node::Node;
use crate::api::nodestate::NodeNetworkStateSpec;
use crate::index::ClusterIndex;

/// What the operator composes from, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterObjects {
    /// IPPools.
    pub pools: Vec<IPPool>,
    /// Calico Nodes.
    pub nodes: Vec<Node>,
    /// BGPPeers.
    pub peers: Vec<BGPPeer>,
    /// BGPConfigurations.
    pub bgp_configs: Vec<BGPConfiguration>,
    /// FelixConfigurations.
    pub felix: Vec<FelixConfiguration>,
    /// BlockAffinities.
    pub affinities: Vec<BlockAffinity>,
}

/// One node whose desired state would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeChange {
    /// The node.
    pub node: String,
    /// `- path: old` / `+ path: new` lines, by path.
    pub diff: Vec<String>,
}

impl ClusterObjects {
    /// The composer's index over these objects (pools first, so affinities find their pool).
    fn index(&self) -> ClusterIndex {
        let mut ix = ClusterIndex::new();
        for p in &self.pools {
            ix.upsert_pool(p);
        }
        self.feed_rest(&mut ix);
        ix
    }

    fn feed_rest(&self, ix: &mut ClusterIndex) {
        for n in &self.nodes {
            ix.upsert_node(n);
            let name = n.metadata.name.as_deref().unwrap_or_default();
            let wg = n.spec.wireguard.as_ref();
            let addr = wg.and_then(|w| w.interface_ipv4_address.as_deref());
            ix.set_wireguard_address(name, addr.and_then(|a| a.split('/').next()?.parse().ok()));
        }
        for p in &self.peers {
            ix.upsert_peer(p);
        }
        for c in &self.bgp_configs {
            ix.upsert_bgp_config(c.metadata.name.as_deref().unwrap_or_default(), &c.spec);
        }
        for f in &self.felix {
            ix.upsert_felix(f.metadata.name.as_deref().unwrap_or_default(), &f.spec);
        }
        for a in &self.affinities {
            ix.upsert_affinity(a);
        }
    }

    /// Replaces (or adds) the object of `doc`'s kind and name. Err names a kind the composer
    /// does not read, or a document that does not parse as its kind.
    pub fn apply(&mut self, doc: &Value) -> Result<(), String> {
        fn put<T: serde::de::DeserializeOwned>(
            list: &mut Vec<T>,
            doc: &Value,
            name_of: impl Fn(&T) -> Option<&str>,
        ) -> Result<(), String> {
            let obj: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
            let name = name_of(&obj).map(str::to_string);
            list.retain(|o| name_of(o).map(str::to_string) != name);
            list.push(obj);
            Ok(())
        }
        let kind = doc["kind"].as_str().unwrap_or_default();
        let what = format!("{kind} {}", doc["metadata"]["name"].as_str().unwrap_or("?"));
        match kind {
            "IPPool" => put(&mut self.pools, doc, |o: &IPPool| {
                o.metadata.name.as_deref()
            }),
            "Node" => put(&mut self.nodes, doc, |o: &Node| o.metadata.name.as_deref()),
            "BGPPeer" => put(&mut self.peers, doc, |o: &BGPPeer| {
                o.metadata.name.as_deref()
            }),
            "BGPConfiguration" => put(&mut self.bgp_configs, doc, |o: &BGPConfiguration| {
                o.metadata.name.as_deref()
            }),
            "FelixConfiguration" => put(&mut self.felix, doc, |o: &FelixConfiguration| {
                o.metadata.name.as_deref()
            }),
            _ => Err(format!(
                "nodes' desired state is composed from IPPool, BGPPeer, BGPConfiguration, \
                 FelixConfiguration and Node only; {kind:?} is not one of them"
            )),
        }
        .map_err(|e| format!("{what}: {e}"))
    }

    /// Every node's desired state.
    pub fn states(&self) -> BTreeMap<String, NodeNetworkStateSpec> {
        let ix = self.index();
        ix.node_names()
            .filter_map(|n| Some((n.to_string(), ix.node_state(n)?)))
            .collect()
    }
}

/// The nodes whose state differs between `before` and `after`, each with its diff.
pub fn plan(
    before: &BTreeMap<String, NodeNetworkStateSpec>,
    after: &BTreeMap<String, NodeNetworkStateSpec>,
) -> Vec<NodeChange> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| {
            let flat = |s: Option<&NodeNetworkStateSpec>| {
                let mut out = BTreeMap::new();
                if let Some(s) = s {
                    flatten("", &serde_json::to_value(s).unwrap_or_default(), &mut out);
                }
                out.remove("hash");
                out
            };
            let (a, b) = (flat(before.get(n)), flat(after.get(n)));
            let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
            paths.sort();
            paths.dedup();
            let mut diff = Vec::new();
            for p in paths {
                if a.get(p) != b.get(p) {
                    if let Some(v) = a.get(p) {
                        diff.push(format!("- {p}: {v}"));
                    }
                    if let Some(v) = b.get(p) {
                        diff.push(format!("+ {p}: {v}"));
                    }
                }
            }
            (!diff.is_empty()).then(|| NodeChange {
                node: n.clone(),
                diff,
            })
        })
        .collect()
}

/// `a.b[0].c` → scalar as JSON text.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// The plan as text: one block per node, or a line saying nothing changes.
pub fn render_plan(changes: &[NodeChange]) -> String {
    if changes.is_empty() {
        return "No node's desired state would change.\n".into();
    }
    let mut out = format!(
        "{} node(s) would change: {}\n",
        changes.len(),
        changes
            .iter()
            .map(|c| c.node.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for c in changes {
        out.push_str(&format!("\nnode {}:\n", c.node));
        for l in &c.diff {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}
