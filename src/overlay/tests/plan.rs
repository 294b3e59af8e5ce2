//! The plan of one node, on issue 14's topology: node1 and node2 on 198.19.0.0/24, node3 on
//! 198.19.1.0/24 behind a router that knows nothing of pod addresses.
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::api::ippool::EncapMode::{self, Always, CrossSubnet, Never};
use crate::overlay::*;
use crate::routes::Route;

pub(super) fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) const POOL: &str = "198.19.16.0/21";

/// nodeN: address, block (its VTEP and tunl0 address are the block's first address, as
/// Calico's tunnel allocations usually are), MAC `02:00:00:00:00:0N`.
pub(super) fn node(n: u8) -> OverlayNode {
    let (address, block) = match n {
        1 => ("198.19.0.1/24", "198.19.16.0/26"),
        2 => ("198.19.0.2/24", "198.19.16.64/26"),
        _ => ("198.19.1.3/24", "198.19.16.128/26"),
    };
    let block = net(block);
    OverlayNode {
        name: format!("node{n}"),
        address: Some(address.parse().unwrap()),
        blocks: vec![block],
        vxlan_tunnel_addr: Some(block.network()),
        vxlan_tunnel_mac: Some(format!("02:00:00:00:00:0{n}")),
        ipip_tunnel_addr: Some(block.network()),
    }
}

pub(super) fn pool(vxlan: EncapMode, ipip: EncapMode) -> OverlayPool {
    OverlayPool {
        cidr: net(POOL),
        ipip_mode: ipip,
        vxlan_mode: vxlan,
    }
}

/// node1's input with the three nodes, no BGP, host MTU 1500.
pub(super) fn input(vxlan: EncapMode, ipip: EncapMode) -> OverlayInput {
    OverlayInput {
        node: node(1),
        uplink: "ens4".into(),
        host_mtu: 1500,
        bgp: false,
        pools: vec![pool(vxlan, ipip)],
        nodes: vec![node(3), node(1), node(2)],
        settings: OverlaySettings::default(),
    }
}

fn routes(p: &OverlayPlan) -> Vec<String> {
    p.routes.iter().map(Route::to_string).collect()
}

fn paths(p: &OverlayPlan) -> Vec<(&str, Result<Path, Unreachable>)> {
    p.blocks
        .iter()
        .map(|b| (b.node.as_str(), b.path.clone()))
        .collect()
}

const OWN_BLACKHOLE: &str = "blackhole 198.19.16.0/26 table 254 metric 0 proto 79";
const NODE2_NATIVE: &str = "198.19.16.64/26 via 198.19.0.2 dev ens4 table 254 metric 0 proto 79";
const NODE2_VXLAN: &str =
    "198.19.16.64/26 via 198.19.16.64 dev vxlan.calico onlink table 254 metric 0 proto 79";
const NODE3_VXLAN: &str =
    "198.19.16.128/26 via 198.19.16.128 dev vxlan.calico onlink table 254 metric 0 proto 79";

#[test]
fn vxlan_cross_subnet_is_native_on_the_subnet_and_vxlan_off_it() {
    let p = plan_overlay(&input(CrossSubnet, Never));
    assert_eq!(
        routes(&p),
        [OWN_BLACKHOLE, NODE2_NATIVE, NODE3_VXLAN],
        "no BGP: the agent also blackholes its own VXLAN block, as Felix does"
    );
    assert_eq!(
        paths(&p),
        [
            ("node2", Ok(Path::Native)),
            (
                "node3",
                Ok(Path::Vxlan {
                    vtep: ip("198.19.16.128")
                })
            ),
        ]
    );
    assert_eq!(
        p.vxlan,
        Some(VxlanDevice {
            vni: 4096,
            port: 4789,
            mtu: 1450,
            local: ip("198.19.0.1"),
            parent: "ens4".into(),
            address: ip("198.19.16.0"),
            mac: "02:00:00:00:00:01".parse().unwrap(),
        })
    );
    // Every remote VTEP gets its permanent ARP and FDB entry, so a switch to Always needs none.
    let mac = |n: u8| format!("02:00:00:00:00:0{n}").parse::<MacAddr>().unwrap();
    assert_eq!(
        p.neighbours,
        [
            Neighbour {
                dev: "vxlan.calico".into(),
                ip: ip("198.19.16.64"),
                mac: mac(2)
            },
            Neighbour {
                dev: "vxlan.calico".into(),
                ip: ip("198.19.16.128"),
                mac: mac(3)
            },
        ]
    );
    assert_eq!(
        p.fdb,
        [
            FdbEntry {
                dev: "vxlan.calico".into(),
                mac: mac(2),
                dst: ip("198.19.0.2")
            },
            FdbEntry {
                dev: "vxlan.calico".into(),
                mac: mac(3),
                dst: ip("198.19.1.3")
            },
        ]
    );
    assert_eq!((p.mtu.pod, &p.ipip), (1450, &None));
    assert_eq!(p.unreachable().count(), 0);
}

