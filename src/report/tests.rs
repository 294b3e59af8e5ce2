//! The `node status` and `status` screens, pinned against the seed's calicoctl output.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::nodestate::{BGPPeerStatusEntry, PeerType};
use crate::api::{Condition, NodeNetworkState};
use crate::testutil::calico_node;

fn peer(ip: &str, t: PeerType, state: &str, since: &str, info: &str) -> BGPPeerStatusEntry {
    BGPPeerStatusEntry {
        peer_ip: ip.into(),
        peer_type: t,
        state: state.into(),
        since: Some(since.into()),
        info: Some(info.into()),
    }
}

fn cond(type_: &str, status: &str, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} says {reason}"),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
    }
}

/// node1 as the seed has it after the BGPPeer step, plus a node-specific session, agent Ready
/// (the fixture the e2e test writes into the API server).
fn node1() -> NodeNetworkState {
    serde_yaml::from_str(include_str!("../../tests/fixtures/ctl/nns-node1.yaml")).unwrap()
}

#[test]
fn node_status_screen_is_calicoctls_layout() {
    let s = NodeStatus::of(&node1());
    // The seed's screen (second `calicoctl node status`), with a node-specific row added and
    // the process line in Ocelot's words; the e2e test pins `ocelotctl` to the same file.
    let want = include_str!("../../tests/fixtures/ctl/node-status-node1.txt");
    assert_eq!(s.render(), want, "\n{}", s.render());
    assert!(s.healthy());
    let mut n = node1();
    n.status.as_mut().unwrap().bgp_peers[3].info = Some("Connect".into());
    let s = NodeStatus::of(&n);
    assert!(
        s.render()
            .contains("| 198.19.15.253 | node specific     | up    | 10:58:07 | Connect     |\n")
    );
    assert!(!s.healthy(), "a session in Connect is not healthy");
}

#[test]
fn process_line_follows_the_agents_status() {
    let mut n = node1();
    assert_eq!(AgentState::of(&n), AgentState::Running);
    // A session down is BGP's own condition: the agent still runs the spec.
    n.status.as_mut().unwrap().conditions[0] = cond("BGP", "False", "SessionsNotEstablished");
    assert_eq!(AgentState::of(&n), AgentState::Running);
    n.status.as_mut().unwrap().conditions[0] = cond("BGP", "False", "BirdFailed");
    n.status.as_mut().unwrap().conditions[1] = cond("Ready", "False", "NotApplied");
    assert_eq!(
        AgentState::of(&n).line("node1"),
        "Ocelot agent is running but not ready: BGP BirdFailed: BGP says BirdFailed."
    );
    n.spec.hash = "h2".into();
    assert_eq!(
        AgentState::of(&n).line("node1"),
        "Ocelot agent is not reporting the current state: it applied h1, the spec is at h2."
    );
    n.status = None;
    let s = NodeStatus::of(&n);
    assert_eq!(s.agent, AgentState::NotReporting);
    assert!(
        s.render().starts_with(
            "Ocelot agent is not reporting: NodeNetworkState node1 has no status \
             (is ocelot-agent running on node1?).\n\nIPv4 BGP status\nNo IPv4 peers found.\n\n"
        ),
        "{}",
        s.render()
    );
}

#[test]
fn ipv6_sessions_get_their_own_table() {
    let mut n = node1();
    n.status.as_mut().unwrap().bgp_peers = vec![peer(
        "fd00::1",
        PeerType::Global,
        "up",
        "10:00:00",
        "Established",
    )];
    let text = NodeStatus::of(&n).render();
    assert!(
        text.contains("IPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\n+"),
        "{text}"
    );
    assert!(text.contains("| fd00::1      | global    |"), "{text}");
}

fn now() -> jiff::Timestamp {
    "2026-12-03T10:00:00Z".parse().unwrap()
}

fn lease(renewed_ago: i64) -> LeaseInfo {
    LeaseInfo {
        lease: "kube-system/ocelot-operator".into(),
        holder: Some("op-1".into()),
        renew_time: Some(jiff::Timestamp::from_second(now().as_second() - renewed_ago).unwrap()),
        duration_seconds: Some(15),
    }
}

