//! The kube lab: real Kubernetes nodes on the netns lab's seed topology. Each kube node is a lab node (its
//! own netns with `ens4` on the 198.19.0.0/20 fabric) plus its own mount namespace, cgroup root,
//! containerd (built from its Go module, Debian's runc) and kubelet; `control` also runs etcd,
//! kube-apiserver, kube-scheduler and kube-controller-manager, listening only inside its netns.
//! `host1` (if asked for) is a plain lab node outside the cluster.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ocelot_e2e::kubelab::KubeLab;
//! let lab = KubeLab::start(&["control", "node1", "node2"])?; // returns once every node is Ready
//! let nodes = lab.kubectl_ok(["get", "nodes", "-o", "wide"])?;
//! let routes = lab.node("node1").exec_ok(["ip", "route"])?;
//! # drop((nodes, routes)); Ok(()) }
//! ```
//!
//! Pods use the local images [`TOOLS_IMAGE`] and [`NGINX_IMAGE`] with `imagePullPolicy: Never`.
//! Dropping the lab (also while unwinding from a panic) stops every daemon, container and shim and removes
//! the mount namespaces, cgroups and netns; when the test binary is killed, its daemons die with it
//! (PR_SET_PDEATHSIG) and the next lab's stale sweep ([`crate::lab::cleanup_stale`]) removes the rest.

mod bringup;
pub mod config;
mod forward;
pub mod image;
pub mod ocelot_images;

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use forward::Forwarder;
pub use image::{NGINX_IMAGE, PAUSE_IMAGE, TOOLS_IMAGE};

use crate::lab::{self, Lab, LabProcess, Netns, Node, cgroup, find_tool, mntns};
use crate::proc::{ServerProcess, run_bounded, run_output};

/// The node that runs the control plane (as in the seed).
pub const CONTROL_NODE: &str = "control";
/// Seed nodes that are not Kubernetes nodes.
pub const OUTSIDE_NODES: &[&str] = &["host1"];
/// kube-apiserver's port on the control node's `ens4` address.
pub const API_PORT: u16 = 6443;
/// Bound for one kubectl run unless the caller gives its own.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for the whole start (to every node Ready).
pub const START_TIMEOUT: Duration = Duration::from_secs(240);

/// What a custom CNI's conflist is rendered from, per node.
#[derive(Clone, Debug)]
pub struct CniNode {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The pod CIDR the lab gives this node (the reference plugins' host-local range).
    pub pod_cidr: String,
}

/// Renders one node's conflist.
pub type ConflistFn = Arc<dyn Fn(&CniNode) -> String + Send + Sync>;

/// Which CNI plugin the nodes' containerd calls.
#[derive(Clone)]
pub enum Cni {
    /// Debian's reference `bridge` + `host-local`, one pod CIDR per node; the lab adds routes between the
    /// nodes' CIDRs on the fabric. The default until `ocelot-cni` exists.
    Bridge,
    /// The files of `bin_dir` copied into every node's /opt/cni/bin, and `conflist` rendered into its
    /// /etc/cni/net.d. The lab adds no routes: that is the plugin's (or its agent's) job.
    Custom {
        bin_dir: PathBuf,
        conflist: ConflistFn,
    },
    /// Nothing: a DaemonSet installs the CNI into each node's /etc/cni/net.d and /opt/cni/bin (hostPath),
    /// as a chart does. [`KubeLab::start`] then returns once every node has registered (NotReady until
    /// the CNI is there).
    Installed,
}

impl std::fmt::Debug for Cni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cni::Bridge => f.write_str("Bridge"),
            Cni::Custom { bin_dir, .. } => write!(f, "Custom({})", bin_dir.display()),
            Cni::Installed => f.write_str("Installed"),
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct KubeLabConfig {
    /// Seed node names (`control` must be one of them; `host1` stays outside the cluster).
    pub nodes: Vec<String>,
    pub cni: Cni,
}

impl KubeLabConfig {
    pub fn new(nodes: &[&str]) -> KubeLabConfig {
        KubeLabConfig {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            cni: Cni::Bridge,
        }
    }

