//! Running commands inside a network namespace: one-shot (`exec`) and long-running (`spawn`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::tools::{NETNS_DIR, find_tool, ip_command, retry};
use crate::proc::run_bounded;

/// Default bound for one `exec`.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a spawned process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A named network namespace (`ip netns`). Cheap to clone; owning and deleting it is the
/// [`Lab`](super::Lab)'s job, not this handle's.
#[derive(Clone, Debug)]
pub struct Netns {
    name: String,
    label: String,
    log_dir: PathBuf,
}

impl Netns {
    pub(crate) fn new(name: String, label: &str, log_dir: &Path) -> Netns {
        Netns {
            name,
            label: label.to_string(),
            log_dir: log_dir.to_path_buf(),
        }
    }

    /// A handle on an existing netns that no lab owns (its spawn logs go to the temp folder).
    pub fn attach(name: &str) -> Netns {
        Netns::new(name.to_string(), name, &std::env::temp_dir())
    }

    /// The full netns name, as `ip netns exec NAME` and `ip link set … netns NAME` take it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The short name given by the test (`node1`, `fabric`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `/run/netns/NAME`, for `nsenter --net=PATH` or `setns`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip netns exec NAME PROG ARGS…`, with PROG resolved even if it lives in sbin.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args = args.into_iter();
        let mut cmd = ip_command();
        cmd.args([
            OsStr::new("netns"),
            OsStr::new("exec"),
            OsStr::new(&self.name),
        ]);
        if let Some(prog) = args.next() {
            let prog = prog.as_ref();
            match prog.to_str().and_then(find_tool) {
                Some(full) => cmd.arg(full),
                None => cmd.arg(prog),
            };
        }
        cmd.args(args);
        cmd
    }

    /// Runs a command in the netns to completion (at most [`EXEC_TIMEOUT`]), capturing output.
    pub fn exec<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_timeout(args, EXEC_TIMEOUT)
    }

    /// [`exec`](Self::exec) with an explicit bound.
    pub fn exec_timeout<I, S>(&self, args: I, timeout: Duration) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_bounded(&mut self.command(args), None, timeout)
    }

    /// Runs a command and returns its stdout; on failure the error shows the command, the exit
    /// status, stdout and stderr.
    pub fn exec_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = to_strings(args);
        let shown = args.join(" ");
        let out = self
            .exec(&args)
            .with_context(|| format!("running `{shown}` in netns {}", self.label))?;
        if !out.status.success() {
            bail!(
                "`{shown}` in netns {} ({}) failed: {}\nstdout: {}\nstderr: {}",
                self.label,
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end(),
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl in the netns. `key` is dotted (`net.ipv4.ip_forward`) or, when a part
    /// contains dots itself (an interface name), slashed (`net/ipv4/conf/wg.x/forwarding`).
    /// Writes /proc/sys directly: the `sysctl` tool (procps) is not in minimal images.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", sysctl_path(key));
        self.exec_ok([
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > \"$2\"",
            "sh",
            value,
            &path,
        ])?;
        Ok(())
    }

    /// Reads a sysctl in the netns (key as for [`sysctl`](Self::sysctl)).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = format!("/proc/sys/{}", sysctl_path(key));
        Ok(self.exec_ok(["cat", &path])?.trim().to_string())
    }

    /// What tcpdump sees on `iface` matching `filter` while `during` runs: tcpdump gets a second to
    /// start, then stops `window` after it started (bounded). Returns its text and `during`'s value.
    pub fn capture<T: Send>(
        &self,
        iface: &str,
        filter: &str,
        window: Duration,
        during: impl FnOnce() -> T + Send,
    ) -> Result<(String, T)> {
        let secs = window.as_secs().max(2).to_string();
        std::thread::scope(|s| {
            let dump = s.spawn(|| {
                self.exec_timeout(
                    ["timeout", &secs, "tcpdump", "-n", "-l", "-i", iface, filter],
                    window + Duration::from_secs(5),
                )
            });
            std::thread::sleep(Duration::from_secs(1));
            let value = during();
            let out = dump
                .join()
                .map_err(|_| anyhow::anyhow!("tcpdump thread panicked"))??;
            Ok((String::from_utf8_lossy(&out.stdout).into_owned(), value))
        })
    }

    /// Pings `target` once per attempt (`ping -c1 -W1`), up to `attempts` times.
    pub fn ping(&self, target: &str, attempts: u32) -> Result<()> {
        retry(
            &format!("ping {target} from {}", self.label),
            attempts,
            Duration::from_secs(2 * u64::from(attempts.max(1))),
            Duration::from_millis(100),
            || {
                self.exec_timeout(["ping", "-c1", "-W1", "-n", target], Duration::from_secs(5))
                    .map_err(anyhow::Error::from)
                    .and_then(|o| {
                        if o.status.success() {
                            Ok(())
                        } else {
                            bail!("{}", String::from_utf8_lossy(&o.stdout).trim_end())
                        }
                    })
            },
        )
    }

    /// Pids of the processes currently in this netns.
    pub fn pids(&self) -> Vec<u32> {
        super::run::netns_pids(&self.name)
    }

    /// Starts a long-running process in the netns (BIRD, boringtun, an agent). It gets its own
    /// process group, its stdout and stderr go to a log file in the lab folder, and it is stopped
    /// when the returned handle is dropped.
    pub fn spawn<I, S>(&self, args: I) -> Result<LabProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = to_strings(args);
        let prog = args.first().context("spawn needs a program")?;
        let base = Path::new(prog)
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_else(|| "proc".into());
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let log = self.log_dir.join(format!("{}.{base}.{n}.log", self.label));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = self.command(&args);
        let mut header = String::new();
        let _ = writeln!(header, "# {cmd:?}");
        file.write_all(header.as_bytes())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning `{}` in netns {}", args.join(" "), self.label))?;
        Ok(LabProcess {
            child,
            desc: format!("`{}` in {}", args.join(" "), self.label),
            log,
            header_len: header.len(),
            status: None,
        })
    }
}