#[test]
fn vxlan_always_encapsulates_to_both_nodes() {
    let p = plan_overlay(&input(Always, Never));
    assert_eq!(routes(&p), [OWN_BLACKHOLE, NODE2_VXLAN, NODE3_VXLAN]);
    assert_eq!(p.neighbours.len(), 2);
}

#[test]
fn never_without_bgp_routes_nothing_and_says_why() {
    let p = plan_overlay(&input(Never, Never));
    assert!(p.routes.is_empty() && p.vxlan.is_none() && p.ipip.is_none());
    assert!(p.neighbours.is_empty() && p.fdb.is_empty());
    assert_eq!(
        paths(&p),
        [
            ("node2", Err(Unreachable::NoBGP)),
            ("node3", Err(Unreachable::NoBGP))
        ]
    );
    let (block, why) = p.unreachable().last().unwrap();
    assert_eq!(
        (block.block, block.pool),
        (net("198.19.16.128/26"), net(POOL))
    );
    assert_eq!(why.reason(), "NoBGP");
    assert!(why.to_string().contains("runs no BGP"), "{why}");
    assert_eq!(p.mtu.pod, 1500, "no encapsulation: the host MTU");
}

#[test]
fn never_with_bgp_leaves_the_routes_to_bird() {
    let mut i = input(Never, Never);
    i.bgp = true;
    let p = plan_overlay(&i);
    assert!(p.routes.is_empty());
    assert_eq!(
        paths(&p),
        [("node2", Ok(Path::Bird)), ("node3", Ok(Path::Bird))]
    );
}

#[test]
fn program_cluster_routes_makes_no_encap_same_subnet_routes_the_agents() {
    let mut i = input(Never, Never);
    i.settings.program_cluster_routes = true;
    let p = plan_overlay(&i);
    assert_eq!(routes(&p), [NODE2_NATIVE]);
    assert_eq!(paths(&p)[1], ("node3", Err(Unreachable::NoBGP)));
    i.bgp = true;
    assert_eq!(paths(&plan_overlay(&i))[1], ("node3", Ok(Path::Bird)));
}

#[test]
fn ipip_is_birds_by_default_and_the_agents_under_program_cluster_routes() {
    let mut i = input(Never, Always);
    i.bgp = true;
    let p = plan_overlay(&i);
    assert!(p.routes.is_empty(), "BIRD writes the tunl0 routes");
    assert_eq!(
        p.ipip,
        Some(IpipDevice {
            mtu: 1480,
            address: Some(ip("198.19.16.0"))
        }),
        "tunl0 is the agent's either way"
    );
    assert_eq!(p.mtu.pod, 1480);

    i.settings.program_cluster_routes = true;
    let p = plan_overlay(&i);
    assert_eq!(
        routes(&p),
        [
            "198.19.16.64/26 via 198.19.0.2 dev tunl0 onlink table 254 metric 0 proto 79",
            "198.19.16.128/26 via 198.19.1.3 dev tunl0 onlink table 254 metric 0 proto 79",
        ]
    );
    i.pools = vec![pool(Never, CrossSubnet)];
    let p = plan_overlay(&i);
    assert_eq!(
        routes(&p),
        [
            NODE2_NATIVE,
            "198.19.16.128/26 via 198.19.1.3 dev tunl0 onlink table 254 metric 0 proto 79",
        ]
    );
}

#[test]
fn ipip_left_to_bird_on_a_node_without_bgp_is_unreachable() {
    let p = plan_overlay(&input(Never, Always));
    assert!(p.routes.is_empty());
    assert!(p.unreachable().all(|(_, why)| *why == Unreachable::NoBGP));
    assert_eq!(p.unreachable().count(), 2);
}

