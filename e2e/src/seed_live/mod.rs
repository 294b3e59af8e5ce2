//! The seed lab, live: real Kubernetes nodes (the kube lab), Ocelot installed with `helm install` from
//! `helm/ocelot` on locally built images, then the seed's steps replayed in order ([`steps`]), each
//! printing what it did and what it observed and stopping at the first mismatch. `ocelot-lab` (the
//! README's first command) and `e2e/tests/seed_live.rs` run the same code.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ocelot_e2e::seed_live::{Progress, SeedLab};
//! let mut p = Progress::new(12);
//! let lab = SeedLab::start(&mut p)?;
//! ocelot_e2e::seed_live::steps::replay(&lab, &mut p)?;
//! # Ok(()) }
//! ```
pub mod router;
pub mod steps;
mod wireguard;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::agent::boringtun_binary;
use crate::cluster::{binary, repo_root};
use crate::daemon::sibling_binary;
use crate::kubelab::{Cni, KubeLab, KubeLabConfig, ocelot_images};
use crate::lab::retry;

/// The seed's machines: the three cluster nodes and host1 (the router outside the cluster).
pub const NODES: &[&str] = &["control", "node1", "node2", "host1"];
/// Where the chart is installed.
pub const NAMESPACE: &str = "kube-system";
pub const RELEASE: &str = "ocelot";

/// The chart values the lab needs on top of the defaults: local images, the seed's default pool and
/// pod MTU, the API server's own address (no kube-proxy in the lab), and the FelixConfiguration
/// `default` that calico-node would create (the seed patches it).
pub const VALUES: &[&str] = &[
    "operator.image.pullPolicy=Never",
    "agent.image.pullPolicy=Never",
    "operator.replicas=1",
    "operator.defaultIPv4PoolCIDR=198.19.16.0/21",
    "operator.nodePrefixLength=20",
    "agent.podMTU=1410",
    "kubernetesServiceEndpoint.host=198.19.0.1",
    "kubernetesServiceEndpoint.port=6443",
    "defaults.felixConfiguration.enabled=true",
];

