use super::*;
use crate::api::bgp::{BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec};
use crate::api::node::{Node, NodeBGPSpec, NodeSpec};
use crate::api::nodestate::NodeBGPState;

use crate::testutil::calico_node as node;

fn with_bgp(mut n: Node, f: impl FnOnce(&mut NodeBGPSpec)) -> Node {
    f(n.spec.bgp.as_mut().expect("bgp"));
    n
}

pub(super) fn peer(name: &str, spec: BGPPeerSpec) -> BGPPeer {
    BGPPeer::new(name, spec)
}

pub(super) fn config(name: &str, spec: BGPConfigurationSpec) -> BGPConfiguration {
    BGPConfiguration::new(name, spec)
}

pub(super) fn seed_nodes() -> Vec<Node> {
    vec![
        node("control", "198.19.0.1", &[]),
        node("node1", "198.19.0.2", &[]),
        node("node2", "198.19.0.3", &[]),
    ]
}

pub(super) fn seed_peers() -> Vec<BGPPeer> {
    vec![peer(
        "bgppeer-global-host1",
        BGPPeerSpec {
            peer_ip: Some("198.19.15.254".into()),
            as_number: Some(64512),
            ..Default::default()
        },
    )]
}

pub(super) fn state(
    node: &str,
    configs: &[BGPConfiguration],
    peers: &[BGPPeer],
    nodes: &[Node],
) -> NodeBGPState {
    node_bgp_state(
        node,
        &BgpInputs {
            configs,
            peers,
            nodes,
        },
    )
    .expect("node runs BGP")
}

fn names(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn seed_node1_meshes_with_control_and_node2_and_peers_with_host1() {
    let nodes = seed_nodes();
    let s = state("node1", &[], &seed_peers(), &nodes);
    assert_eq!(s.as_number, 64512);
    assert_eq!(s.default_as_number, 64512);
    assert_eq!(s.ipv4_address.to_string(), "198.19.0.2");
    assert_eq!(s.listen_port, 179);
    assert_eq!(s.log_severity.as_deref(), Some("Info"));
    assert!(s.mesh);
    assert_eq!(names(&s.peers), ["Global_198_19_15_254"]);
    let g = &s.peers[0];
    assert_eq!(
        (g.peer_type, g.as_number, g.passive),
        (PeerType::Global, 64512, false)
    );
    assert_eq!(g.source, "bgppeer-global-host1");

    let mesh = mesh_sessions(&s, &nodes);
    assert_eq!(names(&mesh), ["Mesh_198_19_0_1", "Mesh_198_19_0_3"]);
    assert!(
        mesh.iter()
            .all(|m| m.peer_type == PeerType::NodeMesh && m.as_number == 64512)
    );
    // Unidirectional: the greater address (as a string) dials, so node1 dials .1 and waits for .3.
    assert!(!mesh[0].passive);
    assert!(mesh[1].passive);
}

#[test]
fn passive_rule_compares_address_strings() {
    // "198.19.0.10" < "198.19.0.9" as strings, although 10 > 9 as numbers.
    let nodes = vec![node("a", "198.19.0.9", &[]), node("b", "198.19.0.10", &[])];
    let a = state("a", &[], &[], &nodes);
    let b = state("b", &[], &[], &nodes);
    assert!(!mesh_sessions(&a, &nodes)[0].passive);
    assert!(mesh_sessions(&b, &nodes)[0].passive);
}

#[test]
fn as_number_listen_port_and_log_severity_defaults_and_overrides() {
    let nodes = vec![
        with_bgp(node("a", "10.0.0.1", &[]), |b| b.as_number = Some(65010)),
        node("b", "10.0.0.2", &[]),
    ];
    assert_eq!(state("b", &[], &[], &nodes).as_number, 64512);
    let configs = vec![
        config(
            "default",
            BGPConfigurationSpec {
                as_number: Some(65000),
                listen_port: Some(1790),
                log_severity_screen: Some("Warning".into()),
                ..Default::default()
            },
        ),
        config(
            "node.b",
            BGPConfigurationSpec {
                listen_port: Some(1791),
                log_severity_screen: Some("Debug".into()),
                ..Default::default()
            },
        ),
    ];
    let a = state("a", &configs, &[], &nodes);
    let b = state("b", &configs, &[], &nodes);
    assert_eq!(
        (a.as_number, a.listen_port, a.log_severity.as_deref()),
        (65010, 1790, Some("Warning"))
    );
    assert_eq!(
        (b.as_number, b.listen_port, b.log_severity.as_deref()),
        (65000, 1791, Some("Debug"))
    );
    // The mesh peer keeps its own AS. As confd renders it, a mesh session is `Mesh_<ip>` whatever
    // the port, and dials the *other* node's listen port (published in its Calico Node), not b's.
    let m = mesh_sessions(&b, &nodes);
    assert_eq!(names(&m), ["Mesh_10_0_0_1"]);
    assert_eq!((m[0].as_number, m[0].port), (65010, None));
    let mut published = nodes.clone();
    published[0].status = Some(crate::api::node::NodeStatus {
        bgp_listen_port: Some(a.listen_port),
        ..Default::default()
    });
    let m = mesh_sessions(&b, &published);
    assert_eq!(names(&m), ["Mesh_10_0_0_1"]);
    assert_eq!(m[0].port, Some(1790), "a listens on 1790 (default config)");
}

#[test]
fn peer_selector_without_local_nodes_is_a_global_peer() {
    let nodes = vec![
        node("node1", "10.0.0.1", &[]),
        node("rr", "10.0.0.9", &[("rr", "true")]),
    ];
    let peers = vec![peer(
        "to-rr",
        BGPPeerSpec {
            peer_selector: Some("rr == 'true'".into()),
            keep_original_next_hop: true,
            num_allowed_local_as_numbers: Some(3),
            max_restart_time: Some("1.5m".into()),
            ..Default::default()
        },
    )];
    let n1 = state("node1", &[], &peers, &nodes);
    assert_eq!(names(&n1.peers), ["Global_10_0_0_9"]);
    let s = &n1.peers[0];
    assert_eq!(s.peer_type, PeerType::Global);
    assert_eq!(s.restart_seconds, Some(90), "1.5m is 90 s, not dropped");
    assert!(
        !s.keep_original_next_hop && s.num_allowed_local_as_numbers.is_none(),
        "peerSelector sessions do not copy keepOriginalNextHop or numAllowedLocalASNumbers"
    );
    // The selected node peers back with every node: a node-specific (reverse) session.
    let rr = state("rr", &[], &peers, &nodes);
    assert_eq!(names(&rr.peers), ["Node_10_0_0_1"]);
}

#[test]
fn peer_ip_sessions_carry_every_option_and_round_restart_time() {
    let nodes = seed_nodes();
    let peers = vec![peer(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("10.9.9.9:1790".into()),
            as_number: Some(65001),
            keep_original_next_hop: true,
            num_allowed_local_as_numbers: Some(2),
            max_restart_time: Some("2.5s".into()),
            keepalive_time: Some("20s".into()),
            ..Default::default()
        },
    )];
    let s = &state("node1", &[], &peers, &nodes).peers[0];
    assert_eq!(s.name, "Global_10_9_9_9_port_1790");
    assert_eq!(s.port, Some(1790));
    assert!(s.keep_original_next_hop);
    assert_eq!(s.num_allowed_local_as_numbers, Some(2));
    assert_eq!(s.restart_seconds, Some(3), "math.Round(2.5) = 3");
    assert_eq!(s.keepalive_seconds, Some(20));
    assert!(!s.passive, "not a Calico node: node1 dials");
}

