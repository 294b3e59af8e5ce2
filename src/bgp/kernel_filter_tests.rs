//! `calico_kernel_programming`, pool by pool, against Calico's `bird_ipam.cfg.template` and the
//! routing ownership of `crate::overlay`.
use super::*;
use crate::api::ippool::EncapMode::{self, Always, CrossSubnet, Never};
use crate::api::nodestate::NodeBGPState;

fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> ExportPool {
    ExportPool {
        cidr: cidr.parse().unwrap(),
        ipip_mode: ipip,
        vxlan_mode: vxlan,
        ..Default::default()
    }
}

/// node1 (198.19.0.1 on 198.19.0.0/20) with one pool of each class.
fn render_node1(program_cluster_routes: bool) -> String {
    let input = NodeBirdInput {
        node: "node1".into(),
        bgp: NodeBGPState {
            as_number: 64512,
            ipv4_address: "198.19.0.1".parse().unwrap(),
            ipv4_network: Some("198.19.0.0/20".parse().unwrap()),
            listen_port: 179,
            ..Default::default()
        },
        pools: vec![
            pool("198.19.16.0/21", Always, Never),
            pool("198.19.24.0/21", CrossSubnet, Never),
            pool("198.19.40.0/21", Never, CrossSubnet),
            pool("198.19.48.0/21", Never, Never),
        ],
        program_cluster_routes,
        ..Default::default()
    };
    render_bird_config(&input).unwrap()
}

/// The statements of `calico_kernel_programming`.
fn kernel_filter(conf: &str) -> Vec<&str> {
    conf.split("filter calico_kernel_programming {")
        .nth(1)
        .unwrap()
        .split("\n}")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn kernel_filter_spells_calicos_krt_tunnel_for_bird_2() {
    let c = render_node1(false);
    assert_eq!(
        kernel_filter(&c),
        [
            // Calico, ipipMode Always: `krt_tunnel = "tunl0"; accept;`.
            "if ( net ~ 198.19.16.0/21 && source = RTS_BGP ) then { ifname = \"tunl0\"; onlink = true; accept; } # IPIP",
            // Calico, cross-subnet: `if defined(bgp_next_hop) && ( bgp_next_hop ~ <network_v4> )
            // then krt_tunnel = ""; else krt_tunnel = "tunl0"; accept;`, network_v4 = node1's subnet.
            "if ( net ~ 198.19.24.0/21 && source = RTS_BGP ) then { if !( defined(bgp_next_hop) && bgp_next_hop ~ 198.19.0.0/20 ) then { ifname = \"tunl0\"; onlink = true; } accept; } # IPIP CrossSubnet",
            // Calico, vxlan_mode set: `reject;` ("handled by Felix").
            "if ( net ~ 198.19.40.0/21 ) then { reject; } # VXLAN: the agent programs these routes",
            // Calico, no encapsulation: `krt_tunnel = ""; accept;`, the learned route as it is.
            "if source = RTS_BGP then accept;",
            "if source = RTS_STATIC then accept;",
            "reject;",
        ],
        "{c}"
    );
    assert!(
        c.contains("  metric 0; #"),
        "kernel routes without metric 32"
    );
}

#[test]
fn program_cluster_routes_keeps_bird_off_the_agents_routes() {
    let c = render_node1(true);
    let f = kernel_filter(&c);
    assert_eq!(
        f[..4],
        [
            "if ( net ~ 198.19.16.0/21 ) then { reject; } # IPIP, programClusterRoutes: the agent programs these routes",
            "if ( net ~ 198.19.24.0/21 ) then { reject; } # IPIP, programClusterRoutes: the agent programs these routes",
            "if ( net ~ 198.19.40.0/21 ) then { reject; } # VXLAN: the agent programs these routes",
            // Off-subnet no-encapsulation routes stay BGP-learned.
            "if ( net ~ 198.19.48.0/21 && defined(bgp_next_hop) && bgp_next_hop ~ 198.19.0.0/20 ) then { reject; } # programClusterRoutes: the agent programs same-subnet routes",
        ]
    );
    assert_eq!(
        f[4..],
        [
            "if source = RTS_BGP then accept;",
            "if source = RTS_STATIC then accept;",
            "reject;"
        ]
    );
}
