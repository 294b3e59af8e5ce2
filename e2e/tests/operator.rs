//! `ocelot-operator` against the real kube-apiserver: the seed's objects become each node's
//! NodeNetworkState spec, the seed's WireGuard patch reaches every node, a restart with nothing
//! changed writes nothing, a node deleted while the operator was down loses its state, and no user
//! object is ever written.
//!
//! The operator binary is taken from the test binary's target dir (`target/<profile>/ocelot-operator`):
//! `cargo test --workspace` builds it; for this test alone run `cargo build -p ocelot-operator` first.
//! Object names are the seed's; this test binary has its own API server, so nothing else writes them.
use std::thread::sleep;
use std::time::Duration;

use ocelot_e2e::cluster::{check, kubectl};
use ocelot_e2e::daemon::Daemon;
use ocelot_e2e::operator::{
    Operator, apply, fixture, get_json, op_log_line, patch_seed_wireguard_on,
};
use serde_json::Value;

const NODES: [(&str, &str, &str); 3] = [
    ("control", "198.19.0.1/20", "198.19.21.0/26"),
    ("node1", "198.19.0.2/20", "198.19.22.128/26"),
    ("node2", "198.19.0.3/20", "198.19.21.64/26"),
];

/// The user objects of the scenario (kind, name).
fn user_objects() -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "ippools.projectcalico.org",
            "default-ipv4-ippool".to_string(),
        ),
        ("ippools.projectcalico.org", "external-pool".to_string()),
        (
            "bgppeers.projectcalico.org",
            "bgppeer-global-host1".to_string(),
        ),
        (
            "felixconfigurations.projectcalico.org",
            "default".to_string(),
        ),
    ];
    for (node, _, block) in NODES {
        v.push(("nodes.projectcalico.org", node.to_string()));
        v.push((
            "blockaffinities.projectcalico.org",
            affinity_name(node, block),
        ));
    }
    v
}

fn affinity_name(node: &str, block: &str) -> String {
    format!("{node}-{}", block.replace(['.', '/'], "-"))
}

