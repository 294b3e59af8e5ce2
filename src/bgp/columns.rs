//! Values for the printer columns that calicoctl shows with a default filled in. A CRD column is a
//! JSONPath and cannot default, so the operator computes these into each object's `status` (it
//! never writes a user's spec) and the columns point there:
//! - BGPPeer NODE: `(global)`, the node, or the nodeSelector → `status.node`;
//! - BGPConfiguration MESHENABLED and ASNUMBER: the effective values → `status.meshEnabled`,
//!   `status.asNumber`;
//! - Calico Node ASN: the node's own AS, or the inherited one in parentheses, `(64512)` →
//!   `status.asNumber`.
//!
//! Until the operator has reconciled an object, those columns are empty.
use crate::api::bgp::{BGPConfigurationSpec, BGPPeerSpec};
use crate::api::node::Node;

use super::DEFAULT_AS_NUMBER;

/// calicoctl's NODE column of a BGPPeer.
pub fn peer_node_column(spec: &BGPPeerSpec) -> String {
    fn set(s: &Option<String>) -> Option<&str> {
        s.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    match (set(&spec.node), set(&spec.node_selector)) {
        (Some(n), _) => n.to_string(),
        (None, Some(sel)) => sel.to_string(),
        (None, None) => "(global)".to_string(),
    }
}

/// The effective `(nodeToNodeMeshEnabled, asNumber)` of BGPConfiguration `default` (true, 64512
/// when unset). Only `default` may set them; a `node.<name>` object shows None for both.
pub fn bgpconfig_effective(name: &str, spec: &BGPConfigurationSpec) -> (Option<bool>, Option<u32>) {
    if name != "default" {
        return (None, None);
    }
    (
        Some(spec.node_to_node_mesh_enabled.unwrap_or(true)),
        Some(spec.as_number.unwrap_or(DEFAULT_AS_NUMBER)),
    )
}

/// calicoctl's ASN column of a node: its own AS, or the cluster's in parentheses when inherited.
/// None for a node without BGP.
pub fn node_asn_column(node: &Node, cluster_as: u32) -> Option<String> {
    let bgp = node.spec.bgp.as_ref()?;
    Some(match bgp.as_number {
        Some(a) => a.to_string(),
        None => format!("({cluster_as})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node::{NodeBGPSpec, NodeSpec};

    #[test]
    fn columns_as_calicoctl_shows_them() {
        let mut p = BGPPeerSpec::default();
        assert_eq!(peer_node_column(&p), "(global)");
        p.node_selector = Some("rack == 'a'".into());
        assert_eq!(peer_node_column(&p), "rack == 'a'");
        p.node_selector = None;
        p.node = Some("node1".into());
        assert_eq!(peer_node_column(&p), "node1");

        let d = BGPConfigurationSpec::default();
        assert_eq!(
            bgpconfig_effective("default", &d),
            (Some(true), Some(64512))
        );
        assert_eq!(bgpconfig_effective("node.node1", &d), (None, None));

        let mut n = Node::new(
            "node1",
            NodeSpec {
                bgp: Some(NodeBGPSpec::default()),
                ..Default::default()
            },
        );
        assert_eq!(node_asn_column(&n, 64512).as_deref(), Some("(64512)"));
        n.spec.bgp.as_mut().unwrap().as_number = Some(65010);
        assert_eq!(node_asn_column(&n, 64512).as_deref(), Some("65010"));
        n.spec.bgp = None;
        assert_eq!(node_asn_column(&n, 64512), None);
    }
}
