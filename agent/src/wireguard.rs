//! WireGuard on the node: a worker task makes the kernel and the device match the core's
//! [`WireguardPlan`]: the device (boringtun in userspace, [`crate::boringtun`]) with the node's
//! key, port and firewall mark; one peer per node with a published key; the device's MTU and
//! address; the WireGuard table's routes and the rule selecting it. Off: all of it removed.
//!
//! Each pass reads the device and the kernel first and writes only what differs: a peer whose
//! settings did not change keeps its session, and a pass over an applied state writes nothing.
use std::net::Ipv4Addr;
use std::time::Duration;

use ocelot::desired::{Encaps, plan_mtu};
use ocelot::routes::{Ownership, Route, plan as route_plan};
use ocelot::wireguard::uapi::{self, DeviceState};
use ocelot::wireguard::{PrivateKey, WireguardPlan};
use tokio::sync::{mpsc, watch};

use crate::agent::Msg;
use crate::boringtun::{Device, Userspace};
use crate::routes::RouteNetlink;
use crate::wg_link::{self, WgRule};

/// How often the device is checked while nothing else happens (a dead boringtun is restarted).
const POLL: Duration = Duration::from_secs(5);
/// Felix's default `wireguardFirewallMark`-style bit: the tunnel's own UDP carries it, so the
/// rule (`not fwmark`) sends it to the main table instead of back into the tunnel.
pub const FWMARK: u32 = 0x10_0000;

/// What the node's WireGuard should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgConfig {
    /// The core's plan (`remove_device` when off).
    pub plan: WireguardPlan,
    /// The node's private key (None when off).
    pub key: Option<PrivateKey>,
    /// `wireguard.cali`'s address, from the operator (one of the node's own block addresses).
    pub address: Option<Ipv4Addr>,
    /// FelixConfiguration `wireguardMTU` (None or 0: the host MTU − 60).
    pub mtu: Option<i32>,
    /// The node's address, whose interface gives the host MTU.
    pub node_ip: Option<Ipv4Addr>,
}

/// What the agent wants; `Unknown` until its watches have listed, so a restarting agent leaves
/// the running tunnel alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WgDesired {
    Unknown,
    Want(Box<WgConfig>),
}

/// What the worker last did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgReport {
    /// Ok with a summary when the node matches the plan, else what failed.
    pub applied: Result<String, String>,
    /// The device's public key, once it runs with the node's key (published in status).
    pub public_key: Option<String>,
    pub peers: usize,
    pub on: bool,
}

struct Worker {
    userspace: Userspace,
    netlink: RouteNetlink,
    device: Option<Device>,
}

impl Worker {
    fn rule(plan: &WireguardPlan) -> WgRule {
        WgRule {
            priority: plan.rule.priority,
            table: plan.rule.table,
            mark: FWMARK,
        }
    }

    async fn routes(&self, plan: &WireguardPlan, desired: &[Route]) -> Result<usize, String> {
        let current = self
            .netlink
            .list(plan.rule.table)
            .await
            .map_err(|e| format!("reading table {}: {e}", plan.rule.table))?;
        let p = route_plan(desired, &current, &Ownership::default());
        if p.is_empty() {
            return Ok(0);
        }
        let report = self.netlink.apply(&p).await;
        if let Some(f) = report.failures.first() {
            return Err(format!("route {}: {}", f.route, f.error));
        }
        Ok(report.added + report.deleted)
    }

    async fn off(&mut self, plan: &WireguardPlan) -> Result<String, String> {
        let name = &plan.interface_name;
        if let Some(dev) = self.userspace.find(self.device.take(), name) {
            self.userspace.stop(dev).await;
        }
        // A kernel device, or one a killed boringtun left behind.
        wg_link::delete(&self.netlink, name).await?;
        wg_link::set_rule(&self.netlink, Self::rule(plan), false).await?;
        // Only the table's routes this agent wrote go (Calico flushes a table > 0).
        self.routes(plan, &[]).await?;
        Ok("WireGuard is off".into())
    }

