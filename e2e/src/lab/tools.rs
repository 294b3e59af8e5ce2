//! Finding the external programs the lab shells out to, and bounded retries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `ip`, resolved even when sbin is not on `$PATH`.
pub(crate) fn ip_command() -> std::process::Command {
    std::process::Command::new(find_tool("ip").unwrap_or_else(|| PathBuf::from("ip")))
}

/// Searched after `$PATH`: `ip` and `bird` live in sbin, which a non-login shell's PATH may lack.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The tools most lab tests need.
pub const LAB_TOOLS: &[&str] = &["ip", "ping", "bird", "birdc"];

/// Full path of an executable: `name` itself if it contains a `/`, otherwise the first hit in
/// `$PATH` and then the usual sbin/bin folders.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = Path::new(name);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails with one message naming every missing tool and how to install them.
pub fn require_tools(names: &[&str]) -> Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| find_tool(n).is_none())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools needed by the e2e lab: {}; install them with scripts/setup.sh (as root)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Fails unless running as root: network namespaces, veths and bridges need CAP_NET_ADMIN and
/// CAP_SYS_ADMIN. CI runs as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "the e2e lab needs root (it creates network namespaces, veths and bridges), \
             but euid is {euid}; run the tests as root, as CI does"
        );
    }
    Ok(())
}

/// Calls `f` until it succeeds, at most `attempts` times and for at most `timeout`, sleeping
/// `interval` between tries. The error names `what` and carries the last failure.
pub fn retry<T>(
    what: &str,
    attempts: u32,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for attempt in 1..=attempts.max(1) {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        if attempt == attempts || Instant::now() + interval > deadline {
            break;
        }
        thread::sleep(interval);
    }
    let e = last.expect("at least one attempt ran");
    Err(e.context(format!(
        "{what}: gave up (at most {attempts} attempts within {timeout:?})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_reports_missing_tools() {
        assert!(find_tool("sh").is_some());
        let err = require_tools(&["sh", "ocelot-no-such-tool"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ocelot-no-such-tool"), "{msg}");
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(!msg.contains("sh,"), "{msg}");
    }

    #[test]
    fn retry_is_bounded() {
        let mut calls = 0;
        let r: Result<()> = retry(
            "never",
            3,
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls += 1;
                bail!("nope {calls}")
            },
        );
        assert_eq!(calls, 3);
        let msg = format!("{:#}", r.unwrap_err());
        assert!(msg.contains("never") && msg.contains("nope 3"), "{msg}");
    }
}