/// Numbered steps with the elapsed time, as the lab prints them.
pub struct Progress {
    start: Instant,
    n: usize,
    total: usize,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            start: Instant::now(),
            n: 0,
            total,
        }
    }

    pub fn step(&mut self, what: &str) {
        self.n += 1;
        println!(
            "\n[{}/{}] {what} (elapsed {:.1}s)",
            self.n,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The running lab with Ocelot installed.
pub struct SeedLab {
    pub kube: KubeLab,
    /// Where `ocelotctl` and `kubectl-ocelot` were built.
    bins: PathBuf,
    /// How long each phase of the start took.
    pub timings: Vec<(&'static str, Duration)>,
}

impl SeedLab {
    /// Starts the nodes, builds and imports Ocelot's images, installs the chart and waits until every
    /// agent and node is Ready.
    pub fn start(p: &mut Progress) -> Result<SeedLab> {
        let bins = sibling_binary("ocelot-agent")
            .parent()
            .context("binary folder")?
            .to_path_buf();
        let mut timings = Vec::new();
        p.step("real Kubernetes nodes (etcd, kube-apiserver, scheduler, controller-manager, kubelet, containerd, runc) on the seed's 198.19.0.0/20 fabric");
        let t = Instant::now();
        let kube = KubeLab::start_with(KubeLabConfig::new(NODES).cni(Cni::Installed))
            .context("starting the kube lab (needs root and scripts/setup.sh)")?;
        timings.push(("nodes registered", t.elapsed()));
        println!(
            "control, node1, node2 registered (NotReady: no CNI yet) in {:.1}s; logs in {}",
            kube.start_time().as_secs_f64(),
            kube.dir().display()
        );

        p.step("build Ocelot's images locally and import them into every node");
        let t = Instant::now();
        let scratch = kube.dir().join("image-build");
        for img in [
            ocelot_images::operator(&bins, &scratch)?,
            ocelot_images::agent(&bins, &boringtun_binary(), &scratch)?,
        ] {
            let archive = kube.import(&img)?;
            println!(
                "{} ({:.1} MiB) imported into {} nodes",
                img.name(),
                std::fs::metadata(&archive)?.len() as f64 / (1 << 20) as f64,
                kube.nodes().len()
            );
        }
        timings.push(("images built and imported", t.elapsed()));

        let lab = SeedLab {
            kube,
            bins,
            timings,
        };
        p.step("helm install ocelot helm/ocelot (operator Deployment, agent DaemonSet, CRDs)");
        let t = Instant::now();
        lab.helm_install()?;
        lab.wait_installed()?;
        let mut lab = lab;
        lab.timings
            .push(("helm install to every node Ready", t.elapsed()));
        println!(
            "$ kubectl get nodes\n{}",
            lab.kube.kubectl_ok(["get", "nodes"])?
        );
        Ok(lab)
    }

    fn helm_install(&self) -> Result<()> {
        let helm = binary("helm")?;
        let home = self.kube.dir().join("helm");
        let chart = repo_root().join("helm/ocelot");
        let mut args: Vec<String> = vec![
            "install".into(),
            RELEASE.into(),
            chart.display().to_string(),
            "--namespace".into(),
            NAMESPACE.into(),
        ];
        for v in VALUES {
            args.push("--set".into());
            args.push((*v).into());
        }
        println!("$ helm {}", args.join(" "));
        let mut cmd = self.kube.admin_command(&helm, &args);
        cmd.env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"));
        let out = crate::proc::run_output(&mut cmd, None, Duration::from_secs(120));
        if !out.status.success() {
            bail!(
                "helm install failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{}", text.lines().take(6).collect::<Vec<_>>().join("\n"));
        println!();
        Ok(())
    }

    /// Every agent Ready (the DaemonSet rolled out), the operator available, every node Ready.
    fn wait_installed(&self) -> Result<()> {
        let k = &self.kube;
        let ds = format!("daemonset/{RELEASE}-agent");
        let deploy = format!("deployment/{RELEASE}-operator");
        for (what, args) in [
            (
                "the agents",
                vec!["rollout", "status", "-n", NAMESPACE, &ds, "--timeout=180s"],
            ),
            (
                "the operator",
                vec![
                    "rollout",
                    "status",
                    "-n",
                    NAMESPACE,
                    &deploy,
                    "--timeout=120s",
                ],
            ),
        ] {
            let out = k.kubectl_timeout(&args, None, Duration::from_secs(200));
            if !out.status.success() {
                bail!(
                    "{what} did not become ready: {}\n{}\n$ kubectl get pods -A -o wide\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.pod_diagnostics(),
                    k.kubectl_ok(["get", "pods", "-A", "-o", "wide"])
                        .unwrap_or_default()
                );
            }
            println!("{what}: {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        k.wait(
            &["nodes", "--all", "--for=condition=Ready"],
            Duration::from_secs(120),
        )
        .context("nodes Ready once the CNI is installed")
    }

    /// The agents' and operator's logs and events, for a failed start.
    pub fn pod_diagnostics(&self) -> String {
        let k = &self.kube;
        let mut out = String::new();
        for sel in [
            "app.kubernetes.io/name=ocelot-agent",
            "app.kubernetes.io/name=ocelot-operator",
        ] {
            for args in [
                vec!["describe", "pods", "-n", NAMESPACE, "-l", sel],
                vec![
                    "logs",
                    "-n",
                    NAMESPACE,
                    "-l",
                    sel,
                    "--tail=30",
                    "--prefix",
                    "--all-containers",
                ],
            ] {
                out.push_str(&format!("$ kubectl {}\n", args.join(" ")));
                out.push_str(&k.kubectl_ok(&args).unwrap_or_else(|e| format!("{e:#}")));
            }
        }
        out
    }

    /// The folder of the workspace's binaries (ocelotctl, kubectl-ocelot).
    pub fn bins(&self) -> &Path {
        &self.bins
    }

    /// `ocelotctl ARGS` as the admin.
    pub fn ocelotctl(&self, args: &[&str]) -> Result<String> {
        self.kube
            .admin_ok(&self.bins.join("ocelotctl"), args, Duration::from_secs(60))
    }

    /// `kubectl ocelot ARGS`: kubectl finds `kubectl-ocelot` on PATH, as a user's shell would.
    pub fn kubectl_ocelot(&self, args: &[&str]) -> Result<String> {
        let kubectl = binary("kubectl")?;
        let mut cmd = self
            .kube
            .admin_command(&kubectl, ["ocelot"].iter().chain(args));
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.bins.display()));
        let out = crate::proc::run_output(&mut cmd, None, Duration::from_secs(60));
        if !out.status.success() {
            bail!(
                "kubectl ocelot {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Retries `f` every second until it passes or `timeout`, then fails with its last error.
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        retry(
            what,
            timeout.as_secs().max(1) as u32,
            timeout,
            Duration::from_secs(1),
            f,
        )
    }
}
