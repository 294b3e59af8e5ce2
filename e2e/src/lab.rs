//! The network lab: nodes as network namespaces on a shared L2 fabric, as in the Calico lab
//! (control 198.19.0.1, node1 198.19.0.2, node2 198.19.0.3, host1 198.19.15.254 on 198.19.0.0/20).
//!
//! ```text
//!  netns <prefix>-…-fabric: bridge br0 (198.19.15.253/20, the nodes' default gateway)
//!     ├─ port p-control ── veth ── ens4 198.19.0.1/20   in netns <prefix>-…-control
//!     ├─ port p-node1   ── veth ── ens4 198.19.0.2/20   in netns <prefix>-…-node1
//!     └─ …
//! ```
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ocelot_e2e::lab::Lab;
//! let lab = Lab::seed()?; // control, node1, node2, host1
//! let node1 = lab.node("node1");
//! node1.ping("198.19.0.3", 5)?;
//! let routes = node1.exec_ok(["ip", "route"])?;
//! let bird = node1.spawn(["bird", "-f", "-c", "/path/bird.conf", "-s", "/path/bird.ctl"])?;
//! // `bird` is stopped when dropped; the lab removes its netns and processes when dropped.
//! # drop((routes, bird)); Ok(()) }
//! ```
//!
//! Everything lives inside namespaces the lab creates; the root namespace only gets a `blackhole` route
//! for 198.19.0.0/16 while any lab lives (see [`host`]), so host traffic to lab addresses never leaves the
//! machine.
//! A [`Lab`] removes its namespaces and their processes on drop (also while unwinding from a
//! panic), and [`Lab::new`] first removes what crashed runs left (see [`cleanup_stale`]).

pub mod cgroup;
pub mod host;
pub mod mntns;
mod netns;
mod run;
mod tools;

use std::net::Ipv4Addr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::proc::run_bounded;
pub use netns::{EXEC_TIMEOUT, LabProcess, Netns, STOP_GRACE, to_strings};
pub use run::{
    RunId, StaleCleanupGuard, cleanup_stale, cleanup_stale_if_idle, hold_stale_cleanup,
    kill_netns_processes, netns_pids, process_start, runs_dir,
};
pub use tools::{LAB_TOOLS, NETNS_DIR, find_tool, require_root, require_tools, retry};

/// The fabric subnet every node's `ens4` is on.
pub const FABRIC_NET: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
pub const FABRIC_PREFIX_LEN: u8 = 20;
/// The fabric bridge's own address and every node's default gateway. Not used by the seed
/// (which has .0.1–.0.3 and .15.254); a default route is what lets proxy ARP answer for
/// 169.254.1.1 on pod veths (feasibility.md §2).
pub const FABRIC_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 19, 15, 253);
/// Name of every node's fabric interface, as on the seed's machines.
pub const NODE_IFACE: &str = "ens4";
/// MTU of every node's `ens4` (and its fabric port), as on the seed's machines.
pub const NODE_MTU: u32 = 1460;
/// The seed topology: name and fabric address.
pub const SEED_NODES: &[(&str, &str)] = &[
    ("control", "198.19.0.1"),
    ("node1", "198.19.0.2"),
    ("node2", "198.19.0.3"),
    ("host1", "198.19.15.254"),
];

const BRIDGE: &str = "br0";

/// One L2 segment of the lab: a bridge in the fabric netns with the segment's gateway address.
#[derive(Clone, Debug)]
struct Subnet {
    bridge: String,
    net: ipnet::Ipv4Net,
    gateway: Ipv4Addr,
}

/// One machine of the lab: a netns with `ens4` on the fabric. Derefs to its [`Netns`].
#[derive(Clone, Debug)]
pub struct Node {
    name: String,
    ip: Ipv4Addr,
    fabric_port: String,
    netns: Netns,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Address of `ens4` on the fabric.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The node's port on the fabric bridge (in the fabric netns), e.g. for tcpdump.
    pub fn fabric_port(&self) -> &str {
        &self.fabric_port
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The full netns name (`node.name()` is the short node name).
    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }
}

impl Deref for Node {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.netns
    }
}

/// One test's lab. See the module docs.
#[derive(Debug)]
pub struct Lab {
    run: RunId,
    dir: PathBuf,
    fabric: Netns,
    nodes: Vec<Node>,
    /// The fabric's segments; the first is [`FABRIC_NET`] on `br0`.
    subnets: Vec<Subnet>,
    /// Every netns of this lab, in creation order (registered before creation, so a failure
    /// half-way still gets cleaned up).
    owned: Vec<String>,
    /// Keep the run's folder on drop (as after a panic).
    keep_logs: bool,
}

