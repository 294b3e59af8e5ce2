use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::api::bgp::{BGPConfiguration, BGPPeerSpec};
use crate::api::ipam::{AffinityState, BlockAffinitySpec};
use crate::api::ippool::IPPoolSpec;
use crate::bgp::{BgpInputs, node_bgp_state};

use crate::testutil::calico_node as node;

fn pool(name: &str, cidr: &str, nat: bool) -> IPPool {
    IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            nat_outgoing: nat,
            ..Default::default()
        },
    )
}

fn affinity(node: &str, cidr: &str) -> BlockAffinity {
    BlockAffinity::new(
        &format!("{node}-{}", cidr.replace(['.', '/'], "-")),
        BlockAffinitySpec {
            cidr: cidr.into(),
            node: node.into(),
            state: AffinityState::Confirmed,
            ..Default::default()
        },
    )
}

fn peer(name: &str, spec: BGPPeerSpec) -> BGPPeer {
    BGPPeer::new(name, spec)
}

/// The seed cluster: three nodes, the seed's pools and blocks, the global peer host1.
fn seed() -> ClusterIndex {
    let mut ix = ClusterIndex::new();
    ix.upsert_pool(&pool("default-ipv4-ippool", "198.19.16.0/21", true));
    ix.upsert_pool(&pool("external-pool", "198.19.24.0/21", true));
    for (name, ip) in [
        ("control", "198.19.0.1"),
        ("node1", "198.19.0.2"),
        ("node2", "198.19.0.3"),
    ] {
        ix.upsert_node(&node(name, ip, &[]));
    }
    for (n, b) in [
        ("control", "198.19.21.0/26"),
        ("node1", "198.19.22.128/26"),
        ("node2", "198.19.21.64/26"),
    ] {
        ix.upsert_affinity(&affinity(n, b));
    }
    ix.upsert_peer(&peer(
        "bgppeer-global-host1",
        BGPPeerSpec {
            peer_ip: Some("198.19.15.254".into()),
            as_number: Some(64512),
            ..Default::default()
        },
    ));
    ix
}

#[test]
fn seed_node1_state() {
    let mut ix = seed();
    let s = ix.node_state("node1").expect("known node");
    assert_eq!(
        s.blocks,
        vec![NodeBlock {
            pool: "default-ipv4-ippool".into(),
            cidr: "198.19.22.128/26".into()
        }]
    );
    let bgp = s.bgp.as_ref().expect("bgp");
    assert!(bgp.mesh);
    assert_eq!(bgp.peers.len(), 1);
    assert_eq!(bgp.peers[0].name, "Global_198_19_15_254");
    assert_eq!(bgp.peers[0].as_number, 64512);
    assert_eq!(s.all_pools, ["198.19.16.0/21", "198.19.24.0/21"]);
    assert!(!s.dataplane.wireguard_enabled);
    assert_eq!(s.wireguard_interface_ipv4_address, None);
    assert_eq!(s.hash, spec_hash(&s));

    // The seed's `kubectl patch felixconfiguration default ... wireguardEnabled: true`.
    let on = FelixConfigurationSpec {
        wireguard_enabled: Some(true),
        ..Default::default()
    };
    assert_eq!(ix.upsert_felix("default", &on), Affected::All);
    assert_eq!(
        ix.set_wireguard_address("node1", Some("198.19.22.131".parse().unwrap())),
        Affected::one("node1")
    );
    let s2 = ix.node_state("node1").unwrap();
    assert!(s2.dataplane.wireguard_enabled);
    assert_eq!(
        s2.wireguard_interface_ipv4_address.as_deref(),
        Some("198.19.22.131")
    );
    assert_ne!(s2.hash, s.hash);
    assert!(ix.node_state("nowhere").is_none());
}

#[test]
fn node_felix_overrides_only_that_node() {
    let mut ix = seed();
    let before = ix.node_state("node2").unwrap();
    let own = FelixConfigurationSpec {
        wireguard_listening_port: Some(51821),
        ..Default::default()
    };
    assert_eq!(ix.upsert_felix("node.node1", &own), Affected::one("node1"));
    assert_eq!(
        ix.node_state("node1")
            .unwrap()
            .dataplane
            .wireguard_listening_port,
        Some(51821)
    );
    assert_eq!(ix.node_state("node2").unwrap(), before);
}

