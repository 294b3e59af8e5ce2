//! BIRD 2 on the node: the agent writes bird.conf (rendered by the core), starts BIRD in the node's
//! network namespace when it is not running, and applies a changed config with `birdc configure`
//! (sessions whose settings did not change stay up). BIRD is a daemon of its own: it keeps running
//! across agent restarts, and a restarted agent that renders the same config changes nothing.
//! A worker task does the blocking process work and reports sessions to the agent's loop.
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ocelot::api::nodestate::BGPPeerStatusEntry;
use tokio::sync::{mpsc, watch};

use crate::agent::Msg;
use crate::netns::NodeNetns;

/// How often sessions are read while nothing else happens.
const POLL: Duration = Duration::from_secs(2);
/// Bound of one `bird`/`birdc` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Where BIRD's files live and how it is run.
#[derive(Clone, Debug)]
pub struct BirdPaths {
    pub conf: PathBuf,
    pub ctl: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    pub bird: PathBuf,
    pub birdc: PathBuf,
}

impl BirdPaths {
    /// BIRD's files in the agent's state folder, programs from PATH unless given.
    pub fn in_dir(dir: &Path, bird: PathBuf, birdc: PathBuf) -> BirdPaths {
        BirdPaths {
            conf: dir.join("bird.conf"),
            ctl: dir.join("bird.ctl"),
            pid: dir.join("bird.pid"),
            log: dir.join("bird.log"),
            bird,
            birdc,
        }
    }
}

/// What the worker last saw.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpReport {
    /// Ok when BIRD runs the desired config (or none is wanted), else why the config could not be applied.
    pub applied: Result<(), String>,
    pub peers: Vec<BGPPeerStatusEntry>,
}

struct Bird {
    paths: BirdPaths,
    netns: NodeNetns,
}

fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s.trim().to_string()
}

impl Bird {
    async fn run(&self, mut cmd: std::process::Command) -> Result<Output, String> {
        let what = format!("{:?}", cmd.get_program());
        cmd.stdin(std::process::Stdio::null());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        match tokio::time::timeout(RUN_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("cannot run {what}: {e}")),
            Err(_) => Err(format!("{what} did not finish within {RUN_TIMEOUT:?}")),
        }
    }

    async fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = std::process::Command::new(&self.paths.birdc);
        cmd.arg("-s").arg(&self.paths.ctl).args(args);
        let out = self.run(cmd).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("birdc {}: {}", args.join(" "), text(&out)))
        }
    }

    async fn running(&self) -> bool {
        self.birdc(&["show", "status"]).await.is_ok()
    }

    /// Makes BIRD run `conf`: unchanged file and running → nothing; else check the syntax on a
    /// temporary file, swap it in, and reconfigure (or start BIRD).
    async fn apply(&self, conf: &str) -> Result<&'static str, String> {
        let running = self.running().await;
        let current = std::fs::read_to_string(&self.paths.conf).ok();
        if running && current.as_deref() == Some(conf) {
            return Ok("unchanged");
        }
        let tmp = self.paths.conf.with_extension("conf.new");
        std::fs::write(&tmp, conf).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        let mut check = std::process::Command::new(&self.paths.bird);
        check.arg("-p").arg("-c").arg(&tmp);
        let out = self.run(check).await?;
        if !out.status.success() {
            return Err(format!("bird.conf refused by bird -p: {}", text(&out)));
        }
        std::fs::rename(&tmp, &self.paths.conf)
            .map_err(|e| format!("replace {}: {e}", self.paths.conf.display()))?;
        if running {
            let out = self.birdc(&["configure"]).await?;
            if !out.contains("Reconfigured") && !out.contains("Reconfiguration in progress") {
                return Err(format!("birdc configure: {}", out.trim()));
            }
            return Ok("reconfigured");
        }
        // BIRD forks into the background: it outlives this agent.
        let mut start = self
            .netns
            .command(&self.paths.bird)
            .map_err(|e| format!("enter the node's namespace: {e}"))?;
        start
            .arg("-c")
            .arg(&self.paths.conf)
            .arg("-s")
            .arg(&self.paths.ctl)
            .arg("-P")
            .arg(&self.paths.pid);
        let out = self.run(start).await?;
        if !out.status.success() {
            return Err(format!("bird did not start: {}", text(&out)));
        }
        Ok("started")
    }

    async fn stop(&self) {
        if self.running().await {
            let _ = self.birdc(&["down"]).await;
        }
    }

    async fn sessions(&self) -> Result<Vec<BGPPeerStatusEntry>, String> {
        let out = self.birdc(&["show", "protocols"]).await?;
        Ok(ocelot::bgp::parse_birdc_protocols(&out))
    }
}

/// What the agent wants BIRD to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desired {
    /// Not decided yet (the agent's watches have not listed): BIRD is left as it is, so a
    /// restarting agent never stops the sessions of the one before.
    Unknown,
    /// This node runs no BGP: BIRD is stopped.
    Off,
    /// BIRD runs this bird.conf.
    Run(String),
}

impl crate::worker::Worker for Bird {
    type Desired = Desired;
    type Report = BgpReport;

    async fn pass(&mut self, want: &Desired) -> Option<BgpReport> {
        let applied = match want {
            Desired::Unknown => return None,
            Desired::Run(text) => match self.apply(text).await {
                Ok(what) => {
                    if what != "unchanged" {
                        tracing::info!(conf = %self.paths.conf.display(), "BIRD {what}");
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "BIRD config not applied");
                    Err(e)
                }
            },
            Desired::Off => {
                self.stop().await;
                Ok(())
            }
        };
        let peers = if matches!(want, Desired::Run(_)) {
            self.sessions().await.unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(BgpReport { applied, peers })
    }

    fn message(report: BgpReport) -> Msg {
        Msg::Bgp(report)
    }
}

/// Starts the worker. `desired` carries what BIRD should do; reports go to the agent's loop,
/// only when they change.
pub fn start(
    paths: BirdPaths,
    netns: NodeNetns,
    desired: watch::Receiver<Desired>,
    tx: mpsc::Sender<Msg>,
) {
    crate::worker::spawn(Bird { paths, netns }, desired, POLL, tx);
}