#[test]
fn node_without_ipv4_bgp_address_runs_no_bgp_and_is_not_meshed() {
    let mut nodes = seed_nodes();
    nodes.push(Node::new("nobgp", NodeSpec::default()));
    assert!(
        node_bgp_state(
            "nobgp",
            &BgpInputs {
                configs: &[],
                peers: &[],
                nodes: &nodes
            }
        )
        .is_none()
    );
    let s = state("node1", &[], &[], &nodes);
    assert_eq!(mesh_sessions(&s, &nodes).len(), 2);
}

#[test]
fn mesh_disabled_gives_no_mesh_sessions() {
    let nodes = seed_nodes();
    let configs = vec![config(
        "default",
        BGPConfigurationSpec {
            node_to_node_mesh_enabled: Some(false),
            ..Default::default()
        },
    )];
    let s = state("node1", &configs, &seed_peers(), &nodes);
    assert!(!s.mesh);
    assert!(mesh_sessions(&s, &nodes).is_empty());
    assert_eq!(names(&s.peers), ["Global_198_19_15_254"]);
}

fn rr_cluster() -> (Vec<Node>, Vec<BGPPeer>, Vec<BGPConfiguration>) {
    let rr = |name: &str, ip: &str| {
        with_bgp(node(name, ip, &[("route-reflector", "true")]), |b| {
            b.route_reflector_cluster_id = Some("244.0.0.1".into())
        })
    };
    let nodes = vec![
        rr("rr1", "10.0.0.1"),
        rr("rr2", "10.0.0.2"),
        node("a", "10.0.0.3", &[]),
        node("b", "10.0.0.4", &[]),
    ];
    let peers = vec![peer(
        "peer-with-route-reflectors",
        BGPPeerSpec {
            node_selector: Some("all()".into()),
            peer_selector: Some("route-reflector == 'true'".into()),
            ..Default::default()
        },
    )];
    let configs = vec![config(
        "default",
        BGPConfigurationSpec {
            node_to_node_mesh_enabled: Some(false),
            ..Default::default()
        },
    )];
    (nodes, peers, configs)
}

