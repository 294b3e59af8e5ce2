//! The overlay on the node: a worker task makes the kernel match the core's [`OverlayPlan`]
//! (`vxlan.calico`, its ARP and FDB entries, the tunnel and CrossSubnet native routes).
//!
//! Each pass reads the kernel back into a plan (the device, its permanent neighbours and FDB
//! entries, and every main-table route with Ocelot's protocol: only the overlay writes those
//! there; pod routes carry `deviceRouteProtocol`) and runs the core's [`transition`] from that to
//! the wanted plan. So a restart adopts what is right without a write, a mode switch is one route
//! `replace` (make-before-break), and anything stale goes. A route someone else holds at a key we
//! want (BIRD's blackhole, an admin's route) is left alone.
use std::collections::HashSet;
use std::time::Duration;

use ocelot::overlay::{
    Device, IPIP_DEVICE, Op, OverlayInput, OverlayPlan, VXLAN_DEVICE, plan_overlay, transition,
};
use ocelot::routes::{OCELOT_PROTOCOL, RT_TABLE_MAIN, Route, RouteKey, RoutePlan};
use tokio::sync::{mpsc, watch};

use crate::agent::Msg;
use crate::routes::RouteNetlink;
use crate::vxlan_link::{self, Observed};

/// How often the kernel is checked while nothing else happens (a deleted device comes back).
const POLL: Duration = Duration::from_secs(10);

/// What the agent wants; `Unknown` until its watches have listed, so a restarting agent leaves
/// the running overlay alone. The input's uplink and host MTU are filled in by the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverlayDesired {
    Unknown,
    Want(Box<OverlayInput>),
}

/// What the worker last did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayReport {
    /// Ok with a summary when the kernel matches the plan, else what failed.
    pub applied: Result<String, String>,
    /// The plan applied (None when it could not be computed).
    pub plan: Option<OverlayPlan>,
}

struct Worker {
    netlink: RouteNetlink,
}

/// The plan without what this agent does not program: `tunl0` and its routes (IP-in-IP is
/// reported by the Tunnel condition).
fn without_ipip(mut plan: OverlayPlan) -> OverlayPlan {
    plan.ipip = None;
    plan.routes.retain(|r| r.dev() != Some(IPIP_DEVICE));
    plan
}

impl Worker {
    async fn plan(&self, input: &OverlayInput) -> Result<OverlayPlan, String> {
        let mut input = input.clone();
        match input.node.ip() {
            Some(ip) => {
                let up = vxlan_link::uplink(&self.netlink, ip).await?;
                input.uplink = up.name;
                input.host_mtu = up.mtu as i32;
            }
            // No address: no VTEP and no native route; the plan says why per block.
            None => input.host_mtu = 1500,
        }
        Ok(without_ipip(plan_overlay(&input)))
    }

    /// The kernel as a plan, and the keys of main-table routes that are not ours.
    async fn observe(
        &self,
        next: &OverlayPlan,
    ) -> Result<(OverlayPlan, HashSet<RouteKey>), String> {
        let Observed {
            device,
            neighbours,
            fdb,
        } = vxlan_link::observe(&self.netlink).await?;
        let main = self
            .netlink
            .list(RT_TABLE_MAIN)
            .await
            .map_err(|e| format!("reading the main table: {e}"))?;
        let (ours, foreign): (Vec<Route>, Vec<Route>) = main
            .into_iter()
            .partition(|r| r.protocol == OCELOT_PROTOCOL);
        let prev = OverlayPlan {
            vxlan: device,
            ipip: None,
            routes: ours,
            neighbours,
            fdb,
            blocks: Vec::new(),
            mtu: next.mtu,
        };
        Ok((prev, foreign.iter().map(Route::key).collect()))
    }

    async fn routes(&self, plan: RoutePlan) -> Result<(), String> {
        if plan.is_empty() {
            return Ok(());
        }
        let report = self.netlink.apply(&plan).await;
        match report.failures.first() {
            Some(f) => Err(format!("route {}: {}", f.route, f.error)),
            None => Ok(()),
        }
    }

