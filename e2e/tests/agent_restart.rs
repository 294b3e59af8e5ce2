//! An agent restart with 50 pods running: a netlink monitor on the node sees no route deleted or
//! added, BIRD's sessions are not reset, and no address is handed out twice. Block writes that lose
//! to another writer leave no address or interface behind either.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ocelot_e2e::agent::{
    AgentLab, CniEnv, NodeAgent, SEED_NODES as NODES, add, allocations, cni, make_pods, mesh_lines,
    pod_address, routes, wait_established,
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

    lost_block_writes_leave_nothing_behind(&mut s);
}

/// Another writer bumps node1's IPAMBlock while bursts of ADDs run, so some group commits are
/// refused: their ADDs are assigned again and the interfaces made for the lost addresses are
/// deleted. Every pod ends with one stored address, its own eth0 address, one host interface
/// and one host route; the counters show the refused writes and the undone interfaces happened.
fn lost_block_writes_leave_nothing_behind(s: &mut AgentLab) {
    const BURST: usize = 8;
    const MAX_ROUNDS: usize = 6;
    namespace("race");
    let out = ocelot_e2e::cluster::kubectl([
        "get",
        "ipamblocks.projectcalico.org",
        "-l",
        "ocelot.dev/node=node1",
        "-o",
        "name",
    ]);
    let block = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !block.is_empty() && !block.contains('\n'),
        "node1's one block: {block:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let bumper = {
        let (stop, name) = (
            stop.clone(),
            block
                .trim_start_matches("ipamblock.projectcalico.org/")
                .to_string(),
        );
        // A client of its own, not kubectl (~50 ms a run): a bump every ~10 ms lands inside
        // some commits' read-to-write window.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let api: kube::Api<ocelot::api::IPAMBlock> =
                    kube::Api::all(ocelot_e2e::cluster::client().await);
                let started = Instant::now();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    i += 1;
                    let patch = serde_json::json!({"metadata": {"annotations": {"ocelot.dev/e2e-bump": i.to_string()}}});
                    api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                        .await
                        .expect("bump the block");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i
            })
        })
    };
    let conf = s.agents["node1"].conf();
    let mut pods = Vec::new();
    let counter = |s: &mut AgentLab, name: &str| -> u64 {
        let (_, m) = s.agent("node1").daemon.http_get("/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("ocelot_agent_{name}_total ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for round in 0..MAX_ROUNDS {
        let sandboxes: Vec<_> = (0..BURST)
            .map(|i| {
                let name = format!("race-{round}-{i}");
                pod("race", &name, "node1", &[]);
                (name.clone(), s.lab.add_netns(&format!("p-{name}")).unwrap())
            })
            .collect();
        let results: Vec<_> = std::thread::scope(|scope| {
            let calls: Vec<_> = sandboxes
                .iter()
                .enumerate()
                .map(|(i, (name, netns))| {
                    let conf = &conf;
                    scope.spawn(move || {
                        let env = CniEnv::pod(
                            "ADD",
                            &format!("race{round}{i:03}"),
                            &netns.path(),
                            "race",
                            name,
                        );
                        cni(&env, conf)
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for ((name, netns), out) in sandboxes.into_iter().zip(results) {
            assert_eq!(out.exit, 0, "ADD race/{name}: {out:?}");
            pods.push((
                netns,
                pod_address(&out.json()),
                out.json()["interfaces"][0]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
        if counter(s, "pod_interfaces_undone") > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let bumps = bumper.join().unwrap();
    let (conflicts, undone) = (
        counter(s, "ipam_conflicts"),
        counter(s, "pod_interfaces_undone"),
    );
    eprintln!(
        "{bumps} block bumps over {} ADDs: {conflicts} refused writes, {undone} undone interfaces",
        pods.len()
    );
    assert!(
        conflicts > 0 && undone > 0,
        "{bumps} block bumps over {} ADDs provoked {conflicts} refused writes and {undone} undone interfaces",
        pods.len()
    );

    assert_unique(pods.iter().map(|p| p.1.clone()));
    let alloc = allocations("node1");
    let node1 = s.lab.node("node1").clone();
    let host = routes(&node1);
    let links = node1.exec_ok(["ip", "-o", "link", "show"]).unwrap();
    let cali: Vec<&str> = links.lines().filter(|l| l.contains(": cali")).collect();
    for (netns, address, veth) in &pods {
        let ip = address.trim_end_matches("/32");
        assert!(
            alloc.contains_key(&ip.parse().unwrap()),
            "{ip} not stored: {alloc:?}"
        );
        let eth0 = netns
            .exec_ok(["ip", "-4", "-o", "addr", "show", "eth0"])
            .unwrap();
        assert!(eth0.contains(&format!("inet {address} ")), "{eth0}");
        let want = format!("{ip} dev {veth} scope link");
        assert_eq!(
            host.lines()
                .filter(|l| l.starts_with(&format!("{ip} ")))
                .count(),
            1,
            "{host}"
        );
        assert!(
            host.lines().any(|l| l.starts_with(&want)),
            "no {want:?} in\n{host}"
        );
    }
    // Exactly one host interface and one stored address per pod: none left from a lost attempt.
    assert_eq!(cali.len(), pods.len(), "{links}");
    assert_eq!(alloc.len(), pods.len(), "{alloc:?}");
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