#[test]
fn missing_vteps_are_reported_per_block() {
    let mut i = input(Always, Never);
    i.nodes[0].vxlan_tunnel_mac = Some("01:00:5e:00:00:01".into()); // node3: multicast
    i.nodes[2].vxlan_tunnel_addr = None; // node2
    let p = plan_overlay(&i);
    assert_eq!(
        paths(&p),
        [
            ("node2", Err(Unreachable::NoVTEP)),
            ("node3", Err(Unreachable::NoVTEP))
        ]
    );
    assert!(p.neighbours.is_empty() && p.fdb.is_empty());
    assert_eq!(routes(&p), [OWN_BLACKHOLE]);

    // No own VTEP yet: no device, but pods already get the VXLAN MTU.
    let mut i = input(Always, Never);
    i.node.vxlan_tunnel_addr = None;
    let p = plan_overlay(&i);
    assert_eq!((p.vxlan.is_none(), p.mtu.pod), (true, 1450));
    assert!(
        p.unreachable()
            .all(|(_, why)| *why == Unreachable::LocalVTEPPending)
    );
    // CrossSubnet's native route does not need the device.
    let mut i = input(CrossSubnet, Never);
    i.node.vxlan_tunnel_addr = None;
    assert_eq!(paths(&plan_overlay(&i))[0], ("node2", Ok(Path::Native)));
}

#[test]
fn a_vtep_published_twice_is_kept_by_the_first_node_only() {
    let mut i = input(Always, Never);
    i.nodes[0].vxlan_tunnel_mac = Some("02:00:00:00:00:02".into()); // node3 copies node2's MAC
    let p = plan_overlay(&i);
    assert_eq!(
        paths(&p)[1],
        ("node3", Err(Unreachable::VTEPConflict("node2".into())))
    );
    assert_eq!(routes(&p), [OWN_BLACKHOLE, NODE2_VXLAN]);
    assert_eq!(p.fdb.len(), 1);
}

#[test]
fn felix_switches_and_remote_addresses_gate_encapsulation() {
    let mut i = input(Always, Never);
    i.settings.vxlan_enabled = Some(false);
    let p = plan_overlay(&i);
    assert!(p.vxlan.is_none() && p.routes.is_empty());
    assert_eq!(paths(&p)[0].1, Err(Unreachable::VXLANDisabled));
    assert_eq!(p.mtu.pod, 1500);

    let mut i = input(Never, Always);
    i.settings.ipip_enabled = Some(false);
    assert_eq!(
        paths(&plan_overlay(&i))[0].1,
        Err(Unreachable::IPIPDisabled)
    );

    let mut i = input(Always, Never);
    i.nodes[0].address = None; // node3
    assert_eq!(
        paths(&plan_overlay(&i))[1].1,
        Err(Unreachable::NoNodeAddress)
    );
}

#[test]
fn bgp_nodes_leave_own_blackholes_to_bird_and_blocks_outside_pools_are_ignored() {
    let mut i = input(Always, Never);
    i.bgp = true;
    i.nodes[0].blocks.push(net("10.99.0.0/26")); // node3, in no pool
    let p = plan_overlay(&i);
    assert_eq!(routes(&p), [NODE2_VXLAN, NODE3_VXLAN]);
    assert_eq!(p.blocks.len(), 2);
}

#[test]
fn pod_mtu_is_the_smallest_of_the_encapsulations_in_use() {
    // VXLAN and IPIP pools side by side: 1450 (VXLAN's 50 beats IPIP's 20).
    let mut i = input(Always, Never);
    i.pools.push(OverlayPool {
        cidr: net("198.19.24.0/21"),
        ipip_mode: CrossSubnet,
        vxlan_mode: Never,
    });
    let p = plan_overlay(&i);
    assert_eq!(
        (
            p.mtu.pod,
            p.vxlan.as_ref().map(|v| v.mtu),
            p.ipip.map(|d| d.mtu)
        ),
        (1450, Some(1450), Some(1480))
    );
    // WireGuard on top: 1440; an explicit vxlanMTU is used as given.
    i.settings.wireguard_mtu = Some(0);
    assert_eq!(plan_overlay(&i).mtu.pod, 1440);
    i.settings.vxlan_mtu = 1400;
    let p = plan_overlay(&i);
    assert_eq!((p.mtu.pod, p.vxlan.unwrap().mtu), (1400, 1400));
    // The seed's 1460 underlay with VXLAN: 1410.
    let mut i = input(CrossSubnet, Never);
    i.host_mtu = 1460;
    assert_eq!(plan_overlay(&i).mtu.pod, 1410);
}

#[test]
fn settings_reach_the_device_and_equal_inputs_give_equal_plans() {
    let mut i = input(Always, Never);
    i.settings.vxlan_vni = 7;
    i.settings.vxlan_port = 8472;
    i.node.vxlan_tunnel_mac = None;
    let p = plan_overlay(&i);
    let dev = p.vxlan.clone().unwrap();
    assert_eq!((dev.vni, dev.port), (7, 8472));
    assert_eq!(
        dev.mac,
        derived_vxlan_mac("node1"),
        "no published MAC: derived"
    );
    let mut shuffled = i.clone();
    shuffled.nodes.reverse();
    assert_eq!(plan_overlay(&shuffled), p);
}
