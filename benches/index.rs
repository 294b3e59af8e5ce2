//! Cluster index benchmarks (issue 9): compose every node's desired state at 1,000 / 2,500 / 5,000
//! nodes with 50 pools and 200 BGPPeers; one BGPPeer edit whose selector matches 10% of the nodes,
//! recomposing only the nodes it reports; and the index's memory at 5,000 nodes.
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ocelot::api::bgp::{BGPPeer, BGPPeerSpec};
use ocelot::api::ipam::{AffinityState, BlockAffinity, BlockAffinitySpec};
use ocelot::api::ippool::{IPPool, IPPoolSpec};
use ocelot::api::node::{Node, NodeBGPSpec, NodeSpec};
use ocelot::index::{Affected, ClusterIndex};

mod common;
use common::LIVE;

const POOLS: usize = 50;
const PEERS: usize = 200;
/// Racks label the nodes: a `rack == 'rN'` selector matches 1 in RACKS.
const RACKS: usize = 20;

fn node(i: usize) -> Node {
    let mut n = Node::new(
        &format!("node-{i}"),
        NodeSpec {
            bgp: Some(NodeBGPSpec {
                ipv4_address: Some(format!(
                    "10.{}.{}.{}/16",
                    100 + i / 65536,
                    (i / 256) % 256,
                    i % 256
                )),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let mut labels: std::collections::BTreeMap<String, String> = [
        ("rack".to_string(), format!("r{}", i % RACKS)),
        ("zone".to_string(), format!("z{}", i % 3)),
    ]
    .into();
    if i < REFLECTORS {
        labels.insert("route-reflector".into(), "true".into());
        n.spec.bgp.as_mut().expect("bgp").route_reflector_cluster_id = Some("244.0.0.1".into());
    }
    n.metadata.labels = Some(labels);
    n
}

/// Nodes 0..REFLECTORS are route reflectors.
const REFLECTORS: usize = 3;

/// 50 pools, `nodes` nodes with one block each (three of them route reflectors), and 200 peers:
/// 10 global routers, 180 rack top-of-rack peers (a nodeSelector matching 5% each), 10
/// peerSelector peerings of a zone's nodes with the reflectors (each reflector then has a reverse
/// session to every node, as in Calico).
fn cluster(nodes: usize) -> ClusterIndex {
    let mut ix = ClusterIndex::new();
    for p in 0..POOLS {
        ix.upsert_pool(&IPPool::new(
            &format!("pool-{p}"),
            IPPoolSpec {
                // pool-0 holds every node's block; the others are disjoint /16s.
                cidr: if p == 0 {
                    "20.0.0.0/13".to_string()
                } else {
                    format!("30.{p}.0.0/16")
                },
                nat_outgoing: p % 2 == 0,
                ..Default::default()
            },
        ));
    }
    for i in 0..nodes {
        ix.upsert_node(&node(i));
        let base = u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)) + 64 * i as u32;
        let cidr = format!("{}/26", std::net::Ipv4Addr::from(base));
        ix.upsert_affinity(&BlockAffinity::new(
            &format!("node-{i}-block"),
            BlockAffinitySpec {
                cidr,
                node: format!("node-{i}"),
                state: AffinityState::Confirmed,
                ..Default::default()
            },
        ));
    }
    for p in 0..PEERS {
        ix.upsert_peer(&peer(p));
    }
    ix
}

/// Peer `p` of the 200: see [`cluster`].
fn peer(p: usize) -> BGPPeer {
    let spec = match p {
        0..10 => BGPPeerSpec {
            peer_ip: Some(format!("192.0.2.{}", p + 1)),
            as_number: Some(65000),
            ..Default::default()
        },
        10..190 => BGPPeerSpec {
            node_selector: Some(format!("rack == 'r{}'", p % RACKS)),
            peer_ip: Some(format!("198.51.{}.{}", p / 200, p % 200 + 1)),
            as_number: Some(65001 + p as u32),
            ..Default::default()
        },
        _ => BGPPeerSpec {
            node_selector: Some(format!("zone == 'z{}'", p % 3)),
            peer_selector: Some("route-reflector == 'true'".into()),
            ..Default::default()
        },
    };
    BGPPeer::new(&format!("peer-{p}"), spec)
}

fn compose_all(ix: &ClusterIndex) -> usize {
    let names: Vec<&str> = ix.node_names().collect();
    names
        .iter()
        .map(|n| ix.node_state(n).map_or(0, |s| s.hash.len()))
        .sum()
}

fn bench(c: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let ix = cluster(5_000);
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "index memory at 5,000 nodes, {POOLS} pools, {PEERS} peers: {:.1} MiB ({} bytes per node)",
        bytes as f64 / (1024.0 * 1024.0),
        bytes / 5_000
    );
    let t = Instant::now();
    let total = compose_all(&ix);
    println!(
        "one full compose of 5,000 nodes (single run): {:.0} ms ({total} hash bytes)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let s = ix.node_state("node-42").expect("node");
    assert_eq!(s.blocks.len(), 1, "every node has its block");
    assert!(
        s.bgp.is_some_and(|b| b.peers.len() >= 11),
        "global + rack peers"
    );
    drop(ix);

    let mut g = c.benchmark_group("compose all node states");
    g.sample_size(10);
    for n in [1_000, 2_500, 5_000] {
        let ix = cluster(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &ix, |b, ix| {
            b.iter(|| black_box(compose_all(ix)))
        });
    }
    g.finish();

    // Baseline in the same run: the per-node expansion over plain object lists (what the operator
    // would do without the index), BGP only, at 1,000 nodes.
    {
        let n = 1_000;
        let nodes: Vec<Node> = (0..n).map(node).collect();
        let peers: Vec<BGPPeer> = (0..PEERS).map(peer).collect();
        let inputs = ocelot::bgp::BgpInputs {
            configs: &[],
            peers: &peers,
            nodes: &nodes,
        };
        let mut g = c.benchmark_group("baseline: expand BGP for all nodes from object lists");
        g.sample_size(10);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                (0..n)
                    .filter_map(|i| ocelot::bgp::node_bgp_state(&format!("node-{i}"), &inputs))
                    .count()
            })
        });
        g.finish();
    }

    // One BGPPeer edit whose nodeSelector matches 10% of 5,000 nodes (racks r0 and r1).
    let mut ix = cluster(5_000);
    let edit = |asn: u32| {
        BGPPeer::new(
            "peer-edit",
            BGPPeerSpec {
                node_selector: Some("rack in {'r0', 'r1'}".into()),
                peer_ip: Some("203.0.113.1".into()),
                as_number: Some(asn),
                ..Default::default()
            },
        )
    };
    ix.upsert_peer(&edit(64900));
    match ix.upsert_peer(&edit(64901)) {
        Affected::Nodes(n) => println!("one BGPPeer edit reports {} of 5,000 nodes", n.len()),
        Affected::All => println!("one BGPPeer edit reports all nodes"),
    }
    let mut asn = 64902;
    c.bench_function(
        "one BGPPeer edit (10% of 5,000 nodes): update + recompose affected",
        |b| {
            b.iter(|| {
                asn += 1;
                let Affected::Nodes(nodes) = ix.upsert_peer(&edit(asn)) else {
                    panic!("a selector peer is not cluster-wide")
                };
                black_box(nodes.iter().filter_map(|n| ix.node_state(n)).count())
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
