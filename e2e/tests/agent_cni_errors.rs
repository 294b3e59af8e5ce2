//! Bad input to `ocelot-cni`, invoked as a runtime does: each case gets the spec's error JSON
//! (`code`, `msg`, `details` naming what was wrong), exit status 1, and leaves nothing behind —
//! no interface on the node or in the sandbox, no route, no allocation in the node's blocks.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ocelot_e2e::agent::{AgentLab, CniEnv, add, allocations, cni, cni_raw, net_conf};
use ocelot_e2e::lab::{Netns, Node};
use ocelot_e2e::operator::{apply, namespace, pod};
use serde_json::Value;

const NODE: [(&str, &str, &str); 1] = [("node1", "198.19.0.2", "198.19.22.128/26")];
const NS: &str = "errors";

/// A pool of one address no node selects: pods ask for it by annotation, and the second one finds
/// it full.
const TINY_POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: tiny-pool
spec:
  cidr: 198.19.24.0/32
  blockSize: 32
  nodeSelector: '!all()'
";

/// What a failed call must leave as it found: node links and routes, sandbox links, allocations.
#[derive(Debug, PartialEq)]
struct Snapshot {
    node_links: Vec<String>,
    node_routes: String,
    sandbox_links: Vec<String>,
    allocations: BTreeMap<Ipv4Addr, String>,
}

