//! natOutgoing on the node: the core's [`NatPlan`] applied with `nft -f -` in the node's network
//! namespace, only when it changed. The table in the kernel is read (`nft -j list table ip
//! ocelot-nat`) before anything is written, so a restarted agent adopts an unchanged table
//! instead of rewriting it; it is read again every [`VERIFY`] so a table someone deleted or edited
//! is put back. The script names only Ocelot's table: other tables are never touched.
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ocelot::api::Condition;
use ocelot::api::nodestate::NodeNetworkStateSpec;
use ocelot::nat::{FAMILY, NatPlan, TABLE};
use ocelot::rollup::status::condition;
use tokio::io::AsyncWriteExt;

use crate::netns::NodeNetns;

/// Bound of one `nft` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an applied table is compared with the kernel's.
pub const VERIFY: Duration = Duration::from_secs(30);
/// Wait after a failed run before the next try.
pub const RETRY: Duration = Duration::from_secs(5);

/// The last outcome, for the NAT condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatOutcome {
    /// The table holds the plan (summary for the message).
    Programmed(String),
    /// No pool has natOutgoing; the table is absent.
    NotNeeded,
    Failed {
        reason: String,
        message: String,
    },
}

/// The agent's NAT state: one field of the agent, synced once per pass.
pub struct NatState {
    nft: PathBuf,
    /// Arguments before nft's own (tests run a fake through `sh`).
    nft_prefix: Vec<String>,
    /// The script the kernel holds, as far as the agent knows; None: read the kernel first.
    known: Option<String>,
    verify_at: Instant,
    retry_at: Option<Instant>,
    pub outcome: Option<NatOutcome>,
}

impl Default for NatState {
    fn default() -> Self {
        NatState::new("nft")
    }
}

/// How an `nft` run ended: stdout, or why it failed (nft's stderr).
type NftResult = Result<String, String>;

impl NatState {
    pub fn new(nft: impl Into<PathBuf>) -> NatState {
        NatState {
            nft: nft.into(),
            nft_prefix: Vec::new(),
            known: None,
            verify_at: Instant::now(),
            retry_at: None,
            outcome: None,
        }
    }

    async fn nft(&self, netns: &NodeNetns, args: &[&str], stdin: Option<&str>) -> NftResult {
        let mut cmd = netns
            .command(&self.nft)
            .map_err(|e| format!("enter the node's namespace: {e}"))?;
        cmd.args(&self.nft_prefix)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let what = format!("{} {}", self.nft.display(), args.join(" "));
        let run = async {
            let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(text.as_bytes())
                    .await
                    .map_err(|e| format!("{what}: write stdin: {e}"))?;
            }
            child
                .wait_with_output()
                .await
                .map_err(|e| format!("{what}: {e}"))
        };
        let out = tokio::time::timeout(RUN_TIMEOUT, run)
            .await
            .map_err(|_| format!("{what} did not finish within {RUN_TIMEOUT:?}"))??;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(format!("{what}: {}: {err}", out.status))
        }
    }

    /// The kernel's table as `nft -j` lists it; None when it does not exist.
    async fn listing(&self, netns: &NodeNetns) -> Result<Option<String>, String> {
        match self
            .nft(netns, &["-j", "list", "table", FAMILY, TABLE], None)
            .await
        {
            Ok(out) => Ok(Some(out)),
            // nft's own words for an absent table (a missing nft program is another error).
            Err(e) if e.contains("Error: No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Brings the kernel's table to the spec's plan. Without a spec nothing is touched (a
    /// restarting agent never removes the NAT of the one before before it knows its spec).
    pub async fn sync(&mut self, netns: &NodeNetns, spec: Option<&NodeNetworkStateSpec>) {
        let Some(spec) = spec else { return };
        let plan = match NatPlan::from_spec(spec) {
            Ok(p) => p,
            Err(e) => {
                self.outcome = Some(NatOutcome::Failed {
                    reason: e.reason().into(),
                    message: e.to_string(),
                });
                return;
            }
        };
        let script = plan.script();
        let now = Instant::now();
        if self.known.as_ref() == Some(&script) && now < self.verify_at {
            return;
        }
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let ok = if plan.needed() {
            NatOutcome::Programmed(plan.summary())
        } else {
            NatOutcome::NotNeeded
        };
        let adopted = match self.listing(netns).await {
            Ok(listing) => plan
                .matches_listing(listing.as_deref())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "NAT table unreadable; rewritten");
                    false
                }),
            Err(e) => {
                tracing::warn!(error = %e, "NAT table not listed; rewritten");
                false
            }
        };
        if adopted {
            if self.known.is_none() {
                tracing::info!(nat = %plan.summary(), "NAT table adopted");
            }
        } else if let Err(e) = self.nft(netns, &["-f", "-"], Some(&script)).await {
            tracing::warn!(error = %e, "NAT table not applied; retried in {RETRY:?}");
            self.known = None;
            self.retry_at = Some(now + RETRY);
            self.outcome = Some(NatOutcome::Failed {
                reason: "NftFailed".into(),
                message: e,
            });
            return;
        } else {
            tracing::info!(nat = %plan.summary(), "NAT table programmed");
        }
        self.known = Some(script);
        self.retry_at = None;
        self.verify_at = now + VERIFY;
        self.outcome = Some(ok);
    }
}

