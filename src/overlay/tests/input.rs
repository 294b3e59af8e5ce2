//! Inputs from Calico's objects, and the VTEP MAC.
use serde_json::json;

use super::plan::{ip, net};
use crate::api::ippool::EncapMode;
use crate::api::{FelixConfigurationSpec, IPPoolSpec, Node};
use crate::overlay::*;

#[test]
fn calico_node_fields_are_read_with_their_prefix() {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": "node3"},
        "spec": {
            "bgp": {"ipv4Address": "198.19.1.3/24", "ipv4IPIPTunnelAddr": "198.19.16.129"},
            "ipv4VXLANTunnelAddr": "198.19.16.128",
            "vxlanTunnelMACAddr": "66:2a:1b:cd:0e:0f"
        },
        "status": {"podCIDRs": ["198.19.16.192/26", "198.19.16.128/26", "fd00::/122"]}
    }))
    .unwrap();
    let n = OverlayNode::from_calico_node(&node).unwrap();
    assert_eq!(n.address, Some("198.19.1.3/24".parse().unwrap()));
    assert_eq!(
        n.ip(),
        Some(ip("198.19.1.3")),
        "the host address, not the network"
    );
    assert_eq!(
        n.blocks,
        [net("198.19.16.128/26"), net("198.19.16.192/26")],
        "sorted, IPv6 skipped"
    );
    assert_eq!(n.vxlan_tunnel_addr, Some(ip("198.19.16.128")));
    assert_eq!(n.vxlan_tunnel_mac.as_deref(), Some("66:2a:1b:cd:0e:0f"));
    assert_eq!(n.ipip_tunnel_addr, Some(ip("198.19.16.129")));

    let bare: Node = serde_json::from_value(json!({
        "metadata": {"name": "n"}, "spec": {"bgp": {"ipv4Address": "10.0.0.5"}, "vxlanTunnelMACAddr": ""}
    }))
    .unwrap();
    let n = OverlayNode::from_calico_node(&bare).unwrap();
    assert_eq!(n.address, Some("10.0.0.5/32".parse().unwrap()));
    assert_eq!((n.vxlan_tunnel_mac, n.blocks.len()), (None, 0));
}

#[test]
fn felix_settings_default_as_calico_and_fall_back_on_nonsense() {
    let d = OverlaySettings::from_felix(&FelixConfigurationSpec::default());
    assert_eq!(d, OverlaySettings::default());
    assert_eq!(
        (d.vxlan_vni, d.vxlan_port, d.program_cluster_routes),
        (4096, 4789, false)
    );
    let spec: FelixConfigurationSpec = serde_json::from_value(json!({
        "vxlanVNI": 4097, "vxlanPort": 8472, "vxlanMTU": 1400, "ipipMTU": 1300,
        "vxlanEnabled": false, "ipipEnabled": true,
        "wireguardEnabled": true, "programClusterRoutes": "Enabled"
    }))
    .unwrap();
    let s = OverlaySettings::from_felix(&spec);
    assert_eq!(
        s,
        OverlaySettings {
            ipip_enabled: Some(true),
            vxlan_enabled: Some(false),
            vxlan_vni: 4097,
            vxlan_port: 8472,
            vxlan_mtu: 1400,
            ipip_mtu: 1300,
            wireguard_mtu: Some(0),
            program_cluster_routes: true,
        }
    );
    let bad: FelixConfigurationSpec =
        serde_json::from_value(json!({"vxlanVNI": 16777216, "vxlanPort": 70000})).unwrap();
    let s = OverlaySettings::from_felix(&bad);
    assert_eq!((s.vxlan_vni, s.vxlan_port), (4096, 4789));
}

#[test]
fn pools_default_to_never_and_v6_is_skipped() {
    let spec: IPPoolSpec =
        serde_json::from_value(json!({"cidr": "198.19.16.0/21", "vxlanMode": "CrossSubnet"}))
            .unwrap();
    let p = OverlayPool::from_spec(&spec).unwrap();
    assert_eq!(
        (p.vxlan_mode, p.ipip_mode),
        (EncapMode::CrossSubnet, EncapMode::Never)
    );
    let v6: IPPoolSpec = serde_json::from_value(json!({"cidr": "fd00::/64"})).unwrap();
    assert_eq!(OverlayPool::from_spec(&v6), None);
}

#[test]
fn derived_mac_is_fixed_unicast_and_locally_administered() {
    let m = derived_vxlan_mac("node1");
    // Pinned: a change would give every node a new MAC on upgrade.
    assert_eq!(m.to_string(), DERIVED_NODE1);
    assert!(m.is_local() && !m.is_multicast());
    assert_ne!(derived_vxlan_mac("node2"), m);
    for name in ["a", "b", "node-with-a-long-name.example.com"] {
        let m = derived_vxlan_mac(name);
        assert!(m.is_local() && !m.is_multicast(), "{name}: {m}");
    }
}

/// SHA-256("ocelot vxlan.calico node1")[..6] with bit 0 cleared and bit 1 set (checked with Python's hashlib).
const DERIVED_NODE1: &str = "0a:da:1e:b2:e5:55";

#[test]
fn a_published_mac_wins_unless_unusable() {
    let published = "66:2A:1B:CD:0E:0F";
    assert_eq!(
        vxlan_mac("node1", Some(published)).to_string(),
        "66:2a:1b:cd:0e:0f"
    );
    assert_eq!(
        vxlan_mac("node1", Some("66-2a-1b-cd-0e-0f")).to_string(),
        "66:2a:1b:cd:0e:0f"
    );
    for bad in [
        "",
        "66:2a:1b:cd:0e",
        "66:2a:1b:cd:0e:0g",
        "01:00:5e:00:00:01",
    ] {
        assert_eq!(
            vxlan_mac("node1", Some(bad)),
            derived_vxlan_mac("node1"),
            "{bad:?}"
        );
    }
    assert_eq!("00:00:00:00:00:00".parse::<MacAddr>(), Err(MacError::Zero));
    assert!(matches!(
        "01:00:5e:00:00:01".parse::<MacAddr>(),
        Err(MacError::Multicast(_))
    ));
    assert!(matches!(
        "6:2a:1b:cd:0e:0f".parse::<MacAddr>(),
        Err(MacError::Syntax(_))
    ));
}

#[test]
fn settings_reach_the_agent_unchanged_through_the_node_state() {
    let felix = FelixConfigurationSpec {
        vxlan_vni: Some(4097),
        vxlan_port: Some(8472),
        vxlan_mtu: Some(1400),
        vxlan_enabled: Some(true),
        wireguard_enabled: Some(true),
        ..Default::default()
    };
    let dataplane = crate::desired::dataplane_settings(&felix);
    assert_eq!(
        OverlaySettings::from_dataplane(&dataplane),
        OverlaySettings::from_felix(&felix)
    );
    let d = crate::desired::dataplane_settings(&FelixConfigurationSpec::default());
    assert_eq!(
        (d.vxlan_vni, d.vxlan_port, d.vxlan_enabled),
        (Some(4096), Some(4789), None),
        "Calico's defaults; enablement derived from the pools"
    );
}
