//! An agent restart with 50 pods running: a netlink monitor on the node sees no route deleted or
//! added, BIRD's sessions are not reset, and no address is handed out twice.
use std::time::Duration;

use ocelot_e2e::agent::{
    AgentLab, NodeAgent, SEED_NODES as NODES, add, allocations, make_pods, mesh_lines, pod_address,
    routes, wait_established,
};
use ocelot_e2e::operator::{namespace, pod};

#[test]
fn agent_restart_adopts_routes_without_churn_and_reuses_no_address() {
    const PODS: usize = 50;
    let mut s = AgentLab::start(&NODES, &[]);
    namespace("restart");
    let made = make_pods(&mut s, "node2", "restart", PODS);
    let node2 = s.lab.node("node2").clone();
    let sessions = wait_established(&mut s, "node2");
    let before = routes(&node2);
    let monitor = node2.spawn(["ip", "-4", "monitor", "route"]).unwrap();
    // The monitor prints nothing until a change; give it a moment to subscribe.
    std::thread::sleep(Duration::from_millis(300));

    let agent = s.agents.remove("node2").unwrap();
    agent.daemon.stop();
    let mut agent = NodeAgent::start(&node2, s.dir.path(), &[]);
    agent.wait_ready();
    // Two resync periods of the operator and the agent's BIRD worker.
    std::thread::sleep(Duration::from_secs(5));
    let churn = monitor.log();
    drop(monitor);
    s.agents.insert("node2".into(), agent);
    assert!(
        churn.trim().is_empty(),
        "routes changed across the restart:\n{churn}\nnode2 agent logs:\n{}\n{}",
        std::fs::read_dir(s.dir.path().join("node2"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("agent-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n"),
        s.agents["node1"].daemon.log()
    );
    assert_eq!(routes(&node2), before);
    // BIRD kept running: the session was not reset (same state, same since).
    let after = s.agents["node2"].birdc_protocols().unwrap();
    assert_eq!(mesh_lines(&after), mesh_lines(&sessions), "{after}");

    // A new pod after the restart gets an address none of the 50 has.
    let extra = make_pods_named(&mut s, "node2", "restart", "after");
    assert!(
        made.iter().all(|(_, _, a)| *a != extra),
        "{extra} handed out twice"
    );
    let alloc = allocations("node2");
    assert_eq!(alloc.len(), PODS + 1, "{alloc:?}");
    assert_unique(made.iter().map(|m| m.2.clone()).chain([extra]));
}

fn make_pods_named(s: &mut AgentLab, node: &str, ns_name: &str, name: &str) -> String {
    pod(ns_name, name, node, &[]);
    let netns = s.lab.add_netns(&format!("p-{name}")).unwrap();
    let r = add(s.agent(node), &format!("{name}0001"), &netns, ns_name, name);
    pod_address(&r)
}

fn assert_unique(addrs: impl Iterator<Item = String>) {
    let mut seen = std::collections::BTreeSet::new();
    for a in addrs {
        assert!(seen.insert(a.clone()), "{a} handed out twice");
    }
}
