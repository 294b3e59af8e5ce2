//! The node's network namespace, as the agent reaches it.
//!
//! In a cluster the agent runs in the node's own namespace (a hostNetwork DaemonSet) and
//! [`NodeNetns::current`] is all it needs. In the lab the API server listens on the host's
//! loopback, which a node namespace cannot reach, so the agent runs on the host with
//! `--netns /run/netns/<node>`: its API connections stay on the host, and everything that touches
//! the dataplane — netlink sockets and the helpers it starts (BIRD, boringtun, nft) — enters the
//! node's namespace. The caller's threads never change namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::routes::RouteNetlink;

/// Where the node's dataplane lives: the agent's own namespace, or the one at a path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeNetns {
    path: Option<PathBuf>,
}

impl NodeNetns {
    /// The agent's own network namespace.
    pub fn current() -> NodeNetns {
        NodeNetns { path: None }
    }

    /// The namespace at `path` (e.g. `/run/netns/node1`); checked when first entered.
    pub fn at(path: impl Into<PathBuf>) -> NodeNetns {
        NodeNetns {
            path: Some(path.into()),
        }
    }

    /// The namespace's path, when it is not the agent's own.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A route socket in this namespace.
    pub fn route_netlink(&self) -> io::Result<RouteNetlink> {
        match &self.path {
            None => RouteNetlink::connect(),
            Some(p) => RouteNetlink::connect_in_netns(p),
        }
    }

    /// `program` set up to run inside this namespace. The namespace file is opened here, so a
    /// missing namespace fails the spawn with its path rather than running on the host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> io::Result<Command> {
        let mut cmd = Command::new(program);
        if let Some(path) = &self.path {
            let ns = File::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            // SAFETY: between fork and exec only async-signal-safe calls run: setns(2) on an fd
            // the child inherited; `ns` lives in the closure, so the fd stays open until exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_fails_with_its_path() {
        let ns = NodeNetns::at("/nonexistent/ocelot-netns");
        let err = ns.command("true").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("/nonexistent/ocelot-netns"),
            "{err}"
        );
    }

    #[test]
    fn the_current_namespace_runs_commands_unchanged() {
        let out = NodeNetns::current()
            .command("sh")
            .unwrap()
            .args(["-c", "echo ok"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
}
