//! The seed flow through `ocelot-operator` against the real kube-apiserver, starting from Kubernetes
//! Nodes only: the flag creates the default pool, the operator claims each node's seed block,
//! creates Calico Nodes and annotations, gives node1 its WireGuard address after three pods,
//! publishes node1's key and refuses node2's duplicate with a Warning Event, claims a /29 of
//! external-pool on demand, refuses an overlapping pool, frees a deleted node's addresses and
//! blocks after the grace period, and then makes no API write while nothing changes.
//! Agents are simulated by writing NodeNetworkState status and IPAMBlock allocations.
use std::thread::sleep;
use std::time::Duration;

use ocelot_e2e::cluster::{check, kubectl, kubectl_stdin};
use ocelot_e2e::operator::{
    Operator, api_writes, apply, fixture, get_json, op_log_line, patch_seed_wireguard_on,
    write_lines,
};
use serde_json::{Value, json};

const NODES: [(&str, &str, &str); 3] = [
    ("control", "198.19.0.1", "198.19.21.0/26"),
    ("node1", "198.19.0.2", "198.19.22.128/26"),
    ("node2", "198.19.0.3", "198.19.21.64/26"),
];
const KEY: &str = "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0=";

fn block_name(cidr: &str) -> String {
    cidr.replace(['.', '/'], "-")
}

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

/// Writes `pods` pod allocations into the block as the node's agent would (ordinals 0..pods).
fn allocate_pods(cidr: &str, node: &str, pods: usize) {
    let mut b = get_json("ipamblocks.projectcalico.org", &block_name(cidr)).unwrap();
    let s = &mut b["spec"];
    let seq = s["sequenceNumber"].as_i64().unwrap_or(0);
    for i in 0..pods {
        s["allocations"][i] = json!(i);
    }
    let taken: Vec<Value> = (0..pods).map(|i| json!(i)).collect();
    let rest: Vec<Value> = s["unallocated"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| !taken.contains(o))
        .cloned()
        .collect();
    s["unallocated"] = json!(rest);
    s["attributes"] = json!(
        (0..pods)
            .map(|i| json!({
                "handle_id": format!("k8s-pod-network.pod{i}-{node}"),
                "secondary": {"namespace": "default", "node": node, "pod": format!("web-{i}")},
            }))
            .collect::<Vec<_>>()
    );
    s["sequenceNumber"] = json!(seq + 1);
    let map: serde_json::Map<String, Value> =
        (0..pods).map(|i| (i.to_string(), json!(seq + 1))).collect();
    s["sequenceNumberForAllocation"] = Value::Object(map);
    check(
        kubectl_stdin(["replace", "-f", "-"], &b.to_string()),
        "replace IPAMBlock",
    );
}

fn nns_spec(node: &str) -> Result<Value, String> {
    Ok(get_json("nodenetworkstates.ocelot.dev", node)?["spec"].clone())
}

