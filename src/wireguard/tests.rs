//! Plan tests on the seed's three-node cluster (control 198.19.0.1, node1 198.19.0.2, node2
//! 198.19.0.3; node1's key and wireguard.cali address are the seed's).
use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::*;
use crate::api::Node;
use crate::api::nodestate::DataplaneSettings;
use crate::desired::{dataplane_settings, merge_felix};

const NODE1_KEY: &str = "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0=";
const NODE2_KEY: &str = "Q+U8h6+xbx11Qbxx/qqvGAiztIL/nFoS5zG0SGeB7FY=";
const CONTROL_KEY: &str = "w1MVwZlEEn6Yl1T/VSrTee55GWE7Iy+suBxStmJR5VQ=";

fn node(name: &str, ip: Option<&str>, key: Option<&str>, wg_ip: Option<&str>) -> WireguardNode {
    let mut yaml =
        format!("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\nspec:\n");
    match ip {
        Some(ip) => yaml += &format!("  bgp:\n    ipv4Address: {ip}/20\n"),
        None => yaml += "  addresses: []\n",
    }
    if let Some(w) = wg_ip {
        yaml += &format!("  wireguard:\n    interfaceIPv4Address: {w}\n");
    }
    if let Some(k) = key {
        yaml += &format!("status:\n  wireguardPublicKey: {k}\n");
    }
    let n: Node = serde_yaml::from_str(&yaml).unwrap();
    WireguardNode::from_calico_node(&n).unwrap()
}

