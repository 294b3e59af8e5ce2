//! VXLAN as Calico programs it, on three nodes: node1 and node2 on the fabric's 198.19.0.0/20,
//! node3 on 198.19.48.0/20 behind the fabric netns as a router that knows only those two subnets
//! (never a pod address). BGP is off (mesh disabled, no peers), so only the overlay carries pods.
//! - `vxlanMode: Always`: the operator gives each node a VTEP address from its block and a MAC in
//!   its Calico Node; `vxlan.calico` (VNI 4096, port 4789, mtu 1410 on the 1460 fabric) with ARP
//!   and FDB entries; pods ping across all nodes and the fabric carries only UDP 4789; a pod made
//!   without an explicit MTU gets Calico's 1410.
//! - An agent restart rewrites nothing of it (netlink monitors see no event on it).
//! - `CrossSubnet`: node1 → node2 native (`via 198.19.0.3 dev ens4`, no UDP 4789), node1 → node3
//!   VXLAN; the switch loses at most one packet of a running ping, and so does the way back, after
//!   which the kernel's overlay state (device, ARP, FDB, routes) is exactly what it was.
//! - `Never`: node3 is unreachable and the Tunnel condition says why (NoBGP, naming its block);
//!   vxlan.calico, its routes and the published VTEP are gone.
use std::time::Duration;

use ocelot_e2e::agent::{AgentLab, CniEnv, NodeAgent, add, cni, pod_address};
use ocelot_e2e::lab::{Lab, Netns, Node};
use ocelot_e2e::operator::{apply, get_json, namespace, patch_default_pool, pod};
use serde_json::Value;

const NODES: [(&str, &str, &str); 3] = [
    ("node1", "198.19.0.2", ""),
    ("node2", "198.19.0.3", ""),
    ("node3", "198.19.48.2", ""),
];