/// A process started by [`Netns::spawn`]. Dropping it sends SIGTERM to its process group, then
/// SIGKILL after [`STOP_GRACE`].
#[derive(Debug)]
pub struct LabProcess {
    child: std::process::Child,
    desc: String,
    log: PathBuf,
    /// The log starts with the command line, which must not count as output.
    header_len: usize,
    status: Option<ExitStatus>,
}

impl LabProcess {
    /// Pid of the process (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What it has written so far (stdout and stderr, without the command-line header).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| {
                String::from_utf8_lossy(b.get(self.header_len..).unwrap_or_default()).into_owned()
            })
            .unwrap_or_default()
    }

    /// Whether it is still running. Does not reap it, so its pid and group id stay reserved
    /// until it is stopped.
    pub fn is_running(&self) -> bool {
        self.status.is_none() && !exited_nowait(self.pid())
    }

    /// Waits (at most `timeout`) until its log contains `needle`; fails early if it exits.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if !self.is_running() {
                bail!(
                    "{} exited before logging {needle:?}; log {}:\n{}",
                    self.desc,
                    self.log.display(),
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; log {}:\n{}",
                    self.desc,
                    self.log.display(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it now (as on drop) and returns how it ended, if it could be reaped.
    pub fn stop(mut self) -> Option<ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let pgid = self.pid() as libc::pid_t;
        // The leader is never reaped before this point (see is_running), so `pgid` is still
        // ours: signalling the group cannot hit an unrelated process.
        // SAFETY: plain syscall, see above.
        let signal_group = |sig| unsafe { libc::kill(-pgid, sig) };
        signal_group(libc::SIGTERM);
        if !wait_exited(self.pid(), STOP_GRACE) {
            signal_group(libc::SIGKILL);
            if !wait_exited(self.pid(), Duration::from_secs(3)) {
                eprintln!("ocelot-e2e: {} survived SIGKILL; leaving it", self.desc);
                return None;
            }
        }
        // Children left in the group (a shell's background jobs) go too.
        signal_group(libc::SIGKILL);
        self.status = self.child.wait().ok();
        if let Some(st) = self.status
            && st.signal().is_none()
            && !st.success()
        {
            eprintln!(
                "ocelot-e2e: {} exited with {st}; log {}",
                self.desc,
                self.log.display()
            );
        }
        self.status
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Command arguments as text, for logs and error messages.
pub fn to_strings<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect()
}

fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    }
}

/// Whether `pid` (our child) has exited, without reaping it.
fn exited_nowait(pid: u32) -> bool {
    // SAFETY: zeroed siginfo_t is valid; waitid only writes to it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // An error (ECHILD) means there is nothing left to wait for.
    // SAFETY: si_pid is valid for the WEXITED siginfo that waitid fills (0 if none yet).
    r != 0 || unsafe { info.si_pid() } != 0
}

fn wait_exited(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if exited_nowait(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
