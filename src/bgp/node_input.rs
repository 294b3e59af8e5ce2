//! What a node's agent renders bird.conf from: its NodeNetworkState spec (BGP settings and own
//! blocks), the other Calico Nodes (mesh sessions) and the pools (export and kernel filters). Pure,
//! so the agent only reads, calls this and [`super::render_bird_config`], and applies the text.
use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use crate::api::bgp::SecretKeyRef;

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

/// The Secret keys the node's sessions take their passwords from: (protocol name, reference).
pub fn password_refs(input: &NodeBirdInput) -> Vec<(String, SecretKeyRef)> {
    input
        .mesh
        .iter()
        .chain(&input.bgp.peers)
        .filter_map(|s| {
            let r = s.password.as_ref()?.secret_key_ref.clone()?;
            Some((s.name.clone(), r))
        })
        .collect()
}

/// Why a session's password is not known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The Secret has not been read yet.
    #[error("waiting for Secret {0:?} (password of {1})")]
    Pending(String, String),
    /// The Secret could not be read, or lacks the key.
    #[error("password of {protocol}: Secret {secret:?} key {key:?}: {why}")]
    Unusable {
        protocol: String,
        secret: String,
        key: String,
        why: String,
    },
}

/// Fills `input.passwords` from the Secrets read so far (`secrets`: name → its data, or why it
/// could not be read). Every referenced password must be known: a session rendered without its
/// password would only be refused by the peer.
pub fn resolve_passwords(
    input: &mut NodeBirdInput,
    secrets: &BTreeMap<String, Result<BTreeMap<String, String>, String>>,
) -> Result<(), PasswordError> {
    for (protocol, r) in password_refs(input) {
        let data = match secrets.get(&r.name) {
            None => return Err(PasswordError::Pending(r.name, protocol)),
            Some(d) => d,
        };
        let value = match data.as_ref().map(|d| d.get(&r.key)) {
            Ok(Some(v)) => v.clone(),
            Ok(None) => Err(PasswordError::Unusable {
                protocol: protocol.clone(),
                secret: r.name.clone(),
                key: r.key.clone(),
                why: "no such key".into(),
            })?,
            Err(e) => Err(PasswordError::Unusable {
                protocol: protocol.clone(),
                secret: r.name.clone(),
                key: r.key.clone(),
                why: e.clone(),
            })?,
        };
        input.passwords.insert(protocol, value);
    }
    Ok(())
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

    #[test]
    fn mesh_passwords_come_from_their_secret_and_must_all_be_known() {
        let mut bgp = seed_bgp();
        bgp.node_mesh_password =
            serde_json::from_value(json!({"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}}))
                .unwrap();
        let nodes = [node("node1", "198.19.0.2"), node("node2", "198.19.0.3")];
        let mut input =
            node_bird_input(&spec(Some(bgp)), nodes.iter(), [].into_iter(), None).unwrap();
        let refs = password_refs(&input);
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].0, "Mesh_198_19_0_3");
        assert_eq!(
            (refs[0].1.name.as_str(), refs[0].1.key.as_str()),
            ("bgp-secrets", "mesh")
        );

        let mut secrets = BTreeMap::new();
        assert_eq!(
            resolve_passwords(&mut input, &secrets),
            Err(PasswordError::Pending(
                "bgp-secrets".into(),
                "Mesh_198_19_0_3".into()
            ))
        );
        secrets.insert("bgp-secrets".to_string(), Ok(BTreeMap::new()));
        let err = resolve_passwords(&mut input, &secrets).unwrap_err();
        assert!(
            err.to_string().contains("key \"mesh\": no such key"),
            "{err}"
        );
        secrets.insert("bgp-secrets".to_string(), Err("forbidden".into()));
        assert!(
            resolve_passwords(&mut input, &secrets)
                .unwrap_err()
                .to_string()
                .contains("forbidden")
        );

        let data = BTreeMap::from([("mesh".to_string(), "s3cret".to_string())]);
        secrets.insert("bgp-secrets".to_string(), Ok(data));
        resolve_passwords(&mut input, &secrets).unwrap();
        let conf = render_bird_config(&input).unwrap();
        assert!(conf.contains("  password \"s3cret\";"), "{conf}");
    }
}
