//! Running external programs: bounded one-shot runs ([`run_bounded`]) and long-lived servers that die with
//! the test binary ([`spawn_server`]). Shared by the test cluster, the netns lab and the kube lab.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// An anonymous file to capture output in: unlike a pipe, a daemon that a command leaves behind
/// (holding stdout open) cannot make us wait for EOF.
fn capture_file() -> io::Result<File> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ocelot-e2e-capture-{}-{n}", std::process::id()));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

fn read_back(mut f: File) -> Vec<u8> {
    let mut buf = Vec::new();
    if f.rewind().is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    buf
}

/// Runs `cmd` to completion in its own process group (stdin from `stdin`, or none), killing the group
/// after `timeout`; a timeout is an `ErrorKind::TimedOut` error carrying what the command printed.
pub fn run_bounded(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Output> {
    let (out, err) = (capture_file()?, capture_file()?);
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .process_group(0)
        .spawn()?;
    // A thread, so a child that reads slowly (or never) cannot block the deadline.
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        thread::spawn(move || {
            let _ = pipe.write_all(&data); // a child that exits early closes the pipe; its status tells
        })
    });
    let deadline = Instant::now() + timeout;
    let exited = ExitWatch::new(&child);
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            // SAFETY: plain syscall on the group we created; the leader is not reaped yet, so
            // the group id cannot have been reused.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{cmd:?} did not finish within {timeout:?}; stdout: {}; stderr: {}",
                    String::from_utf8_lossy(&read_back(out)),
                    String::from_utf8_lossy(&read_back(err)),
                ),
            ));
        }
        match &exited {
            // Woken the moment the child exits, so timings taken around a run are exact.
            Some(w) => w.wait(deadline.saturating_duration_since(Instant::now())),
            None => {
                thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Ok(Output {
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    })
}

/// A pidfd of a child (Linux 5.3+): readable once the child has exited.
struct ExitWatch(std::os::fd::OwnedFd);

impl ExitWatch {
    /// None where pidfds are unavailable; callers then poll.
    fn new(child: &Child) -> Option<ExitWatch> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the child is not reaped yet, so its pid is still its own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        // SAFETY: a non-negative return is a new descriptor that nothing else owns.
        (fd >= 0).then(|| ExitWatch(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Blocks until the child exits or `limit` passes (whichever is first).
    fn wait(&self, limit: Duration) {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// [`run_bounded`] for callers that want an [`Output`] whatever happens: a timeout becomes a failed status
/// with `[ocelot-e2e] killed after …` in stderr. Panics only when the program cannot be started at all.
pub fn run_output(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    use std::os::unix::process::ExitStatusExt;
    match run_bounded(cmd, stdin, timeout) {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Output {
            status: ExitStatus::from_raw(libc::SIGKILL),
            stdout: Vec::new(),
            stderr: format!("{e}\n[ocelot-e2e] killed after {timeout:?}\n").into_bytes(),
        },
        Err(e) => panic!("cannot run {:?}: {e}", cmd.get_program()),
    }
}

/// Stdout of a successful run as text; panics with the command's stderr otherwise.
pub fn check(out: Output, what: &str) -> String {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Last `lines` lines of a log file (empty if unreadable), for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One started server process, leader of its own process group, killed by the kernel if the test binary
/// dies (see [`spawn_server`]).
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    pid: i32,
    child: Mutex<Child>,
    log: PathBuf,
}

impl ServerProcess {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// How it ended, if it has (does not block).
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().ok()?.try_wait().ok().flatten()
    }

    /// SIGKILL to its process group, then reap it.
    pub fn kill(&self) {
        // SAFETY: kill(2) has no memory-safety preconditions; the leader is not reaped before this, so
        // the group id is still ours.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        // try_lock: at exit another thread may hold the lock; the kernel reaps it then anyway.
        if let Ok(mut child) = self.child.try_lock() {
            let _ = child.wait(); // returns promptly: SIGKILL cannot be caught
        }
    }

    /// SIGTERM to its process group; SIGKILL if it is still there after `grace`.
    pub fn stop(&self, grace: Duration) {
        if self.exited().is_none() {
            // SAFETY: as in kill.
            unsafe { libc::kill(-self.pid, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.exited().is_none() {
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// A thread that lives as long as the process and does every server spawn: PR_SET_PDEATHSIG fires when the
/// *thread* that forked the child ends, so spawning from a test's own thread would kill a shared server as
/// soon as that test finished.
static SPAWNER: LazyLock<mpsc::Sender<SpawnJob>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<SpawnJob>();
    thread::Builder::new()
        .name("ocelot-e2e-spawner".into())
        .spawn(move || {
            for job in rx {
                job();
            }
            // The sender is a static and never dropped, so this loop only ends with the process.
        })
        .expect("spawn the server spawner thread");
    tx
});

/// Starts `cmd` as a server: own process group, stdout and stderr appended to `log`, and
/// `PR_SET_PDEATHSIG=SIGKILL` so the kernel kills it when the test binary dies however it ends (panic=abort,
/// SIGKILL). `nsenter` keeps the death signal across its exec, so servers inside namespaces get it too.
pub fn spawn_server(name: &str, mut cmd: Command, log: &Path) -> Result<ServerProcess> {
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("create {}", log.display()))?;
    let _ = writeln!(out, "# {cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The test binary may have died before prctl took effect: then nobody would kill this one.
            if libc::getppid() != parent {
                return Err(io::Error::other("test binary exited during spawn"));
            }
            Ok(())
        })
    };
    let (tx, rx) = mpsc::sync_channel(1);
    SPAWNER
        .send(Box::new(move || {
            let _ = tx.send(cmd.spawn());
        }))
        .map_err(|_| anyhow!("server spawner thread is gone"))?;
    let child = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|e| anyhow!("spawning {name}: no answer from the spawner thread: {e}"))?
        .with_context(|| format!("spawn {name}"))?;
    Ok(ServerProcess {
        name: name.to_string(),
        pid: child.id() as i32,
        child: Mutex::new(child),
        log: log.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_kills_at_the_deadline() {
        let start = Instant::now();
        let err = run_bounded(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(10));
        let out = run_output(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("killed after"));
    }

    #[test]
    fn run_bounded_feeds_stdin() {
        let out = run_output(
            &mut Command::new("cat"),
            Some(b"hello"),
            Duration::from_secs(10),
        );
        assert_eq!(check(out, "cat"), "hello");
    }

    #[test]
    fn a_left_behind_daemon_does_not_block() {
        // The background sleep keeps stdout open past the deadline; with a pipe this would time out.
        let out = run_bounded(
            Command::new("sh").args(["-c", "sleep 5 & echo done"]),
            None,
            Duration::from_secs(4),
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    }
}