impl Lab {
    /// An empty lab: the fabric netns with its bridge, no nodes. Requires root and `ip`.
    pub fn new() -> Result<Lab> {
        require_root()?;
        require_tools(&["ip", "sh"])?;
        if let Err(e) = cleanup_stale_if_idle() {
            eprintln!("ocelot-e2e: {e:#}");
        }
        let run = RunId::new()?;
        host::register(&run)?;
        let dir = run::runs_dir().join(format!("{}-{}-{}", run.prefix, run.pid, run.start));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let fabric = Netns::new(run.netns_name("fabric"), "fabric", &dir);
        let mut lab = Lab {
            run,
            dir,
            fabric: fabric.clone(),
            nodes: Vec::new(),
            subnets: vec![Subnet {
                bridge: BRIDGE.into(),
                net: ipnet::Ipv4Net::new(FABRIC_NET, FABRIC_PREFIX_LEN).expect("fabric prefix"),
                gateway: FABRIC_GATEWAY,
            }],
            owned: Vec::new(),
            keep_logs: false,
        };
        lab.create_netns(&fabric)?;
        let gw = format!("{FABRIC_GATEWAY}/{FABRIC_PREFIX_LEN}");
        for args in [
            vec!["ip", "link", "add", BRIDGE, "type", "bridge"],
            vec!["ip", "addr", "add", &gw, "dev", BRIDGE],
            vec!["ip", "link", "set", BRIDGE, "up"],
        ] {
            fabric.exec_ok(args)?;
        }
        Ok(lab)
    }

    /// The seed topology: control, node1, node2 and host1.
    pub fn seed() -> Result<Lab> {
        let mut lab = Lab::new()?;
        for (name, ip) in SEED_NODES {
            lab.add_node(name, ip)?;
        }
        Ok(lab)
    }

    /// Adds another segment `net` (inside 198.19.0.0/16, apart from the others) behind a routed
    /// hop: a bridge in the fabric netns, which then forwards between its segments and knows only
    /// their connected routes (never a pod address). Its gateway is the segment's last address
    /// but two, as [`FABRIC_GATEWAY`] is on the first. Returns the gateway.
    pub fn add_subnet(&mut self, net: &str) -> Result<Ipv4Addr> {
        let net: ipnet::Ipv4Net = net.parse().with_context(|| format!("subnet {net:?}"))?;
        let lab: ipnet::Ipv4Net = "198.19.0.0/16".parse().expect("lab range");
        ensure!(
            net.trunc() == net && lab.contains(&net) && net.prefix_len() < 31,
            "subnet {net} must be a network inside {lab}"
        );
        ensure!(
            self.subnets
                .iter()
                .all(|s| !s.net.contains(&net) && !net.contains(&s.net)),
            "subnet {net} overlaps another"
        );
        let gateway = Ipv4Addr::from(u32::from(net.broadcast()) - 2);
        let bridge = format!("br{}", self.subnets.len());
        let gw = format!("{gateway}/{}", net.prefix_len());
        for args in [
            vec!["ip", "link", "add", &bridge, "type", "bridge"],
            vec!["ip", "addr", "add", &gw, "dev", &bridge],
            vec!["ip", "link", "set", &bridge, "up"],
        ] {
            self.fabric.exec_ok(args)?;
        }
        self.fabric.sysctl("net.ipv4.ip_forward", "1")?;
        self.subnets.push(Subnet {
            bridge,
            net,
            gateway,
        });
        Ok(gateway)
    }

    /// Adds a node: a netns with lo up, `ens4` (MTU [`NODE_MTU`]) at `ip` with its segment's prefix
    /// (/20 on [`FABRIC_NET`], see [`Lab::add_subnet`]), a default route via the segment's gateway
    /// ([`FABRIC_GATEWAY`]), and IPv4 forwarding on.
    pub fn add_node(&mut self, name: &str, ip: &str) -> Result<Node> {
        ensure!(
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "node name {name:?} must be 1-32 characters of a-z, 0-9 and -"
        );
        ensure!(
            name != "fabric" && self.try_node(name).is_none(),
            "node name {name:?} is taken"
        );
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("node {name}: bad address {ip:?}"))?;
        let subnet = self
            .subnets
            .iter()
            .find(|s| s.net.contains(&ip) && ip != s.gateway)
            .cloned()
            .with_context(|| format!("node {name}: {ip} is not a free address of a lab subnet"))?;
        ensure!(
            self.nodes.iter().all(|n| n.ip != ip),
            "node {name}: {ip} is already used"
        );

