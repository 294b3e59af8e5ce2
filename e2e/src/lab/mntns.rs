//! Persistent mount namespaces named after a lab run, in which per-run folders are bind-mounted over
//! paths that programs hard-code (kubelet's /var/lib/kubelet, containerd's /run/containerd, …), so that
//! several of them on one machine do not share those paths. Each one is kept alive by a bind mount of its
//! nsfs file at `MNTNS_DIR/<run name>`, and dies when that is unmounted and its last process exits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::run::RunId;
use super::tools::{NETNS_DIR, find_tool};
use crate::proc::run_bounded;

/// Where the nsfs files live (a private bind mount of itself, as iproute2 does for /run/netns: a mount
/// namespace file may not be bind-mounted under a shared mount).
pub const MNTNS_DIR: &str = "/run/ocelot-e2e/mntns";

fn mounted_at(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

fn mount_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let c = CString::new(dir.as_os_str().as_bytes())?;
    if !mounted_at(dir) {
        // SAFETY: plain mount(2) with valid C strings.
        let r = unsafe {
            libc::mount(
                c.as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            bail!(
                "bind-mounting {} on itself: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        bail!(
            "making {} private: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The nsfs file of mount namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(MNTNS_DIR).join(name)
}

/// Creates mount namespace `name` (a run name, see [`RunId::netns_name`]) with every mount private, the
/// inherited copies of other namespaces' files removed (they would keep those namespaces alive), and
/// `binds` mounted: each `(source folder, target path)`; targets are created on the host if missing (as
/// empty folders). The targets in `shared` become shared mounts, as everything is on a systemd host,
/// so that mounts made under them later reach containers that mount them with propagation. Returns
/// the nsfs file to pass to `nsenter --mount=`.
pub fn create(name: &str, binds: &[(PathBuf, &str)], shared: &[&str]) -> Result<PathBuf> {
    mount_private_dir(Path::new(MNTNS_DIR))?;
    let file = path(name);
    std::fs::write(&file, b"").with_context(|| format!("create {}", file.display()))?;
    let mut script = String::from(
        "set -e\n\
         for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E \"^($1|$2)/\" | sort -r); do umount -l \"$m\" || true; done\n",
    );
    // A shared target must be the only mount there: programs that check propagation (containerd)
    // look at the lowest one, e.g. iproute2's private bind of /run/netns inherited from the host.
    for dst in shared {
        script.push_str(&format!(
            "for _ in 1 2 3; do mountpoint -q '{dst}' && umount -l '{dst}'; done; true\n"
        ));
    }
    for (src, dst) in binds {
        std::fs::create_dir_all(src).with_context(|| format!("mkdir {}", src.display()))?;
        std::fs::create_dir_all(dst).with_context(|| format!("mkdir {dst}"))?;
        script.push_str(&format!("mount --bind '{}' '{dst}'\n", src.display()));
    }
    for dst in shared {
        script.push_str(&format!("mount --make-shared '{dst}'\n"));
    }
    let unshare = find_tool("unshare").context("unshare (util-linux) not found")?;
    let mut cmd = Command::new(unshare);
    cmd.arg(format!("--mount={}", file.display())).args([
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
        NETNS_DIR,
        MNTNS_DIR,
    ]);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30))
        .with_context(|| format!("creating mount namespace {name}"))?;
    if !out.status.success() {
        let _ = remove(name);
        bail!(
            "creating mount namespace {name} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(file)
}

/// Unmounts and removes the nsfs file of `name` (the namespace itself ends with its last process).
pub fn remove(name: &str) -> Result<()> {
    let file = path(name);
    let c = CString::new(file.as_os_str().as_bytes())?;
    // SAFETY: plain umount2(2) with a valid C string; EINVAL (not mounted) is fine.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", file.display())),
    }
}

/// Mount namespace files of any run, with the run that made them.
pub fn run_mntns() -> Vec<(String, RunId)> {
    let Ok(entries) = std::fs::read_dir(MNTNS_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (id, _) = RunId::parse_netns_name(&name)?;
            Some((name, id))
        })
        .collect()
}
