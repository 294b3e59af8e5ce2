//! The agent's BGP state: what bird.conf is rendered from (its spec, the Calico Nodes parsed for
//! peering, the pools) and what BIRD last reported. The config is re-rendered only after one of
//! those changed, and handed to the BIRD worker only when its text changed.
use std::collections::BTreeMap;

use ocelot::api::ippool::IPPoolSpec;
use ocelot::api::node::Node;
use ocelot::bgp::{BgpNode, node_bird_input, render_bird_config};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::bird::{BgpReport, Desired};

pub struct BgpState {
    /// An input changed since the last render.
    pub dirty: bool,
    pub nodes: BTreeMap<String, BgpNode>,
    pub pools: BTreeMap<String, IPPoolSpec>,
    /// What the BIRD worker should do.
    pub desired: watch::Sender<Desired>,
    pub report: Option<BgpReport>,
    /// Why the config could not be rendered, when it could not.
    pub render_error: Option<String>,
    pub log_file: Option<String>,
}

impl BgpState {
    pub fn new(desired: watch::Sender<Desired>, log_file: Option<String>) -> BgpState {
        BgpState {
            dirty: true,
            nodes: BTreeMap::new(),
            pools: BTreeMap::new(),
            desired,
            report: None,
            render_error: None,
            log_file,
        }
    }

    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match BgpNode::from_node(node) {
            Some(n) => self.nodes.insert(name, n),
            None => self.nodes.remove(&name),
        };
        self.dirty = true;
    }

    pub fn remove_node(&mut self, name: &str) {
        self.dirty |= self.nodes.remove(name).is_some();
    }

    pub fn upsert_pool(&mut self, name: &str, spec: &IPPoolSpec) {
        self.pools.insert(name.to_string(), spec.clone());
        self.dirty = true;
    }

    pub fn remove_pool(&mut self, name: &str) {
        self.dirty |= self.pools.remove(name).is_some();
    }
}

impl Agent {
    /// Renders bird.conf after an input changed, once every watch has listed (a config from a
    /// half-listed cluster would drop sessions).
    pub fn sync_bgp(&mut self) {
        if !self.bgp.dirty || self.ready().is_err() {
            return;
        }
        self.bgp.dirty = false;
        let Some(nns) = self.nns.as_ref() else {
            return;
        };
        let input = node_bird_input(
            &nns.spec,
            self.bgp.nodes.values(),
            self.bgp.pools.values(),
            self.bgp.log_file.clone(),
        );
        let want = match input.as_ref().map(render_bird_config).transpose() {
            Ok(c) => {
                self.bgp.render_error = None;
                c.map_or(Desired::Off, Desired::Run)
            }
            Err(e) => {
                self.bgp.render_error = Some(e.to_string());
                return;
            }
        };
        self.bgp.desired.send_if_modified(|cur| {
            let changed = *cur != want;
            if changed {
                *cur = want;
            }
            changed
        });
    }
}