    /// Runs the ops in order; consecutive route writes go as one pipelined batch.
    async fn apply(&self, ops: Vec<Op>, foreign: &HashSet<RouteKey>) -> Result<usize, String> {
        let sock = &self.netlink;
        let mut batch = RoutePlan::default();
        let mut writes = 0;
        for op in ops {
            let route_op = matches!(op, Op::ReplaceRoute(_) | Op::DeleteRoute(_));
            if !route_op {
                self.routes(std::mem::take(&mut batch)).await?;
            }
            match op {
                Op::ReplaceRoute(r) if foreign.contains(&r.key()) => continue,
                Op::ReplaceRoute(r) => batch.add.push(r),
                Op::DeleteRoute(r) => batch.delete.push(r),
                Op::AddDevice(Device::Vxlan(d)) => vxlan_link::add_device(sock, &d).await?,
                Op::UpdateDevice(Device::Vxlan(d)) => vxlan_link::update_device(sock, &d).await?,
                Op::RecreateDevice(Device::Vxlan(d)) => {
                    vxlan_link::remove_device(sock).await?;
                    vxlan_link::add_device(sock, &d).await?;
                }
                Op::RemoveDevice(Device::Vxlan(_)) => vxlan_link::remove_device(sock).await?,
                Op::ReplaceNeighbour(n) => vxlan_link::neighbour(sock, &n, true).await?,
                Op::DeleteNeighbour(n) => vxlan_link::neighbour(sock, &n, false).await?,
                Op::ReplaceFdb(f) => vxlan_link::fdb(sock, &f, true).await?,
                Op::DeleteFdb(f) => vxlan_link::fdb(sock, &f, false).await?,
                // Stripped from the plan (without_ipip).
                Op::AddDevice(Device::Ipip(_))
                | Op::UpdateDevice(Device::Ipip(_))
                | Op::RecreateDevice(Device::Ipip(_))
                | Op::RemoveDevice(Device::Ipip(_)) => continue,
            }
            writes += 1;
        }
        self.routes(batch).await?;
        Ok(writes)
    }

    async fn sync(&self, input: &OverlayInput) -> (Result<String, String>, Option<OverlayPlan>) {
        let next = match self.plan(input).await {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        };
        let (prev, foreign) = match self.observe(&next).await {
            Ok(o) => o,
            Err(e) => return (Err(e), Some(next)),
        };
        let ops = transition(&prev, &next);
        if !ops.is_empty() {
            tracing::debug!(?ops, "overlay transition");
        }
        match self.apply(ops, &foreign).await {
            Ok(writes) => {
                if writes > 0 {
                    tracing::info!(writes, "overlay applied");
                }
                (Ok(summary(&next)), Some(next))
            }
            Err(e) => (Err(e), Some(next)),
        }
    }
}

/// The condition's message for an applied plan.
fn summary(p: &OverlayPlan) -> String {
    let routes = p.routes.iter().filter(|r| r.dev().is_some()).count();
    match &p.vxlan {
        Some(d) => format!(
            "{VXLAN_DEVICE} up (VNI {}, port {}, mtu {}, address {}), {} VTEP(s), {routes} route(s)",
            d.vni,
            d.port,
            d.mtu,
            d.address,
            p.fdb.len()
        ),
        None if routes > 0 => format!("{routes} native route(s), no VXLAN device"),
        None => "no VXLAN device".into(),
    }
}

impl crate::worker::Worker for Worker {
    type Desired = OverlayDesired;
    type Report = OverlayReport;

    async fn pass(&mut self, want: &OverlayDesired) -> Option<OverlayReport> {
        let OverlayDesired::Want(input) = want else {
            return None;
        };
        let (applied, plan) = self.sync(input).await;
        if let Err(e) = &applied {
            tracing::warn!(error = %e, "overlay not applied");
        }
        Some(OverlayReport { applied, plan })
    }

    fn message(report: OverlayReport) -> Msg {
        if let Ok(msg) = &report.applied {
            tracing::info!(state = %msg, "overlay state");
        }
        Msg::Overlay(report)
    }
}

/// Starts the worker; reports go to the agent's loop when they change.
pub fn start(
    netlink: RouteNetlink,
    desired: watch::Receiver<OverlayDesired>,
    tx: mpsc::Sender<Msg>,
) {
    crate::worker::spawn(Worker { netlink }, desired, POLL, tx);
}