    async fn on(&mut self, c: &WgConfig, key: &PrivateKey) -> Result<String, String> {
        let plan = &c.plan;
        let name = &plan.interface_name;
        let dev = match self.userspace.find(self.device.take(), name) {
            Some(d) => d,
            None => self.userspace.start(name).await?,
        };
        let state = uapi::parse_get(&dev.uapi(uapi::GET).await?).map_err(|e| e.to_string());
        self.device = Some(dev);
        let state = state?;
        let dev = self.device.as_ref().expect("just set");
        let mut writes = peers(dev, &state, c, key).await?;
        let host = wg_link::host_mtu(&self.netlink, c.node_ip, name).await?;
        let mtu = plan_mtu(
            host as i32,
            Encaps {
                wireguard: Some(c.mtu.unwrap_or(0)),
                ..Encaps::default()
            },
        )
        .wireguard
        .unwrap_or(host as i32 - 60);
        writes += wg_link::configure(&self.netlink, name, mtu as u32, c.address).await?;
        writes += self.routes(plan, &plan.routes()).await?;
        writes += wg_link::set_rule(&self.netlink, Self::rule(plan), true).await?;
        if writes > 0 {
            tracing::info!(interface = %name, mtu, peers = plan.peers.len(), writes, "WireGuard applied");
        }
        let skipped: Vec<String> = plan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.node, s.reason))
            .collect();
        let mut msg = format!("{name} up, mtu {mtu}, {} peer(s)", plan.peers.len());
        if !skipped.is_empty() {
            msg += &format!("; not peers: {}", skipped.join("; "));
        }
        Ok(msg)
    }
}

/// Device key/port/mark and peers through the control socket; returns the number of requests.
async fn peers(
    dev: &Device,
    state: &DeviceState,
    c: &WgConfig,
    key: &PrivateKey,
) -> Result<usize, String> {
    let set = |req: String| async move {
        let reply = dev.uapi(&req).await?;
        uapi::parse_errno(&reply).map_err(|e| e.to_string())
    };
    let plan = &c.plan;
    let mut writes = 0;
    if state.own_public_key != Some(key.public_key())
        || state.listen_port != Some(plan.listen_port)
        || state.fwmark != Some(FWMARK)
    {
        set(uapi::set_device(key, plan.listen_port, FWMARK))
            .await
            .map_err(|e| format!("setting the device's key and port: {e}"))?;
        writes += 1;
    }
    for have in &state.peers {
        let keep = plan.peers.iter().any(|p| have.matches(p));
        if !keep {
            set(uapi::remove_peer(&have.public_key))
                .await
                .map_err(|e| format!("removing a peer: {e}"))?;
            writes += 1;
        }
    }
    for p in &plan.peers {
        if !state.peers.iter().any(|h| h.matches(p)) {
            set(uapi::add_peer(p))
                .await
                .map_err(|e| format!("adding peer {}: {e}", p.node))?;
            writes += 1;
        }
    }
    Ok(writes)
}

impl crate::worker::Worker for Worker {
    type Desired = WgDesired;
    type Report = WgReport;

    async fn pass(&mut self, want: &WgDesired) -> Option<WgReport> {
        let WgDesired::Want(c) = want else {
            return None;
        };
        let report = match (&c.key, c.plan.remove_device) {
            (Some(key), false) => WgReport {
                applied: self.on(c, key).await,
                public_key: Some(key.public_key().to_base64()),
                peers: c.plan.peers.len(),
                on: true,
            },
            _ => WgReport {
                applied: self.off(&c.plan).await,
                public_key: None,
                peers: 0,
                on: false,
            },
        };
        if let Err(e) = &report.applied {
            tracing::warn!(error = %e, "WireGuard not applied");
        }
        Some(WgReport {
            // A key is published only while a device runs (with it, once set).
            public_key: report.public_key.filter(|_| self.device.is_some()),
            ..report
        })
    }

    fn message(report: WgReport) -> Msg {
        if let Ok(msg) = &report.applied {
            tracing::info!(state = %msg, "WireGuard state");
        }
        Msg::Wireguard(report)
    }
}

/// Starts the worker; reports go to the agent's loop when they change.
pub fn start(
    userspace: Userspace,
    netlink: RouteNetlink,
    desired: watch::Receiver<WgDesired>,
    tx: mpsc::Sender<Msg>,
) {
    let w = Worker {
        userspace,
        netlink,
        device: None,
    };
    crate::worker::spawn(w, desired, POLL, tx);
}