/// What the operator must never change in a user object; managedFields must not name it.
fn snapshot() -> Vec<Value> {
    user_objects()
        .into_iter()
        .map(|(kind, name)| {
            let o = get_json(kind, &name).unwrap_or_else(|e| panic!("{kind}/{name}: {e}"));
            let fields: Vec<&Value> = o["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            // Non-empty: proves managedFields were fetched, so the next check means something.
            assert!(!fields.is_empty(), "{kind}/{name}: no managedFields");
            // The operator may own a user object's status (conditions, roll-ups), nothing else.
            let spec_writes: Vec<&&Value> = fields
                .iter()
                .filter(|f| f["manager"] == "ocelot-operator" && f["subresource"] != "status")
                .collect();
            assert!(
                spec_writes.is_empty(),
                "{kind}/{name} spec or metadata written by ocelot-operator: {spec_writes:?}"
            );
            let m = &o["metadata"];
            serde_json::json!({
                "object": format!("{kind}/{name}"),
                "spec": o["spec"],
                "labels": m["labels"],
                "annotations": m["annotations"],
                "finalizers": m["finalizers"],
                "ownerReferences": m["ownerReferences"],
                // Not resourceVersion: the operator's status writes change it, and only them.
                "generation": m["generation"],
            })
        })
        .collect()
}

/// Checks one node's NodeNetworkState spec against the seed; Err says what differs.
fn check_state(node: &str, block: &str, wireguard: bool) -> Result<Value, String> {
    let o = get_json("nodenetworkstates.ocelot.dev", node)?;
    let s = &o["spec"];
    let want_blocks = serde_json::json!([{"pool": "default-ipv4-ippool", "cidr": block}]);
    if s["blocks"] != want_blocks {
        return Err(format!("{node}: blocks {} want {want_blocks}", s["blocks"]));
    }
    if s["bgp"]["mesh"] != true {
        return Err(format!("{node}: bgp.mesh {}", s["bgp"]["mesh"]));
    }
    let peers = s["bgp"]["peers"].as_array().cloned().unwrap_or_default();
    if !peers
        .iter()
        .any(|p| p["peerIP"] == "198.19.15.254" && p["asNumber"] == 64512)
    {
        return Err(format!(
            "{node}: no peer 198.19.15.254 AS 64512 in {peers:?}"
        ));
    }
    if s["dataplane"]["wireguardEnabled"] != wireguard {
        return Err(format!(
            "{node}: dataplane.wireguardEnabled {} want {wireguard}",
            s["dataplane"]["wireguardEnabled"]
        ));
    }
    Ok(o)
}

fn state_versions() -> Vec<(String, Value)> {
    state_versions_of(&NODES.map(|(n, _, _)| n))
}

fn wait_seed_states(op: &mut Daemon, wireguard: bool) {
    for (node, _, block) in NODES {
        let o = op.wait(
            &format!("NodeNetworkState {node} (wireguardEnabled {wireguard})"),
            || check_state(node, block, wireguard),
        );
        let managers: Vec<&Value> = o["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["operation"] == "Apply")
            .map(|f| &f["manager"])
            .collect();
        assert_eq!(managers, ["ocelot-operator"], "{node}: {o}");
    }
}

#[test]
fn seed_objects_become_node_network_states() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    for (node, addr, block) in NODES {
        apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  bgp:\n    ipv4Address: {addr}\n"
        ));
        apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata:\n  name: {}\nspec:\n  cidr: {block}\n  node: {node}\n  state: confirmed\n  type: host\n  deleted: false\n",
            affinity_name(node, block)
        ));
    }
    for f in [
        "ippool-default.yaml",
        "ippool-external.yaml",
        "bgppeer-global-host1.yaml",
        "felixconfiguration-default.yaml",
    ] {
        apply(&fixture(f));
    }
    let before = snapshot();

    let mut op = Operator::start(&log);
    wait_seed_states(&mut op, false);
    assert_eq!(before, snapshot(), "user objects changed by the operator");

    // The seed's patch reaches every node's dataplane settings.
    patch_seed_wireguard_on();
    wait_seed_states(&mut op, true);
    // Another writer's edit of a spec (here: blocks and hash) is put back.
    check(
        kubectl([
            "patch",
            "nodenetworkstates.ocelot.dev",
            "node1",
            "--type=merge",
            "-p",
            r#"{"spec":{"blocks":[],"hash":"edited"}}"#,
        ]),
        "kubectl patch nodenetworkstate node1",
    );
    wait_seed_states(&mut op, true);
    let patched = snapshot();
    let versions = state_versions();

    // Restart: the fresh list finds every spec current, so nothing is written.
    op.stop();
    let mut op = Operator::start(&log);
    let synced = op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    assert!(
        synced.contains("nodes=3") && synced.contains("applied=0") && synced.contains("deleted=0"),
        "a restart with nothing changed must write nothing: {synced}"
    );
    sleep(Duration::from_secs(3));
    assert_eq!(
        versions,
        state_versions(),
        "NodeNetworkStates rewritten with nothing changed"
    );
    assert_eq!(patched, snapshot(), "user objects changed by the operator");

    // A node deleted while the operator is down loses its NodeNetworkState on the next start.
    op.stop();
    check(
        kubectl(["delete", "nodes.projectcalico.org", "node2"]),
        "kubectl delete node2",
    );
    let mut op = Operator::start(&log);
    op.wait("NodeNetworkState node2 to be deleted", || {
        match get_json("nodenetworkstates.ocelot.dev", "node2") {
            Err(e) if e.contains("NotFound") => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err("node2 still has a NodeNetworkState".into()),
        }
    });
    op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    let after = state_versions_of(&["control", "node1"]);
    assert_eq!(
        after,
        versions
            .iter()
            .filter(|(n, _)| n != "node2")
            .cloned()
            .collect::<Vec<_>>(),
        "deleting node2 rewrote the other nodes' states"
    );
    op.stop();
}

fn state_versions_of(nodes: &[&str]) -> Vec<(String, Value)> {
    nodes
        .iter()
        .map(|n| {
            let o = get_json("nodenetworkstates.ocelot.dev", n).unwrap();
            (n.to_string(), o["metadata"]["resourceVersion"].clone())
        })
        .collect()
}
