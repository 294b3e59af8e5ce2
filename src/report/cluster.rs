//! `ocelotctl status`: one screen on the whole cluster (operator leader, nodes converged, pools,
//! BGP sessions, WireGuard), and whether everything is converged.
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::NodeNetworkState;
use crate::api::node::Node;
use crate::api::nodestate::PeerType;
use crate::bgp::expand::mesh_sessions;
use crate::ipam::ShowReport;
use crate::ipam::report::format_usage;
use crate::rollup::{NodeFacts, node_facts};

use super::node::AgentState;

/// The operator's leader Lease as read from the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// `namespace/name` of the Lease.
    pub lease: String,
    /// spec.holderIdentity.
    pub holder: Option<String>,
    /// spec.renewTime.
    pub renew_time: Option<jiff::Timestamp>,
    /// spec.leaseDurationSeconds.
    pub duration_seconds: Option<i32>,
}

/// Who leads the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Leader {
    /// A holder renewed the Lease within its duration.
    Held {
        /// The holder's identity.
        holder: String,
        /// The Lease.
        lease: String,
        /// Seconds since the last renewal.
        renewed_seconds_ago: i64,
    },
    /// The Lease exists but nobody holds it, or its holder stopped renewing it.
    Expired {
        /// The Lease.
        lease: String,
        /// Its last holder, if any.
        holder: Option<String>,
    },
    /// No Lease: no operator with leader election ever ran against this cluster.
    Missing,
}

impl Leader {
    /// The leader from the Lease (None: there is none) at `now`.
    pub fn of(lease: Option<&LeaseInfo>, now: jiff::Timestamp) -> Leader {
        let Some(l) = lease else {
            return Leader::Missing;
        };
        let age = l.renew_time.map(|t| now.as_second() - t.as_second());
        let within = |a: i64| a <= i64::from(l.duration_seconds.unwrap_or(15));
        match (&l.holder, age) {
            (Some(h), Some(a)) if !h.is_empty() && within(a) => Leader::Held {
                holder: h.clone(),
                lease: l.lease.clone(),
                renewed_seconds_ago: a.max(0),
            },
            _ => Leader::Expired {
                lease: l.lease.clone(),
                holder: l.holder.clone().filter(|h| !h.is_empty()),
            },
        }
    }
}

/// One pool line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolLine {
    /// Pool name.
    pub name: String,
    /// Pool CIDR.
    pub cidr: String,
    /// Blocks carved from it.
    pub blocks: usize,
    /// Addresses in use.
    pub in_use: u128,
    /// Addresses in the pool.
    pub total: u128,
}

/// `status` data (what `-o json|yaml` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The operator's leader.
    pub leader: Leader,
    /// Nodes with a NodeNetworkState.
    pub nodes: u32,
    /// Of those, running their current spec (appliedHash = spec hash) with Ready True.
    pub converged: u32,
    /// Pools and their usage.
    pub pools: Vec<PoolLine>,
    /// BGP sessions Established, over all nodes.
    pub bgp_up: u32,
    /// BGP sessions the nodes' specs and the mesh call for.
    pub bgp_expected: u32,
    /// Nodes with WireGuard on.
    pub wireguard_enabled: u32,
    /// Of those, with WireGuard ready.
    pub wireguard_ready: u32,
    /// What is not converged, one line each.
    pub problems: Vec<String>,
}

