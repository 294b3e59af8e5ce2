//! Running an Ocelot daemon (`ocelot-operator`, `ocelot-agent`) in tests: start the binary built next
//! to the test executable with its log in a file, wait for conditions with a bound, read its
//! endpoints, stop it with SIGTERM and check it exits cleanly. The process dies with the test
//! (PR_SET_PDEATHSIG, and kill on drop).
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Bound of every wait for a daemon (a loaded 2-core CI machine).
pub const WAIT: Duration = Duration::from_secs(90);

/// `target/<profile>/<name>`: next to a test binary's `deps/` folder, or next to a binary.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary in a folder");
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build --workspace --bins` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A running daemon; killed when dropped (also when a test panics).
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `binary` with `args` (plus `--metrics-addr 127.0.0.1:0` unless given: tests run
    /// several daemons at once), RUST_LOG=info, output into `log`.
    pub fn start(binary: &Path, args: &[&str], log: &Path) -> Daemon {
        let out = File::create(log).expect("create daemon log");
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .args(if args.contains(&"--metrics-addr") {
                &[][..]
            } else {
                &["--metrics-addr", "127.0.0.1:0"][..]
            })
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl is async-signal-safe. The daemon dies with this test's thread even on abort.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            })
        };
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            name,
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `f` until it returns Ok, or panics naming `what`, the last answer and the log.
    pub fn wait<T>(&mut self, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) while waiting for {what}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            let last = match f() {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > WAIT {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; last: {last}\n{} log:\n{}",
                    self.name,
                    self.log()
                );
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM, and the daemon must exit cleanly on its own; returns its log.
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for daemon") {
                break s;
            }
            assert!(
                start.elapsed() < WAIT,
                "{} did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                self.name,
                self.log()
            );
            sleep(Duration::from_millis(100));
        };
        let log = self.log();
        assert!(
            status.success(),
            "{} exit {status} on SIGTERM; log:\n{log}",
            self.name
        );
        assert!(log.contains("SIGTERM: shutting down"), "{log}");
        log
    }

    /// SIGKILL: no chance to release a Lease or finish a write.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The first log line containing `needle`.
    pub fn log_line(&self, needle: &str) -> Result<String, String> {
        log_line(&self.log, needle)
    }

    /// GET `path` from the daemon's metrics endpoint (address from its log); (status, body).
    pub fn http_get(&mut self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let log = self.log.clone();
        let line = self.wait("the metrics endpoint", || {
            log_line(&log, "serving /metrics")
        });
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .expect("addr= in the log line")
            .to_string();
        let mut s = std::net::TcpStream::connect(&addr).expect("connect to the metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read the response");
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line of the log file at `log` containing `needle`.
pub fn log_line(log: &Path, needle: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    text.lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .ok_or_else(|| format!("no log line with {needle:?} yet"))
}