        let ns = Netns::new(self.run.netns_name(name), name, &self.dir);
        self.create_netns(&ns)?;
        // Ports are named after the node when that fits in 15 characters, else by index.
        let port = match format!("p-{name}") {
            p if p.len() <= 15 => p,
            _ => format!("p{}", self.nodes.len()),
        };
        // Created directly in the two namespaces, so the root namespace never sees the veth.
        run_ok(ip_cmd().args([
            "link",
            "add",
            NODE_IFACE,
            "netns",
            ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            self.fabric.name(),
        ]))?;
        let mtu = NODE_MTU.to_string();
        self.fabric.exec_ok([
            "ip",
            "link",
            "set",
            &port,
            "mtu",
            &mtu,
            "master",
            &subnet.bridge,
            "up",
        ])?;
        let addr = format!("{ip}/{}", subnet.net.prefix_len());
        let gw = subnet.gateway.to_string();
        for args in [
            vec!["ip", "link", "set", NODE_IFACE, "mtu", &mtu],
            vec!["ip", "addr", "add", &addr, "dev", NODE_IFACE],
            vec!["ip", "link", "set", NODE_IFACE, "up"],
            vec![
                "ip", "route", "add", "default", "via", &gw, "dev", NODE_IFACE,
            ],
        ] {
            ns.exec_ok(args)?;
        }
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        let node = Node {
            name: name.to_string(),
            ip,
            fabric_port: port,
            netns: ns,
        };
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// An extra netns owned (and removed) by the lab, with lo up and nothing else: for pods
    /// or other endpoints that tests wire up themselves.
    pub fn add_netns(&mut self, name: &str) -> Result<Netns> {
        ensure!(
            !name.is_empty() && !name.contains('/') && name != "fabric",
            "bad netns name {name:?}"
        );
        ensure!(self.try_node(name).is_none(), "{name:?} is a node");
        let ns = Netns::new(self.run.netns_name(name), name, &self.dir);
        self.create_netns(&ns)?;
        Ok(ns)
    }

    fn create_netns(&mut self, ns: &Netns) -> Result<()> {
        ensure!(
            !self.owned.iter().any(|o| o == ns.name()),
            "netns {} exists in this lab",
            ns.label()
        );
        self.owned.push(ns.name().to_string());
        run_ok(ip_cmd().args(["netns", "add", ns.name()]))?;
        ns.exec_ok(["ip", "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The node called `name`; panics with the list of nodes if there is none.
    pub fn node(&self, name: &str) -> &Node {
        self.try_node(name).unwrap_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            panic!("no node {name:?} in the lab; nodes: {names:?}")
        })
    }

    pub fn try_node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The netns holding the bridge.
    pub fn fabric(&self) -> &Netns {
        &self.fabric
    }

    /// This run's short prefix (`oc` + 5 characters); every netns name starts with it.
    pub fn prefix(&self) -> &str {
        &self.run.prefix
    }

    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The run's folder: process logs live here. Removed on a clean drop, kept after a panic.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the run's folder (logs) when the lab is dropped, as after a panic: for failures that are
    /// reported as errors.
    pub fn keep_logs(&mut self) {
        self.keep_logs = true;
    }

    /// Full names of every netns this lab created.
    pub fn netns_names(&self) -> Vec<String> {
        self.owned.clone()
    }

    fn cleanup(&mut self) {
        // Nodes (and pods) before the fabric, so veth peers go away with their node.
        for ns in self.owned.iter().rev() {
            if let Err(e) = run::delete_netns(ns, Duration::from_secs(3)) {
                eprintln!("ocelot-e2e: cleanup: {e:#}");
            }
        }
        self.owned.clear();
        // The lab creates no links in the root namespace; this catches any a test added with
        // the run's prefix.
        let links = run_bounded(ip_cmd().args(["-o", "link", "show"]), None, EXEC_TIMEOUT);
        if let Ok(out) = links {
            for name in root_links_with_prefix(&String::from_utf8_lossy(&out.stdout), self.prefix())
            {
                let _ = run_bounded(
                    ip_cmd().args(["link", "delete", &name]),
                    None,
                    Duration::from_secs(10),
                );
            }
        }
        host::release(Some(&self.run));
        if self.keep_logs
            || std::thread::panicking()
            || std::env::var_os("OCELOT_E2E_KEEP_LOGS").is_some()
        {
            eprintln!("ocelot-e2e: lab logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Names in `ip -o link show` output that start with `prefix` (the part before any `@peer`).
pub fn root_links_with_prefix(ip_o_link: &str, prefix: &str) -> Vec<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn ip_cmd() -> std::process::Command {
    tools::ip_command()
}

fn run_ok(cmd: &mut std::process::Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, None, EXEC_TIMEOUT).with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_link_filter() {
        let out = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                   7: ocabcden1@if3: <BROADCAST> mtu 1500\n\
                   8: eth0: <BROADCAST> mtu 1500\n";
        assert_eq!(root_links_with_prefix(out, "ocabcde"), vec!["ocabcden1"]);
    }

    #[test]
    fn gateway_is_not_a_seed_address() {
        assert!(
            SEED_NODES
                .iter()
                .all(|(_, ip)| *ip != FABRIC_GATEWAY.to_string())
        );
    }
}
