//! The lab can host the seed's BGP state with real BIRD 2: an iBGP full mesh between control, node1
//! and node2 (AS 64512) plus host1 as a global peer, each node advertising its block as a blackhole,
//! so node1's routing table shows the seed's `proto bird` lines. The BIRD configs are written by
//! hand here; rendering them from the API is the agent's job (its own issue).
use std::time::Duration;

use anyhow::Result;
use ocelot_e2e::lab::{Lab, require_tools, retry};

/// The seed's blocks: control 198.19.21.0/26, node1 198.19.22.128/26, node2 198.19.21.64/26.
const NODES: [(&str, &str, Option<&str>); 4] = [
    ("control", "198.19.0.1", Some("198.19.21.0/26")),
    ("node1", "198.19.0.2", Some("198.19.22.128/26")),
    ("node2", "198.19.0.3", Some("198.19.21.64/26")),
    ("host1", "198.19.15.254", None),
];

fn bird_conf(me: &str, ip: &str, block: Option<&str>, log: &str) -> String {
    let mut c = format!(
        "log \"{log}\" all;\nrouter id {ip};\nprotocol device {{ scan time 2; }}\n\
         protocol direct {{ ipv4; interface \"ens4\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source ~ [ RTS_STATIC, RTS_BGP ]; }}; scan time 2; merge paths on; }}\n"
    );
    if let Some(b) = block {
        c += &format!("protocol static blocks {{ ipv4; route {b} blackhole; }}\n");
    }
    c += "template bgp peer { local as 64512; connect delay time 0; connect retry time 2; error wait time 1,5;\n\
          ipv4 { import all; export where proto = \"blocks\"; next hop self; }; }\n";
    for (name, peer_ip, _) in NODES.iter().filter(|(n, _, _)| *n != me) {
        // host1 is the seed's global peer; the nodes mesh with each other (host1 peers with all).
        let kind = if *name == "host1" || me == "host1" {
            "Global"
        } else {
            "Mesh"
        };
        let proto = format!("{kind}_{}", peer_ip.replace('.', "_"));
        c += &format!(
            "protocol bgp {proto} from peer {{ neighbor {peer_ip} as 64512; source address {ip}; }}\n"
        );
    }
    c
}

#[test]
fn bird_mesh_installs_the_seeds_proto_bird_routes_on_node1() -> Result<()> {
    require_tools(&["bird", "birdc", "ip"])?;
    let lab = Lab::seed()?;
    let mut birds = Vec::new();
    for (name, ip, block) in NODES {
        let dir = lab.dir();
        let conf = dir.join(format!("{name}.bird.conf"));
        let log = dir.join(format!("{name}.bird.log"));
        std::fs::write(
            &conf,
            bird_conf(name, ip, block, log.to_str().expect("utf-8")),
        )?;
        let ctl = dir.join(format!("{name}.bird.ctl"));
        let node = lab.node(name);
        node.exec_ok(["bird", "-p", "-c", conf.to_str().expect("utf-8")])?; // syntax check
        birds.push(node.spawn([
            "bird",
            "-f",
            "-c",
            conf.to_str().expect("utf-8"),
            "-s",
            ctl.to_str().expect("utf-8"),
        ])?);
    }
    let node1 = lab.node("node1");
    let ctl = lab.dir().join("node1.bird.ctl");
    // Bounded: sessions come up in about a second with connect delay 0.
    retry(
        "node1's 3 BGP sessions Established",
        60,
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let out = node1.exec_ok([
                "birdc",
                "-s",
                ctl.to_str().expect("utf-8"),
                "show",
                "protocols",
            ])?;
            let up = out.lines().filter(|l| l.contains("Established")).count();
            anyhow::ensure!(up == 3, "{up}/3 Established:\n{out}");
            Ok(())
        },
    )?;
    let routes = retry(
        "node1 learned the other blocks",
        60,
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = node1.exec_ok(["ip", "route"])?;
            anyhow::ensure!(
                r.contains("198.19.21.64/26 via 198.19.0.3")
                    && r.contains("198.19.21.0/26 via 198.19.0.1"),
                "{r}"
            );
            Ok(r)
        },
    )?;
    // The seed's node1 lines (metric aside): learned blocks via their nodes, its own block blackholed.
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("198.19.21.0/26 via 198.19.0.1 dev ens4 proto bird")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("198.19.21.64/26 via 198.19.0.3 dev ens4 proto bird")),
        "{routes}"
    );
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("blackhole 198.19.22.128/26 proto bird")),
        "{routes}"
    );
    // host1, the "router", learned every node's block.
    let host1 = lab.node("host1").exec_ok(["ip", "route"])?;
    for (_, ip, block) in &NODES[..3] {
        let b = block.expect("nodes have blocks");
        assert!(
            host1.contains(&format!("{b} via {ip}")),
            "host1 lacks {b}:\n{host1}"
        );
    }
    drop(birds);
    Ok(())
}