#[test]
fn route_reflector_clients_peer_with_reflectors_and_reflectors_peer_back() {
    let (nodes, peers, configs) = rr_cluster();
    let a = state("a", &configs, &peers, &nodes);
    assert_eq!(names(&a.peers), ["Node_10_0_0_1", "Node_10_0_0_2"]);
    assert!(
        a.peers
            .iter()
            .all(|p| !p.route_reflector_client && p.peer_type == PeerType::NodeSpecific)
    );
    // The clients have the greater addresses here, so they dial the reflectors.
    assert!(a.peers.iter().all(|p| !p.passive));

    let rr1 = state("rr1", &configs, &peers, &nodes);
    assert!(!rr1.mesh);
    assert_eq!(rr1.route_reflector_cluster_id.as_deref(), Some("244.0.0.1"));
    assert_eq!(
        names(&rr1.peers),
        ["Node_10_0_0_2", "Node_10_0_0_3", "Node_10_0_0_4"]
    );
    let client = |ip: &str| {
        rr1.peers
            .iter()
            .find(|p| p.peer_ip.to_string() == ip)
            .expect(ip)
            .route_reflector_client
    };
    // Reflectors sharing a cluster ID are not each other's clients; the ordinary nodes are clients.
    assert!(!client("10.0.0.2"));
    assert!(client("10.0.0.3") && client("10.0.0.4"));
    assert!(
        rr1.peers.iter().all(|p| !p.passive),
        "Node_ sessions are never passive: both ends dial, as confd renders them"
    );

    let conf = render(&NodeBirdInput {
        node: "rr1".into(),
        bgp: rr1,
        ..Default::default()
    });
    assert_eq!(conf.matches("rr client;").count(), 2, "{conf}");
    assert_eq!(
        conf.matches("rr cluster id 244.0.0.1;").count(),
        2,
        "{conf}"
    );
}

#[test]
fn mesh_skips_route_reflectors() {
    let (nodes, peers, _) = rr_cluster();
    let a = state("a", &[], &peers, &nodes);
    assert!(a.mesh);
    assert_eq!(names(&mesh_sessions(&a, &nodes)), ["Mesh_10_0_0_4"]);
    let rr1 = state("rr1", &[], &peers, &nodes);
    assert!(!rr1.mesh);
    assert!(mesh_sessions(&rr1, &nodes).is_empty());
}

#[test]
fn node_specific_peering_is_dropped_when_a_global_one_has_the_same_address() {
    let nodes = seed_nodes();
    let peers = vec![
        peer(
            "global-router",
            BGPPeerSpec {
                peer_ip: Some("10.9.9.9".into()),
                as_number: Some(65001),
                ..Default::default()
            },
        ),
        peer(
            "node1-router",
            BGPPeerSpec {
                node: Some("node1".into()),
                peer_ip: Some("10.9.9.9".into()),
                as_number: Some(65002),
                ..Default::default()
            },
        ),
        peer(
            "node1-tor",
            BGPPeerSpec {
                node_selector: Some("has(kubernetes.io/hostname) || all()".into()),
                peer_ip: Some("10.9.9.8:1790".into()),
                as_number: Some(65003),
                ..Default::default()
            },
        ),
    ];
    let s = state("node1", &[], &peers, &nodes);
    assert_eq!(
        names(&s.peers),
        ["Global_10_9_9_9", "Node_10_9_9_8_port_1790"]
    );
    assert_eq!(s.peers[0].as_number, 65001);
    assert_eq!(
        (s.peers[1].port, s.peers[1].peer_type),
        (Some(1790), PeerType::NodeSpecific)
    );
}

#[test]
fn peer_selector_gives_forward_and_reverse_peerings() {
    let nodes = vec![
        node("node1", "10.0.0.1", &[]),
        node("node2", "10.0.0.2", &[]),
        node("edge", "10.0.0.9", &[("edge", "true")]),
    ];
    let peers = vec![peer(
        "node1-to-edge",
        BGPPeerSpec {
            node: Some("node1".into()),
            peer_selector: Some("edge == 'true'".into()),
            ..Default::default()
        },
    )];
    let n1 = state("node1", &[], &peers, &nodes);
    assert_eq!(names(&n1.peers), ["Node_10_0_0_9"]);
    let edge = state("edge", &[], &peers, &nodes);
    assert_eq!(names(&edge.peers), ["Node_10_0_0_1"]);
    assert!(
        !n1.peers[0].passive && !edge.peers[0].passive,
        "node-specific sessions are never passive: both ends dial, as confd renders them"
    );
    assert_eq!(edge.peers[0].source, "node1-to-edge");
    assert!(state("node2", &[], &peers, &nodes).peers.is_empty());
}