fn link_names(ns: &Netns) -> Vec<String> {
    let out = ns.exec_ok(["ip", "-o", "link", "show"]).unwrap();
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn snapshot(node: &Node, sandbox: &Netns) -> Snapshot {
    Snapshot {
        node_links: link_names(node),
        node_routes: node.exec_ok(["ip", "route"]).unwrap(),
        sandbox_links: link_names(sandbox),
        allocations: allocations(node.name()),
    }
}

struct Case {
    what: &'static str,
    env: CniEnv,
    stdin: Vec<u8>,
    code: u64,
    msg: &'static str,
    /// A piece of `details` that names the variable, field or object at fault.
    details: &'static str,
}

#[test]
fn bad_input_gets_the_specs_error_and_leaves_nothing_behind() {
    let mut s = AgentLab::start(&NODE, &["--block-wait-seconds", "3"]);
    namespace(NS);
    apply(TINY_POOL);
    pod(NS, "good", "node1", &[]);
    pod(NS, "other", "node1", &[]);
    pod(
        NS,
        "nopool",
        "node1",
        &[("cni.projectcalico.org/ipv4pools", "[\"no-such-pool\"]")],
    );
    pod(
        NS,
        "farip",
        "node1",
        &[("cni.projectcalico.org/ipAddrs", "[\"198.19.21.5\"]")],
    );
    pod(
        NS,
        "tiny-a",
        "node1",
        &[("cni.projectcalico.org/ipv4pools", "[\"tiny-pool\"]")],
    );
    pod(
        NS,
        "tiny-b",
        "node1",
        &[("cni.projectcalico.org/ipv4pools", "[\"tiny-pool\"]")],
    );
    let node = s.lab.node("node1").clone();
    let good_ns = s.lab.add_netns("pod-good").unwrap();
    let tiny_ns = s.lab.add_netns("pod-tiny").unwrap();
    let sandbox = s.lab.add_netns("pod-bad").unwrap();
    let agent = s.agent("node1");
    let conf = agent.conf();
    let conf_bytes = conf.to_string().into_bytes();
    // One container holds an address; the reuse case below names its ID for another pod.
    add(agent, "held0001", &good_ns, NS, "good");
    // The tiny pool's one address is taken (claimed on demand by the operator), so it is full.
    add(agent, "tiny0001", &tiny_ns, NS, "tiny-a");

    let pod_env = |cid: &str, name: &str| CniEnv::pod("ADD", cid, &sandbox.path(), NS, name);
    let with = |f: &dyn Fn(&mut CniEnv)| {
        let mut e = pod_env("bad00001", "other");
        f(&mut e);
        e
    };
    let conf_with = |f: &dyn Fn(&mut Value)| {
        let mut c = conf.clone();
        f(&mut c);
        c.to_string().into_bytes()
    };
    let cases = vec![
        Case {
            what: "CNI_COMMAND unset",
            env: with(&|e| e.command = None),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "missing CNI_COMMAND",
            details: "CNI_COMMAND",
        },
        Case {
            what: "unknown CNI_COMMAND",
            env: with(&|e| e.command = Some("ATTACH".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "unknown CNI_COMMAND",
            details: "ATTACH",
        },
        Case {
            what: "CNI_CONTAINERID unset",
            env: with(&|e| e.container_id = None),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "missing CNI_CONTAINERID",
            details: "CNI_CONTAINERID",
        },
        Case {
            what: "CNI_CONTAINERID with a slash",
            env: with(&|e| e.container_id = Some("../etc".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "invalid CNI_CONTAINERID",
            details: "../etc",
        },
        Case {
            what: "CNI_NETNS unset on ADD",
            env: with(&|e| e.netns = None),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "missing CNI_NETNS",
            details: "CNI_NETNS",
        },
        Case {
            what: "CNI_NETNS not a namespace",
            env: with(&|e| e.netns = Some("/run/netns/ocelot-no-such-netns".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "CNI_NETNS is not a network namespace",
            details: "ocelot-no-such-netns",
        },
        Case {
            what: "CNI_IFNAME unset",
            env: with(&|e| e.ifname = None),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "missing CNI_IFNAME",
            details: "CNI_IFNAME",
        },
        Case {
            what: "CNI_IFNAME longer than 15",
            env: with(&|e| e.ifname = Some("eth0-much-too-long".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "invalid CNI_IFNAME",
            details: "eth0-much-too-long",
        },
        Case {
            what: "CNI_ARGS without the pod",
            env: with(&|e| e.args = Some("IgnoreUnknown=1".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "missing pod identity in CNI_ARGS",
            details: "K8S_POD_NAME",
        },
        Case {
            what: "CNI_ARGS pair without '='",
            env: with(&|e| e.args = Some("K8S_POD_NAME".into())),
            stdin: conf_bytes.clone(),
            code: 4,
            msg: "invalid CNI_ARGS",
            details: "K8S_POD_NAME",
        },
        Case {
            what: "stdin not JSON",
            env: pod_env("bad00001", "other"),
            stdin: b"{not json".to_vec(),
            code: 6,
            msg: "cannot decode network configuration",
            details: "key must be a string",
        },
        Case {
            what: "config without type",
            env: pod_env("bad00001", "other"),
            stdin: conf_with(&|c| {
                c.as_object_mut().unwrap().remove("type");
            }),
            code: 7,
            msg: "invalid network configuration",
            details: "type",
        },
        Case {
            what: "unsupported cniVersion",
            env: pod_env("bad00001", "other"),
            stdin: conf_with(&|c| c["cniVersion"] = "0.3.1".into()),
            code: 1,
            msg: "incompatible CNI version",
            details: "0.3.1",
        },
        Case {
            what: "STATUS on a 1.0.0 config",
            env: CniEnv::status(),
            stdin: conf_with(&|c| c["cniVersion"] = "1.0.0".into()),
            code: 1,
            msg: "verb needs cniVersion 1.1.0",
            details: "1.0.0",
        },
        Case {
            what: "agent socket absent",
            env: pod_env("bad00001", "other"),
            stdin: net_conf(std::path::Path::new("/run/ocelot-no-agent/cni.sock"))
                .to_string()
                .into_bytes(),
            code: 11,
            msg: "agent not reachable",
            details: "/run/ocelot-no-agent/cni.sock",
        },
        Case {
            what: "pod not in the API",
            env: pod_env("bad00001", "ghost"),
            stdin: conf_bytes.clone(),
            code: 102,
            msg: "pod not found",
            details: "errors/ghost",
        },
        Case {
            what: "container ID reused for another pod",
            env: pod_env("held0001", "other"),
            stdin: conf_bytes.clone(),
            code: 100,
            msg: "container ID already in use",
            details: "errors/good",
        },
        Case {
            what: "annotation names no pool",
            env: pod_env("bad00001", "nopool"),
            stdin: conf_bytes.clone(),
            code: 104,
            msg: "no pool for the pod",
            details: "no-such-pool",
        },
        Case {
            what: "ipAddrs outside the node's blocks",
            env: pod_env("bad00001", "farip"),
            stdin: conf_bytes.clone(),
            code: 104,
            msg: "requested address not in this node's blocks",
            details: "198.19.21.5",
        },
        Case {
            what: "pool exhausted",
            env: pod_env("bad00001", "tiny-b"),
            stdin: conf_bytes.clone(),
            code: 101,
            msg: "no address for the pod",
            details: "tiny-pool",
        },
    ];
    assert!(cases.len() >= 15);

    let mut failures = Vec::new();
    for case in &cases {
        let before = snapshot(&node, &sandbox);
        let out = cni_raw(&case.env, &case.stdin);
        let after = snapshot(&node, &sandbox);
        let err = if out.stdout.trim().is_empty() {
            Value::Null
        } else {
            out.json()
        };
        let problems: Vec<String> = [
            (out.exit != 1).then(|| format!("exit {} (want 1)", out.exit)),
            (err["code"].as_u64() != Some(case.code))
                .then(|| format!("code {} (want {})", err["code"], case.code)),
            (err["msg"].as_str() != Some(case.msg))
                .then(|| format!("msg {} (want {:?})", err["msg"], case.msg)),
            (!err["details"].as_str().unwrap_or("").contains(case.details))
                .then(|| format!("details {} lack {:?}", err["details"], case.details)),
            err["cniVersion"]
                .as_str()
                .is_none()
                .then(|| "no cniVersion".to_string()),
            (before != after).then(|| format!("left behind: {before:?} → {after:?}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!("{}: {} ({out:?})", case.what, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}\nagent log:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        s.agent("node1").daemon.log()
    );
    // After all that, a good ADD still works: no half-state blocked anything.
    let ok = cni(&pod_env("fine0001", "other"), &conf);
    assert_eq!(ok.exit, 0, "{ok:?}");
}
