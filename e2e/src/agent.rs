//! `ocelot-agent` and `ocelot-cni` in tests. The agent runs on the host with `--netns` naming its lab
//! node's namespace (the test API server listens on the host's loopback, which a node netns cannot
//! reach); the plugin is invoked exactly as a container runtime does: `CNI_*` variables and the
//! network configuration on stdin, the result or error JSON on stdout and the exit status.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{self, kubectl};
use crate::daemon::{Daemon, sibling_binary};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::lab::{Lab, Netns, Node};
use crate::operator::{Operator, SEED_ARGS, namespace, pod, register_node};
use crate::proc::run_output;

/// The network name the runtime passes; Calico's.
pub const NETWORK: &str = "k8s-pod-network";
/// Pod MTU the tests' network configuration asks for (the seed's pods have 1410).
pub const POD_MTU: u32 = 1410;
/// Longest a plugin call may take: the agent answers within 28 s, the plugin gives up at 30 s.
pub const CNI_TIMEOUT: Duration = Duration::from_secs(40);

/// boringtun-cli as scripts/setup.sh installs it (cache), else from PATH.
pub fn boringtun_binary() -> PathBuf {
    let cached = cluster::cache_dir().join("boringtun/bin/boringtun-cli");
    if cached.exists() {
        cached
    } else {
        PathBuf::from("boringtun-cli")
    }
}

/// A running agent for one lab node, with its socket and folders under `dir`.
pub struct NodeAgent {
    pub daemon: Daemon,
    pub node: String,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl NodeAgent {
    /// Starts the agent of lab node `node` with its files under `dir/<node>` (kept across restarts).
    pub fn start(node: &Node, dir: &Path, extra: &[&str]) -> NodeAgent {
        let dir = dir.join(node.name());
        std::fs::create_dir_all(&dir).expect("agent folder");
        let socket = dir.join("run/cni.sock");
        let s = |p: PathBuf| p.display().to_string();
        let (kubeconfig, netns, sock, bin, conf, key, state, boringtun) = (
            s(cluster::kubeconfig_path().to_path_buf()),
            s(node.path()),
            s(socket.clone()),
            s(dir.join("cni-bin")),
            s(dir.join("cni-conf")),
            s(dir.join("wireguard.key")),
            s(dir.join("state")),
            s(boringtun_binary()),
        );
        let mut args = vec![
            "--node-name",
            node.name(),
            "--kubeconfig",
            &kubeconfig,
            "--netns",
            &netns,
            "--socket",
            &sock,
            "--cni-bin-dir",
            &bin,
            "--cni-conf-dir",
            &conf,
            "--wireguard-key-file",
            &key,
            "--state-dir",
            &state,
            "--boringtun",
            &boringtun,
        ];
        args.extend_from_slice(extra);
        let log = dir.join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        let daemon = Daemon::start(&sibling_binary("ocelot-agent"), &args, &log);
        NodeAgent {
            daemon,
            node: node.name().to_string(),
            socket,
            dir,
        }
    }

    /// Waits until CNI STATUS says the agent can serve ADDs.
    pub fn wait_ready(&mut self) {
        let conf = self.conf();
        self.daemon.wait("the agent to be ready (CNI STATUS)", || {
            let out = cni(&CniEnv::status(), &conf);
            if out.exit == 0 {
                Ok(())
            } else {
                Err(out.stdout)
            }
        });
    }

    /// `birdc show protocols` of this node's BIRD (run by the agent, control socket in its state).
    pub fn birdc_protocols(&self) -> Result<String, String> {
        let ctl = self.dir.join("state/bird.ctl");
        let out = run_output(
            Command::new("birdc")
                .arg("-s")
                .arg(&ctl)
                .args(["show", "protocols"]),
            None,
            Duration::from_secs(10),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The network configuration a runtime would pass for this node.
    pub fn conf(&self) -> Value {
        net_conf(&self.socket)
    }
}

/// The runtime's network configuration for an agent socket, spec 1.1.
pub fn net_conf(socket: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": NETWORK,
        "type": "ocelot-cni",
        "mtu": POD_MTU,
        "agentSocket": socket.display().to_string(),
    })
}

/// The `CNI_*` variables of one call; `None` leaves a variable unset.
#[derive(Clone, Debug, Default)]
pub struct CniEnv {
    pub command: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub args: Option<String>,
    pub path: Option<String>,
}

impl CniEnv {
    /// ADD/DEL/CHECK of a pod's `eth0` in `netns`.
    pub fn pod(
        command: &str,
        container_id: &str,
        netns: &Path,
        namespace: &str,
        pod: &str,
    ) -> Self {
        CniEnv {
            command: Some(command.into()),
            container_id: Some(container_id.into()),
            netns: Some(netns.display().to_string()),
            ifname: Some("eth0".into()),
            args: Some(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container_id}"
            )),
            path: Some("/opt/cni/bin".into()),
        }
    }

    pub fn status() -> Self {
        CniEnv {
            command: Some("STATUS".into()),
            path: Some("/opt/cni/bin".into()),
            ..CniEnv::default()
        }
    }

    pub fn gc() -> Self {
        CniEnv {
            command: Some("GC".into()),
            ..CniEnv::status()
        }
    }
}

