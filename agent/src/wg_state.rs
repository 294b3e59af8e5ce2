//! The agent's WireGuard state: the plan is recomputed after the spec or a Calico Node changed
//! (once every watch has listed) and handed to the worker only when it differs; the worker's
//! report gives the WireGuard condition and the public key the status publishes.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ocelot::api::Condition;
use ocelot::api::nodestate::NodeNetworkStateStatus;
use ocelot::rollup::status::condition;
use ocelot::wireguard::{
    PrivateKey, WireguardNode, plan_wireguard, published_blocks, published_borrowed,
};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::wireguard::{WgConfig, WgDesired, WgReport};
use crate::wireguard_key::load_or_create;

pub struct WgState {
    /// An input changed since the last plan.
    pub dirty: bool,
    pub desired: watch::Sender<WgDesired>,
    pub report: Option<WgReport>,
    pub key_file: PathBuf,
    /// Loaded when WireGuard is first wanted (Calico makes the key only then).
    key: Option<PrivateKey>,
    /// Why the key could not be loaded or created.
    key_error: Option<String>,
}

impl WgState {
    pub fn new(desired: watch::Sender<WgDesired>, key_file: PathBuf) -> WgState {
        WgState {
            dirty: true,
            desired,
            report: None,
            key_file,
            key: None,
            key_error: None,
        }
    }

    fn key(&mut self) -> Option<PrivateKey> {
        if self.key.is_none() {
            match load_or_create(&self.key_file) {
                Ok(k) => {
                    if k.created {
                        tracing::info!(file = %self.key_file.display(), "WireGuard private key created");
                    }
                    self.key = Some(k.key);
                    self.key_error = None;
                }
                Err(e) => self.key_error = Some(e.to_string()),
            }
        }
        self.key.clone()
    }
}

impl Agent {
    /// Recomputes the WireGuard plan after an input changed.
    pub fn sync_wireguard(&mut self) {
        if !self.wg.dirty || self.ready().is_err() {
            return;
        }
        self.wg.dirty = false;
        let Some(nns) = self.nns.as_ref() else {
            return;
        };
        let me = self.settings.node.as_str();
        let nodes: Vec<WireguardNode> = self
            .calico_nodes
            .values()
            .filter_map(WireguardNode::from_calico_node)
            .collect();
        let blocks: BTreeMap<String, Vec<Ipv4Net>> = self
            .calico_nodes
            .iter()
            .map(|(name, n)| (name.clone(), published_blocks(n)))
            .collect();
        let borrowed: BTreeMap<String, Vec<Ipv4Addr>> = self
            .calico_nodes
            .iter()
            .map(|(name, n)| (name.clone(), published_borrowed(n)))
            .collect();
        let plan = plan_wireguard(me, &nns.spec.dataplane, &nodes, &blocks, &borrowed);
        let address = nns
            .spec
            .wireguard_interface_ipv4_address
            .as_deref()
            .and_then(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok());
        let node_ip = nns.spec.bgp.as_ref().map(|b| b.ipv4_address);
        let mtu = nns.spec.dataplane.wireguard_mtu;
        let key = if plan.remove_device {
            None
        } else {
            match self.wg.key() {
                Some(k) => Some(k),
                // Reported by the condition; retried after the next change.
                None => return,
            }
        };
        let want = WgDesired::Want(Box::new(WgConfig {
            plan,
            key,
            address,
            mtu,
            node_ip,
        }));
        crate::worker::want(&self.wg.desired, want);
    }
}

/// The WireGuard condition, and whether the spec's WireGuard part is applied. Before the
/// worker's first report, the previous agent's condition stands (a restart changes nothing on
/// the device, so it changes nothing in the status either).
pub fn wireguard_condition(
    agent: &Agent,
    previous: Option<&NodeNetworkStateStatus>,
    generation: Option<i64>,
    now: &Time,
) -> (Condition, bool) {
    let c = |ok: bool, reason: &str, msg: String| {
        condition("WireGuard", ok, reason, msg, generation, now)
    };
    let enabled = agent
        .nns
        .as_ref()
        .is_some_and(|n| n.spec.dataplane.wireguard_enabled);
    if let (true, Some(e)) = (enabled, &agent.wg.key_error) {
        return (c(false, "KeyUnavailable", e.clone()), false);
    }
    let before = previous
        .into_iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == "WireGuard");
    match &agent.wg.report {
        None if before.is_some_and(|b| (b.reason == "Ready") == enabled) => {
            let b = before.expect("checked");
            (
                c(b.status == "True", &b.reason, b.message.clone()),
                b.status == "True",
            )
        }
        None if !enabled => (c(true, "NotConfigured", "WireGuard is off".into()), true),
        None => (
            c(false, "Starting", "the device has not reported yet".into()),
            false,
        ),
        Some(r) if r.on != enabled => (
            c(false, "Applying", "the device is being switched".into()),
            false,
        ),
        Some(r) => match (&r.applied, r.on) {
            (Ok(msg), true) => (c(true, "Ready", msg.clone()), true),
            (Ok(msg), false) => (c(true, "NotConfigured", msg.clone()), true),
            (Err(e), _) => (c(false, "DeviceFailed", e.clone()), false),
        },
    }
}
