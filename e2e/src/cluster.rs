//! A real test cluster: etcd and kube-apiserver on loopback, plus kubectl and helm, all built from their Go
//! modules by `e2e/cluster/build.sh`. No kubelet and no controller-manager (as envtest), so namespaces never
//! finish deleting and no ServiceAccount is created on its own: tests isolate by object names instead.
//!
//! One cluster is shared by all tests of a test binary ([`shared`] and the free helpers). Its processes die
//! with the test binary however it ends: an `atexit` hook stops them and removes their files on a normal exit
//! (statics are never dropped), and `PR_SET_PDEATHSIG` makes the kernel kill them when the binary dies any
//! other way (panic=abort, SIGKILL). With `OCELOT_E2E_KUBECONFIG` set, that cluster is used and nothing starts.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::{Ca, service_account_keys, write_secret};
pub use crate::proc::check;
use crate::proc::{ServerProcess, run_output, spawn_server, tail};

/// Kubernetes release of the test cluster; also names the cache folder. Must match `e2e/cluster/build.sh`.
pub const K8S_VERSION: &str = "v1.37.2";
/// Service range given to kube-apiserver (TEST-NET-style space the lab does not route).
pub const SERVICE_CLUSTER_IP_RANGE: &str = "198.19.32.0/20";

/// The API server's address in the service range (the `kubernetes` Service), a certificate SAN.
pub const APISERVER_SERVICE_IP: &str = "198.19.32.1";
/// The names the API server's certificate carries (besides its addresses).
pub const APISERVER_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// kube-apiserver flags for the certificates and service-account keys in `pki` (as the harness's
/// PKI writes them: ca.crt, apiserver.crt/key, sa.pub/key) and the seed's service range. Shared by
/// the API-only test cluster and the kube lab.
pub fn apiserver_pki_args(pki: &Path) -> Vec<String> {
    let p = |name: &str| pki.join(name).display().to_string();
    vec![
        format!("--cert-dir={}", p("")),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
    ]
}
/// Env var naming an existing cluster's kubeconfig: tests use it and start nothing.
pub const KUBECONFIG_ENV: &str = "OCELOT_E2E_KUBECONFIG";
/// Env var naming the folder holding etcd, kube-apiserver, kubectl and helm (default: the build cache).
pub const BIN_ENV: &str = "OCELOT_K8S_BIN";

/// Bounds for starting: a loaded 2-core CI machine needs ~10 s; ports picked free can be taken meanwhile.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: u32 = 3;
/// Bound for one kubectl/helm run unless the caller gives its own.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const DIR_PREFIX: &str = "ocelot-cluster-";

/// The repository root (the workspace holding `crds/` and `e2e/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e crate lives inside the repository")
        .to_path_buf()
}

fn env_path(name: &str) -> Option<PathBuf> {
    // Empty counts as unset, as `${VAR:-default}` in build.sh does.
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where `e2e/cluster/build.sh` puts the binaries: `$OCELOT_K8S_BIN`, else
/// `${OCELOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocelot}/k8s-<version>/bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = env_path(BIN_ENV) {
        return dir;
    }
    cache_dir().join(format!("k8s-{K8S_VERSION}")).join("bin")
}

/// The project's cache folder, as scripts/common.sh has it: `${OCELOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocelot}`.
pub fn cache_dir() -> PathBuf {
    env_path("OCELOT_CACHE").unwrap_or_else(|| {
        env_path("XDG_CACHE_HOME")
            .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/root/.cache"))
            .join("ocelot")
    })
}

/// Path of one test cluster binary, or an error that says how to get it.
pub fn binary(name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = bin_dir().join(name);
    match fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
        _ => bail!(
            "{name} not found at {}: run e2e/cluster/build.sh (or scripts/setup.sh) to build etcd, kube-apiserver, \
             kubectl and helm, or set {BIN_ENV} to a folder that holds them",
            path.display()
        ),
    }
}

