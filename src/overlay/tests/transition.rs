//! Make-before-break: the ops between two plans, run against a model of the kernel.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::plan::input;
use crate::api::ippool::EncapMode::{self, Always, CrossSubnet, Never};
use crate::overlay::*;
use crate::routes::{Route, RouteKey};

/// The kernel as far as the overlay touches it. The uplink always exists.
#[derive(Debug, Default, PartialEq)]
struct Kernel {
    devices: BTreeMap<&'static str, Device>,
    routes: BTreeMap<RouteKey, Route>,
    neighbours: BTreeMap<(String, Ipv4Addr), Neighbour>,
    fdb: BTreeMap<(String, MacAddr), FdbEntry>,
}

impl Kernel {
    fn of(p: &OverlayPlan) -> Kernel {
        let mut k = Kernel::default();
        k.apply_all(&transition(&empty(), p));
        k
    }

    fn has_dev(&self, dev: &str) -> bool {
        dev == "ens4" || self.devices.contains_key(dev)
    }

    /// What the kernel drops with a link.
    fn drop_dev(&mut self, dev: &str) {
        self.routes.retain(|_, r| r.dev() != Some(dev));
        self.neighbours.retain(|(d, _), _| d != dev);
        self.fdb.retain(|(d, _), _| d != dev);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::AddDevice(d) => {
                assert!(self.devices.insert(d.name(), d.clone()).is_none(), "{op:?}");
            }
            Op::UpdateDevice(d) => {
                assert!(self.devices.insert(d.name(), d.clone()).is_some(), "{op:?}");
            }
            Op::RecreateDevice(d) => {
                self.drop_dev(d.name());
                self.devices.insert(d.name(), d.clone());
            }
            Op::ReplaceNeighbour(n) => {
                assert!(self.has_dev(&n.dev), "{op:?} before its device");
                self.neighbours.insert((n.dev.clone(), n.ip), n.clone());
            }
            Op::ReplaceFdb(f) => {
                assert!(self.has_dev(&f.dev), "{op:?} before its device");
                self.fdb.insert((f.dev.clone(), f.mac), f.clone());
            }
            Op::ReplaceRoute(r) => {
                assert!(r.dev().is_none_or(|d| self.has_dev(d)), "{op:?}");
                self.routes.insert(r.key(), r.clone());
            }
            Op::DeleteRoute(r) => {
                assert_eq!(self.routes.remove(&r.key()).as_ref(), Some(r), "{op:?}");
            }
            Op::DeleteNeighbour(n) => {
                assert!(self.neighbours.remove(&(n.dev.clone(), n.ip)).is_some());
            }
            Op::DeleteFdb(f) => assert!(self.fdb.remove(&(f.dev.clone(), f.mac)).is_some()),
            Op::RemoveDevice(d) => {
                assert!(self.devices.remove(d.name()).is_some(), "{op:?}");
                self.drop_dev(d.name());
            }
        }
    }

    fn apply_all(&mut self, ops: &[Op]) {
        for op in ops {
            self.apply(op);
        }
    }
}

fn empty() -> OverlayPlan {
    let mut i = input(Never, Never);
    i.nodes.clear();
    plan_overlay(&i)
}

fn plan(vxlan: EncapMode, ipip: EncapMode, agent_ipip: bool) -> OverlayPlan {
    let mut i = input(vxlan, ipip);
    i.settings.program_cluster_routes = agent_ipip;
    plan_overlay(&i)
}

/// Runs `prev → next` on a kernel holding `prev`, checking after every op that each block routed
/// by both plans still has a route through an existing device. Returns the ops.
fn run(prev: &OverlayPlan, next: &OverlayPlan) -> Vec<Op> {
    let ops = transition(prev, next);
    let mut k = Kernel::of(prev);
    let both: Vec<RouteKey> = prev
        .routes
        .iter()
        .map(Route::key)
        .filter(|key| next.routes.iter().any(|r| r.key() == *key))
        .collect();
    let breaks = ops.iter().any(|o| matches!(o, Op::RecreateDevice(_)));
    for op in &ops {
        k.apply(op);
        if breaks {
            continue;
        }
        for key in &both {
            let r = k.routes.get(key);
            assert!(
                r.is_some_and(|r| r.dev().is_none_or(|d| k.has_dev(d))),
                "window without a route to {} after {op:?}",
                key.dst
            );
        }
    }
    assert_eq!(k, Kernel::of(next), "converged, nothing stale");
    ops
}

fn route_ops(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .filter_map(|o| match o {
            Op::ReplaceRoute(r) => Some(format!("replace {r}")),
            Op::DeleteRoute(r) => Some(format!("delete {r}")),
            _ => None,
        })
        .collect()
}

#[test]
fn equal_plans_need_nothing() {
    let p = plan(CrossSubnet, Never, false);
    assert!(transition(&p, &p).is_empty());
}

#[test]
fn cross_subnet_to_always_is_one_route_replace() {
    let ops = run(
        &plan(CrossSubnet, Never, false),
        &plan(Always, Never, false),
    );
    assert_eq!(
        route_ops(&ops),
        [
            "replace 198.19.16.64/26 via 198.19.16.64 dev vxlan.calico onlink table 254 metric 0 proto 79"
        ]
    );
    assert_eq!(
        ops.len(),
        1,
        "ARP and FDB entries are already there: {ops:?}"
    );
}

