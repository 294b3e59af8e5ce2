//! bird.conf rendering, `birdc` parsing and calicoctl's status tables, on the seed's nodes.
use std::collections::BTreeMap;

use super::*;
use crate::api::bgp::{BGPConfigurationSpec, BGPPeerSpec};
use crate::api::nodestate::BGPPeerStatusEntry;

use super::tests::*;

fn seed_bird_input(name: &str) -> NodeBirdInput {
    let nodes = seed_nodes();
    let bgp = state(name, &[], &seed_peers(), &nodes);
    let block = match name {
        "control" => "198.19.21.0/26",
        "node1" => "198.19.22.128/26",
        _ => "198.19.21.64/26",
    };
    NodeBirdInput {
        node: name.into(),
        mesh: mesh_sessions(&bgp, &nodes),
        bgp,
        blocks: vec![block.parse().expect("cidr")],
        pools: vec![
            ExportPool {
                cidr: "198.19.24.0/21".parse().expect("cidr"),
                disable_bgp_export: false,
                ..Default::default()
            },
            ExportPool {
                cidr: "198.19.16.0/21".parse().expect("cidr"),
                disable_bgp_export: false,
                ..Default::default()
            },
        ],
        interface: Some("ens4".into()),
        ..Default::default()
    }
}

#[test]
fn seed_node1_bird_config_golden() {
    let got = render(&seed_bird_input("node1"));
    let want = include_str!("testdata/node1.bird.conf");
    assert_eq!(got, want, "rendered:\n{got}");
}

#[test]
fn bird_config_is_deterministic_and_skips_32_blocks() {
    let mut input = seed_bird_input("node1");
    let a = render(&input);
    input.pools.reverse();
    input.mesh.reverse();
    input
        .blocks
        .insert(0, "198.19.22.128/26".parse().expect("cidr"));
    assert_eq!(render(&input), a);
    input.blocks.push("198.19.23.7/32".parse().expect("cidr"));
    assert_eq!(
        render(&input),
        a,
        "/32 blocks are neither aggregated nor blackholed"
    );
}

#[test]
fn bird_config_options_from_peers_and_configuration() {
    let nodes = seed_nodes();
    let configs = vec![config(
        "default",
        BGPConfigurationSpec {
            bind_mode: Some(crate::api::bgp::BindMode::NodeIP),
            log_severity_screen: Some("None".into()),
            ignored_interfaces: vec!["dummy*".into()],
            ..Default::default()
        },
    )];
    let peers = vec![peer(
        "tor",
        BGPPeerSpec {
            node: Some("node1".into()),
            peer_ip: Some("10.9.9.9".into()),
            as_number: Some(65001),
            ttl_security: Some(1),
            max_restart_time: Some("2m".into()),
            num_allowed_local_as_numbers: Some(2),
            reachable_by: Some("198.19.0.254".into()),
            source_address: Some(crate::api::bgp::SourceAddress::None),
            ..Default::default()
        },
    )];
    let bgp = state("node1", &configs, &peers, &nodes);
    let mut passwords = BTreeMap::new();
    passwords.insert("Node_10_9_9_9".to_string(), "s3cr\\et".to_string());
    let c = render(&NodeBirdInput {
        node: "node1".into(),
        bgp,
        pools: vec![ExportPool {
            cidr: "198.19.24.0/21".parse().expect("cidr"),
            disable_bgp_export: true,
            ..Default::default()
        }],
        passwords,
        ..Default::default()
    });
    for line in [
        "  strict bind on; # bindMode NodeIP: listen on the source address only",
        "  interface -\"cali*\", -\"kube-ipvs*\", -\"dummy*\", \"*\";",
        "  if ( net ~ 198.19.24.0/21 ) then { reject; } # disableBGPExport",
        "  route 10.9.9.9/32 via 198.19.0.254;",
        "  ttl security on;",
        "  multihop 1;",
        "  graceful restart time 120;",
        "  allow local as 2;",
        "  password \"s3cr\\et\";",
    ] {
        assert!(c.lines().any(|l| l == line), "missing {line:?} in\n{c}");
    }
    assert!(
        !c.contains("debug"),
        "logSeverityScreen None: no debug\n{c}"
    );
    let tor = c
        .split("protocol bgp Node_10_9_9_9")
        .nth(1)
        .expect("tor session");
    assert!(!tor.contains("source address"), "sourceAddress None\n{c}");
}

fn entry(
    ip: &str,
    t: PeerType,
    state: &str,
    since: &str,
    info: Option<&str>,
) -> BGPPeerStatusEntry {
    BGPPeerStatusEntry {
        peer_ip: ip.into(),
        peer_type: t,
        state: state.into(),
        since: Some(since.into()),
        info: info.map(str::to_string),
    }
}

