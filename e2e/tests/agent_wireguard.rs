//! WireGuard switched on and off by the seed's FelixConfiguration patch, on two nodes whose agents
//! run boringtun (this kernel has no wireguard module): `wireguard.cali` with its address and
//! Calico's MTU, one peer each, the table and rule; the fabric carries only WireGuard UDP between
//! the pods; off removes device, rule, routes and keys, and the pods still reach each other.
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ocelot::ipam::{Attr, Block};
use ocelot_e2e::agent::{AgentLab, NodeAgent, SEED_NODES as NODES, ping_once, pod_pair};
use ocelot_e2e::ctl::ipam_block;
use ocelot_e2e::lab::{Netns, Node};
use ocelot_e2e::operator::{apply, fixture, get_json, patch_seed_wireguard_on, pod};
use serde_json::{Value, json};

fn condition(node: &str, kind: &str) -> Result<(Value, Value), String> {
    let v = get_json("nodenetworkstates.ocelot.dev", node)?;
    let c = v["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .cloned()
        .ok_or_else(|| format!("no {kind} condition: {}", v["status"]))?;
    Ok((c, v))
}

/// Waits until `node`'s WireGuard condition has `reason`; returns its NodeNetworkState.
fn wait_wireguard(s: &mut AgentLab, node: &str, reason: &str, message_part: &str) -> Value {
    s.op.wait(&format!("{node}'s WireGuard condition {reason}"), || {
        let (c, v) = condition(node, "WireGuard")?;
        let msg = c["message"].as_str().unwrap_or_default();
        if c["reason"] == reason && msg.contains(message_part) {
            Ok(v)
        } else {
            Err(c.to_string())
        }
    })
}

fn sh(node: &Node, cmd: &str) -> String {
    let out = node.exec(["sh", "-c", cmd]).expect("run in node");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Pings (bounded: 10 tries) until one answer comes back: the first packets start the handshake.
fn ping_eventually(from: &Netns, to: &str) {
    for _ in 0..10 {
        let out = from.exec(["ping", "-c", "1", "-W", "1", "-n", to]).unwrap();
        if out.status.success() {
            return;
        }
    }
    panic!("{} cannot reach {to} through the tunnel", from.label());
}

/// What the fabric side of node1 carries while pod a pings pod b three times:
/// (ICMP lines, WireGuard UDP lines), from tcpdump on node1's `ens4`.
fn fabric_capture(node1: &Node, from: &Netns, to: &str) -> (usize, usize, String) {
    let (text, out) = node1
        .netns()
        .capture(
            "ens4",
            "icmp or udp port 51820",
            Duration::from_secs(4),
            || from.exec(["ping", "-c", "3", "-i", "0.2", "-W", "1", "-n", to]),
        )
        .unwrap();
    assert!(
        out.unwrap().status.success(),
        "pod ping through the tunnel failed"
    );
    let icmp = text.lines().filter(|l| l.contains("ICMP")).count();
    let udp = text
        .lines()
        .filter(|l| l.contains(".51820 >") && l.contains("UDP"))
        .count();
    (icmp, udp, text)
}

#[test]
fn wireguard_on_encrypts_pod_traffic_and_off_removes_everything() {
    let mut s = AgentLab::start(&NODES, &[]);
    let (na, nb, a, b) = pod_pair(&mut s, "wg");
    let (a, b) = (a.as_str(), b.as_str());
    let node1 = s.lab.node("node1").clone();
    s.op.wait("node1's BGP route to node2's block", || {
        let r = sh(&node1, "ip route");
        r.contains(&format!("{} via", NODES[1].2))
            .then_some(())
            .ok_or(r)
    });
    ping_once(&na, b);
    // Before: plain ICMP on the fabric.
    let (icmp, _, dump) = fabric_capture(&node1, &na, b);
    assert!(icmp > 0, "the capture sees no traffic at all:\n{dump}");
    // Off from the start: nothing of WireGuard, the condition says so.
    wait_wireguard(&mut s, "node1", "NotConfigured", "off");

    // As calico-node creates it on a fresh cluster.
    apply(&fixture("felixconfiguration-default.yaml"));
    patch_seed_wireguard_on();
    let nns1 = wait_wireguard(&mut s, "node1", "Ready", "1 peer(s)");
    wait_wireguard(&mut s, "node2", "Ready", "1 peer(s)");
    let key1 = nns1["status"]["wireguardPublicKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key1.len(), 44, "{nns1}");
    // The operator publishes the reported key in the Calico Node, which the peer's agent reads.
    s.op.wait("node1's key in its Calico Node", || {
        let n = get_json("nodes.projectcalico.org", "node1")?;
        (n["status"]["wireguardPublicKey"] == key1.as_str())
            .then_some(())
            .ok_or(n["status"].to_string())
    });
    let (_, metrics) = s.agent("node1").daemon.http_get("/metrics");
    assert!(
        metrics.contains("ocelot_agent_wireguard_peers 1"),
        "{metrics}"
    );
    let key_file = s.agent("node1").dir.join("wireguard.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key_file.display());

    // The device: Calico's MTU on a 1460 fabric, the address the operator assigned from the block.
    let addr = nns1["spec"]["wireguardInterfaceIPv4Address"]
        .as_str()
        .expect("the operator assigned a WireGuard address")
        .to_string();
    // node1's block is 198.19.22.128/26.
    let last: u8 = addr.strip_prefix("198.19.22.").unwrap().parse().unwrap();
    assert!((128..192).contains(&last), "{addr} outside {}", NODES[0].2);
    let link = sh(&node1, "ip addr show wireguard.cali");
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(link.contains(&format!("inet {addr}/32")), "{link}");
    let rules = sh(&node1, "ip rule");
    assert!(
        rules.contains("99:\tnot from all fwmark 0x100000/0x100000 lookup 1"),
        "{rules}"
    );
    let table = sh(&node1, "ip route show table 1");
    assert!(
        table.contains(&format!("{} dev wireguard.cali", NODES[1].2)),
        "{table}"
    );

    // A borrowed address: a block carried over from Calico, affine to no node, holds a pod of
    // node2. The operator publishes it in node2's Calico Node; node1 routes its /32 into the
    // tunnel (node2's allowed IPs), node2 keeps its own out of the tunnel, as Felix does.
    pod("wg", "borrower", "node2", &[]);
    let mut carried = Block::new("198.19.23.192/26".parse().unwrap(), None, None, 1);
    let secondary = [("namespace", "wg"), ("node", "node2"), ("pod", "borrower")];
    let secondary = secondary.map(|(k, v)| (k.to_string(), v.to_string()));
    let attr = Attr::new(Some("k8s-pod-network.b0rr0w01"), secondary);
    assert!(carried.assign_ordinal(5, attr, 1));
    ipam_block(carried.to_spec());
    s.op.wait("node2's borrowed address in its Calico Node", || {
        let n = get_json("nodes.projectcalico.org", "node2")?;
        (n["status"]["borrowedAddresses"] == json!(["198.19.23.197"]))
            .then_some(())
            .ok_or(n["status"].to_string())
    });
    let node2 = s.lab.node("node2").clone();
    for (node, want) in [
        (&node1, "198.19.23.197 dev wireguard.cali"),
        (&node2, "throw 198.19.23.197"),
    ] {
        s.op.wait(&format!("{want:?} in table 1"), || {
            let t = sh(node, "ip route show table 1");
            t.contains(want).then_some(()).ok_or(t)
        });
    }

    // Pod traffic: only WireGuard UDP on the fabric, no plain ICMP.
    ping_eventually(&na, b);
    let (icmp, udp, dump) = fabric_capture(&node1, &na, b);
    assert_eq!(
        icmp, 0,
        "plain ICMP on the fabric with WireGuard on:\n{dump}"
    );
    assert!(
        udp >= 6,
        "fewer WireGuard packets than pings and replies:\n{dump}"
    );

    // An agent restart leaves the tunnel alone: same boringtun, traffic keeps flowing.
    let pid_file = s.agent("node1").dir.join("state/boringtun.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    s.agents.remove("node1").unwrap().daemon.stop();
    ping_once(&na, b);
    let mut again = NodeAgent::start(&node1, s.dir.path(), &[]);
    again.wait_ready();
    // The status still shows the old agent's condition: wait for the new one's first pass.
    let log = again.daemon.log_path().to_path_buf();
    again.daemon.wait("the new agent's WireGuard pass", || {
        ocelot_e2e::daemon::log_line(&log, "WireGuard state")
    });
    s.agents.insert("node1".into(), again);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid);
    assert!(
        !s.agent("node1").daemon.log().contains("boringtun started"),
        "the restarted agent started a second boringtun"
    );
    let out = na.exec(["ping", "-c", "1", "-W", "2", "-n", b]).unwrap();
    assert!(
        out.status.success(),
        "no ping after the restart; agent log:\n{}\nboringtun log:\n{}\n{}\n{}\nnns {:?}\noperator {}",
        s.agent("node1").daemon.log(),
        std::fs::read_to_string(s.agent("node1").dir.join("state/boringtun.log"))
            .unwrap_or_default(),
        sh(
            &node1,
            "ip rule; ip route show table 1; ip addr show wireguard.cali"
        ),
        sh(&node1, "ip route"),
        get_json("nodenetworkstates.ocelot.dev", "node1"),
        s.op.log()
            .lines()
            .filter(|l| l.contains("WireGuard") || l.contains("node1"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let _ = (
        get_json("nodenetworkstates.ocelot.dev", "node1"),
        s.op.log(),
    );

    // Off: device, rule, table routes and keys gone; pods still reach each other (BGP routes).
    ocelot_e2e::cluster::kubectl([
        "patch",
        "felixconfiguration",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"wireguardEnabled":false}}"#,
    ]);
    for node in ["node1", "node2"] {
        let v = wait_wireguard(&mut s, node, "NotConfigured", "off");
        assert!(v["status"]["wireguardPublicKey"].is_null(), "{v}");
    }
    s.op.wait("node1's key gone from its Calico Node", || {
        let n = get_json("nodes.projectcalico.org", "node1")?;
        n["status"]["wireguardPublicKey"]
            .is_null()
            .then_some(())
            .ok_or(n["status"].to_string())
    });
    let link = sh(&node1, "ip link show wireguard.cali");
    assert!(link.contains("does not exist"), "{link}");
    assert!(!sh(&node1, "ip rule").contains("lookup 1"));
    assert_eq!(sh(&node1, "ip route show table 1").trim(), "");
    assert!(!pid_file.exists(), "boringtun's pid file is left");
    ping_once(&na, b);
    ping_once(&nb, a);
}