fn seed_nodes() -> Vec<WireguardNode> {
    vec![
        node(
            "node2",
            Some("198.19.0.3"),
            Some(NODE2_KEY),
            Some("198.19.21.66"),
        ),
        node(
            "node1",
            Some("198.19.0.2"),
            Some(NODE1_KEY),
            Some("198.19.22.131"),
        ),
        node(
            "control",
            Some("198.19.0.1"),
            Some(CONTROL_KEY),
            Some("198.19.21.2"),
        ),
    ]
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn seed_blocks() -> BTreeMap<String, Vec<Ipv4Net>> {
    BTreeMap::from([
        ("control".to_string(), vec![net("198.19.21.0/26")]),
        ("node1".to_string(), vec![net("198.19.22.128/26")]),
        ("node2".to_string(), vec![net("198.19.21.64/26")]),
    ])
}

fn no_borrowed() -> BTreeMap<String, Vec<std::net::Ipv4Addr>> {
    BTreeMap::new()
}

/// What `kubectl patch felixconfiguration default -p '{"spec":{"wireguardEnabled":true}}'` gives.
fn enabled() -> DataplaneSettings {
    let spec = serde_json::from_str(r#"{"wireguardEnabled": true}"#).unwrap();
    dataplane_settings(&merge_felix(Some(&spec), None))
}

fn route(cidr: &str, action: RouteAction) -> TableRoute {
    TableRoute {
        cidr: net(cidr),
        action,
    }
}

#[test]
fn seed_node1_peers_with_node2_and_control() {
    let plan = plan_wireguard(
        "node1",
        &enabled(),
        &seed_nodes(),
        &seed_blocks(),
        &no_borrowed(),
    );
    assert!(!plan.remove_device);
    assert_eq!(plan.interface_name, "wireguard.cali");
    assert_eq!(plan.listen_port, 51820);
    assert_eq!(
        plan.rule,
        RoutingRule {
            priority: 99,
            table: 1
        }
    );
    assert_eq!(
        plan.peers,
        vec![
            Peer {
                node: "control".into(),
                public_key: CONTROL_KEY.parse().unwrap(),
                endpoint: "198.19.0.1:51820".parse().unwrap(),
                // The tunnel address lies in the block, so the block covers it.
                allowed_ips: vec![net("198.19.21.0/26")],
                persistent_keepalive: None,
            },
            Peer {
                node: "node2".into(),
                public_key: NODE2_KEY.parse().unwrap(),
                endpoint: "198.19.0.3:51820".parse().unwrap(),
                allowed_ips: vec![net("198.19.21.64/26")],
                persistent_keepalive: None,
            },
        ]
    );
    assert_eq!(
        plan.table_routes,
        vec![
            route("198.19.21.0/26", RouteAction::Dev),
            route("198.19.21.64/26", RouteAction::Dev)
        ]
    );
    assert!(plan.skipped.is_empty());

    // node2's view mirrors it and contains node1's block (the seed's 198.19.22.128/26), not its own.
    let plan2 = plan_wireguard(
        "node2",
        &enabled(),
        &seed_nodes(),
        &seed_blocks(),
        &no_borrowed(),
    );
    let names: Vec<&str> = plan2.peers.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(names, ["control", "node1"]);
    assert_eq!(plan2.peers[1].public_key.to_string(), NODE1_KEY);
    assert_eq!(plan2.peers[1].allowed_ips, vec![net("198.19.22.128/26")]);
    assert!(
        plan2
            .table_routes
            .iter()
            .all(|r| r.cidr != net("198.19.21.64/26"))
    );
}

#[test]
fn settings_reach_the_plan_and_tunnel_addresses_outside_blocks_get_a_32() {
    let mut s = enabled();
    s.wireguard_listening_port = Some(51821);
    s.wireguard_routing_rule_priority = Some(120);
    s.wireguard_routing_table = Some(7);
    s.wireguard_keep_alive_seconds = Some(25);
    s.wireguard_interface_name = Some("wg-n1".into());
    let mut nodes = seed_nodes();
    // A borrowed address: control's tunnel address sits outside control's own block.
    nodes[2].interface_ipv4_address = Some("198.19.23.9".parse().unwrap());
    let plan = plan_wireguard("node1", &s, &nodes, &seed_blocks(), &no_borrowed());
    assert_eq!(plan.interface_name, "wg-n1");
    assert_eq!(
        plan.rule,
        RoutingRule {
            priority: 120,
            table: 7
        }
    );
    let control = &plan.peers[0];
    assert_eq!(control.endpoint, "198.19.0.1:51821".parse().unwrap());
    assert_eq!(control.persistent_keepalive, Some(25));
    assert_eq!(
        control.allowed_ips,
        vec![net("198.19.21.0/26"), net("198.19.23.9/32")]
    );
    assert!(
        plan.table_routes
            .contains(&route("198.19.23.9/32", RouteAction::Dev))
    );
}

#[test]
fn duplicate_keys_skip_every_claimant() {
    let mut nodes = seed_nodes();
    nodes.push(node("node3", Some("198.19.0.4"), Some(NODE2_KEY), None));
    let mut blocks = seed_blocks();
    blocks.insert("node3".into(), vec![net("198.19.20.0/26")]);
    let plan = plan_wireguard("node1", &enabled(), &nodes, &blocks, &no_borrowed());
    let names: Vec<&str> = plan.peers.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(names, ["control"]);
    assert_eq!(
        plan.skipped,
        vec![
            SkippedNode {
                node: "node2".into(),
                reason: SkipReason::DuplicatePublicKey(vec!["node3".into()]),
            },
            SkippedNode {
                node: "node3".into(),
                reason: SkipReason::DuplicatePublicKey(vec!["node2".into()]),
            },
        ]
    );
    assert_eq!(
        plan.skipped[0].reason.to_string(),
        "status.wireguardPublicKey is also published by node3"
    );
    assert_eq!(
        plan.table_routes,
        vec![
            route("198.19.20.0/26", RouteAction::Throw),
            route("198.19.21.0/26", RouteAction::Dev),
            route("198.19.21.64/26", RouteAction::Throw),
        ]
    );

    // A remote node claiming this node's own key is skipped too.
    let mut nodes = seed_nodes();
    nodes[0].public_key = Some(NODE1_KEY.into());
    let plan = plan_wireguard("node1", &enabled(), &nodes, &seed_blocks(), &no_borrowed());
    assert_eq!(
        plan.skipped,
        vec![SkippedNode {
            node: "node2".into(),
            reason: SkipReason::DuplicatePublicKey(vec!["node1".into()]),
        }]
    );
}

#[test]
fn nodes_without_a_usable_key_or_endpoint_get_throw_routes() {
    let mut nodes = seed_nodes();
    nodes[0].public_key = None; // node2: WireGuard not up yet
    nodes[2].public_key = Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()); // control
    nodes.push(node("node3", Some("198.19.0.4"), Some("not-a-key"), None));
    nodes.push(node("node4", Some("198.19.0.5"), Some("AAAA"), None));
    nodes.push(node(
        "node5",
        None,
        Some("OtQ7XlbgKUT+NyEiV4t04U59v6drgohevo3HW/3aVzc="),
        Some("198.19.20.70"),
    ));
    let mut blocks = seed_blocks();
    blocks.insert("node5".into(), vec![net("198.19.20.64/26")]);
    let plan = plan_wireguard("node1", &enabled(), &nodes, &blocks, &no_borrowed());
    assert!(plan.peers.is_empty());
    let reasons: Vec<(&str, String)> = plan
        .skipped
        .iter()
        .map(|s| (s.node.as_str(), s.reason.to_string()))
        .collect();
    assert_eq!(
        reasons[0],
        ("control", "status.wireguardPublicKey is all zeros".into())
    );
    assert_eq!(
        reasons[1],
        ("node2", "no status.wireguardPublicKey published".into())
    );
    assert!(
        matches!(
            plan.skipped[2].reason,
            SkipReason::InvalidPublicKey(KeyError::NotBase64(_))
        ),
        "{reasons:?}"
    );
    assert!(
        matches!(
            plan.skipped[3].reason,
            SkipReason::InvalidPublicKey(KeyError::WrongLength(3))
        ),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[4],
        ("node5", "no spec.bgp.ipv4Address to use as endpoint".into())
    );
    assert_eq!(
        plan.table_routes,
        vec![
            route("198.19.20.64/26", RouteAction::Throw),
            route("198.19.21.0/26", RouteAction::Throw),
            route("198.19.21.64/26", RouteAction::Throw),
        ]
    );
}

#[test]
fn disabled_plan_is_empty_and_asks_for_removal() {
    let s = dataplane_settings(&merge_felix(None, None));
    let plan = plan_wireguard("node1", &s, &seed_nodes(), &seed_blocks(), &no_borrowed());
    assert!(plan.remove_device);
    assert!(plan.peers.is_empty() && plan.table_routes.is_empty() && plan.skipped.is_empty());
    // Still names what to remove.
    assert_eq!(plan.interface_name, "wireguard.cali");
    assert_eq!(
        plan.rule,
        RoutingRule {
            priority: 99,
            table: 1
        }
    );
}

#[test]
fn plan_does_not_depend_on_input_order_or_duplicates() {
    let nodes = seed_nodes();
    let mut shuffled: Vec<WireguardNode> = nodes.iter().rev().cloned().collect();
    shuffled.push(nodes[0].clone());
    let mut blocks = seed_blocks();
    blocks
        .get_mut("control")
        .unwrap()
        .insert(0, net("198.19.20.192/26"));
    let a = plan_wireguard("node1", &enabled(), &nodes, &blocks, &no_borrowed());
    let b = plan_wireguard("node1", &enabled(), &shuffled, &blocks, &no_borrowed());
    assert_eq!(a, b);
    assert_eq!(
        a.peers[0].allowed_ips,
        vec![net("198.19.20.192/26"), net("198.19.21.0/26")]
    );
}

#[test]
fn own_blocks_never_appear_even_when_another_node_lists_them() {
    let mut blocks = seed_blocks();
    blocks
        .get_mut("node2")
        .unwrap()
        .push(net("198.19.22.128/26"));
    let plan = plan_wireguard("node1", &enabled(), &seed_nodes(), &blocks, &no_borrowed());
    assert!(
        plan.table_routes
            .iter()
            .all(|r| r.cidr != net("198.19.22.128/26"))
    );
    assert!(
        plan.peers
            .iter()
            .all(|p| !p.allowed_ips.contains(&net("198.19.22.128/26")))
    );
}

#[test]
fn own_borrowed_address_gets_a_throw_route_not_the_tunnel() {
    // A pod on node1 holds 198.19.21.70, borrowed from node2's block (strictAffinity off).
    let borrowed = BTreeMap::from([("node1".to_string(), vec!["198.19.21.70".parse().unwrap()])]);
    let plan = plan_wireguard(
        "node1",
        &enabled(),
        &seed_nodes(),
        &seed_blocks(),
        &borrowed,
    );
    // node2's block still goes into the tunnel; the /32 inside it is thrown back to the main table.
    assert!(
        plan.table_routes
            .contains(&route("198.19.21.64/26", RouteAction::Dev))
    );
    assert!(
        plan.table_routes
            .contains(&route("198.19.21.70/32", RouteAction::Throw))
    );
    // And it is not one of node2's allowed IPs from node1's side.
    let node2 = plan.peers.iter().find(|p| p.node == "node2").unwrap();
    assert!(!node2.allowed_ips.contains(&net("198.19.21.70/32")));
    // Without the borrowed address there is no such route.
    let plain = plan_wireguard(
        "node1",
        &enabled(),
        &seed_nodes(),
        &seed_blocks(),
        &no_borrowed(),
    );
    assert!(
        !plain
            .table_routes
            .iter()
            .any(|r| r.cidr == net("198.19.21.70/32"))
    );
}

#[test]
fn peer_borrowed_addresses_are_in_its_allowed_ips_and_routes() {
    // node2's pods hold 198.19.22.140 (borrowed from node1's block) and 198.19.21.5 (from control's);
    // 198.19.21.80 is inside node2's own block and adds nothing.
    let borrowed = BTreeMap::from([(
        "node2".to_string(),
        vec![
            "198.19.22.140".parse().unwrap(),
            "198.19.21.5".parse().unwrap(),
            "198.19.21.80".parse().unwrap(),
        ],
    )]);
    let plan = plan_wireguard(
        "node1",
        &enabled(),
        &seed_nodes(),
        &seed_blocks(),
        &borrowed,
    );
    let node2 = plan.peers.iter().find(|p| p.node == "node2").unwrap();
    assert_eq!(
        node2.allowed_ips,
        vec![
            net("198.19.21.5/32"),
            net("198.19.21.64/26"),
            net("198.19.22.140/32")
        ]
    );
    for c in ["198.19.21.5/32", "198.19.22.140/32"] {
        assert!(
            plan.table_routes.contains(&route(c, RouteAction::Dev)),
            "{c}"
        );
    }
    assert!(
        !plan
            .table_routes
            .iter()
            .any(|r| r.cidr == net("198.19.21.80/32"))
    );
    // A skipped peer's borrowed address is thrown like its blocks.
    let mut nodes = seed_nodes();
    nodes[0].public_key = None;
    let plan = plan_wireguard("node1", &enabled(), &nodes, &seed_blocks(), &borrowed);
    assert!(
        plan.table_routes
            .contains(&route("198.19.22.140/32", RouteAction::Throw))
    );
}

#[test]
fn table_routes_become_kernel_routes_in_the_wireguard_table() {
    let mut nodes = seed_nodes();
    nodes[2].public_key = None; // control: no key yet, so its block is thrown back to main
    let plan = plan_wireguard("node1", &enabled(), &nodes, &seed_blocks(), &no_borrowed());
    let shown: Vec<String> = plan.routes().iter().map(|r| r.to_string()).collect();
    let own = crate::routes::OCELOT_PROTOCOL;
    assert_eq!(
        shown,
        [
            format!("throw 198.19.21.0/26 table 1 metric 0 proto {own}"),
            format!("198.19.21.64/26 dev wireguard.cali scope link table 1 metric 0 proto {own}"),
        ]
    );
    let off = plan_wireguard(
        "node1",
        &DataplaneSettings::default(),
        &nodes,
        &seed_blocks(),
        &no_borrowed(),
    );
    assert!(off.routes().is_empty());
}

#[test]
fn published_blocks_and_borrowed_addresses_come_from_the_calico_node_status() {
    let n: Node = serde_yaml::from_str(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: node2\nspec: {}\n\
         status:\n  podCIDRs: [198.19.21.64/26, nonsense]\n\
         \x20 borrowedAddresses: [198.19.23.197, 'fd00::5', nonsense]\n",
    )
    .unwrap();
    assert_eq!(published_blocks(&n), vec![net("198.19.21.64/26")]);
    // IPv4 only: the plan is of the IPv4 device.
    assert_eq!(
        published_borrowed(&n),
        vec!["198.19.23.197".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}
