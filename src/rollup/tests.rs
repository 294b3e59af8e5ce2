use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

use super::status::*;
use super::*;
use crate::api::Condition;
use crate::api::FelixConfigurationSpec;
use crate::api::bgp::{BGPConfigurationSpec, BGPPeerSpec};
use crate::api::nodestate::{BGPPeerStatusEntry, BGPPeerTarget, NodeBGPState};

fn time(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(secs).unwrap())
}

fn cond(type_: &str, status: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Test".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: time(0),
    }
}

fn target(name: &str, source: &str, kind: PeerType) -> BGPPeerTarget {
    BGPPeerTarget {
        name: name.into(),
        source: source.into(),
        peer_type: kind,
        ..Default::default()
    }
}

/// node1 of the seed: WireGuard on, the global peer host1 and one node-specific session.
fn spec() -> NodeNetworkStateSpec {
    let mut s = NodeNetworkStateSpec {
        node: "node1".into(),
        bgp: Some(NodeBGPState {
            peers: vec![
                target(
                    "Global_198_19_15_254",
                    "bgppeer-global-host1",
                    PeerType::Global,
                ),
                target(
                    "Node_198_19_15_253_port_1790",
                    "rack",
                    PeerType::NodeSpecific,
                ),
            ],
            ..Default::default()
        }),
        hash: "abc".into(),
        ..Default::default()
    };
    s.dataplane.wireguard_enabled = true;
    s
}

fn session(ip: &str, kind: PeerType, state: &str, info: &str) -> BGPPeerStatusEntry {
    BGPPeerStatusEntry {
        peer_ip: ip.into(),
        peer_type: kind,
        state: state.into(),
        since: None,
        info: Some(info.into()),
    }
}

fn applied(
    hash: &str,
    wireguard: &str,
    sessions: Vec<BGPPeerStatusEntry>,
) -> NodeNetworkStateStatus {
    NodeNetworkStateStatus {
        applied_hash: Some(hash.into()),
        conditions: vec![cond("Ready", "True"), cond(WIREGUARD_CONDITION, wireguard)],
        bgp_peers: sessions,
        ..Default::default()
    }
}

#[test]
fn facts_count_only_what_the_agent_applied_and_reports() {
    let s = spec();
    let none = node_facts(&s, None);
    assert!(!none.converged && none.wireguard_enabled && !none.wireguard_ready);
    assert_eq!(
        none.peers["bgppeer-global-host1"],
        Sessions {
            expected: 1,
            established: 0
        }
    );

    let sessions = vec![
        session("198.19.15.254", PeerType::Global, "up", "Established"),
        // Same address, other kind: not this session.
        session(
            "198.19.15.253.port.1790",
            PeerType::Global,
            "up",
            "Established",
        ),
    ];
    let f = node_facts(&s, Some(&applied("abc", "True", sessions.clone())));
    assert!(f.converged && f.wireguard_ready);
    assert_eq!(f.peers["bgppeer-global-host1"].established, 1);
    assert_eq!(f.peers["rack"].established, 0);

    // An old hash: not converged, so WireGuard does not count as ready either.
    let old = node_facts(&s, Some(&applied("old", "True", sessions)));
    assert!(!old.converged && !old.wireguard_ready);

    let mut sessions = vec![
        session("198.19.15.254", PeerType::Global, "start", "Connect"),
        session(
            "198.19.15.253.port.1790",
            PeerType::NodeSpecific,
            "up",
            "Established",
        ),
    ];
    let f = node_facts(&s, Some(&applied("abc", "False", sessions.clone())));
    assert!(f.converged && !f.wireguard_ready);
    assert_eq!(f.peers["bgppeer-global-host1"].established, 0);
    assert_eq!(f.peers["rack"].established, 1);
    // BIRD's protocol up is not enough: the BGP state must be Established.
    sessions[0].state = "up".into();
    let f = node_facts(&s, Some(&applied("abc", "True", sessions.clone())));
    assert_eq!(f.peers["bgppeer-global-host1"].established, 0);
    sessions[0].info = Some("Established".into());
    let f = node_facts(&s, Some(&applied("abc", "True", sessions)));
    assert_eq!(f.peers["bgppeer-global-host1"].established, 1);
}

