//! The agent's BGP state: what bird.conf is rendered from (its spec, the Calico Nodes parsed for
//! peering, the pools) and what BIRD last reported. The config is re-rendered only after one of
//! those changed, and handed to the BIRD worker only when its text changed.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use ocelot::api::ippool::IPPoolSpec;
use ocelot::api::node::Node;
use ocelot::bgp::{BgpNode, node_bird_input, password_refs, render_bird_config, resolve_passwords};
use tokio::sync::watch;

use crate::agent::{Agent, Msg};

/// How long a read Secret is used before it is read again (a changed password then reaches BIRD).
const SECRET_TTL: Duration = Duration::from_secs(60);

/// A Secret's data as strings, or why it could not be read.
pub type SecretData = Result<BTreeMap<String, String>, String>;
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
    /// The namespace BGP password Secrets are read from (the agent's own, as calico-node's).
    pub secrets_namespace: String,
    /// Secrets read for passwords, with when.
    pub secrets: BTreeMap<String, (Instant, SecretData)>,
    fetching: BTreeSet<String>,
}

impl BgpState {
    pub fn new(
        desired: watch::Sender<Desired>,
        log_file: Option<String>,
        secrets_namespace: String,
    ) -> BgpState {
        BgpState {
            secrets_namespace,
            secrets: BTreeMap::new(),
            fetching: BTreeSet::new(),
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

    /// A Secret read finished: a new value re-renders the config.
    pub fn secret_read(&mut self, name: String, data: SecretData) {
        self.fetching.remove(&name);
        let changed = self.secrets.get(&name).map(|(_, d)| d) != Some(&data);
        self.secrets.insert(name, (Instant::now(), data));
        self.dirty |= changed;
    }
}

impl Agent {
    /// Starts reads of the password Secrets not read yet, or read longer than [`SECRET_TTL`] ago
    /// (the old value stays in use meanwhile).
    fn read_secrets(&mut self, input: &ocelot::bgp::NodeBirdInput) {
        let names: BTreeSet<String> = password_refs(input)
            .into_iter()
            .map(|(_, r)| r.name)
            .collect();
        for name in names {
            let fresh = self
                .bgp
                .secrets
                .get(&name)
                .is_some_and(|(t, _)| t.elapsed() < SECRET_TTL);
            if fresh || !self.bgp.fetching.insert(name.clone()) {
                continue;
            }
            let api: Api<Secret> =
                Api::namespaced(self.client.clone(), &self.bgp.secrets_namespace);
            let (tx, ns) = (self.tx.clone(), self.bgp.secrets_namespace.clone());
            tokio::spawn(async move {
                let data = match api.get(&name).await {
                    Ok(s) => Ok(s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect()),
                    Err(e) => Err(format!("reading Secret {ns}/{name}: {e}")),
                };
                let _ = tx.send(Msg::Secret { name, data }).await;
            });
        }
    }

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
        let mut input = node_bird_input(
            &nns.spec,
            self.bgp.nodes.values(),
            self.bgp.pools.values(),
            self.bgp.log_file.clone(),
        );
        if let Some(input) = input.as_mut() {
            self.read_secrets(input);
            let known = self
                .bgp
                .secrets
                .iter()
                .map(|(n, (_, d))| (n.clone(), d.clone()))
                .collect();
            if let Err(e) = resolve_passwords(input, &known) {
                // Rendered again when the read finishes (pending) or a spec change arrives.
                self.bgp.render_error = Some(e.to_string());
                return;
            }
        }
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
        crate::worker::want(&self.bgp.desired, want);
    }
}
