//! `ocelotctl node status` and `ocelotctl status` against the real kube-apiserver, from
//! NodeNetworkState objects written as the operator (spec) and the agents (status) would:
//! calicoctl's exact table for a node with mesh, global and node-specific sessions; `kubectl
//! ocelot` printing the same; kubeconfig selection (`--kubeconfig`, `KUBECONFIG`, `--context`);
//! `-o json`; and `status` exiting 1 until every node runs its current spec.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ocelot::api::NodeNetworkState;
use ocelot::api::node::{Node, NodeBGPSpec, NodeSpec};
use ocelot::api::nodestate::{
    BGPPeerStatusEntry, BGPPeerTarget, NodeBGPState, NodeNetworkStateSpec, NodeNetworkStateStatus,
    PeerType,
};
use ocelot_e2e::cluster::{self, check};
use ocelot_e2e::ctl::{
    apply_object, assert_fails_with, kubectl_ocelot, node_state, ocelotctl, stderr, stdout,
};
use ocelot_e2e::operator::apply;
use serde_json::Value;

const NODES: [(&str, &str); 3] = [
    ("ctl-control", "198.19.0.1"),
    ("ctl-node1", "198.19.0.2"),
    ("ctl-node2", "198.19.0.3"),
];

fn ready(ok: bool) -> Vec<Condition> {
    vec![Condition {
        type_: "Ready".into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { "Applied" } else { "NotApplied" }.into(),
        message: "test".into(),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::now()),
    }]
}

fn peer(ip: &str, t: PeerType, since: &str, state: &str, info: &str) -> BGPPeerStatusEntry {
    BGPPeerStatusEntry {
        peer_ip: ip.into(),
        peer_type: t,
        state: state.into(),
        since: Some(since.into()),
        info: Some(info.into()),
    }
}

/// The node's spec: in the mesh, the seed's global peer and a node-specific rack router.
fn spec(node: &str, ip: &str, hash: &str) -> NodeNetworkState {
    let target = |name: &str, addr: &str, t: PeerType| BGPPeerTarget {
        name: name.into(),
        source: name.into(),
        peer_ip: addr.parse().unwrap(),
        as_number: 64512,
        peer_type: t,
        ..BGPPeerTarget::default()
    };
    NodeNetworkState::new(
        node,
        NodeNetworkStateSpec {
            node: node.into(),
            hash: hash.into(),
            bgp: Some(NodeBGPState {
                as_number: 64512,
                ipv4_address: ip.parse().unwrap(),
                mesh: true,
                listen_port: 179,
                default_as_number: 64512,
                peers: vec![
                    target("Global_198_19_15_254", "198.19.15.254", PeerType::Global),
                    target(
                        "Node_198_19_15_253",
                        "198.19.15.253",
                        PeerType::NodeSpecific,
                    ),
                ],
                ..NodeBGPState::default()
            }),
            ..NodeNetworkStateSpec::default()
        },
    )
}

fn status(hash: &str, ok: bool, peers: Vec<BGPPeerStatusEntry>) -> NodeNetworkStateStatus {
    NodeNetworkStateStatus {
        observed_generation: Some(1),
        applied_hash: Some(hash.into()),
        conditions: ready(ok),
        bgp_peers: peers,
        ..NodeNetworkStateStatus::default()
    }
}

fn node1_peers() -> Vec<BGPPeerStatusEntry> {
    vec![
        peer(
            "198.19.0.1",
            PeerType::NodeMesh,
            "22:05:49",
            "up",
            "Established",
        ),
        peer(
            "198.19.0.3",
            PeerType::NodeMesh,
            "22:06:03",
            "up",
            "Established",
        ),
        peer(
            "198.19.15.254",
            PeerType::Global,
            "10:58:02",
            "up",
            "Established",
        ),
        peer(
            "198.19.15.253",
            PeerType::NodeSpecific,
            "10:58:07",
            "up",
            "Established",
        ),
    ]
}