/// Writes the cluster's PKI into `dir`: CA, the API server's serving cert, an admin client cert (group
/// system:masters) and the service-account key pair.
fn write_pki(dir: &Path) -> Result<()> {
    let ca = Ca::new("ocelot-e2e-ca")?;
    // The service IP (first of the range) and in-cluster names, for anything that dials the service.
    let server = ca.server(
        "kube-apiserver",
        &[
            "127.0.0.1",
            APISERVER_SERVICE_IP,
            APISERVER_NAMES[0],
            APISERVER_NAMES[1],
            APISERVER_NAMES[2],
            APISERVER_NAMES[3],
            APISERVER_NAMES[4],
        ],
    )?;
    let admin = ca.client("ocelot-e2e-admin", &["system:masters"])?;
    let (sa_key, sa_pub) = service_account_keys()?;
    write_secret(&dir.join("ca.crt"), &ca.cert_pem())?;
    server.write(dir, "apiserver")?;
    admin.write(dir, "admin")?;
    write_secret(&dir.join("sa.key"), &sa_key)?;
    write_secret(&dir.join("sa.pub"), &sa_pub)?;
    Ok(())
}

/// Distinct free loopback ports: all are held open together, then released for the servers to bind.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

/// Removes work dirs of test binaries that died without cleaning up (SIGKILL skips the atexit hook).
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A running test cluster (or a handle on an external one). Dropping it stops what it started and removes
/// its files; the shared one is stopped at process exit instead.
pub struct TestCluster {
    kubeconfig: PathBuf,
    /// Work dir: PKI, etcd data, logs, kubeconfig, kubectl/helm caches. Removed on stop.
    dir: PathBuf,
    /// Started servers, in start order; empty for an external cluster.
    procs: Vec<ServerProcess>,
    stopped: AtomicBool,
    /// Why CRD files were not installed (see [`TestCluster::crd_errors`]).
    crd_errors: Vec<String>,
}

impl TestCluster {
    /// Uses the cluster named by `OCELOT_E2E_KUBECONFIG` if set, else starts one. Either way installs the
    /// repository's CRDs.
    pub fn from_env_or_start() -> Result<Self> {
        match env_path(KUBECONFIG_ENV) {
            Some(kubeconfig) => {
                binary("kubectl")?;
                let mut cluster = TestCluster {
                    kubeconfig,
                    dir: Self::work_dir()?,
                    procs: Vec::new(),
                    stopped: AtomicBool::new(false),
                    crd_errors: Vec::new(),
                };
                cluster.crd_errors = cluster.install_crds()?;
                cluster.warn_crd_errors();
                Ok(cluster)
            }
            None => Self::start(),
        }
    }

