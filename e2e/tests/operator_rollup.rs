//! Roll-ups through `ocelot-operator` against the real kube-apiserver: node status written as the
//! agents would (NodeNetworkState status subresource) shows up in FelixConfiguration `default`
//! ("WireGuard ready on 2/3 nodes"), the global BGPPeer (nodes and Established sessions), the
//! IPPool (nodes applied, blocks, addresses) and BGPConfiguration `default` (effective mesh and
//! AS); set fields Ocelot does not act on yet get `Supported=False` and one Warning Event; only
//! status subresources are written, a resync with nothing changed writes nothing, and neither
//! does a restart.
use std::thread::sleep;
use std::time::Duration;

use ocelot_e2e::cluster::{check, kubectl};
use ocelot_e2e::daemon::Daemon;
use ocelot_e2e::operator::{
    Operator, SEED_ARGS, api_writes, apply, fixture, get_json, op_log_line,
    patch_seed_wireguard_on, write_lines,
};
use serde_json::{Value, json};

const NODES: [(&str, &str); 3] = [
    ("control", "198.19.0.1"),
    ("node1", "198.19.0.2"),
    ("node2", "198.19.0.3"),
];

const FILTERED_PEER: &str = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: rack-router\nspec:\n  peerIP: 198.19.15.253\n  asNumber: 64600\n  nodeSelector: kubernetes.io/hostname == 'node1'\n  filters: [only-blocks]\n";
/// A pool asking for IP-in-IP (not programmed) that selects no node, and node2's own Felix settings
/// asking for the eBPF dataplane (not implemented).
const OVERLAY_POOL: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: overlay-pool\nspec:\n  cidr: 198.19.40.0/24\n  ipipMode: Always\n  nodeSelector: '!all()'\n";
const FELIX_NODE2: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: node.node2\nspec:\n  bpfEnabled: true\n";
/// The objects with fields not acted on: (resource, Kind, name, field).
const UNSUPPORTED: [(&str, &str, &str, &str); 4] = [
    (
        "bgppeers.projectcalico.org",
        "BGPPeer",
        "rack-router",
        "spec.filters",
    ),
    (
        "bgpconfigurations.projectcalico.org",
        "BGPConfiguration",
        "default",
        "spec.localWorkloadPeeringIPV4",
    ),
    (
        "ippools.projectcalico.org",
        "IPPool",
        "overlay-pool",
        "spec.ipipMode",
    ),
    (
        "felixconfigurations.projectcalico.org",
        "FelixConfiguration",
        "node.node2",
        "spec.bpfEnabled",
    ),
];
const BGP_CONFIG: &str = "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  logSeverityScreen: Info\n  localWorkloadPeeringIPV4: 169.254.0.179\n";

fn patch_status(kind: &str, name: &str, patch: &Value) {
    check(
        kubectl([
            "patch",
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]),
        &format!("patch {kind}/{name} status"),
    );
}

fn condition(type_: &str, ok: bool) -> Value {
    json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "reason": if ok { "Applied" } else { "NotUp" },
        "message": "written by the test as the node's agent",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

/// Writes node `node`'s NodeNetworkState status as its agent would after applying the current
/// spec: its hash, Ready, the WireGuard condition, and the global peer's session.
fn agent_reports(node: &str, wireguard_up: bool) {
    let o = get_json("nodenetworkstates.ocelot.dev", node).unwrap();
    let hash = o["spec"]["hash"].as_str().expect("spec.hash").to_string();
    patch_status(
        "nodenetworkstates.ocelot.dev",
        node,
        &json!({"status": {
            "observedGeneration": o["metadata"]["generation"],
            "appliedHash": hash,
            "conditions": [condition("Ready", true), condition("WireGuard", wireguard_up)],
            "bgpPeers": [{"peerIP": "198.19.15.254", "peerType": "global", "state": "up",
                          "since": "20:00:00", "info": "Established"}],
        }}),
    );
}

fn status(kind: &str, name: &str) -> Result<Value, String> {
    Ok(get_json(kind, name)?["status"].clone())
}

fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Ok when every `(pointer, value)` of `want` holds in `kind/name`'s status.
fn status_is(kind: &str, name: &str, want: &[(&str, Value)]) -> Result<Value, String> {
    let s = status(kind, name)?;
    for (ptr, v) in want {
        if s.pointer(ptr) != Some(v) {
            return Err(format!(
                "{kind}/{name} status{ptr} is {:?}, want {v}; status {s}",
                s.pointer(ptr)
            ));
        }
    }
    Ok(s)
}

fn felix_ready(op: &mut Daemon, ready: u32) -> Value {
    let summary = format!("WireGuard ready on {ready}/3 nodes");
    op.wait(&format!("FelixConfiguration default: {summary}"), || {
        let s = status_is(
            "felixconfigurations.projectcalico.org",
            "default",
            &[
                ("/summary", json!(summary)),
                ("/wireguardNodesReady", json!(ready)),
                ("/wireguardNodesTotal", json!(3)),
                ("/nodesTotal", json!(3)),
            ],
        )?;
        let c = cond(&s, "WireGuardReady");
        let want = if ready == 3 { "True" } else { "False" };
        if c["status"] != want || c["message"] != summary.as_str() {
            return Err(format!("WireGuardReady {c}"));
        }
        Ok(s)
    })
}

fn events(reason: &str, kind: &str, name: &str) -> Vec<Value> {
    let out = kubectl(["get", "events.events.k8s.io", "-A", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("events JSON");
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["reason"] == reason
                && e["regarding"]["kind"] == kind
                && e["regarding"]["name"] == name
        })
        .cloned()
        .collect()
}

/// Fails when ocelot-operator manages anything but the status of a user object.
fn only_status_written(kind: &str, name: &str) {
    let o = get_json(kind, name).unwrap();
    let fields = o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!fields.is_empty(), "{kind}/{name}: no managedFields");
    let ours: Vec<&Value> = fields
        .iter()
        .filter(|f| f["manager"] == "ocelot-operator")
        .collect();
    assert!(
        !ours.is_empty(),
        "{kind}/{name}: the operator wrote no status"
    );
    assert!(
        ours.iter().all(|f| f["subresource"] == "status"),
        "{kind}/{name}: spec or metadata written by ocelot-operator: {ours:?}"
    );
}

