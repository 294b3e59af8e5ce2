//! Host (not per-netns) sysctls that kubelet sets at start (vm.overcommit_memory=1, kernel.panic=10,
//! kernel.panic_on_oops=1, as its container manager requires): saved before the first kube lab on the
//! machine starts, and restored once no kube lab is left (by the last one, or by the stale sweep).
//! Each kube lab holds a marker file named after its run while it may have changed them.

use std::path::{Path, PathBuf};

use super::run::RunId;

/// The sysctls kubelet changes on the host.
pub const KUBELET_HOST_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];
/// Original values, one `key value` per line; present while kube labs may have changed them.
const SAVED: &str = "/run/ocelot-e2e/host-sysctls.saved";
/// One marker per kube lab that may have changed them.
const USERS: &str = "/run/ocelot-e2e/host-sysctl-users";

fn marker(run: &RunId) -> PathBuf {
    Path::new(USERS).join(run.netns_name("kubelab"))
}

/// Marks `run` as a user and saves the current values unless a saved copy exists (then an earlier lab's
/// originals win). Call before starting any kubelet.
pub fn save_host(run: &RunId) -> std::io::Result<()> {
    std::fs::create_dir_all(USERS)?;
    std::fs::write(marker(run), b"")?;
    if Path::new(SAVED).exists() {
        return Ok(());
    }
    let mut text = String::new();
    for key in KUBELET_HOST_SYSCTLS {
        let v = std::fs::read_to_string(format!("/proc/sys/{key}"))?;
        text.push_str(&format!("{key} {}\n", v.trim()));
    }
    std::fs::write(SAVED, text)
}

/// Drops `run`'s marker (if any), then restores the saved values if no live run holds one.
pub fn release_host(run: Option<&RunId>) {
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
    let Ok(text) = std::fs::read_to_string(SAVED) else {
        return;
    };
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(' ')
            && KUBELET_HOST_SYSCTLS.contains(&key)
        {
            let _ = std::fs::write(format!("/proc/sys/{key}"), value);
        }
    }
    let _ = std::fs::remove_file(SAVED);
}
