//! Host-wide state that live labs share, set up by the first and put back by the last (or by the stale
//! sweep once every lab that used it is gone):
//! - a `blackhole` route for the whole lab range in the host's netns, so that traffic to a lab address
//!   from the host (a stray kubectl, a namespace already deleted) dies here instead of following the
//!   default route off the machine;
//! - the host (not per-netns) sysctls kubelet sets at start (vm.overcommit_memory=1, kernel.panic=10,
//!   kernel.panic_on_oops=1, which its container manager requires): saved before the first kube lab starts.
//!
//! Each lab holds a marker file named after its run while it is alive; a short flock serializes the
//! first-user and last-user decisions between processes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::run::RunId;
use super::tools::ip_command;
use crate::proc::run_bounded;

/// The lab range: fabric, pods, services of every lab.
pub const LAB_RANGE: &str = "198.19.0.0/16";
/// Routing protocol number that marks the blackhole route as the lab's (so only that one is removed).
pub const BLACKHOLE_PROTO: &str = "199";
/// The sysctls kubelet changes on the host.
pub const KUBELET_HOST_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];
const DIR: &str = "/run/ocelot-e2e";
/// Original values, one `key value` per line; present while kube labs may have changed them.
const SAVED: &str = "/run/ocelot-e2e/host-sysctls.saved";
/// One marker per live lab.
const USERS: &str = "/run/ocelot-e2e/host-users";
const LOCK: &str = "/run/ocelot-e2e/host.lock";

fn marker(run: &RunId) -> PathBuf {
    Path::new(USERS).join(run.netns_name("lab"))
}

/// Held while deciding; released on drop. Bounded wait: every holder only runs a few quick commands.
fn lock() -> Result<File> {
    std::fs::create_dir_all(DIR).with_context(|| format!("mkdir {DIR}"))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .with_context(|| format!("opening {LOCK}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(anyhow::anyhow!("locking {LOCK}: {e}")),
        }
    }
}

fn ip_route(args: &[&str]) -> Result<std::process::Output> {
    let mut cmd = ip_command();
    cmd.arg("route").args(args);
    Ok(run_bounded(&mut cmd, None, Duration::from_secs(10))?)
}

/// Registers `run` as a live lab and makes sure the blackhole route is there.
pub fn register(run: &RunId) -> Result<()> {
    let _lock = lock()?;
    std::fs::create_dir_all(USERS)?;
    std::fs::write(marker(run), b"")?;
    let out = ip_route(&["replace", "blackhole", LAB_RANGE, "proto", BLACKHOLE_PROTO])?;
    anyhow::ensure!(
        out.status.success(),
        "adding the host's blackhole route for {LAB_RANGE}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Saves the kubelet-managed sysctls unless a saved copy exists (then an earlier lab's originals win).
/// Call after [`register`] and before starting any kubelet.
pub fn save_kubelet_sysctls() -> Result<()> {
    let _lock = lock()?;
    if Path::new(SAVED).exists() {
        return Ok(());
    }
    let mut text = String::new();
    for key in KUBELET_HOST_SYSCTLS {
        let v = std::fs::read_to_string(format!("/proc/sys/{key}"))
            .with_context(|| format!("reading /proc/sys/{key}"))?;
        text.push_str(&format!("{key} {}\n", v.trim()));
    }
    std::fs::write(SAVED, text).with_context(|| format!("writing {SAVED}"))
}

/// Drops `run`'s marker (if any); when no live lab is left, restores the saved sysctls and removes the
/// blackhole route.
pub fn release(run: Option<&RunId>) {
    let Ok(_lock) = lock() else { return };
    if let Some(run) = run {
        let _ = std::fs::remove_file(marker(run));
    }
    let mut in_use = false;
    for e in std::fs::read_dir(USERS).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match RunId::parse_netns_name(&name) {
            Some((id, _)) if id.is_alive() => in_use = true,
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if in_use {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(SAVED) {
        for line in text.lines() {
            if let Some((key, value)) = line.split_once(' ')
                && KUBELET_HOST_SYSCTLS.contains(&key)
            {
                let _ = std::fs::write(format!("/proc/sys/{key}"), value);
            }
        }
        let _ = std::fs::remove_file(SAVED);
    }
    let _ = ip_route(&["del", "blackhole", LAB_RANGE, "proto", BLACKHOLE_PROTO]);
}
