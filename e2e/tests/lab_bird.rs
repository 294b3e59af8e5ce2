//! The lab can host the seed's BGP state with real BIRD 2: an iBGP full mesh between control, node1
//! and node2 (AS 64512) plus host1 as a global peer, each node advertising its block as a blackhole,
//! so node1's routing table shows the seed's `proto bird` lines. The nodes' configs are rendered by
//! `ocelot::bgp` from the seed's objects; host1, a plain router, gets the same renderer's output
//! with one global session per node.
use std::time::Duration;

use anyhow::Result;
use ocelot::api::bgp::BGPPeer;
use ocelot::api::node::Node;
use ocelot::api::nodestate::{BGPPeerTarget, NodeBGPState, PeerType};
use ocelot::bgp::{
    BgpInputs, ExportPool, NodeBirdInput, mesh_sessions, node_bgp_state, protocol_name,
    render_bird_config,
};
use ocelot_e2e::lab::{Lab, require_tools, retry};
use serde_json::json;

/// The seed's blocks: control 198.19.21.0/26, node1 198.19.22.128/26, node2 198.19.21.64/26.
const NODES: [(&str, &str, Option<&str>); 4] = [
    ("control", "198.19.0.1", Some("198.19.21.0/26")),
    ("node1", "198.19.0.2", Some("198.19.22.128/26")),
    ("node2", "198.19.0.3", Some("198.19.21.64/26")),
    ("host1", "198.19.15.254", None),
];

fn bird_conf(me: &str, ip: &str, block: Option<&str>, log: &str) -> Result<String> {
    let nodes: Vec<Node> = NODES[..3]
        .iter()
        .map(|(name, ip, _)| {
            serde_json::from_value(json!({
                "apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": name}, "spec": {"bgp": {"ipv4Address": format!("{ip}/20")}},
            }))
        })
        .collect::<Result<_, _>>()?;
    // The seed's BGPPeer, as applied there.
    let peers: Vec<BGPPeer> = vec![serde_json::from_value(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
        "metadata": {"name": "bgppeer-global-host1"},
        "spec": {"peerIP": "198.19.15.254", "asNumber": 64512},
    }))?];
    let bgp = match node_bgp_state(
        me,
        &BgpInputs {
            configs: &[],
            peers: &peers,
            nodes: &nodes,
        },
    ) {
        Some(bgp) => bgp,
        // host1 is no Calico node: it peers with every node, as their global peer.
        None => NodeBGPState {
            as_number: 64512,
            default_as_number: 64512,
            ipv4_address: ip.parse()?,
            listen_port: 179,
            peers: NODES[..3]
                .iter()
                .map(|(_, peer_ip, _)| {
                    let peer_ip = peer_ip.parse()?;
                    Ok(BGPPeerTarget {
                        name: protocol_name(PeerType::Global, &peer_ip, None),
                        source: me.to_string(),
                        peer_ip,
                        as_number: 64512,
                        peer_type: PeerType::Global,
                        ..Default::default()
                    })
                })
                .collect::<Result<_>>()?,
            ..Default::default()
        },
    };
    let input = NodeBirdInput {
        node: me.to_string(),
        mesh: mesh_sessions(&bgp, &nodes),
        bgp,
        blocks: block.map(str::parse).transpose()?.into_iter().collect(),
        pools: vec![ExportPool {
            cidr: "198.19.16.0/21".parse()?,
            ..Default::default()
        }],
        interface: Some("ens4".to_string()),
        log_file: Some(log.to_string()),
        ..Default::default()
    };
    Ok(render_bird_config(&input)?)
}

#[test]
fn bird_mesh_installs_the_seeds_proto_bird_routes_on_node1() -> Result<()> {
    require_tools(&["bird", "birdc", "ip"])?;
    let lab = Lab::seed()?;
    let mut birds = Vec::new();
    for (name, ip, block) in NODES {
        let dir = lab.dir();
        let conf = dir.join(format!("{name}.bird.conf"));
        let log = dir.join(format!("{name}.bird.log"));
        std::fs::write(
            &conf,
            bird_conf(name, ip, block, log.to_str().expect("utf-8"))?,
        )?;
        let ctl = dir.join(format!("{name}.bird.ctl"));
        let node = lab.node(name);
        node.exec_ok(["bird", "-p", "-c", conf.to_str().expect("utf-8")])?; // syntax check
        birds.push(node.spawn([
            "bird",
            "-f",
            "-c",
            conf.to_str().expect("utf-8"),
            "-s",
            ctl.to_str().expect("utf-8"),
        ])?);
    }
    let node1 = lab.node("node1");
    let ctl = lab.dir().join("node1.bird.ctl");
    // Bounded: sessions come up in about 2 s (Calico's connect delay time 2).
    retry(
        "node1's 3 BGP sessions Established",
        60,
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let out = node1.exec_ok([
                "birdc",
                "-s",
                ctl.to_str().expect("utf-8"),
                "show",
                "protocols",
            ])?;
            let up = out.lines().filter(|l| l.contains("Established")).count();
            anyhow::ensure!(up == 3, "{up}/3 Established:\n{out}");
            Ok(())
        },
    )?;
    let routes = retry(
        "node1 learned the other blocks",
        60,
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = node1.exec_ok(["ip", "route"])?;
            anyhow::ensure!(
                r.contains("198.19.21.64/26 via 198.19.0.3")
                    && r.contains("198.19.21.0/26 via 198.19.0.1"),
                "{r}"
            );
            Ok(r)
        },
    )?;
    // The seed's node1 lines (metric aside): learned blocks via their nodes, its own block blackholed.
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("198.19.21.0/26 via 198.19.0.1 dev ens4 proto bird")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("198.19.21.64/26 via 198.19.0.3 dev ens4 proto bird")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("blackhole 198.19.22.128/26 proto bird")),
        "{routes}"
    );
    // host1, the "router", learned every node's block.
    let host1 = lab.node("host1").exec_ok(["ip", "route"])?;
    for (_, ip, block) in &NODES[..3] {
        let b = block.expect("nodes have blocks");
        assert!(
            host1.contains(&format!("{b} via {ip}")),
            "host1 lacks {b}:\n{host1}"
        );
    }
    drop(birds);
    Ok(())
}
