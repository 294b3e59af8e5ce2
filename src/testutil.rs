//! Test builders shared by the core's unit tests.
use crate::api::node::{Node, NodeBGPSpec, NodeSpec};

/// A Calico Node with `spec.bgp.ipv4Address` `<ip>/20` and the given labels.
pub fn calico_node(name: &str, ip: &str, labels: &[(&str, &str)]) -> Node {
    let mut n = Node::new(
        name,
        NodeSpec {
            bgp: Some(NodeBGPSpec {
                ipv4_address: Some(format!("{ip}/20")),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    n.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    n
}
