//! `ocelotctl node status` and `ocelotctl status` against the real kube-apiserver, from
//! NodeNetworkState objects written as the operator (spec) and the agents (status) would:
//! calicoctl's exact table for a node with mesh, global and node-specific sessions; `kubectl
//! ocelot` printing the same; kubeconfig selection (`--kubeconfig`, `KUBECONFIG`, `--context`);
//! `-o json`; and `status` exiting 1 until every node runs its current spec.
use ocelot::api::NodeNetworkState;
use ocelot::api::nodestate::NodeNetworkStateStatus;
use ocelot_e2e::cluster::{self, check};
use ocelot_e2e::ctl::{assert_fails_with, kubectl_ocelot, node_state, ocelotctl, stderr, stdout};
use ocelot_e2e::operator::apply;
use serde_json::Value;

const NODES: [(&str, &str); 3] = [
    ("ctl-control", "198.19.0.1"),
    ("ctl-node1", "198.19.0.2"),
    ("ctl-node2", "198.19.0.3"),
];

/// The fixture node1 (spec as the operator writes it, status as its agent reports it) as node
/// `name` at `ip` with spec hash `hash`.
fn state(name: &str, ip: &str, hash: &str) -> (NodeNetworkState, NodeNetworkStateStatus) {
    let p = cluster::repo_root().join("tests/fixtures/ctl/nns-node1.yaml");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut n: NodeNetworkState = serde_yaml::from_str(&text).expect("fixture parses");
    n.metadata.name = Some(name.into());
    n.metadata.generation = None;
    n.spec.node = name.into();
    n.spec.hash = hash.into();
    n.spec.bgp.as_mut().expect("fixture has BGP").ipv4_address = ip.parse().unwrap();
    let status = n.status.take().expect("fixture has a status");
    (n, status)
}

/// node2: its mesh peers are control and node1. Before catching up its agent still runs the
/// previous spec, the global session is Active and the node-specific one is not reported.
fn node2(caught_up: bool) {
    let (n, mut s) = state("ctl-node2", "198.19.0.3", "h2");
    s.bgp_peers[1].peer_ip = "198.19.0.2".into();
    if caught_up {
        s.applied_hash = Some("h2".into());
    } else {
        s.bgp_peers[2].state = "start".into();
        s.bgp_peers[2].info = Some("Active".into());
        s.bgp_peers.pop();
    }
    node_state(&n, &s);
}

/// The seed's second `calicoctl node status` screen plus the node-specific row (the fixture the
/// core's unit test pins too).
fn node1_screen() -> String {
    let p = cluster::repo_root().join("tests/fixtures/ctl/node-status-node1.txt");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn setup() {
    for (name, ip) in NODES {
        apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  bgp:\n    ipv4Address: {ip}/20\n"
        ));
    }
    let (n1, s1) = state("ctl-node1", "198.19.0.2", "h1");
    node_state(&n1, &s1);
    node2(false);
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
    let help = check(kubectl_ocelot(["--help"]), "kubectl ocelot --help");
    assert!(
        help.contains("Usage: kubectl ocelot [OPTIONS] <COMMAND>"),
        "{help}"
    );

    // Without a name (this machine is no node): every node, each under its name.
    let all = check(ocelotctl(["node", "status"]), "node status");
    assert!(
        all.starts_with(&format!(
            "Node ctl-node1:\n{}Node ctl-node2:\n",
            node1_screen()
        )),
        "{all}"
    );

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
        n2.contains("| 198.19.15.254 | global            | start | 10:58:02 | Active      |"),
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

    node2(true);
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
