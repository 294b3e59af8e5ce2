//! host1 as the seed's router outside the cluster: BIRD 2 in host1's netns, AS 64512, one iBGP
//! session per cluster node (the nodes dial it once the seed's global BGPPeer exists), learning the
//! cluster's blocks into host1's kernel and exporting nothing.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::lab::{LabProcess, Node, find_tool};

/// The seed's router: host1's address and the AS of its BGPPeer.
pub const ROUTER_IP: &str = "198.19.15.254";
pub const ROUTER_AS: u32 = 64512;

/// BIRD on host1; stopped when dropped.
pub struct Router {
    process: LabProcess,
    socket: PathBuf,
}

/// host1's bird.conf: a passive iBGP session per node address.
pub fn config(nodes: &[(String, String)]) -> String {
    let mut c = format!(
        "router id {ROUTER_IP};\n\
         protocol device {{ }}\n\
         # What the cluster advertises goes into host1's kernel (`proto bird`).\n\
         protocol kernel {{ metric 0; ipv4 {{ import none; export all; }}; }}\n\
         template bgp k8s_nodes {{\n  local {ROUTER_IP} as {ROUTER_AS};\n  passive on;\n  direct;\n  \
         ipv4 {{ import all; export none; }};\n}}\n"
    );
    for (name, ip) in nodes {
        // Prefixed: a bare node name may be one of BIRD's keywords.
        let proto = format!("peer_{}", name.replace('-', "_"));
        c.push_str(&format!(
            "protocol bgp {proto} from k8s_nodes {{ neighbor {ip} as {ROUTER_AS}; }}\n"
        ));
    }
    c
}

impl Router {
    /// Starts BIRD on `host1` with sessions towards `nodes` (name, address); its files go in `dir`.
    pub fn start(host1: &Node, nodes: &[(String, String)], dir: &Path) -> Result<Router> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("bird.conf");
        let socket = dir.join("bird.ctl");
        std::fs::write(&conf, config(nodes))?;
        let bird = find_tool("bird").context("bird (bird2) not found: run scripts/setup.sh")?;
        let process = host1.spawn([
            bird.to_string_lossy().as_ref(),
            "-f",
            "-c",
            &conf.to_string_lossy(),
            "-s",
            &socket.to_string_lossy(),
        ])?;
        // A config error ends BIRD at once: say so now, not as a session that never comes up.
        std::thread::sleep(std::time::Duration::from_millis(500));
        anyhow::ensure!(
            process.is_running(),
            "BIRD on host1 exited: {}",
            process.log()
        );
        Ok(Router { process, socket })
    }

    /// `birdc ARGS` on host1 (e.g. `show route`).
    pub fn birdc(&self, host1: &Node, args: &[&str]) -> Result<String> {
        let birdc = find_tool("birdc").context("birdc not found")?;
        let mut all = vec![
            birdc.to_string_lossy().into_owned(),
            "-s".into(),
            self.socket.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        host1.exec_ok(&all)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_passive_session_per_node() {
        let c = config(&[
            ("node1".into(), "198.19.0.2".into()),
            ("node-2".into(), "198.19.0.3".into()),
        ]);
        assert!(c.contains("router id 198.19.15.254;"), "{c}");
        assert!(c.contains("passive on;"), "{c}");
        assert!(
            c.contains("protocol bgp peer_node1 from k8s_nodes { neighbor 198.19.0.2 as 64512; }"),
            "{c}"
        );
        assert!(c.contains("protocol bgp peer_node_2 from k8s_nodes"), "{c}");
        assert!(c.contains("export all;"), "{c}");
    }
}