#[test]
fn vxlan_to_ipip_adds_tunl0_first_and_removes_vxlan_calico_last() {
    let ops = run(&plan(Always, Never, true), &plan(Never, Always, true));
    assert!(matches!(&ops[0], Op::AddDevice(Device::Ipip(_))), "{ops:?}");
    assert!(
        matches!(ops.last(), Some(Op::RemoveDevice(Device::Vxlan(_)))),
        "{ops:?}"
    );
    assert_eq!(
        route_ops(&ops),
        [
            "replace 198.19.16.64/26 via 198.19.0.2 dev tunl0 onlink table 254 metric 0 proto 79",
            "replace 198.19.16.128/26 via 198.19.1.3 dev tunl0 onlink table 254 metric 0 proto 79",
            // Own VXLAN block: Felix's blackhole goes with VXLAN.
            "delete blackhole 198.19.16.0/26 table 254 metric 0 proto 79",
        ]
    );
    let deletes = ops
        .iter()
        .filter(|o| matches!(o, Op::DeleteNeighbour(_) | Op::DeleteFdb(_)))
        .count();
    assert_eq!(deletes, 4, "both VTEPs' ARP and FDB entries: {ops:?}");
}

#[test]
fn never_to_always_builds_device_entries_then_routes() {
    let ops = run(&plan(Never, Never, false), &plan(Always, Never, false));
    let kinds: Vec<&str> = ops
        .iter()
        .map(|o| match o {
            Op::AddDevice(_) => "device",
            Op::ReplaceNeighbour(_) => "arp",
            Op::ReplaceFdb(_) => "fdb",
            Op::ReplaceRoute(_) => "route",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "device", "arp", "arp", "fdb", "fdb", "route", "route", "route"
        ]
    );
    // And back: routes first, the device last.
    let back = run(&plan(Always, Never, false), &plan(Never, Never, false));
    assert!(matches!(
        back.last(),
        Some(Op::RemoveDevice(Device::Vxlan(_)))
    ));
    assert!(matches!(back[0], Op::DeleteRoute(_)));
}

#[test]
fn a_changed_mac_adds_the_new_fdb_entry_before_dropping_the_old() {
    let prev = plan(Always, Never, false);
    let mut i = input(Always, Never);
    i.nodes[0].vxlan_tunnel_mac = Some("02:00:00:00:00:33".into()); // node3
    let ops = run(&prev, &plan_overlay(&i));
    let names: Vec<String> = ops
        .iter()
        .map(|o| match o {
            Op::ReplaceNeighbour(n) => format!("arp {} {}", n.ip, n.mac),
            Op::ReplaceFdb(f) => format!("fdb+ {}", f.mac),
            Op::DeleteFdb(f) => format!("fdb- {}", f.mac),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "arp 198.19.16.128 02:00:00:00:00:33",
            "fdb+ 02:00:00:00:00:33",
            "fdb- 02:00:00:00:00:03"
        ]
    );
}

#[test]
fn a_new_vni_recreates_the_device_and_restores_what_the_kernel_dropped() {
    let prev = plan(Always, Never, false);
    let mut i = input(Always, Never);
    i.settings.vxlan_vni = 4097;
    let ops = run(&prev, &plan_overlay(&i));
    assert!(matches!(&ops[0], Op::RecreateDevice(Device::Vxlan(d)) if d.vni == 4097));
    assert_eq!(
        ops.len(),
        1 + 2 + 2 + 2,
        "device, 2 ARP, 2 FDB, 2 VXLAN routes"
    );
    // An MTU change is in place.
    i.settings.vxlan_vni = 4096;
    i.settings.vxlan_mtu = 1400;
    let ops = run(&prev, &plan_overlay(&i));
    assert!(matches!(&ops[..], [Op::UpdateDevice(Device::Vxlan(d))] if d.mtu == 1400));
}

fn mode() -> impl Strategy<Value = EncapMode> {
    prop_oneof![Just(Never), Just(Always), Just(CrossSubnet)]
}

/// A pool with at most one encapsulation (Calico refuses both), the owner of IPIP routes, BGP,
/// and whether node3 has published its VTEP.
fn scenario() -> impl Strategy<Value = OverlayInput> {
    (
        mode(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(m, vxlan, agent, bgp, vtep3)| {
            let (v, p) = if vxlan { (m, Never) } else { (Never, m) };
            let mut i = input(v, p);
            i.settings.program_cluster_routes = agent;
            i.bgp = bgp;
            if !vtep3 {
                i.nodes[0].vxlan_tunnel_addr = None;
            }
            i
        })
}

proptest! {
    #[test]
    fn every_mode_switch_converges_without_a_window(a in scenario(), b in scenario()) {
        let (prev, next) = (plan_overlay(&a), plan_overlay(&b));
        let ops = run(&prev, &next);
        prop_assert!(!ops.iter().any(|o| matches!(o, Op::RecreateDevice(_))));
        prop_assert!(transition(&next, &next).is_empty());
    }
}