fn facts(converged: bool, wg: bool, peers: &[(&str, u32, u32)]) -> NodeFacts {
    NodeFacts {
        converged,
        wireguard_enabled: wg,
        wireguard_ready: wg && converged,
        peers: peers
            .iter()
            .map(|(n, e, est)| {
                (
                    n.to_string(),
                    Sessions {
                        expected: *e,
                        established: *est,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn node_changes_mark_only_what_moved() {
    let mut r = Rollup::new();
    for n in ["control", "node1", "node2"] {
        r.set_node(n, Some(facts(false, true, &[("host1", 1, 0)])));
    }
    let dirty = r.take_dirty();
    assert!(dirty.contains(&Source::Felix("default".into())));
    assert!(dirty.contains(&Source::Peer("host1".into())));
    assert!(dirty.contains(&Source::AllPools));
    assert_eq!(
        r.totals(),
        NodeTotals {
            nodes: 3,
            converged: 0,
            wireguard_enabled: 3,
            wireguard_ready: 0
        }
    );

    // The same facts again: nothing to write.
    r.set_node("node1", Some(facts(false, true, &[("host1", 1, 0)])));
    assert!(!r.is_dirty());

    // node1's session comes up: only the peer moves.
    r.set_node("node1", Some(facts(false, true, &[("host1", 1, 1)])));
    assert_eq!(
        r.take_dirty(),
        [Source::Peer("host1".into())].into_iter().collect()
    );
    assert_eq!(
        r.peer("host1"),
        PeerCounts {
            nodes: 3,
            nodes_established: 1,
            sessions: 3,
            sessions_established: 1
        }
    );

    // node1 applies its state: FelixConfiguration default and node.node1, and the pools.
    r.set_node("node1", Some(facts(true, true, &[("host1", 1, 1)])));
    let dirty = r.take_dirty();
    assert_eq!(
        dirty,
        [
            Source::Felix("default".into()),
            Source::Felix("node.node1".into()),
            Source::AllPools
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(r.totals().wireguard_ready, 1);
    assert_eq!(felix_summary(&r.totals()), "WireGuard ready on 1/3 nodes");

    // node2 goes: its sessions and node count go with it.
    r.set_node("node2", None);
    assert_eq!(r.totals().nodes, 2);
    assert_eq!(r.peer("host1").nodes, 2);
    r.set_node("control", None);
    r.set_node("node1", None);
    assert_eq!(r.peer("host1"), PeerCounts::default());
    assert_eq!(r.totals(), NodeTotals::default());
}

fn block(pool: &str, node: Option<&str>, in_use: u32, free: u32) -> BlockFacts {
    BlockFacts {
        pool: pool.into(),
        node: node.map(str::to_string),
        in_use,
        free,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn blocks_count_per_pool_and_node() {
    let mut r = Rollup::new();
    r.set_block(
        net("198.19.22.128/26"),
        Some(block("default", Some("node1"), 4, 60)),
    );
    r.set_block(
        net("198.19.21.0/26"),
        Some(block("default", Some("node1"), 0, 64)),
    );
    r.set_block(
        net("198.19.21.64/26"),
        Some(block("default", Some("node2"), 1, 63)),
    );
    r.set_block(
        net("198.19.28.208/29"),
        Some(block("external", Some("node1"), 0, 8)),
    );
    assert_eq!(
        r.pool("default"),
        PoolCounts {
            blocks: 3,
            nodes_with_blocks: 2,
            in_use: 5,
            free: 187
        }
    );
    assert_eq!(r.pool("external").nodes_with_blocks, 1);
    r.take_dirty();
    // One more pod in node1's block: only its pool moves.
    r.set_block(
        net("198.19.22.128/26"),
        Some(block("default", Some("node1"), 5, 59)),
    );
    assert_eq!(
        r.take_dirty(),
        [Source::Pool("default".into())].into_iter().collect()
    );
    // node1 keeps one default block after losing the other.
    r.set_block(net("198.19.21.0/26"), None);
    assert_eq!(r.pool("default").nodes_with_blocks, 2);
    r.set_block(net("198.19.22.128/26"), None);
    assert_eq!(r.pool("default").nodes_with_blocks, 1);
    assert_eq!(r.pool("default").in_use, 1);
    assert_eq!(r.pool("nope"), PoolCounts::default());
}

#[test]
fn statuses_from_the_counters() {
    let now = time(1000);
    let t = NodeTotals {
        nodes: 3,
        converged: 2,
        wireguard_enabled: 3,
        wireguard_ready: 2,
    };
    let s = felix_status(Some(4), &FelixConfigurationSpec::default(), t, None, &now);
    assert_eq!(s.summary.as_deref(), Some("WireGuard ready on 2/3 nodes"));
    assert_eq!((s.nodes_ready, s.nodes_total), (Some(2), Some(3)));
    assert_eq!(
        (s.wireguard_nodes_ready, s.wireguard_nodes_total),
        (Some(2), Some(3))
    );
    let wg = s
        .conditions
        .iter()
        .find(|c| c.type_ == kind::WIREGUARD_READY)
        .unwrap();
    assert_eq!(
        (wg.status.as_str(), wg.reason.as_str()),
        ("False", "WireGuardNotReady")
    );
    assert_eq!(wg.observed_generation, Some(4));
    // Same values later: equal, transition times kept, so nothing is rewritten.
    assert_eq!(
        felix_status(
            Some(4),
            &FelixConfigurationSpec::default(),
            t,
            Some(&s),
            &time(2000)
        ),
        s
    );
    // All ready: the condition flips and gets the new time.
    let all = NodeTotals {
        converged: 3,
        wireguard_ready: 3,
        ..t
    };
    let s2 = felix_status(
        Some(4),
        &FelixConfigurationSpec::default(),
        all,
        Some(&s),
        &time(2000),
    );
    let wg = s2
        .conditions
        .iter()
        .find(|c| c.type_ == kind::WIREGUARD_READY)
        .unwrap();
    assert_eq!(
        (wg.status.as_str(), &wg.last_transition_time),
        ("True", &time(2000))
    );
    // WireGuard off: no WireGuard condition or counts.
    let off = felix_status(
        Some(5),
        &FelixConfigurationSpec::default(),
        NodeTotals {
            nodes: 3,
            converged: 3,
            ..Default::default()
        },
        None,
        &now,
    );
    assert_eq!(off.summary.as_deref(), Some("3/3 nodes applied"));
    let sup = off
        .conditions
        .iter()
        .find(|c| c.type_ == kind::SUPPORTED)
        .unwrap();
    assert_eq!(sup.status, "True");
    let bpf = FelixConfigurationSpec {
        bpf_enabled: Some(true),
        ..Default::default()
    };
    let s = felix_status(Some(5), &bpf, t, None, &now);
    let sup = s
        .conditions
        .iter()
        .find(|c| c.type_ == kind::SUPPORTED)
        .unwrap();
    assert_eq!(
        (sup.status.as_str(), sup.reason.as_str()),
        ("False", "NotSupportedYet")
    );
    assert!(sup.message.contains("spec.bpfEnabled"), "{}", sup.message);
    assert!(
        off.conditions
            .iter()
            .all(|c| c.type_ != kind::WIREGUARD_READY)
    );
    assert_eq!(off.wireguard_nodes_total, None);

    let peer = BGPPeerSpec {
        peer_ip: Some("198.19.15.254".into()),
        as_number: Some(64512),
        filters: vec!["only-blocks".into()],
        ..Default::default()
    };
    let c = PeerCounts {
        nodes: 3,
        nodes_established: 1,
        sessions: 3,
        sessions_established: 1,
    };
    let p = peer_status(Some(2), &peer, c, None, &now);
    assert_eq!(p.node.as_deref(), Some("(global)"));
    assert_eq!((p.nodes_selected, p.nodes_established), (Some(3), Some(1)));
    let sup = &p.conditions[0];
    assert_eq!(
        (sup.type_.as_str(), sup.status.as_str(), sup.reason.as_str()),
        (kind::SUPPORTED, "False", "NotSupportedYet")
    );
    assert!(sup.message.contains("spec.filters"), "{}", sup.message);
    assert_eq!(p.conditions[1].reason, "NotEstablished");
    let plain = BGPPeerSpec {
        filters: vec![],
        ..peer
    };
    let p = peer_status(Some(3), &plain, PeerCounts::default(), None, &now);
    assert_eq!(p.conditions[0].status, "True");
    assert_eq!(p.conditions[1].reason, "NoSessions");

    let cfg = BGPConfigurationSpec {
        as_number: Some(64513),
        local_workload_peering_ipv4: Some("169.254.0.179".into()),
        ..Default::default()
    };
    let b = bgp_config_status("default", Some(1), &cfg, None, &now);
    assert_eq!((b.mesh_enabled, b.as_number), (Some(true), Some(64513)));
    assert!(
        b.conditions[0]
            .message
            .contains("spec.localWorkloadPeeringIPV4")
    );
    let n = bgp_config_status(
        "node.node1",
        Some(1),
        &BGPConfigurationSpec::default(),
        None,
        &now,
    );
    assert_eq!((n.mesh_enabled, n.as_number), (None, None));
    assert_eq!(n.conditions[0].status, "True");

    let mut ps = crate::api::ippool::IPPoolStatus::default();
    let counts = PoolCounts {
        blocks: 3,
        nodes_with_blocks: 3,
        in_use: 5,
        free: 187,
    };
    pool_rollup(&mut ps, counts, t);
    assert_eq!(
        (
            ps.blocks,
            ps.nodes_with_blocks,
            ps.addresses_in_use,
            ps.addresses_free
        ),
        (Some(3), Some(3), Some(5), Some(187))
    );
    assert_eq!((ps.nodes_applied, ps.nodes_total), (Some(2), Some(3)));
}

#[derive(Clone, Debug)]
enum Op {
    Node(u8, Option<(bool, bool, u8, u8)>),
    Block(u8, Option<(u8, u8, u8)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0..6u8,
            proptest::option::of((any::<bool>(), any::<bool>(), 0..3u8, 0..3u8))
        )
            .prop_map(|(n, f)| Op::Node(n, f)),
        (0..8u8, proptest::option::of((0..3u8, 0..4u8, 0..9u8))).prop_map(|(b, f)| Op::Block(b, f)),
    ]
}

fn node_of(n: u8, f: (bool, bool, u8, u8)) -> NodeFacts {
    let (converged, wg, peer, est) = f;
    let mut peers = BTreeMap::new();
    peers.insert(
        format!("peer{peer}"),
        Sessions {
            expected: 2,
            established: u32::from(est.min(2)),
        },
    );
    if n.is_multiple_of(2) {
        peers.insert(
            "global".into(),
            Sessions {
                expected: 1,
                established: u32::from(converged),
            },
        );
    }
    NodeFacts {
        converged,
        wireguard_enabled: wg,
        wireguard_ready: wg && converged,
        peers,
    }
}

fn block_of(f: (u8, u8, u8)) -> BlockFacts {
    let (pool, node, used) = f;
    block(
        &format!("pool{pool}"),
        (node < 3).then(|| format!("n{node}")).as_deref(),
        u32::from(used),
        64 - u32::from(used),
    )
}

proptest! {
    /// After any sequence of node and block changes the counters equal a count from scratch.
    #[test]
    fn incremental_counters_equal_a_recount(ops in proptest::collection::vec(op(), 0..60)) {
        let mut r = Rollup::new();
        let mut nodes: BTreeMap<u8, NodeFacts> = BTreeMap::new();
        let mut blocks: BTreeMap<u8, BlockFacts> = BTreeMap::new();
        for o in ops {
            match o {
                Op::Node(n, f) => {
                    let f = f.map(|f| node_of(n, f));
                    r.set_node(&format!("n{n}"), f.clone());
                    match f { Some(f) => { nodes.insert(n, f); } None => { nodes.remove(&n); } }
                }
                Op::Block(b, f) => {
                    let f = f.map(block_of);
                    r.set_block(net(&format!("10.0.{b}.0/24")), f.clone());
                    match f { Some(f) => { blocks.insert(b, f); } None => { blocks.remove(&b); } }
                }
            }
        }
        let mut t = NodeTotals::default();
        let mut peers: BTreeMap<String, PeerCounts> = BTreeMap::new();
        for f in nodes.values() {
            t.add(f, 1);
            for (p, s) in &f.peers {
                peers.entry(p.clone()).or_default().add(*s, 1);
            }
        }
        prop_assert_eq!(r.totals(), t);
        for p in ["peer0", "peer1", "peer2", "global"] {
            prop_assert_eq!(r.peer(p), peers.get(p).copied().unwrap_or_default(), "{}", p);
        }
        for pool in ["pool0", "pool1", "pool2"] {
            let mine: Vec<&BlockFacts> = blocks.values().filter(|b| b.pool == pool).collect();
            let holders: std::collections::BTreeSet<&String> = mine.iter().filter_map(|b| b.node.as_ref()).collect();
            let want = PoolCounts {
                blocks: mine.len() as u32,
                nodes_with_blocks: holders.len() as u32,
                in_use: mine.iter().map(|b| b.in_use).sum(),
                free: mine.iter().map(|b| b.free).sum(),
            };
            prop_assert_eq!(r.pool(pool), want, "{}", pool);
        }
    }
}