fn sh(node: &Node, cmd: &str) -> String {
    let out = node.exec(["sh", "-c", cmd]).expect("run in node");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn set_mode(mode: &str) {
    patch_default_pool(&format!(r#"{{"vxlanMode":"{mode}"}}"#));
}

/// `node`'s Tunnel condition.
fn tunnel(node: &str) -> Result<Value, String> {
    let v = get_json("nodenetworkstates.ocelot.dev", node)?;
    v["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Tunnel"))
        .cloned()
        .ok_or_else(|| format!("no Tunnel condition: {}", v["status"]))
}

fn wait_tunnel(s: &mut AgentLab, node: &str, reason: &str, part: &str) -> Value {
    s.op.wait(
        &format!("{node}'s Tunnel condition {reason} ({part})"),
        || {
            let c = tunnel(node)?;
            let msg = c["message"].as_str().unwrap_or_default();
            (c["reason"] == reason && msg.contains(part))
                .then(|| c.clone())
                .ok_or(c.to_string())
        },
    )
}

fn block_of(node: &str) -> String {
    let v = get_json("nodenetworkstates.ocelot.dev", node).unwrap();
    v["spec"]["blocks"][0]["cidr"].as_str().unwrap().to_string()
}

/// Whether one of 5 pings (1 s each) is answered.
fn reaches(from: &Netns, to: &str) -> bool {
    (0..5).any(|_| {
        from.exec(["ping", "-c", "1", "-W", "1", "-n", to])
            .unwrap()
            .status
            .success()
    })
}

/// Packets matching `filter` on `node`'s ens4 while `from` pings `to` three times.
fn captured(node: &Node, filter: &str, from: &Netns, to: &str) -> (usize, String) {
    let (n, f) = (node.clone(), filter.to_string());
    let dump = std::thread::spawn(move || {
        n.exec_timeout(
            [
                "timeout", "4", "tcpdump", "-n", "-q", "-l", "-i", "ens4", &f,
            ],
            Duration::from_secs(10),
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(1000));
    let out = from
        .exec(["ping", "-c", "3", "-i", "0.2", "-W", "1", "-n", to])
        .unwrap();
    assert!(out.status.success(), "{} → {to} failed", from.label());
    let text = String::from_utf8_lossy(&dump.join().unwrap().stdout).into_owned();
    (text.lines().filter(|l| l.contains(" > ")).count(), text)
}

/// (plain ICMP between the pods, VXLAN packets) on node1's ens4 for `from` → `to`.
fn paths(node1: &Node, from: &Netns, to: &str) -> (usize, usize, String) {
    let (icmp, a) = captured(node1, &format!("icmp and host {to}"), from, to);
    let (vxlan, b) = captured(node1, "udp port 4789", from, to);
    (icmp, vxlan, a + &b)
}

/// Everything of the overlay in `node`'s kernel, as text: device, ARP, FDB and our routes.
fn overlay_dump(node: &Node) -> String {
    sh(
        node,
        "ip -d link show vxlan.calico; ip addr show dev vxlan.calico | grep inet; \
         ip neigh show dev vxlan.calico; bridge fdb show dev vxlan.calico; ip route show proto 79",
    )
}

/// Packets lost by a 0.1 s ping from `from` to `to` running while `switch` runs.
fn lost_during(from: &Netns, to: &str, switch: impl FnOnce()) -> (u32, String) {
    let (f, t) = (from.clone(), to.to_string());
    let ping = std::thread::spawn(move || {
        f.exec_timeout(
            ["ping", "-i", "0.1", "-c", "150", "-W", "1", "-n", &t],
            Duration::from_secs(40),
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_secs(2));
    switch();
    let out = String::from_utf8_lossy(&ping.join().unwrap().stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {out}"));
    let num = |word: &str| -> u32 {
        let before = line.split(word).next().unwrap();
        before
            .trim()
            .rsplit([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        num("packets transmitted") - num("received"),
        line.to_string(),
    )
}

#[test]
fn vxlan_always_crosssubnet_and_never_on_two_subnets() {
    let mut lab = Lab::new().expect("lab");
    lab.add_subnet("198.19.48.0/20").expect("second subnet");
    apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\n\
         spec:\n  nodeToNodeMeshEnabled: false\n",
    );
    let mut s = AgentLab::start_in(lab, &NODES, &[]);
    namespace("vx");
    let mut pods = Vec::new();
    for (i, (node, _, _)) in NODES.iter().enumerate() {
        let name = format!("p{i}");
        pod("vx", &name, node, &[]);
        let ns = s.lab.add_netns(&format!("pod-{i}")).unwrap();
        let r = add(s.agent(node), &format!("vx{i:06}"), &ns, "vx", &name);
        let addr = pod_address(&r).trim_end_matches("/32").to_string();
        pods.push((ns, addr));
    }
    let (b1, b2, b3) = (block_of("node1"), block_of("node2"), block_of("node3"));
    let node1 = s.lab.node("node1").clone();
    let pa = &pods[0].0;
    let b = pods[1].1.as_str();
    let c = pods[2].1.as_str();
    // The underlay works across the router; pod addresses do not, without an overlay.
    node1
        .ping("198.19.48.2", 3)
        .expect("node1 reaches node3 through the router");
    let never = wait_tunnel(&mut s, "node1", "NoBGP", &b3);
    assert_eq!(never["status"], "False");
    assert!(
        !reaches(pa, c),
        "pods must not reach each other without an overlay"
    );

    // Always.
    set_mode("Always");
    for (node, _, _) in NODES {
        wait_tunnel(&mut s, node, "Ready", "2 VTEP(s)");
    }
    let cn1 = get_json("nodes.projectcalico.org", "node1").unwrap();
    let vtep1 = cn1["spec"]["ipv4VXLANTunnelAddr"]
        .as_str()
        .unwrap()
        .to_string();
    let mac1 = cn1["spec"]["vxlanTunnelMACAddr"]
        .as_str()
        .unwrap()
        .to_string();
    let net1: ipnet::Ipv4Net = b1.parse().unwrap();
    assert!(
        net1.contains(&vtep1.parse::<std::net::Ipv4Addr>().unwrap()),
        "{vtep1} in {b1}"
    );
    let nns1 = get_json("nodenetworkstates.ocelot.dev", "node1").unwrap();
    assert_eq!(nns1["spec"]["ipv4VXLANTunnelAddr"], vtep1.as_str());
    let link = sh(&node1, "ip -d addr show vxlan.calico");
    for want in [
        "mtu 1410",
        "vxlan id 4096",
        "local 198.19.0.2",
        "dev ens4",
        "dstport 4789",
        "nolearning",
        &format!("link/ether {mac1}"),
        &format!("inet {vtep1}/32"),
    ] {
        assert!(link.contains(want), "{want:?} not in:\n{link}");
    }
    let vtep2 =
        get_json("nodes.projectcalico.org", "node2").unwrap()["spec"]["ipv4VXLANTunnelAddr"]
            .as_str()
            .unwrap()
            .to_string();
    let cn3 = get_json("nodes.projectcalico.org", "node3").unwrap();
    let (vtep3, mac3) = (
        cn3["spec"]["ipv4VXLANTunnelAddr"].as_str().unwrap(),
        cn3["spec"]["vxlanTunnelMACAddr"].as_str().unwrap(),
    );
    let routes = sh(&node1, "ip route");
    assert!(
        routes.contains(&format!(
            "{b3} via {vtep3} dev vxlan.calico proto 79 onlink"
        )),
        "{routes}"
    );
    let neigh = sh(&node1, "ip neigh show dev vxlan.calico");
    assert!(
        neigh.contains(&format!("{vtep3} lladdr {mac3} PERMANENT")),
        "{neigh}"
    );
    let fdb = sh(&node1, "bridge fdb show dev vxlan.calico");
    assert!(
        fdb.contains(&format!("{mac3} dst 198.19.48.2 self permanent")),
        "{fdb}"
    );
    for (from, to) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
        assert!(reaches(&pods[from].0, &pods[to].1), "pod {from} → pod {to}");
    }
    for to in [b, c] {
        let (icmp, vxlan, dump) = paths(&node1, pa, to);
        assert!(
            vxlan > 0 && icmp == 0,
            "Always: only VXLAN to {to}:\n{dump}"
        );
    }
    // Pod MTU by Calico's rule when the runtime sets none: 1460 − 50.
    pod("vx", "auto-mtu", "node3", &[]);
    let pm = s.lab.add_netns("pod-mtu").unwrap();
    let mut conf = s.agent("node3").conf();
    conf.as_object_mut().unwrap().remove("mtu");
    let out = cni(
        &CniEnv::pod("ADD", "vxmtu0001", &pm.path(), "vx", "auto-mtu"),
        &conf,
    );
    assert_eq!(out.exit, 0, "{out:?}");
    let eth0 = pm.exec_ok(["ip", "link", "show", "eth0"]).unwrap();
    assert!(eth0.contains("mtu 1410"), "{eth0}");
    let always = overlay_dump(&node1);

    // An agent restart adopts the overlay: no write touches it.
    let monitor = node1
        .spawn(["ip", "monitor", "link", "route", "neigh"])
        .unwrap();
    let fdb_monitor = node1.spawn(["bridge", "monitor", "fdb"]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let agent = s.agents.remove("node1").unwrap();
    agent.daemon.stop();
    let mut agent = NodeAgent::start(&node1, s.dir.path(), &[]);
    agent.wait_ready();
    s.agents.insert("node1".into(), agent);
    wait_tunnel(&mut s, "node1", "Ready", "2 VTEP(s)");
    // Past the worker's first pass and a poll.
    std::thread::sleep(Duration::from_secs(12));
    let churn = monitor.log() + &fdb_monitor.log();
    drop((monitor, fdb_monitor));
    let ours: Vec<&str> = churn
        .lines()
        .filter(|l| l.contains("vxlan.calico") || l.contains("proto 79"))
        .collect();
    assert!(ours.is_empty(), "the restart rewrote the overlay:\n{churn}");
    assert_eq!(overlay_dump(&node1), always);

    // CrossSubnet, switched under a running ping between the same-subnet pods.
    let (lost, summary) = lost_during(pa, b, || {
        set_mode("CrossSubnet");
        s.op.wait("node1 and node2 route natively", || {
            let r1 = sh(&node1, "ip route");
            let r2 = sh(s.lab.node("node2"), "ip route");
            (r1.contains(&format!("{b2} via 198.19.0.3 dev ens4 proto 79"))
                && r2.contains(&format!("{b1} via 198.19.0.2 dev ens4 proto 79")))
            .then_some(())
            .ok_or(r1 + &r2)
        });
    });
    assert!(lost <= 1, "Always → CrossSubnet lost {lost}: {summary}");
    let routes = sh(&node1, "ip route");
    assert!(
        routes.contains(&format!(
            "{b3} via {vtep3} dev vxlan.calico proto 79 onlink"
        )),
        "{routes}"
    );
    let (icmp, vxlan, dump) = paths(&node1, pa, b);
    assert!(
        icmp > 0 && vxlan == 0,
        "CrossSubnet same subnet: native:\n{dump}"
    );
    let (icmp, vxlan, dump) = paths(&node1, pa, c);
    assert!(
        vxlan > 0 && icmp == 0,
        "CrossSubnet other subnet: VXLAN:\n{dump}"
    );
    assert!(reaches(&pods[2].0, b), "node3's pod → node2's pod");

    // Back to Always: nothing stale, nothing recreated.
    let (lost, summary) = lost_during(pa, b, || {
        set_mode("Always");
        s.op.wait("node1 back on VXLAN to node2", || {
            let r = sh(&node1, "ip route");
            r.contains(&format!("{b2} via {vtep2} dev vxlan.calico"))
                .then_some(())
                .ok_or(r)
        });
    });
    assert!(lost <= 1, "CrossSubnet → Always lost {lost}: {summary}");
    s.op.wait("node1's overlay as it was under Always", || {
        let now = overlay_dump(&node1);
        (now == always).then_some(()).ok_or(now)
    });

    // Never: no route to node3's pods, and the condition says why.
    set_mode("Never");
    let c3 = wait_tunnel(&mut s, "node1", "NoBGP", &b3);
    let msg = c3["message"].as_str().unwrap();
    assert!(
        msg.contains("node node3") && msg.contains("runs no BGP"),
        "{msg}"
    );
    assert!(!reaches(pa, c), "node3's pod must be unreachable");
    let left = overlay_dump(&node1);
    assert!(
        !left.contains("vxlan id") && !left.contains("proto 79"),
        "{left}"
    );
    s.op.wait("node1's VTEP unpublished", || {
        let n = get_json("nodes.projectcalico.org", "node1")?;
        n["spec"]["ipv4VXLANTunnelAddr"]
            .is_null()
            .then_some(())
            .ok_or(n["spec"].to_string())
    });
}
