//! From one overlay plan to the next without a window with no route: make-before-break.
//!
//! The kernel replaces a route at its key (table, destination, metric) in one step, so moving a
//! block from `via <vtep> dev vxlan.calico onlink` to `via <node> dev ens4` or to `dev tunl0` is
//! one `replace`, never a delete plus an add. What the new route needs must exist before it:
//! devices first, then ARP and FDB entries, then routes; what only the old route needed goes
//! after it: stale routes, then stale ARP/FDB entries, then devices. The only step that breaks is
//! [`Op::RecreateDevice`], for VXLAN settings the kernel cannot change on a live link (VNI, port,
//! local address, parent); the plan re-adds everything the kernel dropped with the old link right
//! after it.
use std::collections::BTreeSet;

use super::input::{IPIP_DEVICE, VXLAN_DEVICE};
use super::plan::{FdbEntry, IpipDevice, Neighbour, OverlayPlan, VxlanDevice};
use crate::routes::{Route, RouteKey};

/// A tunnel device as a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Vxlan(VxlanDevice),
    Ipip(IpipDevice),
}

impl Device {
    /// The interface name.
    pub fn name(&self) -> &'static str {
        match self {
            Device::Vxlan(_) => VXLAN_DEVICE,
            Device::Ipip(_) => IPIP_DEVICE,
        }
    }
}

/// One kernel operation, in the order [`transition`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the device (tunl0: load `ipip` and configure the fallback device), set MTU, MAC
    /// and address, bring it up.
    AddDevice(Device),
    /// Change MTU, MAC or address in place; a new address is added before the old one goes.
    UpdateDevice(Device),
    /// Delete and create again (VNI, port, local address or parent changed). The kernel drops
    /// the device's routes, neighbours and FDB entries with it; the following ops re-add them.
    RecreateDevice(Device),
    /// `ip neigh replace ... nud permanent`.
    ReplaceNeighbour(Neighbour),
    /// `bridge fdb replace ... self permanent`.
    ReplaceFdb(FdbEntry),
    /// `ip route replace`: creates the route or overwrites ours at its key.
    ReplaceRoute(Route),
    /// Delete our route.
    DeleteRoute(Route),
    DeleteNeighbour(Neighbour),
    DeleteFdb(FdbEntry),
    /// vxlan.calico is deleted; tunl0 loses its address and goes down (the `ipip` module's
    /// fallback device cannot be deleted).
    RemoveDevice(Device),
}

/// Whether moving from `old` to `new` needs a new link (the kernel refuses to change these on an
/// existing vxlan device).
fn needs_recreate(old: &VxlanDevice, new: &VxlanDevice) -> bool {
    (old.vni, old.port, old.local, &old.parent) != (new.vni, new.port, new.local, &new.parent)
}

/// The ordered operations that take the kernel from `prev` (applied) to `next`. Empty when the
/// plans are equal. Every block routed by both plans keeps a route at every step unless the list
/// holds an [`Op::RecreateDevice`].
pub fn transition(prev: &OverlayPlan, next: &OverlayPlan) -> Vec<Op> {
    let mut ops = Vec::new();
    // Devices the kernel will have dropped, with everything on them.
    let mut recreated: BTreeSet<&str> = BTreeSet::new();
    match (&prev.vxlan, &next.vxlan) {
        (None, Some(n)) => ops.push(Op::AddDevice(Device::Vxlan(n.clone()))),
        (Some(p), Some(n)) if needs_recreate(p, n) => {
            ops.push(Op::RecreateDevice(Device::Vxlan(n.clone())));
            recreated.insert(VXLAN_DEVICE);
        }
        (Some(p), Some(n)) if p != n => ops.push(Op::UpdateDevice(Device::Vxlan(n.clone()))),
        _ => {}
    }
    match (&prev.ipip, &next.ipip) {
        (None, Some(n)) => ops.push(Op::AddDevice(Device::Ipip(n.clone()))),
        (Some(p), Some(n)) if p != n => ops.push(Op::UpdateDevice(Device::Ipip(n.clone()))),
        _ => {}
    }
    let gone = |dev: &str| recreated.contains(dev);

    // Make: everything new or changed, dependencies first.
    for n in &next.neighbours {
        if gone(&n.dev) || !prev.neighbours.contains(n) {
            ops.push(Op::ReplaceNeighbour(n.clone()));
        }
    }
    for f in &next.fdb {
        if gone(&f.dev) || !prev.fdb.contains(f) {
            ops.push(Op::ReplaceFdb(f.clone()));
        }
    }
    for r in &next.routes {
        if r.dev().is_some_and(gone) || !prev.routes.contains(r) {
            ops.push(Op::ReplaceRoute(r.clone()));
        }
    }

    // Break: what only the previous plan needed. Entries on a recreated device are gone already.
    let keys: BTreeSet<RouteKey> = next.routes.iter().map(Route::key).collect();
    for r in &prev.routes {
        if !keys.contains(&r.key()) && !r.dev().is_some_and(gone) {
            ops.push(Op::DeleteRoute(r.clone()));
        }
    }
    for n in &prev.neighbours {
        let kept = next
            .neighbours
            .iter()
            .any(|m| (&m.dev, m.ip) == (&n.dev, n.ip));
        if !kept && !gone(&n.dev) {
            ops.push(Op::DeleteNeighbour(n.clone()));
        }
    }
    for f in &prev.fdb {
        let kept = next.fdb.iter().any(|g| (&g.dev, g.mac) == (&f.dev, f.mac));
        if !kept && !gone(&f.dev) {
            ops.push(Op::DeleteFdb(f.clone()));
        }
    }
    if let (Some(p), None) = (&prev.vxlan, &next.vxlan) {
        ops.push(Op::RemoveDevice(Device::Vxlan(p.clone())));
    }
    if let (Some(p), None) = (&prev.ipip, &next.ipip) {
        ops.push(Op::RemoveDevice(Device::Ipip(p.clone())));
    }
    ops
}
