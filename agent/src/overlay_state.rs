//! The agent's overlay state: the core's [`OverlayInput`] is rebuilt after the spec or a Calico
//! Node changed (once every watch has listed) and handed to the worker only when it differs; the
//! worker's report gives the overlay part of the Tunnel condition and the pod MTU.
use ocelot::api::ippool::EncapMode;
use ocelot::api::nodestate::NodeNetworkStateSpec;
use ocelot::overlay::{OverlayInput, OverlayNode, OverlayPool, OverlaySettings};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::overlay::{OverlayDesired, OverlayReport};

pub struct OverlayState {
    /// An input changed since the last plan.
    pub dirty: bool,
    pub desired: watch::Sender<OverlayDesired>,
    pub report: Option<OverlayReport>,
}

impl OverlayState {
    pub fn new(desired: watch::Sender<OverlayDesired>) -> OverlayState {
        OverlayState {
            dirty: true,
            desired,
            report: None,
        }
    }

    /// The pod MTU by Calico's rule for the encapsulations in use, once the worker computed it
    /// from the host MTU.
    pub fn pod_mtu(&self) -> Option<u32> {
        let plan = self.report.as_ref()?.plan.as_ref()?;
        u32::try_from(plan.mtu.pod).ok()
    }
}

/// Every pool of the spec with its encapsulation (the spec lists only the encapsulating ones).
pub fn overlay_pools(spec: &NodeNetworkStateSpec) -> Vec<OverlayPool> {
    spec.all_pools
        .iter()
        .filter_map(|cidr| {
            let e = spec.encapsulated_pools.iter().find(|e| &e.cidr == cidr);
            Some(OverlayPool {
                cidr: cidr.parse().ok()?,
                ipip_mode: e.map_or(EncapMode::Never, |e| e.ipip_mode),
                vxlan_mode: e.map_or(EncapMode::Never, |e| e.vxlan_mode),
            })
        })
        .collect()
}

/// Whether BIRD can learn anything: it has a mesh or an explicit peer. A BIRD without a
/// session (mesh off, no peers) routes nothing, so the blocks left to it are unreachable.
pub fn runs_bgp(spec: &NodeNetworkStateSpec) -> bool {
    spec.bgp
        .as_ref()
        .is_some_and(|b| b.mesh || !b.peers.is_empty())
}

impl Agent {
    /// Rebuilds the overlay input after an input changed.
    pub fn sync_overlay(&mut self) {
        if !self.overlay.dirty || self.ready().is_err() {
            return;
        }
        self.overlay.dirty = false;
        let Some(nns) = self.nns.as_ref() else {
            return;
        };
        let spec = &nns.spec;
        let me = self.settings.node.as_str();
        let mut node = self
            .calico_nodes
            .get(me)
            .and_then(OverlayNode::from_calico_node)
            .unwrap_or_else(|| OverlayNode {
                name: me.to_string(),
                ..Default::default()
            });
        // The spec is what this agent applies: its own blocks and tunnel address.
        node.blocks = spec
            .blocks
            .iter()
            .filter_map(|b| b.cidr.parse().ok())
            .collect();
        node.blocks.sort();
        node.vxlan_tunnel_addr = spec
            .ipv4_vxlan_tunnel_addr
            .as_deref()
            .and_then(|a| a.split('/').next()?.parse().ok());
        let input = OverlayInput {
            node,
            uplink: String::new(),
            host_mtu: 0,
            bgp: runs_bgp(spec),
            pools: overlay_pools(spec),
            nodes: self
                .calico_nodes
                .values()
                .filter_map(OverlayNode::from_calico_node)
                .collect(),
            settings: OverlaySettings::from_dataplane(&spec.dataplane),
        };
        crate::worker::want(&self.overlay.desired, OverlayDesired::Want(Box::new(input)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocelot::api::nodestate::{NodeBGPState, PoolEncapsulation};

    #[test]
    fn pools_take_their_mode_from_the_spec_and_default_to_never() {
        let spec = NodeNetworkStateSpec {
            all_pools: vec!["10.0.0.0/16".into(), "10.1.0.0/16".into()],
            encapsulated_pools: vec![PoolEncapsulation {
                cidr: "10.1.0.0/16".into(),
                ipip_mode: EncapMode::Never,
                vxlan_mode: EncapMode::CrossSubnet,
            }],
            ..Default::default()
        };
        let p = overlay_pools(&spec);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].vxlan_mode, EncapMode::Never);
        assert_eq!(p[1].vxlan_mode, EncapMode::CrossSubnet);
    }

    #[test]
    fn bird_without_sessions_is_no_bgp() {
        let mut spec = NodeNetworkStateSpec::default();
        assert!(!runs_bgp(&spec));
        spec.bgp = Some(NodeBGPState::default());
        assert!(!runs_bgp(&spec), "mesh off, no peers");
        spec.bgp.as_mut().unwrap().mesh = true;
        assert!(runs_bgp(&spec));
    }
}