    pub fn cni(mut self, cni: Cni) -> KubeLabConfig {
        self.cni = cni;
        self
    }
}

/// One Kubernetes node of the lab.
#[derive(Debug)]
pub struct KubeNode {
    node: Node,
    dir: PathBuf,
    mntns: PathBuf,
    cgroup: String,
    pod_cidr: String,
}

impl KubeNode {
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// Address of `ens4` (the node's InternalIP).
    pub fn ip(&self) -> Ipv4Addr {
        self.node.ip()
    }

    /// The pod CIDR the lab gives this node.
    pub fn pod_cidr(&self) -> &str {
        &self.pod_cidr
    }

    /// The node's netns (for `spawn`, `ping` and friends; they run in the host's mount namespace).
    pub fn netns(&self) -> &Netns {
        self.node.netns()
    }

    /// The node's folder: containerd's and kubelet's state, its configs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The nsfs file of the node's mount namespace.
    pub fn mntns(&self) -> &Path {
        &self.mntns
    }

    /// The node's cgroup root name (one per hierarchy).
    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }

    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `PROG ARGS…` inside the node's netns and mount namespace (where its `/run/netns` holds the pods'
    /// `cni-…` netns and `/var/lib/kubelet` is its own).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        nsenter(self.netns(), Some(&self.mntns), args)
    }

    /// Runs a command in the node (at most [`lab::EXEC_TIMEOUT`]), capturing its output.
    pub fn exec<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_bounded(&mut self.command(args), None, lab::EXEC_TIMEOUT)
    }

    /// Runs a command in the node and returns its stdout; the error shows status, stdout and stderr.
    pub fn exec_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = crate::lab::to_strings(args);
        let out = self
            .exec(&args)
            .with_context(|| format!("running `{}` on node {}", args.join(" "), self.name()))?;
        ok_stdout(
            &out,
            &format!("`{}` on node {}", args.join(" "), self.name()),
        )
    }

    /// `ctr -n k8s.io ARGS…` against the node's containerd.
    pub fn ctr<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<String> = vec![
            crate::cluster::binary("ctr")?.display().to_string(),
            "--address".into(),
            self.containerd_socket().display().to_string(),
            "-n".into(),
            "k8s.io".into(),
        ];
        all.extend(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        self.exec_ok(all)
    }

    /// Imports an OCI archive into the node's containerd (namespace `k8s.io`, where CRI looks).
    pub fn import_image(&self, archive: &Path) -> Result<()> {
        self.ctr(["images", "import", &archive.display().to_string()])
            .map(drop)
            .with_context(|| format!("importing {} on {}", archive.display(), self.name()))
    }

    /// Names of the pods' network namespaces (`cni-…`) on this node.
    pub fn cni_netns(&self) -> Result<Vec<String>> {
        let out = self.exec_ok(["ip", "netns", "list"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("cni-"))
            .map(String::from)
            .collect())
    }
}