/// The seed's second `calicoctl node status` screen plus the node-specific row (the fixture the
/// core's unit test pins too).
fn node1_screen() -> String {
    let p = cluster::repo_root().join("tests/fixtures/ctl/node-status-node1.txt");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn setup() {
    for (name, ip) in NODES {
        let n = Node::new(
            name,
            NodeSpec {
                bgp: Some(NodeBGPSpec {
                    ipv4_address: Some(format!("{ip}/20")),
                    ..NodeBGPSpec::default()
                }),
                ..NodeSpec::default()
            },
        );
        apply_object(&n, &format!("apply Calico Node {name}"));
    }
    node_state(
        &spec("ctl-node1", "198.19.0.2", "h1"),
        &status("h1", true, node1_peers()),
    );
    // node2's agent still runs the previous spec, and one session is not up.
    let node2_peers = vec![
        peer(
            "198.19.0.1",
            PeerType::NodeMesh,
            "22:05:50",
            "up",
            "Established",
        ),
        peer(
            "198.19.0.2",
            PeerType::NodeMesh,
            "22:06:03",
            "up",
            "Established",
        ),
        peer(
            "198.19.15.254",
            PeerType::Global,
            "10:58:03",
            "start",
            "Active",
        ),
    ];
    node_state(
        &spec("ctl-node2", "198.19.0.3", "h2"),
        &status("h1", true, node2_peers),
    );
}

#[test]
fn node_status_status_and_kubeconfig_handling() {
    setup();

    // The exact screen, from any machine, and the same through kubectl's plugin lookup.
    let out = ocelotctl(["node", "status", "ctl-node1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), node1_screen(), "\n{}", stdout(&out));
    let plugin = kubectl_ocelot(["node", "status", "ctl-node1"]);
    assert!(
        plugin.status.success(),
        "kubectl ocelot: {}",
        stderr(&plugin)
    );
    assert_eq!(stdout(&plugin), stdout(&out));

    // Machine-readable: one entry per session, with calicoctl's peer type names.
    let json: Value = serde_json::from_str(&check(
        ocelotctl(["node", "status", "ctl-node1", "-o", "json"]),
        "-o json",
    ))
    .unwrap();
    let types: Vec<&str> = json["ipv4Peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peerType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "node-to-node mesh",
            "node-to-node mesh",
            "global",
            "node specific"
        ]
    );
    assert_eq!(json["agent"]["state"], "Running");

    // node2 runs an old spec: the first line says so.
    let n2 = check(
        ocelotctl(["node", "status", "ctl-node2"]),
        "node status ctl-node2",
    );
    assert!(
        n2.starts_with(
            "Ocelot agent is not reporting the current state: it applied h1, the spec is at h2.\n"
        ),
        "{n2}"
    );
    assert!(
        n2.contains("| 198.19.15.254 | global            | start | 10:58:03 | Active      |"),
        "{n2}"
    );

    let missing = ocelotctl(["node", "status", "no-such-node"]);
    assert_fails_with(
        &missing,
        "no NodeNetworkState no-such-node: is no-such-node a node of this cluster",
    );

    kubeconfig_selection();
    cluster_status();
    plan_without_applying();
}

/// `plan -f`: a node-specific BGPPeer changes exactly that node; a pool changes every node;
/// nothing is written.
fn plan_without_applying() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("change.yaml");
    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: ctl-node1-tor\nspec:\n  node: ctl-node1\n  peerIP: 198.19.15.250\n  asNumber: 64601\n",
    )
    .unwrap();
    let out = check(ocelotctl(["plan", "-f", file.to_str().unwrap()]), "plan -f");
    assert!(
        out.starts_with("1 node(s) would change: ctl-node1\n\nnode ctl-node1:\n"),
        "{out}"
    );
    assert!(
        out.contains("  + bgp.peers[0].peerIP: \"198.19.15.250\"\n"),
        "{out}"
    );
    let peer = ocelot_e2e::cluster::kubectl(["get", "bgppeers.projectcalico.org", "ctl-node1-tor"]);
    assert!(!peer.status.success(), "plan applied nothing");

    std::fs::write(
        &file,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: ctl-plan-pool\nspec:\n  cidr: 10.88.0.0/16\n  natOutgoing: true\n",
    )
    .unwrap();
    let json: Value = serde_json::from_str(&check(
        ocelotctl(["plan", "-f", file.to_str().unwrap(), "-o", "json"]),
        "plan -o json",
    ))
    .unwrap();
    let nodes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["ctl-control", "ctl-node1", "ctl-node2"]);

    std::fs::write(&file, "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: bad\nspec:\n  cidr: nonsense\n").unwrap();
    let bad = ocelotctl(["plan", "-f", file.to_str().unwrap()]);
    assert_fails_with(&bad, "the API server would refuse 1 document(s)");
}

