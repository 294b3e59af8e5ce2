//! MTU rules (Calico's): each encapsulation's device MTU is the host MTU minus its overhead unless
//! set explicitly, and the pod MTU is the smallest MTU among the enabled encapsulations, else the
//! host MTU.

/// Which encapsulations are on for the node, with their configured MTUs (0 or None = auto).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encaps {
    /// IP-in-IP enabled, and `ipipMTU`.
    pub ipip: Option<i32>,
    /// VXLAN (IPv4) enabled, and `vxlanMTU`.
    pub vxlan: Option<i32>,
    /// WireGuard (IPv4) enabled, and `wireguardMTU`.
    pub wireguard: Option<i32>,
}

/// Resolved MTUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MtuPlan {
    /// MTU of the pod veths.
    pub pod: i32,
    /// MTU of wireguard.cali, when WireGuard is on.
    pub wireguard: Option<i32>,
    /// MTU of the VXLAN device, when VXLAN is on.
    pub vxlan: Option<i32>,
    /// MTU of tunl0, when IPIP is on.
    pub ipip: Option<i32>,
}

/// Overheads Calico subtracts from the host MTU: IPIP 20, VXLAN 50, WireGuard (IPv4) 60.
const IPIP_OVERHEAD: i32 = 20;
const VXLAN_OVERHEAD: i32 = 50;
const WIREGUARD_OVERHEAD: i32 = 60;

fn resolve(configured: Option<i32>, host: i32, overhead: i32) -> Option<i32> {
    configured.map(|m| if m > 0 { m } else { host - overhead })
}

/// The MTUs for a node whose host MTU (smallest MTU of its uplinks) is `host_mtu`.
pub fn plan_mtu(host_mtu: i32, encaps: Encaps) -> MtuPlan {
    let ipip = resolve(encaps.ipip, host_mtu, IPIP_OVERHEAD);
    let vxlan = resolve(encaps.vxlan, host_mtu, VXLAN_OVERHEAD);
    let wireguard = resolve(encaps.wireguard, host_mtu, WIREGUARD_OVERHEAD);
    let pod = [ipip, vxlan, wireguard]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(host_mtu);
    MtuPlan {
        pod,
        wireguard,
        vxlan,
        ipip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_encapsulation_uses_the_host_mtu() {
        assert_eq!(plan_mtu(1500, Encaps::default()).pod, 1500);
    }

    #[test]
    fn auto_mtus_subtract_calico_overheads() {
        let p = plan_mtu(
            1500,
            Encaps {
                ipip: Some(0),
                vxlan: None,
                wireguard: Some(0),
            },
        );
        assert_eq!((p.ipip, p.wireguard, p.pod), (Some(1480), Some(1440), 1440));
    }

    #[test]
    fn seed_numbers_on_a_1460_underlay() {
        // The seed's nodes: wireguard.cali mtu 1400 (1460 - 60) and pod veths at 1410 (VXLAN's 1460 - 50)
        // before WireGuard was switched on.
        assert_eq!(
            plan_mtu(
                1460,
                Encaps {
                    wireguard: Some(0),
                    ..Default::default()
                }
            )
            .wireguard,
            Some(1400)
        );
        assert_eq!(
            plan_mtu(
                1460,
                Encaps {
                    vxlan: Some(0),
                    ..Default::default()
                }
            )
            .pod,
            1410
        );
    }

    #[test]
    fn explicit_mtu_wins_and_pod_takes_the_smallest() {
        let p = plan_mtu(
            9000,
            Encaps {
                ipip: None,
                vxlan: Some(0),
                wireguard: Some(1400),
            },
        );
        assert_eq!(
            (p.vxlan, p.wireguard, p.pod),
            (Some(8950), Some(1400), 1400)
        );
    }
}
