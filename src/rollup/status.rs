//! The statuses the operator writes into source objects, from the roll-up counters and the
//! object itself: `observedGeneration`, conditions, and the counts. A condition keeps its
//! `lastTransitionTime` while its status stays the same, so an unchanged object compares equal to
//! what is stored and is not rewritten. Pure: the caller passes the clock in.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::Condition;
use crate::api::bgp::{BGPConfigurationSpec, BGPConfigurationStatus, BGPPeerSpec, BGPPeerStatus};
use crate::api::felix::{FelixConfigurationSpec, FelixConfigurationStatus};
use crate::api::ippool::IPPoolStatus;
use crate::bgp::columns::{bgpconfig_effective, peer_node_column};
use crate::bgp::support::{NOT_SUPPORTED_YET, Unsupported, config_unsupported, peer_unsupported};
use crate::desired::support::felix_unsupported;

use super::{NodeTotals, PeerCounts, PoolCounts};

/// Condition types the operator sets on source objects.
pub mod kind {
    /// Every node it concerns applied the current state.
    pub const READY: &str = "Ready";
    /// WireGuard is ready on every node where it is on.
    pub const WIREGUARD_READY: &str = "WireGuardReady";
    /// Every set field is acted on (False: some are accepted but not implemented yet).
    pub const SUPPORTED: &str = "Supported";
    /// Every session of a BGPPeer is Established.
    pub const ESTABLISHED: &str = "Established";
}

/// A `metav1.Condition`.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// Keeps each condition's `lastTransitionTime` from `old` where its type and status are the same.
pub fn keep_transition_times(new: &mut [Condition], old: &[Condition]) {
    for c in new {
        if let Some(o) = old
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = o.last_transition_time.clone();
        }
    }
}

/// The `Supported` condition for the fields that are set but not acted on yet.
pub fn supported_condition(
    unsupported: &[Unsupported],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    if unsupported.is_empty() {
        return condition(
            kind::SUPPORTED,
            true,
            "Supported",
            "every field set is acted on".into(),
            generation,
            now,
        );
    }
    let message = unsupported
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    condition(
        kind::SUPPORTED,
        false,
        NOT_SUPPORTED_YET,
        message,
        generation,
        now,
    )
}

/// "WireGuard ready on 2/3 nodes" while WireGuard is on for some node, else "3/3 nodes applied".
pub fn felix_summary(t: &NodeTotals) -> String {
    if t.wireguard_enabled > 0 {
        format!(
            "WireGuard ready on {}/{} nodes",
            t.wireguard_ready, t.wireguard_enabled
        )
    } else {
        format!("{}/{} nodes applied", t.converged, t.nodes)
    }
}

/// A FelixConfiguration's status: `totals` are every node's for `default`, the one node's for
/// `node.<name>` ([`NodeTotals::of`]); `Ready`, `Supported` and, while WireGuard is on somewhere,
/// `WireGuardReady`.
pub fn felix_status(
    generation: Option<i64>,
    spec: &FelixConfigurationSpec,
    t: NodeTotals,
    old: Option<&FelixConfigurationStatus>,
    now: &Time,
) -> FelixConfigurationStatus {
    let applied = format!(
        "{}/{} nodes applied their current state",
        t.converged, t.nodes
    );
    let ready = match (t.nodes, t.converged == t.nodes) {
        (0, _) => condition(
            kind::READY,
            false,
            "NoNodes",
            "no node this configuration applies to is known".into(),
            generation,
            now,
        ),
        (_, true) => condition(kind::READY, true, "Applied", applied, generation, now),
        (_, false) => condition(kind::READY, false, "Applying", applied, generation, now),
    };
    let mut conditions = vec![
        ready,
        supported_condition(&felix_unsupported(spec), generation, now),
    ];
    let wireguard = t.wireguard_enabled > 0;
    if wireguard {
        let all = t.wireguard_ready == t.wireguard_enabled;
        conditions.push(condition(
            kind::WIREGUARD_READY,
            all,
            if all {
                "WireGuardReady"
            } else {
                "WireGuardNotReady"
            },
            felix_summary(&t),
            generation,
            now,
        ));
    }
    keep_transition_times(
        &mut conditions,
        old.map(|o| o.conditions.as_slice()).unwrap_or_default(),
    );
    FelixConfigurationStatus {
        observed_generation: generation,
        conditions,
        summary: Some(felix_summary(&t)),
        nodes_ready: Some(t.converged),
        nodes_total: Some(t.nodes),
        wireguard_nodes_ready: wireguard.then_some(t.wireguard_ready),
        wireguard_nodes_total: wireguard.then_some(t.wireguard_enabled),
    }
}

/// A BGPPeer's status: calicoctl's NODE column, its node and session counts, `Supported` and
/// `Established`.
pub fn peer_status(
    generation: Option<i64>,
    spec: &BGPPeerSpec,
    c: PeerCounts,
    old: Option<&BGPPeerStatus>,
    now: &Time,
) -> BGPPeerStatus {
    let counts = format!(
        "{}/{} nodes have every session Established ({}/{} sessions)",
        c.nodes_established, c.nodes, c.sessions_established, c.sessions
    );
    let established = match (c.sessions, c.sessions_established == c.sessions) {
        (0, _) => condition(
            kind::ESTABLISHED,
            false,
            "NoSessions",
            "no node has a session from this peer".into(),
            generation,
            now,
        ),
        (_, true) => condition(
            kind::ESTABLISHED,
            true,
            "Established",
            counts,
            generation,
            now,
        ),
        (_, false) => condition(
            kind::ESTABLISHED,
            false,
            "NotEstablished",
            counts,
            generation,
            now,
        ),
    };
    let mut conditions = vec![
        supported_condition(&peer_unsupported(spec), generation, now),
        established,
    ];
    keep_transition_times(
        &mut conditions,
        old.map(|o| o.conditions.as_slice()).unwrap_or_default(),
    );
    BGPPeerStatus {
        observed_generation: generation,
        conditions,
        nodes_selected: Some(c.nodes),
        nodes_established: Some(c.nodes_established),
        sessions_expected: Some(c.sessions),
        sessions_established: Some(c.sessions_established),
        node: Some(peer_node_column(spec)),
    }
}

/// A BGPConfiguration's status: the effective mesh and AS (only `default` sets them) and
/// `Supported`.
pub fn bgp_config_status(
    name: &str,
    generation: Option<i64>,
    spec: &BGPConfigurationSpec,
    old: Option<&BGPConfigurationStatus>,
    now: &Time,
) -> BGPConfigurationStatus {
    let (mesh_enabled, as_number) = bgpconfig_effective(name, spec);
    let mut conditions = vec![supported_condition(
        &config_unsupported(spec),
        generation,
        now,
    )];
    keep_transition_times(
        &mut conditions,
        old.map(|o| o.conditions.as_slice()).unwrap_or_default(),
    );
    BGPConfigurationStatus {
        observed_generation: generation,
        conditions,
        mesh_enabled,
        as_number,
    }
}

/// Fills an IPPool status's roll-up fields: its blocks and addresses, the nodes holding them, and
/// how many nodes applied their current state (each node's state lists every pool).
pub fn pool_rollup(status: &mut IPPoolStatus, c: PoolCounts, t: NodeTotals) {
    status.blocks = Some(c.blocks);
    status.nodes_with_blocks = Some(c.nodes_with_blocks);
    status.addresses_in_use = Some(c.in_use);
    status.addresses_free = Some(c.free);
    status.nodes_applied = Some(t.converged);
    status.nodes_total = Some(t.nodes);
}
