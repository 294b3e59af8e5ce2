//! Host (not per-netns) sysctls that kubelet sets at start (vm.overcommit_memory=1, kernel.panic=10,
//! kernel.panic_on_oops=1, as its container manager requires): saved before the first kube lab on the
//! machine starts, and restored once no kube lab is left (by the last one, or by the stale sweep).

use std::path::Path;

use super::mntns;

/// The sysctls kubelet changes on the host.
pub const KUBELET_HOST_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];
/// Original values, one `key value` per line; present while kube labs may have changed them.
const SAVED: &str = "/run/ocelot-e2e/host-sysctls.saved";

/// Saves the current values unless a saved copy exists (then an earlier lab's originals win).
pub fn save_host() -> std::io::Result<()> {
    if Path::new(SAVED).exists() {
        return Ok(());
    }
    let mut text = String::new();
    for key in KUBELET_HOST_SYSCTLS {
        let v = std::fs::read_to_string(format!("/proc/sys/{key}"))?;
        text.push_str(&format!("{key} {}\n", v.trim()));
    }
    if let Some(dir) = Path::new(SAVED).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(SAVED, text)
}

/// Restores the saved values if no live run holds a mount namespace (= no kube lab is running).
pub fn restore_host_if_unused() {
    if mntns::run_mntns().iter().any(|(_, id)| id.is_alive()) {
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