#[test]
fn cluster_status_counts_and_exit() {
    let nodes = [
        calico_node("control", "198.19.0.1", &[]),
        calico_node("node1", "198.19.0.2", &[]),
        calico_node("node2", "198.19.0.3", &[]),
    ];
    // All four of node1's sessions up; node2 has not applied its new spec.
    let n1 = node1();
    let mut n2 = node1();
    n2.metadata.name = Some("node2".into());
    n2.spec.node = "node2".into();
    n2.spec.bgp.as_mut().unwrap().ipv4_address = "198.19.0.3".parse().unwrap();
    n2.spec.hash = "h2".into();
    n2.status.as_mut().unwrap().bgp_peers[3].info = Some("Connect".into());
    let ipam = ShowReport::default();
    let s = ClusterStatus::compute(Some(&lease(3)), &[n1.clone(), n2], &nodes, &ipam, now());
    assert_eq!(
        s.leader,
        Leader::Held {
            holder: "op-1".into(),
            lease: "kube-system/ocelot-operator".into(),
            renewed_seconds_ago: 3
        }
    );
    assert_eq!((s.converged, s.nodes), (1, 2));
    // Expected per node: 2 mesh (the other two Calico Nodes) + 2 explicit.
    assert_eq!((s.bgp_up, s.bgp_expected), (4 + 3, 8));
    assert!(!s.converged());
    let text = s.render();
    assert!(
        text.contains(
            "Operator leader:   op-1 (Lease kube-system/ocelot-operator, renewed 3s ago)\n"
        ),
        "{text}"
    );
    assert!(text.contains("Nodes converged:   1/2\n"), "{text}");
    assert!(text.contains("BGP sessions up:   7/8\n"), "{text}");
    assert!(
        text.contains("node node2: Ocelot agent is not reporting the current state"),
        "{text}"
    );
    assert!(text.contains("node node2: 3/4 BGP sessions Established; not up: 198.19.15.253 (node specific) Connect"), "{text}");

    let pool: crate::api::IPPool = serde_yaml::from_str(
        "metadata: {name: default-ipv4-ippool}\nspec: {cidr: 198.19.16.0/21}\n",
    )
    .unwrap();
    let block = crate::api::IPAMBlock::new(
        "198-19-22-128-26",
        crate::ipam::Block::new("198.19.22.128/26".parse().unwrap(), None, None, 1).to_spec(),
    );
    let (loaded, skipped) = load_ipam(&[pool], &[block]);
    assert!(skipped.is_empty(), "{skipped:?}");
    let ok = ClusterStatus::compute(
        Some(&lease(3)),
        std::slice::from_ref(&n1),
        &nodes,
        &loaded.show(),
        now(),
    );
    assert!(ok.converged(), "{:?}", ok.problems);
    let text = ok.render();
    assert!(
        text.ends_with(
            "IP pools:          1\n  default-ipv4-ippool 198.19.16.0/21: 1 blocks, 0 (0%) of 2048 \
             addresses in use\n\nEverything is converged.\n"
        ),
        "{text}"
    );
    let stale = ClusterStatus::compute(
        Some(&lease(60)),
        std::slice::from_ref(&n1),
        &nodes,
        &ipam,
        now(),
    );
    assert!(matches!(stale.leader, Leader::Expired { .. }));
    assert!(!stale.converged());
    let none = ClusterStatus::compute(None, std::slice::from_ref(&n1), &nodes, &ipam, now());
    assert_eq!(none.leader, Leader::Missing);
    assert!(!none.converged());

    // WireGuard on: ready only once the agent's WireGuard condition is True.
    let mut wg = n1;
    wg.spec.dataplane.wireguard_enabled = true;
    let s = ClusterStatus::compute(
        Some(&lease(3)),
        std::slice::from_ref(&wg),
        &nodes,
        &ipam,
        now(),
    );
    assert_eq!((s.wireguard_ready, s.wireguard_enabled), (0, 1));
    assert_eq!(s.problems, ["node node1: WireGuard is on but not ready"]);
    assert!(s.render().contains("WireGuard ready:   0/1\n"));
    wg.status
        .as_mut()
        .unwrap()
        .conditions
        .push(cond("WireGuard", "True", "Ready"));
    let s = ClusterStatus::compute(Some(&lease(3)), &[wg], &nodes, &ipam, now());
    assert_eq!((s.wireguard_ready, s.wireguard_enabled), (1, 1));
    assert!(s.converged(), "{:?}", s.problems);
}

fn doc(yaml: &str) -> serde_json::Value {
    crate::manifest::parse_documents(yaml).unwrap().remove(0)
}

#[test]
fn plan_lists_exactly_the_nodes_a_change_alters() {
    use super::plan::{ClusterObjects, plan, render_plan};
    let mut objs = ClusterObjects {
        nodes: vec![
            calico_node("node1", "198.19.0.2", &[("rack", "a")]),
            calico_node("node2", "198.19.0.3", &[("rack", "b")]),
        ],
        ..ClusterObjects::default()
    };
    objs.apply(&doc(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n  cidr: 198.19.16.0/21\n",
    ))
    .unwrap();
    let before = objs.states();
    assert_eq!(before.len(), 2);

    // A peer for rack a: node1 only.
    let mut peer = objs.clone();
    peer.apply(&doc(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rack-a-tor\nspec:\n  peerIP: 198.19.15.253\n  asNumber: 64600\n  nodeSelector: rack == 'a'\n",
    ))
    .unwrap();
    let changes = plan(&before, &peer.states());
    assert_eq!(
        changes.iter().map(|c| c.node.as_str()).collect::<Vec<_>>(),
        ["node1"]
    );
    assert!(
        changes[0]
            .diff
            .contains(&"+ bgp.peers[0].peerIP: \"198.19.15.253\"".to_string()),
        "{:?}",
        changes[0].diff
    );
    assert!(
        render_plan(&changes).starts_with("1 node(s) would change: node1\n\nnode node1:\n  + bgp.")
    );

    // natOutgoing on the pool: every node's NAT list changes.
    let mut nat = objs.clone();
    nat.apply(&doc(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv4-ippool\nspec:\n  cidr: 198.19.16.0/21\n  natOutgoing: true\n",
    ))
    .unwrap();
    let changes = plan(&before, &nat.states());
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .all(|c| c.diff == ["+ natOutgoingPools[0]: \"198.19.16.0/21\""]),
        "{changes:?}"
    );

    // Re-applying what is there changes nothing.
    assert_eq!(plan(&before, &objs.states()), []);
    assert_eq!(render_plan(&[]), "No node's desired state would change.\n");
    let err = objs
        .apply(&doc(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        ))
        .unwrap_err();
    assert!(
        err.starts_with("ConfigMap x: nodes' desired state is composed from"),
        "{err}"
    );
}
