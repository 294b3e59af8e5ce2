//! Run identity, the netns naming scheme, and removing what dead runs left behind.
//!
//! Every netns of a run is named `<prefix>-<pid>-<start>-<name>`:
//! - `prefix` is `oc` + 5 base-36 characters, unique among the labs of one process, short
//!   enough to start interface names (≤ 15 characters);
//! - `pid` and `start` identify the creating process (`start` is its start time in clock ticks
//!   since boot, field 22 of `/proc/PID/stat`), so a reused pid is not mistaken for the creator.
//!
//! A netns that matches this pattern and whose creator is gone is stale and may be removed; any
//! other netns, and those of live processes (including other tests in this process), are never
//! touched.

use std::collections::hash_map::DefaultHasher;
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::tools::{NETNS_DIR, ip_command};
use crate::proc::run_bounded;

const PREFIX_LEN: usize = 7;
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const SPACE: u64 = 36u64.pow(5);
/// Coprime with 36^5, so counters 0..36^5 map to distinct prefixes within one process.
const STRIDE: u64 = 1_000_003;

static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Machine-wide (like /run/netns), so stale cleanups of all test processes are serialized.
const CLEANUP_LOCK: &str = "/run/ocelot-e2e/stale-cleanup.lock";
/// Bound on waiting for another process's cleanup (each takes well under a second per netns).
const CLEANUP_LOCK_WAIT: Duration = Duration::from_secs(60);

/// While alive, no stale cleanup runs on the machine (an flock on [`CLEANUP_LOCK`], which also
/// excludes other threads of this process). Released on drop.
#[derive(Debug)]
pub struct StaleCleanupGuard(#[allow(dead_code, reason = "held for its lock")] File);

fn open_cleanup_lock() -> Result<File> {
    let path = Path::new(CLEANUP_LOCK);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {CLEANUP_LOCK}"))
}

/// Takes the cleanup lock, waiting at most `wait`; `None` if it stayed busy.
fn lock_cleanup(wait: Duration) -> Result<Option<StaleCleanupGuard>> {
    let file = open_cleanup_lock()?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(StaleCleanupGuard(file))),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {CLEANUP_LOCK}"));
            }
        }
    }
}

/// Keeps every process's stale cleanup away while held. For tests that plant stale objects
/// and must finish setting them up (and look at them) before any `Lab::new` sweeps them.
pub fn hold_stale_cleanup() -> Result<StaleCleanupGuard> {
    lock_cleanup(CLEANUP_LOCK_WAIT)?
        .with_context(|| format!("{CLEANUP_LOCK} stayed locked for {CLEANUP_LOCK_WAIT:?}"))
}

/// Who created a set of lab objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunId {
    pub prefix: String,
    pub pid: u32,
    pub start: u64,
}

impl RunId {
    /// A fresh id for a new lab in this process.
    pub fn new() -> Result<RunId> {
        let pid = std::process::id();
        let start = process_start(pid).context("reading this process's start time")?;
        let mut h = DefaultHasher::new();
        (pid, start).hash(&mut h);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut v = h.finish().wrapping_add(n.wrapping_mul(STRIDE)) % SPACE;
        let mut prefix = String::from("oc");
        for _ in 0..5 {
            prefix.push(BASE36[(v % 36) as usize] as char);
            v /= 36;
        }
        Ok(RunId { prefix, pid, start })
    }

    /// The netns name for `name` in this run.
    pub fn netns_name(&self, name: &str) -> String {
        format!("{}-{}-{}-{}", self.prefix, self.pid, self.start, name)
    }

    /// Parses a netns name made by [`RunId::netns_name`]; `None` for anything else.
    pub fn parse_netns_name(ns: &str) -> Option<(RunId, &str)> {
        let mut parts = ns.splitn(4, '-');
        let prefix = parts.next()?;
        let pid = parts.next()?;
        let start = parts.next()?;
        let name = parts.next()?;
        let prefix_ok = prefix.len() == PREFIX_LEN
            && prefix.starts_with("oc")
            && prefix[2..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !prefix_ok || !digits(pid) || !digits(start) || name.is_empty() {
            return None;
        }
        let id = RunId {
            prefix: prefix.to_string(),
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        };
        Some((id, name))
    }

    /// True while the creating process exists (and is not a zombie).
    pub fn is_alive(&self) -> bool {
        process_start(self.pid) == Some(self.start)
    }
}

/// Start time of a live (non-zombie) process, `None` if there is none with that pid.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Pids of live processes whose network namespace is the named netns.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    let Ok(target) = std::fs::metadata(Path::new(NETNS_DIR).join(ns)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid > 1)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .collect()
}

