//! `ocelot-agent` + `ocelot-cni` on lab nodes, driven only by the API: the operator (started from
//! Kubernetes Nodes and the seed's default pool) claims each node's block and writes its
//! NodeNetworkState; pods are made by invoking the plugin exactly as a runtime does. Checks the
//! seed's pod and host lines, the first packet right after ADD, CHECK, DEL (idempotent), GC and
//! STATUS while the agent is down. (Each agent test binary has a cluster of its own: they all use
//! the seed's node names.)
use std::net::Ipv4Addr;

use ocelot::ipam::BLOCK_NODE_LABEL;
use ocelot_e2e::agent::{
    AgentLab, CniEnv, POD_MTU, SEED_NODES as NODES, add, allocations, cni, ping_once, pod_address,
    routes,
};
use ocelot_e2e::cluster::{check, kubectl};
use ocelot_e2e::ctl::get_block;
use ocelot_e2e::lab::Netns;
use ocelot_e2e::operator::{namespace, pod};
use serde_json::json;

/// The seed's customer pod: its name gives the host veth the seed shows.
const CUSTOMER: (&str, &str, &str) = ("yaobank", "customer-574bd6cc75-77tw4", "cali1e6904b30ae");

#[test]
fn pods_get_the_seeds_interfaces_and_routes_and_the_verbs_work() {
    let mut s = AgentLab::start(&NODES, &[]);
    let (ns_name, customer, veth) = CUSTOMER;
    namespace(ns_name);
    pod(ns_name, "summary-0", "node1", &[]);
    pod(ns_name, customer, "node1", &[]);
    let first = s.lab.add_netns("pod-summary").unwrap();
    let cust = s.lab.add_netns("pod-customer").unwrap();

    // The pod scheduled first takes .128, the customer .129, as in the seed.
    let a1 = add(s.agent("node1"), "c0ffee01", &first, ns_name, "summary-0");
    assert_eq!(pod_address(&a1), "198.19.22.128/32", "{a1}");
    // Someone else's label and annotation on the block: the agent's next write keeps them.
    let block = "198-19-22-128-26";
    for (verb, kv) in [
        ("label", "team=net"),
        ("annotate", "backup.example/skip=true"),
    ] {
        let what = format!("{verb} IPAMBlock {block}");
        check(
            kubectl([verb, "ipamblocks.projectcalico.org", block, kv]),
            &what,
        );
    }
    let r = add(s.agent("node1"), "c0ffee02", &cust, ns_name, customer);
    // The instant ADD returns the pod can send: to its node and to the other pod.
    ping_once(&cust, "198.19.0.2");
    ping_once(&cust, "198.19.22.128");
    assert_eq!(pod_address(&r), "198.19.22.129/32", "{r}");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0]["name"], veth, "{r}");
    assert_eq!(r["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r["interfaces"][1]["sandbox"],
        cust.path().display().to_string()
    );
    assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(r["ips"][0]["interface"], 1);

    // Inside the pod: the seed's `ip addr` and exactly its two routes.
    let addr = cust.exec_ok(["ip", "addr", "show", "eth0"]).unwrap();
    assert!(addr.contains(&format!("mtu {POD_MTU}")), "{addr}");
    assert!(
        addr.contains("inet 198.19.22.129/32 brd 198.19.22.129 scope global eth0"),
        "{addr}"
    );
    assert!(addr.contains("eth0@if"), "{addr}");
    let pod_routes = cust.exec_ok(["ip", "route"]).unwrap();
    let lines: Vec<&str> = pod_routes.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "default via 169.254.1.1 dev eth0",
            "169.254.1.1 dev eth0 scope link"
        ],
        "{pod_routes}"
    );

    // On node1: the host veth as the seed shows it, and one /32 per local pod.
    let node1 = s.lab.node("node1").clone();
    let link = node1.exec_ok(["ip", "link", "show", veth]).unwrap();
    for want in [
        format!("{veth}@if"),
        format!("mtu {POD_MTU}"),
        "link/ether ee:ee:ee:ee:ee:ee".into(),
        "link-netns".into(),
        "state UP".into(),
    ] {
        assert!(link.contains(&want), "no {want:?} in {link}");
    }
    let rt = routes(&node1);
    assert!(
        rt.lines()
            .any(|l| l.trim_end() == format!("198.19.22.129 dev {veth} scope link")),
        "{rt}"
    );
    assert!(
        rt.lines()
            .any(|l| l.trim_end().starts_with("198.19.22.128 dev cali") && l.contains("scope link")),
        "{rt}"
    );
    for (key, want) in [
        ("net.ipv4.conf.{veth}.proxy_arp", "1"),
        ("net.ipv4.neigh.{veth}.proxy_delay", "0"),
        ("net.ipv4.conf.{veth}.forwarding", "1"),
    ] {
        let key = key.replace("{veth}", veth);
        assert_eq!(node1.sysctl_get(&key).unwrap(), want, "{key}");
    }

    // Stored before ADD answered: the block in the API holds both, by handle.
    let alloc = allocations("node1");
    assert_eq!(
        alloc
            .get(&"198.19.22.129".parse().unwrap())
            .map(String::as_str),
        Some("k8s-pod-network.c0ffee02"),
        "{alloc:?}"
    );
    assert_eq!(alloc.len(), 2, "{alloc:?}");
    let meta = get_block(block).metadata;
    let labels = meta.labels.unwrap_or_default();
    assert_eq!(
        labels.get("team").map(String::as_str),
        Some("net"),
        "{labels:?}"
    );
    assert_eq!(
        labels.get(BLOCK_NODE_LABEL).map(String::as_str),
        Some("node1")
    );
    let notes = meta.annotations.unwrap_or_default();
    assert_eq!(
        notes.get("backup.example/skip").map(String::as_str),
        Some("true"),
        "{notes:?}"
    );

    // CHECK: fine with the ADD's result, an error for a container never added.
    let conf1 = s.agent("node1").conf();
    let mut with_prev = conf1.clone();
    with_prev["prevResult"] = r.clone();
    let env = |cmd: &str, cid: &str, ns: &Netns, name: &str| {
        CniEnv::pod(cmd, cid, &ns.path(), ns_name, name)
    };
    let ok = cni(&env("CHECK", "c0ffee02", &cust, customer), &with_prev);
    assert_eq!((ok.exit, ok.stdout.as_str()), (0, ""), "{ok:?}");
    let bad = cni(&env("CHECK", "deadbeef", &cust, customer), &with_prev);
    assert_eq!(bad.exit, 1, "{bad:?}");
    assert_eq!(bad.code(), Some(105), "{bad:?}");

    // DEL: interface, route and allocation go; DEL again (and without a netns) is still success.
    let del = cni(&env("DEL", "c0ffee02", &cust, customer), &conf1);
    assert_eq!((del.exit, del.stdout.as_str()), (0, ""), "{del:?}");
    assert!(
        node1
            .exec(["ip", "link", "show", veth])
            .map(|o| !o.status.success())
            .unwrap()
    );
    assert!(!routes(&node1).contains(veth), "{}", routes(&node1));
    assert!(!allocations("node1").contains_key(&"198.19.22.129".parse().unwrap()));
    let again = cni(&env("DEL", "c0ffee02", &cust, customer), &conf1);
    assert_eq!(again.exit, 0, "{again:?}");
    let mut no_netns = env("DEL", "c0ffee02", &cust, customer);
    no_netns.netns = None;
    assert_eq!(cni(&no_netns, &conf1).exit, 0);

    // GC: allocations of containers the runtime no longer lists are released; listed ones stay.
    pod(ns_name, "gone-0", "node1", &[]);
    let gone = s.lab.add_netns("pod-gone").unwrap();
    let g = add(s.agent("node1"), "c0ffee03", &gone, ns_name, "gone-0");
    let gone_ip: Ipv4Addr = pod_address(&g).trim_end_matches("/32").parse().unwrap();
    let mut gc_conf = conf1.clone();
    gc_conf["cni.dev/valid-attachments"] = json!([{"containerID": "c0ffee01", "ifname": "eth0"}]);
    let gc = cni(&CniEnv::gc(), &gc_conf);
    assert_eq!((gc.exit, gc.stdout.as_str()), (0, ""), "{gc:?}");
    let alloc = allocations("node1");
    assert!(
        !alloc.contains_key(&gone_ip),
        "GC kept {gone_ip}: {alloc:?}"
    );
    assert!(
        alloc.contains_key(&"198.19.22.128".parse().unwrap()),
        "{alloc:?}"
    );
    // ... and the released attachment's host interface and route go; the listed pod's stay.
    let gone_veth = g["interfaces"][0]["name"].as_str().unwrap().to_string();
    s.op.wait("GC to remove the host interface", || {
        let r = routes(&node1);
        let link = node1.exec(["ip", "link", "show", &gone_veth]).unwrap();
        (!link.status.success() && !r.contains(&format!("{gone_ip} dev")))
            .then_some(())
            .ok_or(r)
    });
    assert!(
        routes(&node1).contains("198.19.22.128 dev cali"),
        "{}",
        routes(&node1)
    );

    // STATUS and ADD while the agent is down: not available (50) and try again later (11).
    let agent = s.agents.remove("node1").unwrap();
    let log = agent.daemon.stop();
    assert!(log.contains("stopped"), "{log}");
    let st = cni(&CniEnv::status(), &conf1);
    assert_eq!((st.exit, st.code()), (1, Some(50)), "{st:?}");
    let add_down = cni(&env("ADD", "c0ffee04", &cust, customer), &conf1);
    assert_eq!(
        (add_down.exit, add_down.code()),
        (1, Some(11)),
        "{add_down:?}"
    );
    assert!(
        add_down.json()["msg"]
            .as_str()
            .unwrap()
            .contains("agent not reachable")
    );
    drop(s);
}