#[test]
fn spec_size_does_not_grow_with_the_cluster() {
    let size = |n: u32| {
        let mut ix = seed();
        for i in 0..n {
            let ip = format!("198.19.{}.{}", 1 + i / 250, 1 + i % 250);
            ix.upsert_node(&node(&format!("w{i}"), &ip, &[]));
        }
        serde_json::to_vec(&ix.node_state("node1").unwrap())
            .unwrap()
            .len()
    };
    assert_eq!(size(0), size(1000), "the spec never lists other nodes");
}

#[test]
fn a_node_selector_peer_affects_only_the_nodes_it_selects() {
    let mut ix = ClusterIndex::new();
    for i in 0..50u32 {
        let rack = if i % 10 == 0 { "a" } else { "b" };
        ix.upsert_node(&node(
            &format!("n{i}"),
            &format!("10.0.0.{}", i + 1),
            &[("rack", rack)],
        ));
    }
    let tor = |sel: &str| {
        peer(
            "tor",
            BGPPeerSpec {
                node_selector: Some(sel.into()),
                peer_ip: Some("10.9.9.9".into()),
                as_number: Some(65001),
                ..Default::default()
            },
        )
    };
    let Affected::Nodes(a) = ix.upsert_peer(&tor("rack == 'a'")) else {
        panic!("a selector peer is not cluster-wide");
    };
    assert_eq!(a.len(), 5, "{a:?}");
    // Moving it to rack b: the old and the new nodes.
    let Affected::Nodes(b) = ix.upsert_peer(&tor("rack == 'b'")) else {
        panic!()
    };
    assert_eq!(b.len(), 50);
    let Affected::Nodes(gone) = ix.delete_peer("tor") else {
        panic!()
    };
    assert_eq!(
        gone.len(),
        45,
        "deleting it reaches the rack b nodes it peers from"
    );
    assert_eq!(ix.delete_peer("tor"), Affected::none());
}

// ---- properties: the index equals a from-scratch expansion, and Affected is complete ----------

#[derive(Clone, Debug)]
enum Op {
    Node {
        i: usize,
        rack: u8,
        rr: bool,
        asn: Option<u32>,
    },
    DelNode(usize),
    Peer {
        i: usize,
        local: u8,
        remote: u8,
    },
    DelPeer(usize),
    Config {
        port: Option<u16>,
        mesh: bool,
    },
    NodeConfig {
        i: usize,
        port: Option<u16>,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize, 0..3u8, prop::bool::weighted(0.15), prop::option::of(65000..65003u32))
            .prop_map(|(i, rack, rr, asn)| Op::Node { i, rack, rr, asn }),
        1 => (0..8usize).prop_map(Op::DelNode),
        3 => (0..4usize, 0..5u8, 0..5u8).prop_map(|(i, local, remote)| Op::Peer { i, local, remote }),
        1 => (0..4usize).prop_map(Op::DelPeer),
        1 => (prop::option::of(prop_oneof![Just(179u16), Just(1790)]), any::<bool>())
            .prop_map(|(port, mesh)| Op::Config { port, mesh }),
        1 => (0..8usize, prop::option::of(Just(1791u16))).prop_map(|(i, port)| Op::NodeConfig { i, port }),
    ]
}

/// The world as plain lists, the way a from-scratch expansion sees it.
#[derive(Default)]
struct World {
    nodes: BTreeMap<usize, Node>,
    peers: BTreeMap<usize, BGPPeer>,
    configs: BTreeMap<String, BGPConfiguration>,
}

