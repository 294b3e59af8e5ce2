//! natOutgoing through the agents' nftables table: a pod of a natOutgoing pool reaches host1
//! (outside every pool) with its node's address, pod to pod keeps the pod's address, a restarted
//! agent adopts the table without writing it, natOutgoing off removes the table (host1 then sees
//! the pod's address), and a foreign table in the node's namespace survives all of it.
use std::time::{Duration, Instant};

use ocelot_e2e::agent::{AgentLab, NodeAgent, SEED_NODES as NODES, ping_once, pod_pair};
use ocelot_e2e::daemon::log_line;
use ocelot_e2e::lab::{LabProcess, Netns};
use ocelot_e2e::operator::{get_json, patch_default_pool};
use serde_json::Value;

const HOST1: &str = "198.19.15.254";
const FOREIGN: &str =
    "table ip foreign {\n\tset keep {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.7 }\n\t}\n}\n";

/// Bound of one capture: tcpdump's start plus one packet.
const CAPTURE: Duration = Duration::from_secs(10);

/// The source address of the first ICMP echo request `ns` sees on `iface` while `trigger` runs.
fn echo_source(ns: &Netns, iface: &str, trigger: impl FnOnce()) -> String {
    let dump: LabProcess = ns
        .spawn([
            "tcpdump",
            "-n",
            "-l",
            "-i",
            iface,
            "-c",
            "1",
            "icmp[icmptype] == icmp-echo",
        ])
        .unwrap();
    dump.wait_for_log("listening on", CAPTURE).unwrap();
    trigger();
    let deadline = Instant::now() + CAPTURE;
    loop {
        // `12:00:00.000000 IP 198.19.0.2 > 198.19.15.254: ICMP echo request, …`
        let log = dump.log();
        if let Some(src) = log
            .lines()
            .find_map(|l| l.split(" IP ").nth(1)?.split(" > ").next())
        {
            return src.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no echo request seen in {} on {iface} within {CAPTURE:?}:\n{log}",
            ns.label()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One ping that may go unanswered (without NAT host1 has no route back to pods).
fn ping_unchecked(from: &Netns, to: &str) {
    from.exec(["ping", "-c", "1", "-W", "1", "-n", to])
        .expect("run ping");
}

fn nft(node: &Netns, args: &[&str]) -> String {
    let mut all = vec!["nft"];
    all.extend_from_slice(args);
    node.exec_ok(all).unwrap()
}

/// Condition `type_` of `node`'s NodeNetworkState status.
fn condition(node: &str, type_: &str) -> Result<Value, String> {
    let v = get_json("nodenetworkstates.ocelot.dev", node)?;
    v["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .cloned()
        .ok_or_else(|| v["status"].to_string())
}

/// Waits until `node`'s condition `type_` has `key` = `want`; returns the condition.
fn wait_condition(s: &mut AgentLab, node: &str, type_: &str, key: &str, want: &str) -> Value {
    s.op.wait(
        &format!("{node}'s {type_} {key} {want}"),
        || match condition(node, type_)? {
            c if c[key] == want => Ok(c),
            c => Err(c.to_string()),
        },
    )
}

fn patch_nat(on: bool) {
    patch_default_pool(&format!(r#"{{"natOutgoing":{on}}}"#));
}

#[test]
fn pods_leave_the_pools_with_the_nodes_address_and_keep_theirs_between_pods() {
    let mut s = AgentLab::start(&NODES, &[]);
    let host1 = s.lab.add_node("host1", HOST1).unwrap();
    let node1 = s.lab.node("node1").clone();
    for args in [
        &["add", "table", "ip", "foreign"][..],
        &["add", "set", "ip", "foreign", "keep", "{ type ipv4_addr; }"],
        &["add", "element", "ip", "foreign", "keep", "{ 192.0.2.7 }"],
    ] {
        nft(&node1, args);
    }
    assert_eq!(nft(&node1, &["list", "table", "ip", "foreign"]), FOREIGN);
    patch_nat(true);
    let cond = wait_condition(&mut s, "node1", "NAT", "reason", "Programmed");
    assert_eq!(cond["status"], "True", "{cond}");
    assert_eq!(
        cond["message"],
        "table ip ocelot-nat masquerades 198.19.16.0/21 to destinations outside 198.19.16.0/21",
        "{cond}"
    );
    wait_condition(&mut s, "node1", "Ready", "status", "True");
    let table = nft(&node1, &["list", "table", "ip", "ocelot-nat"]);
    assert!(
        table.contains("ip saddr @masq-pools ip daddr != @all-pools masquerade fully-random"),
        "{table}"
    );

    let (na, nb, a, b) = pod_pair(&mut s, "nat");
    let (a, b) = (a.as_str(), b.as_str());

    // Leaving every pool: host1 sees node1's address, and the reply finds its way back.
    let seen = echo_source(&host1, "ens4", || ping_once(&na, HOST1));
    assert_eq!(seen, node1.ip().to_string(), "host1 saw {seen}, pod is {a}");

    // Pod to pod (another node's block, inside the pool): the pod's own address arrives.
    s.op.wait("node1 to learn node2's block", || {
        let r = node1.exec_ok(["ip", "route"]).map_err(|e| e.to_string())?;
        r.contains(&format!("{} via 198.19.0.3", NODES[1].2))
            .then_some(())
            .ok_or(r)
    });
    let seen = echo_source(&nb, "eth0", || ping_once(&na, b));
    assert_eq!(seen, a, "pod b saw {seen}");

    // A restarted agent adopts the table: no nftables event in node1 across the restart.
    let handle = |t: &str| -> Value {
        let v: Value =
            serde_json::from_str(&nft(&node1, &["-j", "list", "table", "ip", t])).unwrap();
        v["nftables"][1]["table"]["handle"].clone()
    };
    let before = handle("ocelot-nat");
    let monitor = node1.spawn(["nft", "monitor"]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.agents.remove("node1").unwrap().daemon.stop();
    let mut agent = NodeAgent::start(&node1, s.dir.path(), &[]);
    agent.wait_ready();
    s.op.wait("the restarted agent to adopt the NAT table", || {
        log_line(agent.daemon.log_path(), "NAT table adopted")
    });
    assert!(
        agent.daemon.log_line("NAT table programmed").is_err(),
        "{}",
        agent.daemon.log()
    );
    s.agents.insert("node1".into(), agent);
    let events = monitor.log();
    drop(monitor);
    assert!(
        events.trim().is_empty(),
        "nftables changed across the restart:\n{events}"
    );
    assert_eq!(handle("ocelot-nat"), before);

    // natOutgoing off: the table is gone, the foreign one stays, host1 sees the pod.
    patch_nat(false);
    let cond = wait_condition(&mut s, "node1", "NAT", "reason", "NotNeeded");
    assert_eq!(cond["status"], "True", "{cond}");
    let tables = nft(&node1, &["list", "tables"]);
    assert_eq!(tables.trim(), "table ip foreign", "{tables}");
    let seen = echo_source(&host1, "ens4", || ping_unchecked(&na, HOST1));
    assert_eq!(seen, a, "without natOutgoing host1 saw {seen}");
    assert_eq!(nft(&node1, &["list", "table", "ip", "foreign"]), FOREIGN);
    // node2 removed its table as well.
    wait_condition(&mut s, "node2", "NAT", "reason", "NotNeeded");
    let tables2 = nft(s.lab.node("node2"), &["list", "tables"]);
    assert!(tables2.trim().is_empty(), "{tables2}");
}