/// `KUBECONFIG` alone, and `--context` choosing the working context of a file whose current
/// context points nowhere.
fn kubeconfig_selection() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read_to_string(cluster::kubeconfig_path()).unwrap();
    let broken = real
        .replace("current-context: ocelot-e2e", "current-context: nowhere")
        .replace(
            "contexts:\n",
            "contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: admin\n",
        )
        .replace(
            "clusters:\n",
            "clusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\n",
        );
    let file = dir.path().join("two-contexts");
    std::fs::write(&file, broken).unwrap();
    let run = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(ocelot_e2e::ctl::ocelotctl_binary());
        cmd.args(args)
            .env("HOME", dir.path())
            .env_remove("KUBECONFIG");
        if let Some(k) = env {
            cmd.env("KUBECONFIG", k);
        }
        ocelot_e2e::proc::run_output(&mut cmd, None, cluster::COMMAND_TIMEOUT)
    };
    let env_only = run(
        &["node", "status", "ctl-node1"],
        Some(cluster::kubeconfig_path()),
    );
    assert_eq!(
        stdout(&env_only),
        node1_screen(),
        "KUBECONFIG: {}",
        stderr(&env_only)
    );
    let k = file.to_str().unwrap();
    let by_context = run(
        &[
            "--kubeconfig",
            k,
            "--context",
            "ocelot-e2e",
            "node",
            "status",
            "ctl-node1",
        ],
        None,
    );
    assert_eq!(
        stdout(&by_context),
        node1_screen(),
        "--context: {}",
        stderr(&by_context)
    );
    let current = run(&["--kubeconfig", k, "node", "status", "ctl-node1"], None);
    assert_fails_with(&current, "reading NodeNetworkState ctl-node1");
    let unknown = run(
        &["--kubeconfig", k, "--context", "typo", "node", "status"],
        None,
    );
    assert_fails_with(&unknown, "--context");
    let none = run(&["node", "status"], None);
    assert_fails_with(&none, "pass --kubeconfig FILE or set KUBECONFIG");
}

/// `status`: leader from the Lease, 1/2 converged and exit 1; 2/2 and exit 0 once node2 catches up.
fn cluster_status() {
    let now = jiff::Timestamp::now();
    apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: ocelot-operator\n  namespace: kube-system\nspec:\n  holderIdentity: ocelot-operator-7d9f-abcde\n  leaseDurationSeconds: 3600\n  renewTime: \"{}\"\n",
        now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
    ));
    let out = ocelotctl(["status"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not converged: {text}{}",
        stderr(&out)
    );
    assert!(text.starts_with("Operator leader:   ocelot-operator-7d9f-abcde (Lease kube-system/ocelot-operator, renewed "), "{text}");
    assert!(text.contains("Nodes converged:   1/2\n"), "{text}");
    // Each node: 2 mesh sessions (the other Calico Nodes) and 2 explicit ones; node2 has 2 up.
    assert!(text.contains("BGP sessions up:   6/8\n"), "{text}");
    assert!(
        text.contains("  node ctl-node2: Ocelot agent is not reporting the current state"),
        "{text}"
    );
    assert!(
        text.contains(
            "  node ctl-node2: 2/4 BGP sessions Established; not up: 198.19.15.254 (global) Active"
        ),
        "{text}"
    );

    let mut peers = node1_peers();
    peers[1] = peer(
        "198.19.0.2",
        PeerType::NodeMesh,
        "22:06:03",
        "up",
        "Established",
    );
    node_state(
        &spec("ctl-node2", "198.19.0.3", "h2"),
        &status("h2", true, peers),
    );
    let out = ocelotctl(["status", "-o", "json"]);
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(
        (json["converged"].as_u64(), json["nodes"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (json["bgpUp"].as_u64(), json["bgpExpected"].as_u64()),
        (Some(8), Some(8))
    );
    assert_eq!(json["leader"]["holder"], "ocelot-operator-7d9f-abcde");
}