fn apply(ix: &mut ClusterIndex, w: &mut World, op: &Op) -> Affected {
    match op.clone() {
        Op::Node { i, rack, rr, asn } => {
            let mut n = node(
                &format!("n{i}"),
                &format!("10.0.0.{}", i + 1),
                &[("rack", &rack.to_string())],
            );
            let bgp = n.spec.bgp.as_mut().unwrap();
            bgp.as_number = asn;
            bgp.route_reflector_cluster_id = rr.then(|| "244.0.0.1".to_string());
            w.nodes.insert(i, n.clone());
            ix.upsert_node(&n)
        }
        Op::DelNode(i) => {
            w.nodes.remove(&i);
            ix.delete_node(&format!("n{i}"))
        }
        Op::Peer { i, local, remote } => {
            let mut spec = BGPPeerSpec::default();
            match local {
                0 => {}
                1 => spec.node = Some(format!("n{}", i)),
                l => spec.node_selector = Some(format!("rack == '{}'", l - 2)),
            }
            match remote {
                0 => {
                    spec.peer_ip = Some("10.9.9.9".into());
                    spec.as_number = Some(65009);
                }
                1 => {
                    spec.peer_ip = Some(format!("10.0.0.{}", i + 2));
                    spec.as_number = Some(64512);
                }
                r => spec.peer_selector = Some(format!("rack == '{}'", r - 2)),
            }
            let p = peer(&format!("p{i}"), spec);
            w.peers.insert(i, p.clone());
            ix.upsert_peer(&p)
        }
        Op::DelPeer(i) => {
            w.peers.remove(&i);
            ix.delete_peer(&format!("p{i}"))
        }
        Op::Config { port, mesh } => {
            let spec = BGPConfigurationSpec {
                listen_port: port,
                node_to_node_mesh_enabled: Some(mesh),
                ..Default::default()
            };
            w.configs.insert(
                "default".into(),
                BGPConfiguration::new("default", spec.clone()),
            );
            ix.upsert_bgp_config("default", &spec)
        }
        Op::NodeConfig { i, port } => {
            let name = format!("node.n{i}");
            let spec = BGPConfigurationSpec {
                listen_port: port,
                ..Default::default()
            };
            w.configs
                .insert(name.clone(), BGPConfiguration::new(&name, spec.clone()));
            ix.upsert_bgp_config(&name, &spec)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_matches_from_scratch_expansion_and_affected_is_complete(
        ops in proptest::collection::vec(arb_op(), 1..40),
    ) {
        let mut ix = ClusterIndex::new();
        let mut w = World::default();
        for op in &ops {
            let names: Vec<String> = ix.node_names().map(String::from).collect();
            let before: BTreeMap<String, _> = names.iter().map(|n| (n.clone(), ix.node_state(n))).collect();
            let affected = apply(&mut ix, &mut w, op);
            for (n, old) in &before {
                if !affected.contains(n) {
                    prop_assert_eq!(&ix.node_state(n), old, "{} changed after {:?} but was not reported", n, op);
                }
            }
            let nodes: Vec<Node> = w.nodes.values().cloned().collect();
            let peers: Vec<BGPPeer> = w.peers.values().cloned().collect();
            let configs: Vec<BGPConfiguration> = w.configs.values().cloned().collect();
            let inputs = BgpInputs { configs: &configs, peers: &peers, nodes: &nodes };
            for n in ix.node_names() {
                let want = node_bgp_state(n, &inputs);
                prop_assert_eq!(ix.node_state(n).and_then(|s| s.bgp), want, "node {} after {:?}", n, op);
            }
        }
    }
}

#[test]
fn nat_outgoing_pools_are_the_natoutgoing_ones_disabled_included() {
    let mut ix = seed();
    ix.upsert_pool(&pool("external-pool", "198.19.24.0/21", false));
    let s = ix.node_state("node1").expect("known node");
    assert_eq!(s.nat_outgoing_pools, ["198.19.16.0/21"]);
    assert_eq!(s.all_pools, ["198.19.16.0/21", "198.19.24.0/21"]);
    // Felix is not told about `disabled`: the pool's existing pods stay masqueraded.
    let mut disabled = pool("default-ipv4-ippool", "198.19.16.0/21", true);
    disabled.spec.disabled = true;
    ix.upsert_pool(&disabled);
    let d = ix.node_state("node1").expect("known node");
    assert_eq!(d.nat_outgoing_pools, ["198.19.16.0/21"]);
    assert_eq!(d.hash, s.hash);
    // natOutgoing off everywhere: nothing to masquerade, a new spec hash.
    ix.upsert_pool(&pool("default-ipv4-ippool", "198.19.16.0/21", false));
    let off = ix.node_state("node1").expect("known node");
    assert!(off.nat_outgoing_pools.is_empty());
    assert_ne!(off.hash, s.hash);
}