#[test]
fn node_status_rolls_up_into_source_objects() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    for (node, ip) in NODES {
        apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels:\n    kubernetes.io/hostname: {node}\n"
        ));
        patch_status(
            "node",
            node,
            &json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}}),
        );
    }
    let args = [&SEED_ARGS[..], &["--resync-seconds", "1"]].concat();
    let mut op = Operator::start_with(&log, &args);
    op.wait("the default pool from the flag", || {
        get_json("ippools.projectcalico.org", "default-ipv4-ippool")
    });
    apply(&fixture("bgppeer-global-host1.yaml"));
    apply(&fixture("felixconfiguration-default.yaml"));
    apply(FILTERED_PEER);
    apply(BGP_CONFIG);
    apply(OVERLAY_POOL);
    apply(FELIX_NODE2);
    patch_seed_wireguard_on();
    // Every node's state settled: WireGuard address given, node1 with both peers.
    for (node, _) in NODES {
        op.wait(&format!("{node}'s WireGuard address and peers"), || {
            let s = get_json("nodenetworkstates.ocelot.dev", node)?["spec"].clone();
            let peers = s["bgp"]["peers"].as_array().map_or(0, Vec::len);
            let want_peers = if node == "node1" { 2 } else { 1 };
            if s["wireguardInterfaceIPv4Address"].is_string() && peers == want_peers {
                Ok(())
            } else {
                Err(format!("spec {s}"))
            }
        });
    }

    // Before any agent reports: nothing applied, no session up.
    felix_ready(&mut op, 0);
    op.wait("the global peer's roll-up", || {
        let s = status_is(
            "bgppeers.projectcalico.org",
            "bgppeer-global-host1",
            &[
                ("/node", json!("(global)")),
                ("/nodesSelected", json!(3)),
                ("/nodesEstablished", json!(0)),
                ("/sessionsExpected", json!(3)),
            ],
        )?;
        match (
            cond(&s, "Supported")["status"].as_str(),
            cond(&s, "Established")["reason"].as_str(),
        ) {
            (Some("True"), Some("NotEstablished")) => Ok(()),
            other => Err(format!("conditions {other:?}")),
        }
    });
    // Three blocks, one WireGuard address in each.
    op.wait("the default pool's roll-up", || {
        status_is(
            "ippools.projectcalico.org",
            "default-ipv4-ippool",
            &[
                ("/blocks", json!(3)),
                ("/nodesWithBlocks", json!(3)),
                ("/addressesInUse", json!(3)),
                ("/addressesFree", json!(189)),
                ("/nodesApplied", json!(0)),
                ("/nodesTotal", json!(3)),
            ],
        )
    });

    // Unsupported fields: condition naming the field, and one Warning Event.
    let peer = op.wait("rack-router Supported=False", || {
        let s = status_is(
            "bgppeers.projectcalico.org",
            "rack-router",
            &[
                ("/node", json!("kubernetes.io/hostname == 'node1'")),
                ("/nodesSelected", json!(1)),
            ],
        )?;
        let c = cond(&s, "Supported");
        if c["status"] == "False" && c["reason"] == "NotSupportedYet" {
            Ok(c.clone())
        } else {
            Err(format!("Supported {c}"))
        }
    });
    assert!(
        peer["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.filters"),
        "{peer}"
    );
    let cfg = op.wait("BGPConfiguration default status", || {
        status_is(
            "bgpconfigurations.projectcalico.org",
            "default",
            &[("/meshEnabled", json!(true)), ("/asNumber", json!(64512))],
        )
    });
    let c = cond(&cfg, "Supported");
    assert_eq!(c["status"], "False", "{cfg}");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.localWorkloadPeeringIPV4"),
        "{cfg}"
    );
    for (resource, kind, name, field) in UNSUPPORTED {
        let s = op.wait(&format!("{resource}/{name} Supported=False"), || {
            let s = status(resource, name)?;
            let c = cond(&s, "Supported");
            if c["status"] == "False" && c["reason"] == "NotSupportedYet" {
                Ok(c.clone())
            } else {
                Err(format!("Supported {c}"))
            }
        });
        assert!(s["message"].as_str().unwrap_or("").contains(field), "{s}");
        let ev = op.wait(&format!("a NotSupportedYet Event about {name}"), || {
            events("NotSupportedYet", kind, name)
                .into_iter()
                .next()
                .ok_or_else(|| "none yet".to_string())
        });
        assert_eq!(ev["type"], "Warning", "{ev}");
    }

    // node1's agent applies its state with WireGuard up and the global session Established.
    agent_reports("node1", true);
    felix_ready(&mut op, 1);
    op.wait("one Established node on the global peer", || {
        status_is(
            "bgppeers.projectcalico.org",
            "bgppeer-global-host1",
            &[
                ("/nodesEstablished", json!(1)),
                ("/sessionsEstablished", json!(1)),
            ],
        )
    });
    // node1 has rack-router's session too, not reported: that peer stays at 0.
    let rack = status("bgppeers.projectcalico.org", "rack-router").unwrap();
    assert_eq!(rack["nodesEstablished"], 0, "{rack}");
    agent_reports("node2", true);
    felix_ready(&mut op, 2);
    op.wait("two nodes applied in the pool roll-up", || {
        status_is(
            "ippools.projectcalico.org",
            "default-ipv4-ippool",
            &[("/nodesApplied", json!(2))],
        )
    });
    // node2's WireGuard goes down: the roll-up follows.
    agent_reports("node2", false);
    felix_ready(&mut op, 1);
    agent_reports("node2", true);
    let felix = felix_ready(&mut op, 2);
    // node2's own FelixConfiguration counts node2 alone.
    op.wait("node.node2's roll-up", || {
        status_is(
            "felixconfigurations.projectcalico.org",
            "node.node2",
            &[
                ("/summary", json!("WireGuard ready on 1/1 nodes")),
                ("/nodesReady", json!(1)),
            ],
        )
    });
    assert_eq!(felix["nodesReady"], 2, "{felix}");
    let printed = kubectl(["get", "felixconfigurations.projectcalico.org", "default"]);
    let printed = String::from_utf8_lossy(&printed.stdout).to_string();
    assert!(
        printed.contains("WireGuard ready on 2/3 nodes"),
        "READY column: {printed}"
    );

    // Only status subresources of user objects were written.
    for (kind, name) in [
        ("bgppeers.projectcalico.org", "bgppeer-global-host1"),
        ("bgppeers.projectcalico.org", "rack-router"),
        ("bgpconfigurations.projectcalico.org", "default"),
        ("felixconfigurations.projectcalico.org", "default"),
        ("felixconfigurations.projectcalico.org", "node.node2"),
        ("ippools.projectcalico.org", "overlay-pool"),
    ] {
        only_status_written(kind, name);
    }

    // Nothing changes: several resync passes write nothing, events included.
    sleep(Duration::from_secs(3));
    let before = api_writes();
    sleep(Duration::from_secs(4));
    assert_eq!(
        before,
        api_writes(),
        "a resync with nothing changed wrote to the API server; log:\n{}",
        op.log()
    );
    for (_, kind, name, _) in UNSUPPORTED {
        assert_eq!(
            events("NotSupportedYet", kind, name).len(),
            1,
            "one Warning Event per unsupported field of {kind} {name}"
        );
    }

    // A restart finds every status current: no write, and the Warning Events are not repeated.
    op.stop();
    let before = write_lines(&[]);
    let mut op = Operator::start_with(&log, &args);
    let line = op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    sleep(Duration::from_secs(3));
    let after = write_lines(&[]);
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        new.is_empty(),
        "restart wrote to the API server ({line}): {new:#?}\nlog:\n{}",
        op.log()
    );
    op.stop();
}