/// Captured from BIRD 2.0.12 in two network namespaces (198.19.0.2 and .3): one mesh session up,
/// two peers unreachable, one passive duplicate idle, then disabled.
fn captured_expected() -> Vec<BGPPeerStatusEntry> {
    vec![
        entry(
            "198.19.0.3",
            PeerType::NodeMesh,
            "up",
            "16:20:35",
            Some("Established"),
        ),
        entry(
            "198.19.15.254",
            PeerType::Global,
            "start",
            "16:20:34",
            Some("Active Socket: No route to host"),
        ),
        entry(
            "198.19.0.9.port.1790",
            PeerType::NodeSpecific,
            "start",
            "16:20:34",
            Some("Active Socket: No route to host"),
        ),
        entry(
            "198.19.0.3",
            PeerType::NodeSpecific,
            "start",
            "16:20:34",
            Some("Idle"),
        ),
    ]
}

#[test]
fn parses_captured_birdc_output_plain_verbose_and_all() {
    let want = captured_expected();
    assert_eq!(
        parse_birdc_protocols(include_str!("testdata/birdc_show_protocols.txt")),
        want
    );
    assert_eq!(
        parse_birdc_protocols(include_str!("testdata/birdc_v_show_protocols.txt")),
        want
    );
    assert_eq!(
        parse_birdc_protocols(include_str!("testdata/birdc_v_show_protocols_all.txt")),
        want
    );
    let mut down = want;
    down[3] = entry(
        "198.19.0.3",
        PeerType::NodeSpecific,
        "down",
        "16:20:49",
        None,
    );
    assert_eq!(
        parse_birdc_protocols(include_str!("testdata/birdc_v_show_protocols_down.txt")),
        down
    );
}

#[test]
fn node_status_tables_match_the_seed() {
    let before = vec![
        entry(
            "198.19.0.1",
            PeerType::NodeMesh,
            "up",
            "22:05:48",
            Some("Established"),
        ),
        entry(
            "198.19.0.3",
            PeerType::NodeMesh,
            "up",
            "22:06:02",
            Some("Established"),
        ),
    ];
    let want = "\
IPv4 BGP status
+--------------+-------------------+-------+----------+-------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+--------------+-------------------+-------+----------+-------------+
| 198.19.0.1   | node-to-node mesh | up    | 22:05:48 | Established |
| 198.19.0.3   | node-to-node mesh | up    | 22:06:02 | Established |
+--------------+-------------------+-------+----------+-------------+

IPv6 BGP status
No IPv6 peers found.

";
    assert_eq!(
        render_bgp_status("IPv4", &before) + &render_bgp_status("IPv6", &[]),
        want
    );

    let after = vec![
        entry(
            "198.19.0.1",
            PeerType::NodeMesh,
            "up",
            "22:05:49",
            Some("Established"),
        ),
        entry(
            "198.19.0.3",
            PeerType::NodeMesh,
            "up",
            "22:06:03",
            Some("Established"),
        ),
        entry(
            "198.19.15.254",
            PeerType::Global,
            "up",
            "10:58:02",
            Some("Established"),
        ),
    ];
    let want = "\
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 198.19.0.1    | node-to-node mesh | up    | 22:05:49 | Established |
| 198.19.0.3    | node-to-node mesh | up    | 22:06:03 | Established |
| 198.19.15.254 | global            | up    | 10:58:02 | Established |
+---------------+-------------------+-------+----------+-------------+
";
    assert_eq!(render_peer_table(&after), want);
}

#[test]
fn node_status_wraps_long_info_like_calicoctl() {
    let t = render_peer_table(&captured_expected()[..2]);
    let want = "\
+---------------+-------------------+-------+----------+----------------------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |            INFO            |
+---------------+-------------------+-------+----------+----------------------------+
| 198.19.0.3    | node-to-node mesh | up    | 16:20:35 | Established                |
| 198.19.15.254 | global            | start | 16:20:34 | Active Socket: No route to |
|               |                   |       |          | host                       |
+---------------+-------------------+-------+----------+----------------------------+
";
    assert_eq!(t, want, "\n{t}");
}

#[test]
fn strings_bird_cannot_quote_are_refused_not_mangled() {
    let mut input = seed_bird_input("node1");
    input
        .passwords
        .insert("Global_198_19_15_254".into(), "a\"b".into());
    let err = render_bird_config(&input).expect_err("a quote cannot be written");
    assert_eq!(err.what, "password of Global_198_19_15_254");
    assert!(
        !err.to_string().contains("a\"b"),
        "the error never shows the secret"
    );
}
