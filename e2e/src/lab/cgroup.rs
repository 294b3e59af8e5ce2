//! Cgroups named after a lab run (`<prefix>-<pid>-<start>-<name>`, as netns names), at the root of every
//! mounted hierarchy: a kubelet's `cgroupRoot`. Handles cgroup v1 (also the hybrid layout: v1 controllers
//! plus cgroup2 at /sys/fs/cgroup/unified) and a pure cgroup v2 machine.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::run::RunId;

/// Controllers kubelet needs (cgroup v1 names; v2 has cpuacct inside cpu).
pub const KUBELET_CONTROLLERS_V1: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "pids"];

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// cgroup2 (unified) rather than v1.
    pub v2: bool,
    /// v1 controllers of this mount (from its options), e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
}

/// Cgroup mounts listed in a `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount = left.split(' ').nth(4);
        let mut r = right.split(' ');
        let (fstype, _src, opts) = (r.next(), r.next(), r.next().unwrap_or(""));
        let Some(mount) = mount else { continue };
        let v2 = match fstype {
            Some("cgroup2") => true,
            Some("cgroup") => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            opts.split(',')
                .filter(|o| {
                    KUBELET_CONTROLLERS_V1.contains(o)
                        || [
                            "blkio",
                            "devices",
                            "freezer",
                            "hugetlb",
                            "net_cls",
                            "perf_event",
                        ]
                        .contains(o)
                        || o.starts_with("name=")
                })
                .map(String::from)
                .collect()
        };
        out.push(Hierarchy {
            mount: PathBuf::from(mount),
            v2,
            controllers,
        });
    }
    out
}

/// Every cgroup hierarchy mounted on this machine.
pub fn hierarchies() -> Vec<Hierarchy> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Fails with a clear message unless kubelet's controllers are available (v1: each mounted; v2: the
/// unified hierarchy at /sys/fs/cgroup).
pub fn check_kubelet_controllers() -> Result<()> {
    let hs = hierarchies();
    if hs
        .iter()
        .any(|h| h.v2 && h.mount == Path::new("/sys/fs/cgroup"))
    {
        return Ok(());
    }
    let missing: Vec<&str> = KUBELET_CONTROLLERS_V1
        .iter()
        .copied()
        .filter(|c| !hs.iter().any(|h| h.controllers.iter().any(|x| x == c)))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the kube lab needs the cgroup controllers {} (kubelet's cgroupfs driver); not mounted here: {}. \
             Mount them under /sys/fs/cgroup (cgroup v1) or use a cgroup v2 machine",
            KUBELET_CONTROLLERS_V1.join(", "),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Creates cgroup `name` at the root of every hierarchy kubelet uses; on v1 the cpuset gets its parent's
/// cpus and mems (a new cpuset is empty, and no task could join it).
pub fn create(name: &str) -> Result<()> {
    for h in hierarchies() {
        let dir = h.mount.join(name);
        if h.v2 {
            if h.mount != Path::new("/sys/fs/cgroup") {
                continue; // hybrid: runc manages the unified tree itself
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            // The controllers must be on in the parent for kubelet to use them below.
            let want = "+cpu +cpuset +memory +pids";
            let _ = std::fs::write(h.mount.join("cgroup.subtree_control"), want);
            continue;
        }
        if h.controllers.is_empty() {
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        if h.controllers.iter().any(|c| c == "cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(h.mount.join(f))
                    .with_context(|| format!("read {}", h.mount.join(f).display()))?;
                std::fs::write(dir.join(f), v.trim())
                    .with_context(|| format!("write {}", dir.join(f).display()))?;
            }
        }
    }
    Ok(())
}

/// Every folder of the tree at `dir`, deepest first.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    all.push(e.path());
                }
            }
        }
        i += 1;
    }
    all.reverse();
    all
}

/// Pids in cgroup `name` or below, in any hierarchy.
pub fn pids(name: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for h in hierarchies() {
        let dir = h.mount.join(name);
        if !dir.is_dir() {
            continue;
        }
        for d in tree(&dir) {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// SIGKILLs every process in cgroup `name` (containers outlive their shim), in bounded rounds.
pub fn kill_all(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = pids(name);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("ocelot-e2e: processes {left:?} in cgroup {name} survived SIGKILL");
            return;
        }
        for pid in left {
            // SAFETY: plain syscall; the pid is in a cgroup this run created.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Kills what is left in cgroup `name` and removes it (deepest first) from every hierarchy.
pub fn remove(name: &str) -> Result<()> {
    kill_all(name);
    let mut failed = Vec::new();
    for h in hierarchies() {
        let dir = h.mount.join(name);
        if !dir.is_dir() {
            continue;
        }
        for d in tree(&dir) {
            // A cgroup whose last task just died can refuse rmdir (EBUSY) for a moment.
            let mut ok = false;
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    ok = true;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if !ok {
                failed.push(d.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove cgroups {}", failed.join(", "));
    }
    Ok(())
}

/// Names of run cgroups at the root of any hierarchy, with the run that made them.
pub fn run_cgroups() -> Vec<(String, RunId)> {
    let mut out: Vec<(String, RunId)> = Vec::new();
    for h in hierarchies() {
        let Ok(entries) = std::fs::read_dir(&h.mount) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((id, _)) = RunId::parse_netns_name(&name)
                && !out.iter().any(|(n, _)| *n == name)
            {
                out.push((name, id));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_hybrid_layout() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
40 25 8:1 / / rw - ext4 /dev/vda rw";
        let hs = parse_mountinfo(text);
        assert_eq!(hs.len(), 4);
        assert!(hs[0].v2 && hs[0].mount == Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(hs[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(hs[3].controllers, vec!["name=systemd"]);
    }
}
