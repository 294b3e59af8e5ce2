//! `ocelotctl node status`: calicoctl's screen for one node, read from its NodeNetworkState, so it
//! works from any machine. The first line stands in for calicoctl's "Calico process is running."
//! and is derived from what the agent reports.
use serde::Serialize;

use crate::api::NodeNetworkState;
use crate::api::nodestate::BGPPeerStatusEntry;
use crate::bgp::render_bgp_status;

/// What the node's agent is doing, from its status against the current spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail")]
pub enum AgentState {
    /// Status written, the current spec applied, Ready True (sessions may still be down: the
    /// table shows them).
    Running,
    /// The node's agent has written no status at all.
    NotReporting,
    /// The status is of an older spec (generation or hash behind).
    Behind {
        /// Hash the agent last applied, if any.
        applied: Option<String>,
        /// Hash of the current spec.
        desired: String,
    },
    /// The current spec is applied but Ready is not True: the other conditions that are not True.
    NotReady(Vec<String>),
}

impl AgentState {
    /// The state of the agent behind `nns`.
    pub fn of(nns: &NodeNetworkState) -> AgentState {
        let Some(status) = nns.status.as_ref() else {
            return AgentState::NotReporting;
        };
        let generation_behind = matches!(
            (status.observed_generation, nns.metadata.generation),
            (Some(seen), Some(current)) if seen < current
        );
        if generation_behind || status.applied_hash.as_deref() != Some(nns.spec.hash.as_str()) {
            return AgentState::Behind {
                applied: status.applied_hash.clone(),
                desired: nns.spec.hash.clone(),
            };
        }
        // Ready is the agent's verdict on the whole spec; a session that is not up is only BGP's
        // own condition (the table shows it), as in the agent.
        if status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            return AgentState::Running;
        }
        let mut why: Vec<String> = status
            .conditions
            .iter()
            .filter(|c| c.status != "True" && c.type_ != "Ready")
            .map(|c| format!("{} {}: {}", c.type_, c.reason, c.message))
            .collect();
        if why.is_empty() {
            why.push("no Ready condition is True".into());
        }
        AgentState::NotReady(why)
    }

    /// The line calicoctl prints as "Calico process is running.".
    pub fn line(&self, node: &str) -> String {
        match self {
            AgentState::Running => "Ocelot agent is running.".into(),
            AgentState::NotReporting => format!(
                "Ocelot agent is not reporting: NodeNetworkState {node} has no status \
                 (is ocelot-agent running on {node}?)."
            ),
            AgentState::Behind { applied, desired } => format!(
                "Ocelot agent is not reporting the current state: it applied {}, the spec is at {desired}.",
                applied.as_deref().unwrap_or("nothing")
            ),
            AgentState::NotReady(why) => {
                format!("Ocelot agent is running but not ready: {}.", why.join("; "))
            }
        }
    }
}

/// `node status` data of one node (what `-o json|yaml` prints).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// Its agent's state.
    pub agent: AgentState,
    /// IPv4 BGP sessions as its agent reports them.
    pub ipv4_peers: Vec<BGPPeerStatusEntry>,
    /// IPv6 BGP sessions.
    pub ipv6_peers: Vec<BGPPeerStatusEntry>,
}

impl NodeStatus {
    /// The status of the node behind `nns`; sessions split by family in the order reported.
    pub fn of(nns: &NodeNetworkState) -> NodeStatus {
        let node = nns.metadata.name.clone().unwrap_or_default();
        let peers = nns
            .status
            .as_ref()
            .map(|s| s.bgp_peers.as_slice())
            .unwrap_or_default();
        // Addresses with a port suffix (`a.b.c.d.port.N`) do not parse; a colon marks IPv6.
        let (ipv6_peers, ipv4_peers) = peers.iter().cloned().partition(|p| p.peer_ip.contains(':'));
        NodeStatus {
            agent: AgentState::of(nns),
            node,
            ipv4_peers,
            ipv6_peers,
        }
    }

    /// Whether the agent runs the current state and every session is Established.
    pub fn healthy(&self) -> bool {
        self.agent == AgentState::Running
            && self
                .ipv4_peers
                .iter()
                .chain(&self.ipv6_peers)
                .all(|p| p.info.as_deref() == Some("Established"))
    }

    /// calicoctl's screen: the process line, a blank line, then the IPv4 and IPv6 sections.
    pub fn render(&self) -> String {
        format!(
            "{}\n\n{}{}",
            self.agent.line(&self.node),
            render_bgp_status("IPv4", &self.ipv4_peers),
            render_bgp_status("IPv6", &self.ipv6_peers)
        )
    }
}