    /// Starts etcd and kube-apiserver on free loopback ports, waits for `/readyz`, installs the CRDs.
    pub fn start() -> Result<Self> {
        for name in ["etcd", "kube-apiserver", "kubectl"] {
            binary(name)?;
        }
        sweep_stale_dirs();
        let mut errors = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            // Only starting the servers is retried (a free port may be taken meanwhile); a bad CRD is not.
            match Self::start_servers() {
                Ok(mut cluster) => {
                    cluster.crd_errors = cluster.install_crds()?;
                    cluster.warn_crd_errors();
                    return Ok(cluster);
                }
                Err(e) => {
                    eprintln!(
                        "[ocelot-e2e] test cluster start attempt {attempt}/{START_ATTEMPTS} failed: {e:#}"
                    );
                    errors.push(format!("attempt {attempt}: {e:#}"));
                }
            }
        }
        bail!("test cluster did not start:\n{}", errors.join("\n"))
    }

    fn warn_crd_errors(&self) {
        for e in &self.crd_errors {
            eprintln!("[ocelot-e2e] WARNING: CRD not installed: {e}");
        }
    }

    fn work_dir() -> Result<PathBuf> {
        // The pid in the name lets sweep_stale_dirs find dirs whose owner is gone.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("create the test cluster's temp dir")?;
        Ok(dir.keep())
    }

    fn start_servers() -> Result<Self> {
        let mut cluster = TestCluster {
            kubeconfig: PathBuf::new(),
            dir: Self::work_dir()?,
            procs: Vec::new(),
            stopped: AtomicBool::new(false),
            crd_errors: Vec::new(),
        };
        // From here an early return drops `cluster`, which kills what started and removes the dir.
        let dir = cluster.dir.clone();
        let pki = dir.join("pki");
        write_pki(&pki).context("generate certificates")?;
        let [etcd_client, etcd_peer, api_port] = free_ports::<3>()?;

        let mut etcd = Command::new(binary("etcd")?);
        let peer = format!("http://127.0.0.1:{etcd_peer}");
        let client = format!("http://127.0.0.1:{etcd_client}");
        etcd.arg("--name=default")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            // Test data is thrown away: fsync would only slow every write.
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        cluster
            .procs
            .push(spawn_server("etcd", etcd, &dir.join("etcd.log"))?);

        let p = |name: &str| pki.join(name).display().to_string();
        let mut api = Command::new(binary("kube-apiserver")?);
        api.arg(format!("--etcd-servers={client}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .args(apiserver_pki_args(&pki))
            // Node too, as kubeadm: agents' node-scoped access is tested against the real authorizer chain.
            .arg("--authorization-mode=Node,RBAC")
            // Default admission plugins (they include ValidatingAdmissionPolicy) are kept as they are.
            .arg("--allow-privileged=true")
            // No kubernetes-service Endpoints: they would point at loopback, which nothing here dials.
            .arg("--endpoint-reconciler-type=none")
            // Profiling on demand (`OCELOT_E2E_APISERVER_PROFILING=1`), for benchmark analysis.
            .arg(format!(
                "--profiling={}",
                std::env::var_os("OCELOT_E2E_APISERVER_PROFILING").is_some()
            ));
        cluster.procs.push(spawn_server(
            "kube-apiserver",
            api,
            &dir.join("kube-apiserver.log"),
        )?);

        cluster.kubeconfig = dir.join("kubeconfig");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ocelot-e2e\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    \
             certificate-authority: {ca:?}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt:?}\n    \
             client-key: {key:?}\ncontexts:\n- name: ocelot-e2e\n  context:\n    cluster: ocelot-e2e\n    user: admin\n    \
             namespace: default\ncurrent-context: ocelot-e2e\n",
            ca = p("ca.crt"),
            crt = p("admin.crt"),
            key = p("admin.key"),
        );
        fs::write(&cluster.kubeconfig, kubeconfig)?;

        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        // Bounded by time and by count (a poll costs at least one kubectl run, ~50 ms).
        for _ in 0..2_000 {
            for proc in &self.procs {
                if let Some(status) = proc.exited() {
                    bail!(
                        "{} exited ({status}) before the API server was ready; last lines of {}:\n{}",
                        proc.name(),
                        proc.log_path().display(),
                        tail(proc.log_path(), 30)
                    );
                }
            }
            let out = self.kubectl_timeout(
                ["get", "--raw", "/readyz", "--request-timeout=5s"],
                None,
                Duration::from_secs(10),
            );
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return Ok(());
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if start.elapsed() > READY_TIMEOUT {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        let logs = self
            .procs
            .iter()
            .map(|p| {
                format!(
                    "--- last lines of {}:\n{}",
                    p.log_path().display(),
                    tail(p.log_path(), 20)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "kube-apiserver not ready after {:?}; last /readyz answer: {}\n{logs}",
            start.elapsed(),
            last.trim()
        )
    }

    /// Applies every `crds/*.yaml` of the repository (server-side: large CRDs exceed the client-side
    /// last-applied annotation limit) and waits until each is Established. Returns one message per file the
    /// API server refused or that did not become Established: those are kept out of the way of tests that
    /// need no CRD (see [`TestCluster::crd_errors`]); an unreadable `crds/` is an error.
    pub fn install_crds(&self) -> Result<Vec<String>> {
        let dir = repo_root().join("crds");
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension() == Some(OsStr::new("yaml")))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
        };
        files.sort();
        let mut errors = Vec::new();
        let mut applied = Vec::new();
        // One file at a time, so one refused CRD names itself and does not hide the others.
        for file in &files {
            let out = self.kubectl_timeout(
                [
                    OsStr::new("apply"),
                    OsStr::new("--server-side"),
                    OsStr::new("--force-conflicts"),
                    OsStr::new("--field-manager=ocelot-e2e"),
                    OsStr::new("-f"),
                    file.as_os_str(),
                ],
                None,
                COMMAND_TIMEOUT,
            );
            if out.status.success() {
                applied.push(file);
            } else {
                errors.push(format!(
                    "{}: refused: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        if !applied.is_empty() {
            let mut wait: Vec<&OsStr> = ["wait", "--for=condition=Established", "--timeout=60s"]
                .map(OsStr::new)
                .to_vec();
            for file in &applied {
                wait.extend([OsStr::new("-f"), file.as_os_str()]);
            }
            let out = self.kubectl_timeout(wait, None, Duration::from_secs(90));
            if !out.status.success() {
                errors.push(format!(
                    "not Established within 60 s: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(errors)
    }

    /// CRD files of `crds/` that could not be installed, with the API server's reasons (empty when all are
    /// Established).
    pub fn crd_errors(&self) -> &[String] {
        &self.crd_errors
    }

    /// Path of an admin (system:masters) kubeconfig for this cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Work dir of this cluster (removed on stop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Process ids of the servers this handle started (none for an external cluster).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid()).collect()
    }

    /// A new admin client. New each call: a client is bound to the tokio runtime it first runs on, and each
    /// `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<kube::Client> {
        use kube::config::{Config, KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("read kubeconfig {}", self.kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs kubectl against this cluster, bounded by [`COMMAND_TIMEOUT`].
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_timeout(args, None, COMMAND_TIMEOUT)
    }

    /// Runs kubectl with `stdin` as its standard input (e.g. `apply -f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_timeout(args, Some(stdin.as_bytes()), COMMAND_TIMEOUT)
    }

    /// Runs kubectl, killing it after `timeout`.
    pub fn kubectl_timeout<I, S>(&self, args: I, stdin: Option<&[u8]>, timeout: Duration) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(binary("kubectl").unwrap_or_else(|e| panic!("{e:#}")));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // Own discovery cache: another cluster may have had this host:port with other CRDs.
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args);
        run_output(&mut cmd, stdin, timeout)
    }

    /// Runs helm against this cluster, with its config, cache and data kept in the work dir.
    pub fn helm<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(binary("helm").unwrap_or_else(|e| panic!("{e:#}")));
        let home = self.dir.join("helm");
        cmd.env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        run_output(&mut cmd, None, COMMAND_TIMEOUT)
    }

    /// Kills the servers (API server first) and removes the work dir. Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for proc in self.procs.iter().rev() {
            proc.kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<std::result::Result<TestCluster, String>> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(cluster)) = SHARED.get() {
        cluster.stop();
    }
}

/// The cluster shared by all tests of this test binary, started on first use. Panics with the reason if it
/// cannot start (every later caller gets the same message; no retry per test).
pub fn shared() -> &'static TestCluster {
    let cluster = SHARED.get_or_init(|| {
        let cluster = TestCluster::from_env_or_start().map_err(|e| format!("{e:#}"));
        if cluster.is_ok() {
            // SAFETY: registers a plain extern "C" function; it only touches the static above.
            unsafe { libc::atexit(stop_shared_at_exit) };
        }
        cluster
    });
    match cluster {
        Ok(c) => c,
        Err(e) => panic!("test cluster unavailable: {e}"),
    }
}

/// Admin kubeconfig of the shared cluster.
pub fn kubeconfig_path() -> &'static Path {
    shared().kubeconfig_path()
}

/// A new admin client for the shared cluster.
pub async fn client() -> kube::Client {
    shared()
        .client()
        .await
        .unwrap_or_else(|e| panic!("kube client for the test cluster: {e:#}"))
}

/// kubectl against the shared cluster.
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    shared().kubectl(args)
}

/// kubectl against the shared cluster, with `stdin` as its input.
pub fn kubectl_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    shared().kubectl_stdin(args, stdin)
}

/// helm against the shared cluster.
pub fn helm<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    shared().helm(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_build_script_and_go_mod() {
        let root = repo_root().join("e2e/cluster");
        let build = fs::read_to_string(root.join("build.sh")).unwrap();
        assert!(
            build.contains(&format!("K8S_VERSION={K8S_VERSION} ")),
            "K8S_VERSION differs between cluster.rs and build.sh"
        );
        let go_mod = fs::read_to_string(root.join("go.mod")).unwrap();
        assert!(
            go_mod.contains(&format!("k8s.io/kubernetes {K8S_VERSION}")),
            "go.mod does not require k8s.io/kubernetes {K8S_VERSION}"
        );
    }
}
