//! The Tunnel condition: whether the node can carry the encapsulations its pools ask for. An
//! IP-in-IP pool needs the kernel's `ipip` module; on a kernel without it the agent says so in the
//! condition (naming the pools and the node) instead of leaving pods silently unreachable.
//! Whether the module exists is probed once, in the node's namespace, when an IP-in-IP pool first
//! appears: creating an `ipip` link loads the module when it is installed and fails when it is not.
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use netlink_packet_route::link::InfoKind;
use ocelot::api::Condition;
use ocelot::api::ippool::{EncapMode, IPPoolSpec};
use ocelot::overlay::Unreachable;
use ocelot::rollup::status::condition;
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use crate::agent::{Agent, Msg};
use crate::routes::RouteNetlink;

/// The probe link's name (removed right after it is made).
const PROBE: &str = "ocelot-ipipchk";

#[derive(Debug, Default)]
pub struct TunnelState {
    /// Ok(true): the kernel has `ipip`; Ok(false): it has not; Err: the probe failed. None: not
    /// probed yet.
    pub ipip: Option<Result<bool, String>>,
    probing: bool,
    /// Pools a Warning Event was sent about while this agent runs.
    warned: BTreeSet<String>,
}

/// The enabled pools that ask for IP-in-IP (Felix turns IP-in-IP on when any pool does).
pub fn ipip_pools(pools: &BTreeMap<String, IPPoolSpec>) -> Vec<String> {
    pools
        .iter()
        .filter(|(_, p)| !p.disabled && p.ipip_mode.unwrap_or_default() != EncapMode::Never)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Whether the node's kernel can make IP-in-IP links.
pub async fn probe_ipip(sock: &RouteNetlink) -> Result<bool, String> {
    sock.run(|h| async move {
        let link = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::IpIp)
            .name(PROBE.to_string())
            .build();
        match h.link().add(link).execute().await {
            Ok(()) => {
                if let Ok(Some(m)) = crate::routes::link_by_name(&h, PROBE).await {
                    let _ = h.link().del(m.header.index).execute().await;
                }
                Ok(true)
            }
            // EOPNOTSUPP: no such link kind (the module is neither built in nor installed).
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EOPNOTSUPP => {
                Ok(false)
            }
            Err(e) => Err(format!("probing for the ipip module: {e}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

impl Agent {
    /// Probes the kernel once an IP-in-IP pool exists and the probe has not run; on a kernel
    /// without `ipip`, one Warning Event per IP-in-IP pool names the pool and this node.
    pub fn sync_tunnel(&mut self) {
        if let Some(Ok(false)) = self.tunnel.ipip {
            self.warn_ipip_pools();
        }
        if self.tunnel.ipip.is_some()
            || self.tunnel.probing
            || ipip_pools(&self.bgp.pools).is_empty()
        {
            return;
        }
        self.tunnel.probing = true;
        let (netlink, tx) = (self.netlink.clone(), self.tx.clone());
        tokio::spawn(async move {
            let r = probe_ipip(&netlink).await;
            let _ = tx.send(Msg::IpipProbe(r)).await;
        });
    }

    fn warn_ipip_pools(&mut self) {
        let node = self.settings.node.clone();
        let new: Vec<String> = ipip_pools(&self.bgp.pools)
            .into_iter()
            .filter(|p| self.tunnel.warned.insert(p.clone()))
            .collect();
        if new.is_empty() {
            return;
        }
        let reporter = Reporter {
            controller: "ocelot-agent".into(),
            instance: Some(node.clone()),
        };
        let recorder = Recorder::new(self.client.clone(), reporter);
        tokio::spawn(async move {
            for pool in new {
                let regarding = ObjectReference {
                    api_version: Some("projectcalico.org/v3".into()),
                    kind: Some("IPPool".into()),
                    name: Some(pool.clone()),
                    ..Default::default()
                };
                let ev = Event {
                    type_: EventType::Warning,
                    reason: "KernelModuleMissing".into(),
                    note: Some(format!(
                        "IPPool {pool} asks for IP-in-IP, but node {node}'s kernel has no ipip module"
                    )),
                    action: "ProgramTunnel".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &regarding).await {
                    tracing::warn!(error = %e, %pool, "could not record the Event");
                }
            }
        });
    }

    pub fn on_ipip_probe(&mut self, r: Result<bool, String>) {
        self.tunnel.probing = false;
        if let Ok(false) = r {
            tracing::warn!(node = %self.settings.node, pools = ?ipip_pools(&self.bgp.pools),
                "IP-in-IP pools exist but this kernel has no ipip module");
        }
        self.tunnel.ipip = Some(r);
    }
}

/// The Tunnel condition, and whether it lets the node count as Ready: IP-in-IP pools on this
/// kernel first, then the overlay worker's report (VXLAN device, and every remote block no one
/// routes, with why).
pub fn tunnel_condition(agent: &Agent, generation: Option<i64>, now: &Time) -> (Condition, bool) {
    let c = |ok: bool, reason: &str, msg: String| {
        (condition("Tunnel", ok, reason, msg, generation, now), ok)
    };
    let pools = ipip_pools(&agent.bgp.pools);
    let node = &agent.settings.node;
    let list = pools.join(", ");
    match (&agent.tunnel.ipip, pools.is_empty()) {
        (_, true) => {}
        (None, false) => {
            return c(
                false,
                "Probing",
                format!("checking the kernel for IP-in-IP (IPPool {list})"),
            );
        }
        (Some(Ok(false)), false) => {
            return c(
                false,
                "KernelModuleMissing",
                format!(
                    "IPPool {list} asks for IP-in-IP (ipipMode), but node {node}'s kernel has no ipip module: \
                     its pods get no IP-in-IP routes; load the module or use vxlanMode"
                ),
            );
        }
        (Some(Ok(true)), false) => {
            return c(
                false,
                "NotSupportedYet",
                format!("IPPool {list} asks for IP-in-IP; the agent does not program tunl0 yet"),
            );
        }
        (Some(Err(e)), false) => return c(false, "ProbeFailed", e.clone()),
    }
    let (ok, reason, msg) = overlay_verdict(agent);
    c(ok, reason, msg)
}

/// The overlay part of the Tunnel condition: (ok, reason, message).
fn overlay_verdict(agent: &Agent) -> (bool, &'static str, String) {
    let spec = agent.nns.as_ref().map(|n| &n.spec);
    let vxlan_pools = spec.map_or(0, |s| {
        s.encapsulated_pools
            .iter()
            .filter(|p| p.vxlan_mode != EncapMode::Never)
            .count()
    });
    let Some(report) = &agent.overlay.report else {
        return if vxlan_pools > 0 {
            (
                false,
                "Starting",
                "the overlay has not been applied yet".into(),
            )
        } else {
            (
                true,
                "NotNeeded",
                "no pool asks for VXLAN or IP-in-IP".into(),
            )
        };
    };
    let (msg, plan) = match (&report.applied, &report.plan) {
        (Err(e), _) => return (false, "ApplyFailed", e.clone()),
        (Ok(msg), Some(plan)) => (msg, plan),
        (Ok(msg), None) => return (true, "NotNeeded", msg.clone()),
    };
    let unreachable: Vec<_> = plan.unreachable().collect();
    if let Some((_, first)) = unreachable.first() {
        let each: Vec<String> = unreachable
            .iter()
            .map(|(b, why)| format!("block {} of node {}: {why}", b.block, b.node))
            .collect();
        return (
            false,
            first.reason(),
            format!(
                "no route to {} remote block(s): {}",
                each.len(),
                each.join("; ")
            ),
        );
    }
    let disabled = spec.is_some_and(|s| s.dataplane.vxlan_enabled == Some(false));
    match (&plan.vxlan, vxlan_pools > 0 && !disabled) {
        (Some(_), _) => (true, "Ready", msg.clone()),
        (None, true) => (
            false,
            Unreachable::LocalVTEPPending.reason(),
            Unreachable::LocalVTEPPending.to_string(),
        ),
        (None, false) => (true, "NotNeeded", msg.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_pools_asking_for_ipip_count() {
        let pool = |ipip: Option<EncapMode>, disabled: bool| IPPoolSpec {
            cidr: "10.0.0.0/16".into(),
            ipip_mode: ipip,
            disabled,
            ..Default::default()
        };
        let pools = BTreeMap::from([
            ("a-always".to_string(), pool(Some(EncapMode::Always), false)),
            (
                "b-cross".to_string(),
                pool(Some(EncapMode::CrossSubnet), false),
            ),
            ("c-never".to_string(), pool(Some(EncapMode::Never), false)),
            ("d-unset".to_string(), pool(None, false)),
            (
                "e-disabled".to_string(),
                pool(Some(EncapMode::Always), true),
            ),
        ]);
        assert_eq!(ipip_pools(&pools), ["a-always", "b-cross"]);
    }
}
