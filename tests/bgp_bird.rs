//! BIRD 2 itself accepts the configs `render_bird_config` writes: the seed's three nodes, host1 (the
//! seed's external router, not a Calico node), a route reflector, and a node using every peer option.
use std::process::Command;

use ocelot::api::bgp::{BGPConfiguration, BGPPeer};
use ocelot::api::ippool::EncapMode;
use ocelot::api::node::Node;
use ocelot::api::nodestate::{BGPPeerTarget, NodeBGPState, PeerType};
use ocelot::bgp::{
    BgpInputs, ExportPool, NodeBirdInput, mesh_sessions, node_bgp_state, protocol_name,
    render_bird_config,
};

const SEED_NODES: &str = r#"
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: control}, spec: {bgp: {ipv4Address: 198.19.0.1/20}}}
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: node1}, spec: {bgp: {ipv4Address: 198.19.0.2/20}}}
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: node2}, spec: {bgp: {ipv4Address: 198.19.0.3/20}}}
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata: {name: rr1, labels: {route-reflector: "true"}}
  spec: {bgp: {ipv4Address: 198.19.0.4/20, routeReflectorClusterID: 244.0.0.1}}
"#;

/// The seed's BGPPeer, as applied there, plus a route-reflector peering and one using every option.
const PEERS: &str = r#"
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {name: bgppeer-global-host1}
  spec: {peerIP: 198.19.15.254, asNumber: 64512}
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {name: peer-with-route-reflectors}
  spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
- apiVersion: projectcalico.org/v3
  kind: BGPPeer
  metadata: {name: node2-tor}
  spec:
    node: node2
    peerIP: 10.9.9.9:1790
    asNumber: 65001
    keepOriginalNextHop: true
    ttlSecurity: 2
    maxRestartTime: 1.5m
    keepaliveTime: 20s
    numAllowedLocalASNumbers: 1
    reachableBy: 198.19.0.254
    password: {secretKeyRef: {name: bgp-secrets, key: tor}}
"#;

const CONFIGS: &str = r#"
- apiVersion: projectcalico.org/v3
  kind: BGPConfiguration
  metadata: {name: default}
  spec:
    serviceClusterIPs: [{cidr: 198.19.32.0/20}]
    serviceExternalIPs: [{cidr: 198.19.48.0/24}]
    communities: [{name: edge, value: "64512:100"}, {name: big, value: "64512:1:2"}]
    prefixAdvertisements: [{cidr: 198.19.16.0/21, communities: [edge, big, "65000:7"]}]
- apiVersion: projectcalico.org/v3
  kind: BGPConfiguration
  metadata: {name: node.node2}
  spec: {bindMode: NodeIP, logSeverityScreen: Debug, ignoredInterfaces: ["dummy*"]}
"#;

fn bird_accepts(name: &str, conf: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.bird.conf"));
    std::fs::write(&path, conf).expect("write config");
    let out = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run bird (Debian package bird2)");
    assert!(
        out.status.success(),
        "bird -p rejects {name}'s config: {}\n{conf}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bird_accepts_rendered_configs() {
    let nodes: Vec<Node> = serde_yaml::from_str(SEED_NODES).expect("nodes");
    let peers: Vec<BGPPeer> = serde_yaml::from_str(PEERS).expect("peers");
    let configs: Vec<BGPConfiguration> = serde_yaml::from_str(CONFIGS).expect("configs");
    let inputs = BgpInputs {
        configs: &configs,
        peers: &peers,
        nodes: &nodes,
    };
    // One pool per kernel-filter shape Calico's template has: plain, IPIP Always, IPIP
    // CrossSubnet, VXLAN, and BGP export disabled.
    let pools = vec![
        ExportPool {
            cidr: "198.19.16.0/21".parse().expect("cidr"),
            ..Default::default()
        },
        ExportPool {
            cidr: "198.19.24.0/21".parse().expect("cidr"),
            disable_bgp_export: true,
            ..Default::default()
        },
        ExportPool {
            cidr: "198.19.40.0/24".parse().expect("cidr"),
            ipip_mode: EncapMode::Always,
            ..Default::default()
        },
        ExportPool {
            cidr: "198.19.41.0/24".parse().expect("cidr"),
            ipip_mode: EncapMode::CrossSubnet,
            ..Default::default()
        },
        ExportPool {
            cidr: "198.19.42.0/24".parse().expect("cidr"),
            vxlan_mode: EncapMode::Always,
            ..Default::default()
        },
    ];
    for (name, block) in [
        ("control", "198.19.21.0/26"),
        ("node1", "198.19.22.128/26"),
        ("node2", "198.19.21.64/26"),
        ("rr1", "198.19.23.0/26"),
    ] {
        let bgp = node_bgp_state(name, &inputs).expect("BGP node");
        let mut input = NodeBirdInput {
            node: name.into(),
            mesh: mesh_sessions(&bgp, &nodes),
            bgp,
            blocks: vec![block.parse().expect("cidr")],
            pools: pools.clone(),
            interface: (name != "node2").then(|| "ens4".to_string()),
            ..Default::default()
        };
        input.passwords.insert(
            "Node_10_9_9_9_port_1790".into(),
            "with spaces, 'quotes' and \\".into(),
        );
        let conf = render(&input);
        if name == "rr1" {
            assert!(conf.contains("rr client;"), "{conf}");
        }
        if name == "node2" {
            for line in [
                "    next hop keep;",
                "  graceful restart time 90;",
                "  keepalive time 20;",
            ] {
                assert!(conf.lines().any(|l| l == line), "{line:?} in\n{conf}");
            }
            assert!(conf.contains("password "), "{conf}");
        }
        assert!(
            conf.contains("  if ( net ~ 198.19.16.0/21 ) then { bgp_community.add((64512, 100)); bgp_community.add((65000, 7)); bgp_large_community.add((64512, 1, 2)); }")
                && conf.contains("  route 198.19.32.0/20 blackhole;"),
            "{conf}"
        );
        bird_accepts(name, &conf);
    }

    // host1 is a plain router: it peers with each node as their global peer does with it.
    let host1 = NodeBGPState {
        as_number: 64512,
        default_as_number: 64512,
        ipv4_address: "198.19.15.254".parse().expect("ip"),
        listen_port: 179,
        peers: ["198.19.0.1", "198.19.0.2", "198.19.0.3"]
            .into_iter()
            .map(|ip| ip.parse().expect("ip"))
            .map(|ip| BGPPeerTarget {
                name: protocol_name(PeerType::Global, &ip, None),
                source: "host1".into(),
                peer_ip: ip,
                as_number: 64512,
                peer_type: PeerType::Global,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    bird_accepts(
        "host1",
        &render(&NodeBirdInput {
            node: "host1".into(),
            bgp: host1,
            ..Default::default()
        }),
    );
}

fn render(input: &NodeBirdInput) -> String {
    render_bird_config(input).expect("renders")
}
