//! What a node's agent renders bird.conf from: its NodeNetworkState spec (BGP settings and own
//! blocks), the other Calico Nodes (mesh sessions) and the pools (export and kernel filters). Pure,
//! so the agent only reads, calls this and [`super::render_bird_config`], and applies the text.
use ipnet::Ipv4Net;

use crate::api::ippool::IPPoolSpec;
use crate::api::nodestate::NodeNetworkStateSpec;

use super::bird::{ExportPool, NodeBirdInput};
use super::expand::mesh_sessions_of;
use super::view::BgpNode;

/// The node's BIRD input, or None when the spec gives it no BGP (BIRD is not run then).
/// Blocks and pools that do not parse as IPv4 networks are left out (IPv6 is not rendered).
pub fn node_bird_input<'a>(
    spec: &NodeNetworkStateSpec,
    nodes: impl Iterator<Item = &'a BgpNode>,
    pools: impl Iterator<Item = &'a IPPoolSpec>,
    log_file: Option<String>,
) -> Option<NodeBirdInput> {
    let bgp = spec.bgp.clone()?;
    let mut blocks: Vec<Ipv4Net> = spec
        .blocks
        .iter()
        .filter_map(|b| b.cidr.parse().ok())
        .collect();
    blocks.sort();
    let mut export: Vec<ExportPool> = pools
        .filter_map(|p| {
            Some(ExportPool {
                cidr: p.cidr.parse().ok()?,
                disable_bgp_export: p.disable_bgp_export,
                ipip_mode: p.ipip_mode.unwrap_or_default(),
                vxlan_mode: p.vxlan_mode.unwrap_or_default(),
            })
        })
        .collect();
    export.sort();
    Some(NodeBirdInput {
        node: spec.node.clone(),
        mesh: mesh_sessions_of(&bgp, nodes),
        bgp,
        blocks,
        pools: export,
        interface: None,
        passwords: Default::default(),
        log_file,
        // NodeNetworkState does not carry FelixConfiguration programClusterRoutes yet: BIRD
        // keeps Calico's default ownership of IPIP and unencapsulated routes.
        program_cluster_routes: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node::Node;
    use crate::api::nodestate::{NodeBGPState, NodeBlock};
    use crate::bgp::render_bird_config;
    use serde_json::json;

    fn node(name: &str, ip: &str) -> BgpNode {
        let n: Node = serde_json::from_value(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name},
            "spec": {"bgp": {"ipv4Address": format!("{ip}/20")}},
        }))
        .unwrap();
        BgpNode::from_node(&n).unwrap()
    }

    fn spec(bgp: Option<NodeBGPState>) -> NodeNetworkStateSpec {
        NodeNetworkStateSpec {
            node: "node1".into(),
            blocks: vec![NodeBlock {
                pool: "default-ipv4-ippool".into(),
                cidr: "198.19.22.128/26".into(),
            }],
            bgp,
            ..Default::default()
        }
    }

    fn seed_bgp() -> NodeBGPState {
        serde_json::from_value(json!({"asNumber": 64512, "defaultASNumber": 64512,
            "ipv4Address": "198.19.0.2", "mesh": true, "listenPort": 179}))
        .unwrap()
    }

    #[test]
    fn seed_node1_meshes_with_the_other_nodes_and_exports_its_block() {
        let nodes = [
            node("control", "198.19.0.1"),
            node("node1", "198.19.0.2"),
            node("node2", "198.19.0.3"),
        ];
        let pool: IPPoolSpec =
            serde_json::from_value(json!({"cidr": "198.19.16.0/21", "vxlanMode": "Never"}))
                .unwrap();
        let input = node_bird_input(
            &spec(Some(seed_bgp())),
            nodes.iter(),
            [&pool].into_iter(),
            None,
        )
        .unwrap();
        let names: Vec<&str> = input.mesh.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Mesh_198_19_0_1", "Mesh_198_19_0_3"]);
        assert_eq!(
            input.blocks,
            ["198.19.22.128/26".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(input.pools.len(), 1);
        let conf = render_bird_config(&input).unwrap();
        assert!(conf.contains("protocol bgp Mesh_198_19_0_3"), "{conf}");
        assert!(conf.contains("198.19.22.128/26"), "{conf}");
    }

    #[test]
    fn no_bgp_in_the_spec_means_no_bird_and_ipv6_pools_are_left_out() {
        assert_eq!(
            node_bird_input(&spec(None), [].iter(), [].into_iter(), None),
            None
        );
        let v6: IPPoolSpec = serde_json::from_value(json!({"cidr": "fd00::/48"})).unwrap();
        let input =
            node_bird_input(&spec(Some(seed_bgp())), [].iter(), [&v6].into_iter(), None).unwrap();
        assert!(input.pools.is_empty());
        assert!(input.mesh.is_empty());
    }
}
