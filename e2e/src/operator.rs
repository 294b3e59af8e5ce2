//! Running `ocelot-operator` in tests against the shared test cluster: start it with its log in a
//! file, wait for conditions with a bound, stop it with SIGTERM and check it exits cleanly.
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{self, check, kubectl, kubectl_stdin};

/// Bound of every wait for the operator (a loaded 2-core CI machine).
pub const WAIT: Duration = Duration::from_secs(90);

pub fn operator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/operator-<hash> → target/<profile>/ocelot-operator
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ocelot-operator"))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p ocelot-operator` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A running operator; killed when dropped (also when a test panics).
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    pub fn start(log: &Path) -> Operator {
        Operator::start_with(log, &[])
    }

    /// Starts the operator with extra command-line arguments.
    pub fn start_with(log: &Path, args: &[&str]) -> Operator {
        let out = File::create(log).expect("create operator log");
        let mut cmd = Command::new(operator_binary());
        cmd.arg("--kubeconfig")
            .arg(cluster::kubeconfig_path())
            .args(args)
            // A free port per process: tests run several operators at once.
            .args(if args.contains(&"--metrics-addr") {
                &[][..]
            } else {
                &["--metrics-addr", "127.0.0.1:0"][..]
            })
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl is async-signal-safe. The operator dies with this test's thread even on abort.
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
        let child = cmd.spawn().expect("start ocelot-operator");
        Operator {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `f` until it returns Ok, or panics naming `what`, the last answer and the operator log.
    pub fn wait<T>(&mut self, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ocelot-operator exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            let last = match f() {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > WAIT {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; last: {last}\noperator log:\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM, and the operator must exit cleanly on its own.
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for operator") {
                break s;
            }
            assert!(
                start.elapsed() < WAIT,
                "ocelot-operator did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        };
        let log = self.log();
        assert!(
            status.success(),
            "operator exit {status} on SIGTERM; log:\n{log}"
        );
        assert!(log.contains("SIGTERM: shutting down"), "{log}");
        log
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn get_json(kind: &str, name: &str) -> Result<Value, String> {
    // managedFields are hidden by default; the snapshot checks who wrote each object.
    let out = kubectl(["get", kind, name, "-o", "json", "--show-managed-fields"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{kind}/{name}: bad JSON: {e}"))
}

pub fn apply(yaml: &str) {
    check(kubectl_stdin(["apply", "-f", "-"], yaml), "kubectl apply");
}

pub fn fixture(name: &str) -> String {
    let p = cluster::repo_root().join("tests/fixtures/valid").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn op_log_line(log: &Path, needle: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    text.lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .ok_or_else(|| format!("no log line with {needle:?} yet"))
}

impl Operator {
    /// SIGKILL: no chance to release the Lease or finish a write.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mutating requests the API server has served, from its own metrics (leases excluded: the API
/// server and the election renew theirs).
pub fn api_writes() -> u64 {
    api_writes_except(&[])
}

/// [`api_writes`] without the writes to these resources (e.g. `events`).
pub fn api_writes_except(resources: &[&str]) -> u64 {
    write_lines(resources)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The API server's `apiserver_request_total` lines of mutating verbs, as [`api_writes_except`]
/// counts them; compare two scrapes to see which writes happened in between.
pub fn write_lines(resources: &[&str]) -> Vec<String> {
    let out = kubectl(["get", "--raw", "/metrics"]);
    assert!(out.status.success(), "scrape API server metrics");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            // Server-side apply is counted as verb APPLY, not PATCH.
            ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
                .iter()
                .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter(|l| !l.contains("resource=\"leases\""))
        .filter(|l| {
            !resources
                .iter()
                .any(|r| l.contains(&format!("resource=\"{r}\"")))
        })
        .map(str::to_string)
        .collect()
}

impl Operator {
    /// GET `path` from the operator's metrics endpoint (address from its log); (status, body).
    pub fn http_get(&mut self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let log = self.log.clone();
        let line = self.wait("the metrics endpoint", || {
            op_log_line(&log, "serving /metrics")
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

/// Applies the seed's patch switching WireGuard on in FelixConfiguration `default`.
pub fn patch_seed_wireguard_on() {
    let patch = fixture("felixconfiguration-default.wireguard-on.patch.json");
    check(
        kubectl([
            "patch",
            "felixconfiguration",
            "default",
            "--type=merge",
            "-p",
            patch.trim(),
        ]),
        "kubectl patch felixconfiguration default (WireGuard on)",
    );
}