/// `nsenter --net=NETNS [--mount=MNTNS] -- PROG ARGS…`, PROG resolved on the host first. nsenter (unlike
/// `ip netns exec`) neither makes a new mount namespace nor remounts /sys, so long-running daemons keep
/// the real /sys/fs/cgroup and share their mounts with their node.
fn nsenter<I, S>(netns: &Netns, mntns: Option<&Path>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(find_tool("nsenter").unwrap_or_else(|| PathBuf::from("nsenter")));
    cmd.arg(format!("--net={}", netns.path().display()));
    if let Some(m) = mntns {
        cmd.arg(format!("--mount={}", m.display()));
    }
    cmd.arg("--");
    let mut args = args.into_iter();
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

fn ok_stdout(out: &Output, what: &str) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running kube lab. See the module docs.
pub struct KubeLab {
    /// `None` only during cleanup (the netns go after the daemons, before the cgroups).
    lab: Option<Lab>,
    nodes: Vec<KubeNode>,
    cni: Cni,
    pki: PathBuf,
    admin_kubeconfig: PathBuf,
    /// The API on the host's loopback, and an admin kubeconfig that uses it.
    api_forward: Option<Forwarder>,
    host_kubeconfig: PathBuf,
    images: Vec<PathBuf>,
    /// Daemons in start order.
    procs: Vec<ServerProcess>,
    start_time: Duration,
}

impl KubeLab {
    /// Starts the named seed nodes with the reference CNI and waits until every kube node is Ready.
    pub fn start(nodes: &[&str]) -> Result<KubeLab> {
        KubeLab::start_with(KubeLabConfig::new(nodes))
    }

    pub fn start_with(config: KubeLabConfig) -> Result<KubeLab> {
        bringup::start(config)
    }

    /// The underlying netns lab (fabric, all seed nodes including `host1`).
    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("lab present until drop")
    }

    /// Keep the run's folder (logs, configs) when the lab is removed, as after a failure.
    pub fn keep_logs(&mut self) {
        if let Some(l) = self.lab.as_mut() {
            l.keep_logs();
        }
    }

    /// The run's folder: every daemon's log (`<node>.<daemon>.log`), configs, state.
    pub fn dir(&self) -> &Path {
        self.lab().dir()
    }

    /// This run's prefix; every netns, cgroup and mount namespace of the run starts with it.
    pub fn prefix(&self) -> &str {
        self.lab().prefix()
    }

    /// The kube node called `name`; panics with the list if there is none.
    pub fn node(&self, name: &str) -> &KubeNode {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name()).collect();
                panic!("no kube node {name:?}; kube nodes: {names:?}")
            })
    }

    pub fn nodes(&self) -> &[KubeNode] {
        &self.nodes
    }

    pub fn cni(&self) -> &Cni {
        &self.cni
    }

    /// The control node.
    pub fn control(&self) -> &KubeNode {
        self.node(CONTROL_NODE)
    }

    /// The API server's URL (reachable from every lab netns, not from the host's).
    pub fn api_url(&self) -> String {
        format!("https://{}:{API_PORT}", self.control().ip())
    }

    /// An admin (system:masters) kubeconfig; usable from inside the lab's netns (see [`KubeLab::kubectl`]).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// An admin kubeconfig for host-side clients: it points at [`KubeLab::api_forward_addr`].
    pub fn host_kubeconfig(&self) -> &Path {
        &self.host_kubeconfig
    }

    /// Where the host's loopback forwards to the API server (`127.0.0.1:<port>`).
    pub fn api_forward_addr(&self) -> std::net::SocketAddr {
        self.api_forward
            .as_ref()
            .expect("forwarder runs until drop")
            .local_addr()
    }

    /// A new admin client (from the host, through the forwarder). New each call: a client is bound to the
    /// tokio runtime it first runs on.
    pub async fn client(&self) -> Result<kube::Client> {
        use kube::config::{Config, KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(&self.host_kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The cluster's CA and certificates (`ca.crt`, `admin.crt`, …).
    pub fn pki_dir(&self) -> &Path {
        &self.pki
    }

    /// The OCI archives imported into every node.
    pub fn image_archives(&self) -> &[PathBuf] {
        &self.images
    }

    /// Writes `image` as an OCI archive into the run's folder and imports it into every node (pods then
    /// use it with `imagePullPolicy: Never`). Returns the archive.
    pub fn import(&self, image: &image::ImageBuilder) -> Result<PathBuf> {
        let file: String = image
            .name()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = self.dir().join("images").join(format!("{file}.tar"));
        image.write_oci_archive(&path)?;
        for n in &self.nodes {
            n.import_image(&path)?;
        }
        Ok(path)
    }

    /// How long [`KubeLab::start`] took until every node was Ready.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// Pids of the lab's daemons (etcd, apiserver, scheduler, controller-manager, containerds, kubelets).
    pub fn daemon_pids(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .map(|p| (p.name().to_string(), p.pid()))
            .collect()
    }

    /// Every process of the run: daemons, shims (in the nodes' netns) and containers (in the nodes'
    /// cgroups).
    pub fn all_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.procs.iter().map(|p| p.pid()).collect();
        for n in &self.nodes {
            pids.extend(n.netns().pids());
            pids.extend(cgroup::pids(&n.cgroup));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// kubectl as admin, run inside the control node's netns (the API listens only there), bounded by
    /// [`KUBECTL_TIMEOUT`].
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_timeout(args, None, KUBECTL_TIMEOUT)
    }

    /// kubectl with `stdin` as input (e.g. `apply -f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_timeout(args, Some(stdin.as_bytes()), KUBECTL_TIMEOUT)
    }

    pub fn kubectl_timeout<I, S>(&self, args: I, stdin: Option<&[u8]>, timeout: Duration) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command(args);
        run_output(&mut cmd, stdin, timeout)
    }

    /// kubectl's stdout, or an error with its stderr.
    pub fn kubectl_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = crate::lab::to_strings(args);
        ok_stdout(&self.kubectl(&args), &format!("kubectl {}", args.join(" ")))
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        ok_stdout(
            &self.kubectl_stdin(["apply", "-f", "-"], yaml),
            "kubectl apply",
        )
    }

    /// Starts a long-running kubectl (`port-forward`, `logs -f`) in the control node's netns; it is
    /// stopped when the handle is dropped.
    pub fn kubectl_spawn<I, S>(&self, args: I) -> Result<LabProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let cmd = self.kubectl_command(args);
        let mut all = vec![cmd.get_program().to_os_string()];
        all.extend(cmd.get_args().map(|a| a.to_os_string()));
        // `all` starts with nsenter; Netns::spawn wraps in `ip netns exec` itself, so skip the nsenter part.
        let skip = all.iter().position(|a| a == "--").map_or(0, |i| i + 1);
        self.control().netns().spawn(&all[skip..])
    }

    fn kubectl_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let kubectl = crate::cluster::binary("kubectl").unwrap_or_else(|e| panic!("{e:#}"));
        let mut cmd = nsenter(self.control().netns(), None, [kubectl.as_os_str()]);
        cmd.arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir().join("kube-cache"))
            .args(args);
        cmd
    }

    /// `program ARGS` as the admin, run inside the control node's netns with `KUBECONFIG` set (helm,
    /// ocelotctl, `kubectl ocelot`); the caller bounds it (e.g. [`run_output`]).
    pub fn admin_command<I, S>(&self, program: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = nsenter(self.control().netns(), None, [program.as_os_str()]);
        cmd.env("KUBECONFIG", &self.admin_kubeconfig).args(args);
        cmd
    }

    /// `program ARGS` as [`KubeLab::admin_command`], bounded by `timeout`; its stdout, or an error
    /// with its stderr.
    pub fn admin_ok<I, S>(&self, program: &Path, args: I, timeout: Duration) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = crate::lab::to_strings(args);
        let out = run_output(&mut self.admin_command(program, &args), None, timeout);
        ok_stdout(&out, &format!("{} {}", program.display(), args.join(" ")))
    }

    /// Waits until `kubectl wait` succeeds for `args` (e.g. `["deployment/web", "--for=condition=Available"]`).
    pub fn wait(&self, args: &[&str], timeout: Duration) -> Result<()> {
        let mut all = vec![
            "wait".to_string(),
            format!("--timeout={}s", timeout.as_secs()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = self.kubectl_timeout(&all, None, timeout + Duration::from_secs(30));
        ok_stdout(&out, &format!("kubectl {}", all.join(" "))).map(drop)
    }

    fn cleanup(&mut self) {
        // Its dialer thread sits in the control netns and would keep that alive.
        drop(self.api_forward.take());
        // Daemons first (kubelets would restart what we kill next), newest first.
        for p in self.procs.iter().rev() {
            p.kill();
        }
        self.procs.clear();
        for n in &self.nodes {
            // Containers run in pod netns and outlive their shims; they are all in the node's cgroup.
            cgroup::kill_all(&n.cgroup);
            // Shims run in the node's netns.
            lab::kill_netns_processes(n.netns().name(), Duration::from_millis(500));
            if let Err(e) = mntns::remove(&lab_name(&n.mntns)) {
                eprintln!("ocelot-e2e: kube lab cleanup: {e:#}");
            }
        }
        // The netns (and with them every veth and pod netns the mount namespaces held).
        drop(self.lab.take());
        for n in &self.nodes {
            if let Err(e) = cgroup::remove(&n.cgroup) {
                eprintln!("ocelot-e2e: kube lab cleanup: {e:#}");
            }
        }
        // The lab's own drop (above) released its host marker; this restores kubelet's sysctls if no lab
        // is left.
        lab::host::release(None);
    }
}

fn lab_name(mntns_file: &Path) -> String {
    mntns_file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        self.cleanup();
    }
}