impl ClusterStatus {
    /// The cluster's status from the operator's Lease, every NodeNetworkState, every Calico Node
    /// (the mesh) and the IPAM data, at `now`.
    pub fn compute(
        lease: Option<&LeaseInfo>,
        states: &[NodeNetworkState],
        nodes: &[Node],
        ipam: &ShowReport,
        now: jiff::Timestamp,
    ) -> ClusterStatus {
        let leader = Leader::of(lease, now);
        let mut problems = Vec::new();
        match &leader {
            Leader::Held { .. } => {}
            Leader::Expired { lease, holder } => problems.push(format!(
                "operator: Lease {lease} is not renewed (last holder {}); is ocelot-operator running?",
                holder.as_deref().unwrap_or("none")
            )),
            Leader::Missing => problems.push(
                "operator: no Lease ocelot-operator in any namespace; is ocelot-operator installed?"
                    .into(),
            ),
        }
        let mut s = ClusterStatus {
            leader,
            nodes: 0,
            converged: 0,
            pools: Vec::new(),
            bgp_up: 0,
            bgp_expected: 0,
            wireguard_enabled: 0,
            wireguard_ready: 0,
            problems: Vec::new(),
        };
        for nns in states {
            let name = nns.metadata.name.as_deref().unwrap_or("?");
            let facts = node_facts(&nns.spec, nns.status.as_ref());
            let agent = AgentState::of(nns);
            s.nodes += 1;
            if agent == AgentState::Running {
                s.converged += 1;
            } else {
                problems.push(format!("node {name}: {}", agent.line(name)));
            }
            if facts.wireguard_enabled {
                s.wireguard_enabled += 1;
                if facts.wireguard_ready {
                    s.wireguard_ready += 1;
                } else {
                    problems.push(format!("node {name}: WireGuard is on but not ready"));
                }
            }
            let (up, expected) = sessions(nns, nodes, &facts);
            s.bgp_up += up;
            s.bgp_expected += expected;
            if up < expected {
                let down: Vec<String> = nns
                    .status
                    .iter()
                    .flat_map(|st| &st.bgp_peers)
                    .filter(|p| p.info.as_deref() != Some("Established"))
                    .map(|p| {
                        format!(
                            "{} ({}) {}",
                            p.peer_ip,
                            p.peer_type.as_str(),
                            p.info.as_deref().unwrap_or(&p.state)
                        )
                    })
                    .collect();
                let detail = if down.is_empty() {
                    "some are not reported yet".to_string()
                } else {
                    format!("not up: {}", down.join(", "))
                };
                problems.push(format!(
                    "node {name}: {up}/{expected} BGP sessions Established; {detail}"
                ));
            }
        }
        s.pools = ipam
            .pools
            .iter()
            .map(|p| PoolLine {
                name: p.name.clone(),
                cidr: p.cidr.to_string(),
                blocks: p.blocks.len(),
                in_use: p.in_use,
                total: p.total,
            })
            .collect();
        s.problems = problems;
        s
    }

    /// Whether everything is converged (the command's exit code).
    pub fn converged(&self) -> bool {
        self.problems.is_empty()
    }

    /// The one screen.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let w = &mut o;
        let _ = match &self.leader {
            Leader::Held {
                holder,
                lease,
                renewed_seconds_ago,
            } => writeln!(
                w,
                "Operator leader:   {holder} (Lease {lease}, renewed {renewed_seconds_ago}s ago)"
            ),
            Leader::Expired { lease, .. } => {
                writeln!(w, "Operator leader:   none (Lease {lease} expired)")
            }
            Leader::Missing => writeln!(w, "Operator leader:   none (no Lease)"),
        };
        let _ = writeln!(w, "Nodes converged:   {}/{}", self.converged, self.nodes);
        let _ = writeln!(
            w,
            "BGP sessions up:   {}/{}",
            self.bgp_up, self.bgp_expected
        );
        let _ = if self.wireguard_enabled == 0 {
            writeln!(w, "WireGuard ready:   off")
        } else {
            writeln!(
                w,
                "WireGuard ready:   {}/{}",
                self.wireguard_ready, self.wireguard_enabled
            )
        };
        let _ = writeln!(w, "IP pools:          {}", self.pools.len());
        for p in &self.pools {
            let _ = writeln!(
                w,
                "  {} {}: {} blocks, {} of {} addresses in use",
                p.name,
                p.cidr,
                p.blocks,
                format_usage(p.in_use, p.total),
                p.total
            );
        }
        if self.problems.is_empty() {
            let _ = writeln!(w, "\nEverything is converged.");
        } else {
            let _ = writeln!(w, "\nNot converged ({}):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(w, "  {p}");
            }
        }
        o
    }
}

/// (Established, expected) sessions of one node: its explicit peers plus its mesh sessions.
fn sessions(nns: &NodeNetworkState, nodes: &[Node], facts: &NodeFacts) -> (u32, u32) {
    let explicit_expected: u32 = facts.peers.values().map(|p| p.expected).sum();
    let explicit_up: u32 = facts.peers.values().map(|p| p.established).sum();
    let mesh_expected = nns
        .spec
        .bgp
        .as_ref()
        .map_or(0, |b| mesh_sessions(b, nodes).len()) as u32;
    let mesh_up = nns
        .status
        .iter()
        .flat_map(|s| &s.bgp_peers)
        .filter(|p| {
            p.peer_type == PeerType::NodeMesh
                && p.state == "up"
                && p.info.as_deref() == Some("Established")
        })
        .count() as u32;
    (
        explicit_up + mesh_up.min(mesh_expected),
        explicit_expected + mesh_expected,
    )
}