/// Stops every process in the netns: SIGTERM (so BIRD and boringtun tidy up), then SIGKILL for
/// whatever is still there after `grace`. Bounded in rounds and time.
pub fn kill_netns_processes(ns: &str, grace: Duration) {
    for (signal, wait) in [
        (libc::SIGTERM, grace),
        (libc::SIGKILL, Duration::from_secs(3)),
    ] {
        let pids = netns_pids(ns);
        if pids.is_empty() {
            return;
        }
        for pid in &pids {
            // SAFETY: plain syscall; the pid was just seen in this netns, which belongs to us.
            unsafe { libc::kill(*pid as libc::pid_t, signal) };
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !netns_pids(ns).is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let left = netns_pids(ns);
    if !left.is_empty() {
        eprintln!("ocelot-e2e: processes {left:?} in netns {ns} survived SIGKILL");
    }
}

/// Deletes a netns (after stopping its processes). Succeeds if it is gone afterwards.
pub fn delete_netns(ns: &str, grace: Duration) -> Result<()> {
    kill_netns_processes(ns, grace);
    let path = Path::new(NETNS_DIR).join(ns);
    for _ in 0..5 {
        if !path.exists() {
            return Ok(());
        }
        let _ = run_bounded(
            ip_command().args(["netns", "delete", ns]),
            None,
            Duration::from_secs(10),
        );
        if !path.exists() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("could not delete netns {ns}")
}

/// Removes every netns left by a run whose process is gone (a crashed or killed test run),
/// with its processes. Returns the names removed. Never touches netns that do not match the
/// lab naming pattern or that belong to a live process. Waits (bounded) for a cleanup that
/// another process or thread is running.
pub fn cleanup_stale() -> Result<Vec<String>> {
    let _guard = hold_stale_cleanup()?;
    sweep()
}

/// [`cleanup_stale`] unless someone holds the cleanup lock (then they are cleaning, or a test
/// is planting stale objects on purpose): what `Lab::new` does.
pub fn cleanup_stale_if_idle() -> Result<Vec<String>> {
    match lock_cleanup(Duration::ZERO)? {
        Some(_guard) => sweep(),
        None => Ok(Vec::new()),
    }
}

fn sweep() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries: Vec<String> = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("listing {NETNS_DIR}")),
    };
    let mut errors = Vec::new();
    // Kube lab runs: containers live in their run's cgroups (in pod netns the lab did not name) and
    // outlive their shims, so they go first; the mount namespaces holding the pods' netns files next.
    let dead_cgroups: Vec<String> = super::cgroup::run_cgroups()
        .into_iter()
        .filter(|(_, id)| !id.is_alive())
        .map(|(name, _)| name)
        .collect();
    for name in &dead_cgroups {
        super::cgroup::kill_all(name);
    }
    for (name, id) in super::mntns::run_mntns() {
        if !id.is_alive() {
            if let Err(e) = super::mntns::remove(&name) {
                errors.push(format!("{e:#}"));
            }
            removed.push(format!("mntns {name}"));
        }
    }
    for name in entries {
        let Some((id, _)) = RunId::parse_netns_name(&name) else {
            continue;
        };
        if id.is_alive() {
            continue;
        }
        // The creator is dead: nobody will stop these processes gracefully anymore.
        match delete_netns(&name, Duration::from_millis(500)) {
            Ok(()) => removed.push(name),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    for name in dead_cgroups {
        match super::cgroup::remove(&name) {
            Ok(()) => removed.push(format!("cgroup {name}")),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    super::host::release(None);
    prune_old_run_dirs();
    if !errors.is_empty() {
        anyhow::bail!("stale lab cleanup failed: {}", errors.join("; "));
    }
    Ok(removed)
}

/// How long the log folder of a dead run is kept for diagnosis.
const KEEP_DEAD_RUN_LOGS: Duration = Duration::from_secs(24 * 3600);

/// The folder under which each run keeps its logs (`<prefix>-<pid>-<start>`).
pub fn runs_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("ocelot-e2e")
}

/// Removes log folders of dead runs once they are older than [`KEEP_DEAD_RUN_LOGS`], so crash
/// logs survive the next run but do not pile up.
fn prune_old_run_dirs() {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A run folder is named like a netns without the trailing name.
        let Some((id, "logs")) = RunId::parse_netns_name(&format!("{name}-logs")) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > KEEP_DEAD_RUN_LOGS);
        if old && !id.is_alive() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_prefixes_differ() {
        let a = RunId::new().unwrap();
        let b = RunId::new().unwrap();
        assert_ne!(a.prefix, b.prefix);
        assert_eq!(a.prefix.len(), PREFIX_LEN);
        let ns = a.netns_name("node-1");
        let (parsed, name) = RunId::parse_netns_name(&ns).unwrap();
        assert_eq!(parsed, a);
        assert_eq!(name, "node-1");
        assert!(a.is_alive());
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for ns in [
            "fabric",
            "node1",
            "cni-3a16b3b9-97cd-e32a-ae0b",
            "ocABCDE-1-2-x",
            "ocabcd-1-2-x",
            "ocabcde-1x-2-x",
            "ocabcde-1-2-",
            "ocabcde-1-2",
        ] {
            assert!(RunId::parse_netns_name(ns).is_none(), "{ns}");
        }
        assert!(RunId::parse_netns_name("ocabcde-1-2-x").is_some());
    }

    #[test]
    fn reused_pid_is_not_the_creator() {
        let mut id = RunId::new().unwrap();
        id.start += 1;
        assert!(!id.is_alive());
    }
}