/// What one plugin run printed and returned.
#[derive(Debug)]
pub struct CniOutput {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CniOutput {
    /// stdout as JSON (Null when empty, as DEL/CHECK/STATUS/GC print nothing on success).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The error's `code`, or None on success.
    pub fn code(&self) -> Option<u64> {
        self.json().get("code").and_then(Value::as_u64)
    }
}

/// Runs `ocelot-cni` with exactly these variables (nothing inherited but PATH) and `stdin`.
pub fn cni_raw(env: &CniEnv, stdin: &[u8]) -> CniOutput {
    let mut cmd = Command::new(sibling_binary("ocelot-cni"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in [
        ("CNI_COMMAND", &env.command),
        ("CNI_CONTAINERID", &env.container_id),
        ("CNI_NETNS", &env.netns),
        ("CNI_IFNAME", &env.ifname),
        ("CNI_ARGS", &env.args),
        ("CNI_PATH", &env.path),
    ] {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = run_output(&mut cmd, Some(stdin), CNI_TIMEOUT);
    CniOutput {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`cni_raw`] with a JSON configuration.
pub fn cni(env: &CniEnv, conf: &Value) -> CniOutput {
    cni_raw(env, conf.to_string().as_bytes())
}

/// A lab with the operator and one ready agent per node, all driven through the API.
pub struct AgentLab {
    pub lab: Lab,
    pub op: Daemon,
    pub agents: BTreeMap<String, NodeAgent>,
    pub dir: tempfile::TempDir,
}

impl AgentLab {
    /// Kubernetes Nodes, the operator, lab nodes and one ready agent per node.
    pub fn start(nodes: &[(&str, &str, &str)], agent_args: &[&str]) -> AgentLab {
        AgentLab::start_in(Lab::new().expect("lab"), nodes, agent_args)
    }

    /// [`AgentLab::start`] on a lab the test prepared (e.g. with more subnets).
    pub fn start_in(mut lab: Lab, nodes: &[(&str, &str, &str)], agent_args: &[&str]) -> AgentLab {
        let dir = tempfile::tempdir().unwrap();
        for (name, ip, _) in nodes {
            register_node(name, ip);
        }
        let args = [&SEED_ARGS[..], &["--resync-seconds", "2"]].concat();
        let op = Operator::start_with(&dir.path().join("operator.log"), &args);
        let mut agents = BTreeMap::new();
        for (name, ip, _) in nodes {
            let node = lab.add_node(name, ip).expect("lab node");
            agents.insert(
                name.to_string(),
                NodeAgent::start(&node, dir.path(), agent_args),
            );
        }
        for a in agents.values_mut() {
            a.wait_ready();
        }
        AgentLab {
            lab,
            op,
            agents,
            dir,
        }
    }

    pub fn agent(&mut self, node: &str) -> &mut NodeAgent {
        self.agents.get_mut(node).expect("agent")
    }
}

/// The node's pod allocations from its IPAMBlocks in the API: address → handle.
pub fn allocations(node: &str) -> BTreeMap<Ipv4Addr, String> {
    let out = kubectl([
        "get",
        "ipamblocks.projectcalico.org",
        "-l",
        &format!("ocelot.dev/node={node}"),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for b in v["items"].as_array().unwrap() {
        let s = &b["spec"];
        let base: Ipv4Addr = s["cidr"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        for (ord, a) in s["allocations"].as_array().unwrap().iter().enumerate() {
            if let Some(i) = a.as_u64() {
                let h = s["attributes"][i as usize]["handle_id"]
                    .as_str()
                    .unwrap_or_default();
                if h.starts_with("k8s-pod-network.") {
                    map.insert(Ipv4Addr::from(u32::from(base) + ord as u32), h.to_string());
                }
            }
        }
    }
    map
}

/// ADD through the plugin; panics with the plugin's and the agent's output unless it succeeds.
pub fn add(agent: &NodeAgent, cid: &str, ns: &Netns, namespace: &str, name: &str) -> Value {
    let out = cni(
        &CniEnv::pod("ADD", cid, &ns.path(), namespace, name),
        &agent.conf(),
    );
    assert_eq!(
        out.exit,
        0,
        "ADD {namespace}/{name}: {out:?}\nagent log:\n{}",
        agent.daemon.log()
    );
    out.json()
}

/// The address of an ADD result (`a.b.c.d/32`).
pub fn pod_address(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

/// Pod `a` on node1 and pod `b` on node2 (namespace `ns`, made here), added through the plugin;
/// their sandboxes and addresses (without `/32`), once node1's BGP sessions are Established.
pub fn pod_pair(s: &mut AgentLab, ns: &str) -> (Netns, Netns, String, String) {
    namespace(ns);
    pod(ns, "a", "node1", &[]);
    pod(ns, "b", "node2", &[]);
    let na = s.lab.add_netns("pod-a").unwrap();
    let nb = s.lab.add_netns("pod-b").unwrap();
    let a = pod_address(&add(s.agent("node1"), "aaaa0001", &na, ns, "a"));
    let b = pod_address(&add(s.agent("node2"), "bbbb0001", &nb, ns, "b"));
    wait_established(s, "node1");
    let bare = |x: String| x.trim_end_matches("/32").to_string();
    (na, nb, bare(a), bare(b))
}

/// The seed's nodes and blocks (the operator's claim for each, from the pool and the node).
pub const SEED_NODES: [(&str, &str, &str); 2] = [
    ("node1", "198.19.0.2", "198.19.22.128/26"),
    ("node2", "198.19.0.3", "198.19.21.64/26"),
];

/// One ping, no retry: the first packet must get through.
pub fn ping_once(from: &Netns, to: &str) {
    let out = from
        .exec(["ping", "-c", "1", "-W", "2", "-n", to])
        .expect("run ping");
    assert!(
        out.status.success(),
        "first ping {} → {to} failed: {}",
        from.label(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `ip route` on a node.
pub fn routes(node: &Node) -> String {
    node.exec_ok(["ip", "route"]).unwrap()
}

/// Addresses of pods `0..n` on `node`, made through the plugin; (netns, container ID, address).
pub fn make_pods(
    s: &mut AgentLab,
    node: &str,
    ns_name: &str,
    n: usize,
) -> Vec<(Netns, String, String)> {
    let mut made = Vec::new();
    for i in 0..n {
        let name = format!("web-{node}-{i}");
        pod(ns_name, &name, node, &[]);
        let netns = s.lab.add_netns(&format!("p-{node}-{i}")).unwrap();
        let cid = format!("{node}{i:04}");
        let r = add(s.agent(node), &cid, &netns, ns_name, &name);
        made.push((netns, cid, pod_address(&r)));
    }
    made
}

/// The `Mesh_` lines of `birdc show protocols`.
pub fn mesh_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("Mesh_"))
        .map(str::to_string)
        .collect()
}

/// Waits until every mesh session of `node`'s BIRD is Established; returns `show protocols`.
pub fn wait_established(s: &mut AgentLab, node: &str) -> String {
    let agent = &s.agents[node];
    s.op.wait(&format!("{node}'s BGP sessions Established"), || {
        let out = agent.birdc_protocols()?;
        let mesh = mesh_lines(&out);
        if !mesh.is_empty() && mesh.iter().all(|l| l.contains("Established")) {
            Ok(out)
        } else {
            Err(out)
        }
    })
}