fn events(reason: &str, name: &str) -> Result<Value, String> {
    let out = kubectl(["get", "events.events.k8s.io", "-A", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .cloned()
        .ok_or_else(|| format!("no {reason} Event about {name}"))
}

#[test]
fn seed_flow_from_kubernetes_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    for (node, ip, _) in NODES {
        apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels:\n    kubernetes.io/hostname: {node}\n"
        ));
        patch_status(
            "node",
            node,
            &json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node}]}}),
        );
    }
    let args = [
        "--default-ipv4-pool-cidr",
        "198.19.16.0/21",
        "--node-prefix-length",
        "20",
        "--leak-grace-seconds",
        "3",
        "--resync-seconds",
        "1",
    ];
    let mut op = Operator::start_with(&log, &args);
    // The flag creates the default pool only while no IPv4 pool exists: the rest comes after it.
    op.wait("the default pool from the flag", || {
        get_json("ippools.projectcalico.org", "default-ipv4-ippool")
    });
    for f in [
        "ippool-external.yaml",
        "bgppeer-global-host1.yaml",
        "felixconfiguration-default.yaml",
    ] {
        apply(&fixture(f));
    }

    // Each node gets the seed's block, a Calico Node with its address and the annotation.
    for (node, ip, block) in NODES {
        op.wait(&format!("{node}'s seed block and peers"), || {
            let s = nns_spec(node)?;
            let want = json!([{"pool": "default-ipv4-ippool", "cidr": block}]);
            if s["blocks"] != want {
                return Err(format!("blocks {}", s["blocks"]));
            }
            let peers = s["bgp"]["peers"].as_array().cloned().unwrap_or_default();
            if s["bgp"]["mesh"] != true
                || !peers
                    .iter()
                    .any(|p| p["peerIP"] == "198.19.15.254" && p["asNumber"] == 64512)
            {
                return Err(format!("bgp {}", s["bgp"]));
            }
            Ok(())
        });
        let want_addr = format!("{ip}/20");
        op.wait(&format!("{node}'s Calico Node and annotation"), || {
            let c = get_json("nodes.projectcalico.org", node)?;
            let k = get_json("node", node)?;
            let ann = &k["metadata"]["annotations"]["projectcalico.org/IPv4Address"];
            if c["spec"]["bgp"]["ipv4Address"] != want_addr.as_str() || ann != want_addr.as_str() {
                return Err(format!("calico {} annotation {ann}", c["spec"]));
            }
            if c["status"]["podCIDRs"] != json!([block]) {
                return Err(format!("status {}", c["status"]));
            }
            Ok(())
        });
    }
    let info = get_json("clusterinformations.projectcalico.org", "default").unwrap();
    assert_eq!(info["spec"]["datastoreReady"], true, "{info}");
    assert_eq!(
        info["spec"]["clusterGUID"].as_str().map(str::len),
        Some(32),
        "{info}"
    );
    let pool = get_json("ippools.projectcalico.org", "default-ipv4-ippool").unwrap();
    assert_eq!(pool["spec"]["cidr"], "198.19.16.0/21", "{pool}");

    // node1's agent assigned three pods; WireGuard on gives the interface the next address.
    allocate_pods("198.19.22.128/26", "node1", 3);
    patch_seed_wireguard_on();
    op.wait("node1's WireGuard interface address", || {
        let s = nns_spec("node1")?;
        match s["wireguardInterfaceIPv4Address"].as_str() {
            Some("198.19.22.131") if s["dataplane"]["wireguardEnabled"] == true => Ok(()),
            _ => Err(format!("spec {s}")),
        }
    });

    // node1's key is published; node2 reporting the same key is refused.
    patch_status(
        "nodenetworkstates.ocelot.dev",
        "node1",
        &json!({"status": {"wireguardPublicKey": KEY}}),
    );
    op.wait(
        "node1's key in Calico Node status and the annotation",
        || {
            let c = get_json("nodes.projectcalico.org", "node1")?;
            let k = get_json("node", "node1")?;
            let ann = &k["metadata"]["annotations"]["projectcalico.org/WireguardPublicKey"];
            if c["status"]["wireguardPublicKey"] == KEY && ann == KEY {
                Ok(())
            } else {
                Err(format!("status {} annotation {ann}", c["status"]))
            }
        },
    );
    patch_status(
        "nodenetworkstates.ocelot.dev",
        "node2",
        &json!({"status": {"wireguardPublicKey": KEY}}),
    );
    let ev = op.wait("a Warning Event refusing node2's duplicate key", || {
        events("WireGuardKeyRefused", "node2")
    });
    assert_eq!(ev["type"], "Warning", "{ev}");
    assert!(ev["note"].as_str().unwrap_or("").contains("node1"), "{ev}");
    let c2 = get_json("nodes.projectcalico.org", "node2").unwrap();
    assert!(
        c2["status"]["wireguardPublicKey"].is_null(),
        "duplicate published: {c2}"
    );

    // Demand for external-pool (selects no node) claims the seed's /29 for node1.
    patch_status(
        "nodenetworkstates.ocelot.dev",
        "node1",
        &json!({"status": {"blockDemand": [{"pool": "external-pool", "reason": "no free address for pod external-ns/nginx"}]}}),
    );
    op.wait("node1's external-pool block", || {
        let s = nns_spec("node1")?;
        let has = s["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["cidr"] == "198.19.28.208/29" && b["pool"] == "external-pool");
        if has {
            Ok(())
        } else {
            Err(format!("blocks {}", s["blocks"]))
        }
    });

    // An overlapping pool is refused: condition, Event, and no block from it.
    apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: overlap-pool\nspec:\n  cidr: 198.19.16.0/24\n",
    );
    op.wait("overlap-pool Allocatable=False CIDROverlap", || {
        let p = get_json("ippools.projectcalico.org", "overlap-pool")?;
        let c = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Allocatable")
            .cloned();
        match c {
            Some(c) if c["status"] == "False" && c["reason"] == "CIDROverlap" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    op.wait("a CIDROverlap Event", || {
        events("CIDROverlap", "overlap-pool")
    });
    let blocks = kubectl(["get", "ipamblocks.projectcalico.org", "-o", "name"]);
    let blocks = String::from_utf8_lossy(&blocks.stdout).to_string();
    assert!(
        !blocks.contains("198-19-16-"),
        "a block was claimed from the overlapping pool: {blocks}"
    );

    // A namespace naming a pool that does not exist gets a Warning Event; a good one none.
    apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: external-ns\n  annotations:\n    cni.projectcalico.org/ipv4pools: '[\"external-pool\"]'\n",
    );
    apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: typo-ns\n  annotations:\n    cni.projectcalico.org/ipv4pools: '[\"extrenal-pool\"]'\n",
    );
    let ev = op.wait("an InvalidPoolAnnotation Event", || {
        events("InvalidPoolAnnotation", "typo-ns")
    });
    let note = ev["note"].as_str().unwrap_or("");
    assert!(
        note.contains("cni.projectcalico.org/ipv4pools") && note.contains("extrenal-pool"),
        "{ev}"
    );
    assert!(
        events("InvalidPoolAnnotation", "external-ns").is_err(),
        "a valid annotation was warned about"
    );

    // Deleting node2: Calico Node and state go, its pod's address is freed, then its block.
    allocate_pods("198.19.21.64/26", "node2", 1);
    check(kubectl(["delete", "node", "node2"]), "delete node2");
    op.wait("node2's Calico Node, state and block to go", || {
        for (kind, name) in [
            ("nodes.projectcalico.org", "node2".to_string()),
            ("nodenetworkstates.ocelot.dev", "node2".to_string()),
            (
                "ipamblocks.projectcalico.org",
                block_name("198.19.21.64/26"),
            ),
        ] {
            match get_json(kind, &name) {
                Err(e) if e.contains("NotFound") => {}
                Err(e) => return Err(e),
                Ok(_) => return Err(format!("{kind}/{name} still there")),
            }
        }
        Ok(())
    });
    let log_text = op.log();
    assert!(
        log_text.contains("releasing the addresses of a deleted node"),
        "{log_text}"
    );

    // Metrics and health.
    let (code, body) = op.http_get("/metrics");
    assert_eq!(code, 200, "{body}");
    for want in [
        "ocelot_operator_reconciles_total",
        "ocelot_operator_api_writes_total{kind=\"IPAMBlock\"}",
        "ocelot_operator_watch_events_total{kind=\"KubeNode\"}",
        "ocelot_operator_reconcile_duration_seconds_bucket",
        "ocelot_operator_ipam_blocks{pool=\"default-ipv4-ippool\"} 2",
        "ocelot_operator_ipam_blocks{pool=\"external-pool\"} 1",
        // node1's three pods and WireGuard address, control's WireGuard address (node2 is gone).
        "ocelot_operator_ipam_addresses_in_use{pool=\"default-ipv4-ippool\"} 5",
        "ocelot_operator_ipam_addresses_free{pool=\"default-ipv4-ippool\"} 123",
        "ocelot_operator_nodes 2",
        "ocelot_operator_leader 1",
    ] {
        assert!(body.contains(want), "/metrics lacks {want:?}:\n{body}");
    }
    assert_eq!(op.http_get("/healthz").0, 200);
    assert_eq!(op.http_get("/readyz").0, 200);

    // Nothing changes: several resync passes make no API write.
    sleep(Duration::from_secs(3));
    let before = api_writes();
    assert!(
        before > 50,
        "the metric must count this test's writes: {before}"
    );
    sleep(Duration::from_secs(4));
    let after = api_writes();
    assert_eq!(
        before,
        after,
        "a resync with nothing changed wrote to the API server; log:\n{}",
        op.log()
    );

    // A restart finds everything current: no write, except that the new process reports the
    // still-present bad namespace annotation once more (Warning Events are not remembered).
    op.stop();
    let before = write_lines(&["events"]);
    let mut op = Operator::start_with(&log, &args);
    // start_with truncates the log: this line is the restarted operator's.
    let line = op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    sleep(Duration::from_secs(3));
    let after = write_lines(&["events"]);
    let new: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        new.is_empty(),
        "restart wrote to the API server ({line}): {new:#?}\nlog:\n{}",
        op.log()
    );
    op.stop();
}