#[test]
fn peer_ip_of_a_calico_node_gets_the_reverse_peering_unless_manual_or_explicit() {
    let nodes = vec![
        node("a", "10.0.0.1", &[]),
        with_bgp(node("b", "10.0.0.2", &[]), |b| b.as_number = Some(65002)),
    ];
    let mut forward = BGPPeerSpec {
        node: Some("a".into()),
        peer_ip: Some("10.0.0.2".into()),
        as_number: Some(65002),
        keep_original_next_hop: true,
        ..Default::default()
    };
    let b = state("b", &[], &[peer("a-to-b", forward.clone())], &nodes);
    assert_eq!(names(&b.peers), ["Node_10_0_0_1"]);
    assert_eq!(b.peers[0].as_number, 64512);
    assert!(
        !b.peers[0].keep_original_next_hop,
        "a reverse peering does not copy keepOriginalNextHop"
    );

    // The AS must match too: otherwise peerIP is not that Calico node.
    forward.as_number = Some(65003);
    assert!(
        state("b", &[], &[peer("a-to-b", forward.clone())], &nodes)
            .peers
            .is_empty()
    );

    forward.as_number = Some(65002);
    forward.reverse_peering = Some(crate::api::bgp::ReversePeering::Manual);
    assert!(
        state("b", &[], &[peer("a-to-b", forward.clone())], &nodes)
            .peers
            .is_empty()
    );

    // An explicit forward peering from b to a wins over the implied reverse one.
    forward.reverse_peering = None;
    let explicit = BGPPeerSpec {
        node: Some("b".into()),
        peer_ip: Some("10.0.0.1".into()),
        as_number: Some(64512),
        ttl_security: Some(2),
        ..Default::default()
    };
    let b = state(
        "b",
        &[],
        &[peer("a-to-b", forward), peer("b-to-a", explicit)],
        &nodes,
    );
    assert_eq!(names(&b.peers), ["Node_10_0_0_1"]);
    assert_eq!(
        (b.peers[0].source.as_str(), b.peers[0].ttl_security),
        ("b-to-a", Some(2))
    );
}

#[test]
fn next_hop_keep_only_for_ebgp() {
    let nodes = seed_nodes();
    let spec = |asn| BGPPeerSpec {
        peer_ip: Some("10.9.9.9".into()),
        as_number: Some(asn),
        keep_original_next_hop: true,
        ..Default::default()
    };
    assert!(state("node1", &[], &[peer("p", spec(65001))], &nodes).peers[0].keep_original_next_hop);
    let ibgp = state("node1", &[], &[peer("p", spec(64512))], &nodes);
    assert!(!ibgp.peers[0].keep_original_next_hop);

    let ebgp = state("node1", &[], &[peer("p", spec(65001))], &nodes);
    let conf = |bgp| {
        render(&NodeBirdInput {
            node: "node1".into(),
            bgp,
            ..Default::default()
        })
    };
    let c = conf(ebgp);
    assert!(
        c.contains("neighbor 10.9.9.9 as 65001;") && c.contains("next hop keep;"),
        "{c}"
    );
    assert!(c.contains("calico_export_to_bgp_peers(false)"), "{c}");
    assert!(!conf(ibgp).contains("next hop keep"));
}

#[test]
fn invalid_peers_contribute_nothing() {
    let nodes = seed_nodes();
    let peers = vec![
        peer(
            "both",
            BGPPeerSpec {
                node: Some("node1".into()),
                node_selector: Some("all()".into()),
                peer_ip: Some("10.1.1.1".into()),
                as_number: Some(1),
                ..Default::default()
            },
        ),
        peer(
            "bad-selector",
            BGPPeerSpec {
                node_selector: Some("a ==".into()),
                peer_ip: Some("10.1.1.2".into()),
                as_number: Some(1),
                ..Default::default()
            },
        ),
        peer(
            "bad-ip",
            BGPPeerSpec {
                peer_ip: Some("10.1.1".into()),
                as_number: Some(1),
                ..Default::default()
            },
        ),
        peer(
            "no-as",
            BGPPeerSpec {
                peer_ip: Some("10.1.1.3".into()),
                ..Default::default()
            },
        ),
        peer(
            "v6",
            BGPPeerSpec {
                peer_ip: Some("[fd00::1]:179".into()),
                as_number: Some(1),
                ..Default::default()
            },
        ),
    ];
    assert!(state("node1", &[], &peers, &nodes).peers.is_empty());
}

pub(super) fn render(input: &NodeBirdInput) -> String {
    render_bird_config(input).expect("renders")
}
