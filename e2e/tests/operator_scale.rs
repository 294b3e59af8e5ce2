//! NodeNetworkState stays O(1) per node, through `ocelot-operator` on the real kube-apiserver:
//! node1's state is byte-identical (and not rewritten) when the cluster grows from 3 to 20
//! Kubernetes Nodes, and one BGPPeer edit writes only the states of the nodes its selector matches.
use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use ocelot_e2e::cluster::{check, kubectl};
use ocelot_e2e::daemon::Daemon;
use ocelot_e2e::operator::{Operator, SEED_ARGS, apply, fixture, get_json, write_lines};
use serde_json::{Value, json};

/// Nodes 0..20: `control`, `node1`, `node2`, then `node3`…`node19`; node3-node5 are in rack a.
fn node_name(i: usize) -> String {
    if i == 0 {
        "control".into()
    } else {
        format!("node{i}")
    }
}

fn add_node(i: usize) {
    let name = node_name(i);
    let rack = if (3..=5).contains(&i) { "a" } else { "b" };
    apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n    rack: {rack}\n"
    ));
    let patch = json!({"status": {"addresses": [{"type": "InternalIP", "address": format!("198.19.0.{}", i + 1)}]}});
    check(
        kubectl([
            "patch",
            "node",
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]),
        "patch node status",
    );
}

fn state(node: &str) -> Result<Value, String> {
    get_json("nodenetworkstates.ocelot.dev", node)
}

/// Waits until nodes 0..n each have a state with one block and the global peer.
fn wait_states(op: &mut Daemon, n: usize) {
    for i in 0..n {
        let node = node_name(i);
        op.wait(&format!("{node}'s state with its block and peer"), || {
            let s = state(&node)?["spec"].clone();
            let blocks = s["blocks"].as_array().map_or(0, Vec::len);
            let peers = s["bgp"]["peers"].as_array().cloned().unwrap_or_default();
            if blocks == 1 && peers.iter().any(|p| p["peerIP"] == "198.19.15.254") {
                Ok(())
            } else {
                Err(format!("spec {s}"))
            }
        });
    }
}

/// Each state's resourceVersion.
fn versions(n: usize) -> BTreeMap<String, Value> {
    (0..n)
        .map(|i| {
            let node = node_name(i);
            let rv = state(&node).unwrap()["metadata"]["resourceVersion"].clone();
            (node, rv)
        })
        .collect()
}

/// NodeNetworkState writes the API server has served (its own metrics).
fn state_writes() -> u64 {
    write_lines(&[])
        .iter()
        .filter(|l| l.contains("resource=\"nodenetworkstates\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Applies `peer`, waits until rack a's nodes have its session with `asn`, and checks that only
/// their states were written.
fn peer_edit_writes_only_rack_a(op: &mut Daemon, peer: &str, asn: u32, nodes: usize) {
    let before = versions(nodes);
    let writes = state_writes();
    apply(peer);
    for i in 3..=5 {
        let node = node_name(i);
        op.wait(&format!("{node}'s rack-a session AS {asn}"), || {
            let s = state(&node)?["spec"].clone();
            let peers = s["bgp"]["peers"].as_array().cloned().unwrap_or_default();
            if peers
                .iter()
                .any(|p| p["source"] == "rack-a" && p["asNumber"] == asn)
            {
                Ok(())
            } else {
                Err(format!("peers {peers:?}"))
            }
        });
    }
    // Passes after the edit (resync every second) must not touch anything else.
    sleep(Duration::from_secs(3));
    let after = versions(nodes);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(n, rv)| before.get(*n) != Some(*rv))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        changed,
        ["node3", "node4", "node5"],
        "one BGPPeer edit rewrote states beyond its selector"
    );
    assert_eq!(
        state_writes() - writes,
        3,
        "NodeNetworkState writes for one BGPPeer edit matching 3 nodes"
    );
}

#[test]
fn node_state_size_does_not_grow_with_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    for i in 0..3 {
        add_node(i);
    }
    let args = [&SEED_ARGS[..], &["--resync-seconds", "1"]].concat();
    let mut op = Operator::start_with(&log, &args);
    op.wait("the default pool from the flag", || {
        get_json("ippools.projectcalico.org", "default-ipv4-ippool")
    });
    apply(&fixture("bgppeer-global-host1.yaml"));
    wait_states(&mut op, 3);
    let small = state("node1").unwrap();
    let small_spec = serde_json::to_string(&small["spec"]).unwrap();

    for i in 3..20 {
        add_node(i);
    }
    wait_states(&mut op, 20);
    let big = state("node1").unwrap();
    let big_spec = serde_json::to_string(&big["spec"]).unwrap();
    assert_eq!(
        small_spec.len(),
        big_spec.len(),
        "node1's state grew with the node count:\n3 nodes: {small_spec}\n20 nodes: {big_spec}"
    );
    assert_eq!(small_spec, big_spec);
    assert_eq!(
        small["metadata"]["resourceVersion"], big["metadata"]["resourceVersion"],
        "node1's state was rewritten when other nodes joined"
    );
    for other in ["control", "node2", "node19"] {
        assert!(
            !big_spec.contains(&format!("\"{other}\"")),
            "node1's state names {other}: {big_spec}"
        );
    }

    let peer = |asn: u32| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rack-a\nspec:\n  peerIP: 198.19.15.250\n  asNumber: {asn}\n  nodeSelector: rack == 'a'\n"
        )
    };
    peer_edit_writes_only_rack_a(&mut op, &peer(64700), 64700, 20);
    peer_edit_writes_only_rack_a(&mut op, &peer(64701), 64701, 20);
    op.stop();
}