/// The NAT condition of the node's status.
pub fn nat_condition(nat: &NatState, generation: Option<i64>, now: &Time) -> Condition {
    let c =
        |ok: bool, reason: &str, msg: String| condition("NAT", ok, reason, msg, generation, now);
    match &nat.outcome {
        None => c(false, "Pending", "NAT not applied yet".into()),
        Some(NatOutcome::Programmed(summary)) => c(true, "Programmed", summary.clone()),
        Some(NatOutcome::NotNeeded) => c(
            true,
            "NotNeeded",
            format!("no natOutgoing pool: table {FAMILY} {TABLE} absent"),
        ),
        Some(NatOutcome::Failed { reason, message }) => c(false, reason, message.clone()),
    }
}

#[cfg(test)]
mod tests {
    //! Against a fake `nft` that records its calls and serves a listing file, in the agent's own
    //! namespace: the real nft is exercised by the e2e test in lab namespaces.
    use super::*;
    use std::path::Path;

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let script = format!(
                "#!/bin/sh\n\
                 echo \"$*\" >> {d}/calls\n\
                 if [ \"$1\" = -j ]; then\n\
                 \x20 [ -f {d}/listing ] && exec cat {d}/listing\n\
                 \x20 echo 'Error: No such file or directory' >&2; exit 1\n\
                 fi\n\
                 cat > {d}/applied\n\
                 [ -f {d}/fail ] && {{ cat {d}/fail >&2; exit 1; }}\n\
                 exit 0\n"
            );
            std::fs::write(dir.path().join("nft"), script).unwrap();
            Fake { dir }
        }
        fn path(&self, f: &str) -> std::path::PathBuf {
            self.dir.path().join(f)
        }
        /// Run through `sh`: exec'ing a file just written races with other tests' forks
        /// (ETXTBSY).
        fn state(&self) -> NatState {
            let mut s = NatState::new("/bin/sh");
            s.nft_prefix = vec![self.path("nft").display().to_string()];
            s
        }
        fn calls(&self) -> Vec<String> {
            read(&self.path("calls"))
        }
        fn applied(&self) -> String {
            std::fs::read_to_string(self.path("applied")).unwrap_or_default()
        }
    }

    fn read(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn spec(nat: &[&str], all: &[&str]) -> NodeNetworkStateSpec {
        NodeNetworkStateSpec {
            nat_outgoing_pools: nat.iter().map(|s| s.to_string()).collect(),
            all_pools: all.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// `nft -j list` of `plan` as the kernel would print it.
    fn listing_of(plan: &NatPlan) -> String {
        let mut items = vec![serde_json::json!({"metainfo": {"version": "1.0.6"}})];
        items.extend(plan.expected_listing().unwrap());
        serde_json::json!({ "nftables": items }).to_string()
    }

    /// The message of an NftFailed outcome.
    fn nft_failure(nat: &NatState) -> &str {
        match &nat.outcome {
            Some(NatOutcome::Failed { reason, message }) if reason == "NftFailed" => message,
            other => panic!("not NftFailed: {other:?}"),
        }
    }

    const LIST: &str = "-j list table ip ocelot-nat";
    const APPLY: &str = "-f -";

    #[tokio::test]
    async fn applies_once_and_not_again_while_unchanged() {
        let f = Fake::new();
        let mut nat = f.state();
        let ns = NodeNetns::current();
        let s = spec(&["198.19.16.0/21"], &["198.19.16.0/21"]);
        nat.sync(&ns, Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY]);
        assert_eq!(f.applied(), NatPlan::from_spec(&s).unwrap().script());
        assert!(matches!(nat.outcome, Some(NatOutcome::Programmed(_))));
        for _ in 0..3 {
            nat.sync(&ns, Some(&s)).await;
        }
        assert_eq!(f.calls(), [LIST, APPLY], "an unchanged plan runs no nft");
        // The kernel now lists the table; natOutgoing off removes it in one more transaction.
        let plan = NatPlan::from_spec(&s).unwrap();
        std::fs::write(f.path("listing"), listing_of(&plan)).unwrap();
        let off = spec(&[], &["198.19.16.0/21"]);
        nat.sync(&ns, Some(&off)).await;
        assert_eq!(f.calls(), [LIST, APPLY, LIST, APPLY]);
        assert_eq!(
            f.applied(),
            "table ip ocelot-nat {}\ndelete table ip ocelot-nat\n"
        );
        assert_eq!(nat.outcome, Some(NatOutcome::NotNeeded));
    }

    #[tokio::test]
    async fn a_restarted_agent_adopts_the_kernels_table() {
        let f = Fake::new();
        let s = spec(&["198.19.16.0/21"], &["198.19.16.0/21", "198.19.24.0/21"]);
        let plan = NatPlan::from_spec(&s).unwrap();
        std::fs::write(f.path("listing"), listing_of(&plan)).unwrap();
        let mut nat = f.state();
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST], "adopted: nothing written");
        assert_eq!(nat.outcome, Some(NatOutcome::Programmed(plan.summary())));
        // An absent table when none is wanted is adopted too.
        let f = Fake::new();
        let mut nat = f.state();
        nat.sync(&NodeNetns::current(), Some(&spec(&[], &["10.0.0.0/16"])))
            .await;
        assert_eq!(f.calls(), [LIST]);
        assert_eq!(nat.outcome, Some(NatOutcome::NotNeeded));
    }

    #[tokio::test]
    async fn a_different_table_in_the_kernel_is_replaced() {
        let f = Fake::new();
        let old = NatPlan::new(&["10.9.0.0/16".into()], &[]).unwrap();
        std::fs::write(f.path("listing"), listing_of(&old)).unwrap();
        let mut nat = f.state();
        let s = spec(&["198.19.16.0/21"], &["198.19.16.0/21"]);
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY]);
        assert!(f.applied().contains("elements = { 198.19.16.0/21 }"));
    }

    #[tokio::test]
    async fn nft_failure_is_reported_with_its_stderr_and_retried_later() {
        let f = Fake::new();
        std::fs::write(
            f.path("fail"),
            "Error: Could not process rule: Operation not supported",
        )
        .unwrap();
        let mut nat = f.state();
        let s = spec(&["198.19.16.0/21"], &[]);
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        let message = nft_failure(&nat);
        assert!(
            message.ends_with("Error: Could not process rule: Operation not supported"),
            "{message}"
        );
        let now = Time(jiff::Timestamp::now());
        let c = nat_condition(&nat, Some(3), &now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NftFailed")
        );
        // Within the retry wait nothing runs; after it, the next pass tries again.
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY]);
        std::fs::remove_file(f.path("fail")).unwrap();
        nat.retry_at = Some(Instant::now());
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY, LIST, APPLY]);
        let c = nat_condition(&nat, Some(3), &now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "Programmed")
        );
        assert_eq!(
            c.message,
            "table ip ocelot-nat masquerades 198.19.16.0/21 to destinations outside 198.19.16.0/21"
        );
    }

    #[tokio::test]
    async fn a_table_removed_behind_the_agents_back_is_put_back_at_the_next_check() {
        let f = Fake::new();
        let mut nat = f.state();
        let s = spec(&["198.19.16.0/21"], &[]);
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY]);
        // The fake's listing stays absent: at the check the table is missing, so it is rewritten.
        nat.verify_at = Instant::now();
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        assert_eq!(f.calls(), [LIST, APPLY, LIST, APPLY]);
    }

    #[tokio::test]
    async fn a_missing_nft_is_a_failure_not_an_absent_table() {
        let mut nat = NatState::new("/nonexistent/nft");
        let s = spec(&[], &["198.19.16.0/21"]);
        nat.sync(&NodeNetns::current(), Some(&s)).await;
        let message = nft_failure(&nat);
        assert!(
            message.starts_with("cannot run /nonexistent/nft -f -"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn no_spec_touches_nothing_and_a_bad_pool_is_a_condition() {
        let f = Fake::new();
        let mut nat = f.state();
        nat.sync(&NodeNetns::current(), None).await;
        assert!(f.calls().is_empty());
        let now = Time(jiff::Timestamp::now());
        assert_eq!(nat_condition(&nat, None, &now).reason, "Pending");
        nat.sync(&NodeNetns::current(), Some(&spec(&["nope"], &[])))
            .await;
        assert!(
            f.calls().is_empty(),
            "a bad spec leaves the kernel as it is"
        );
        let c = nat_condition(&nat, None, &now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidPoolCIDR")
        );
    }
}
