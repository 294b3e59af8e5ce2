//! The shape every dataplane worker shares (BIRD, WireGuard): apply what the agent's loop wants
//! after each change and on a poll tick, and send the report back only when it changed.
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::agent::Msg;

pub trait Worker: Send + 'static {
    type Desired: Clone + Send + Sync + 'static;
    type Report: Clone + PartialEq + Send + 'static;

    /// Makes the node match `want`; None while `want` is not decided yet (a restarting agent
    /// leaves what runs alone until its watches have listed).
    fn pass(&mut self, want: &Self::Desired) -> impl Future<Output = Option<Self::Report>> + Send;

    /// The loop's message for a changed report.
    fn message(report: Self::Report) -> Msg;
}

/// Runs `worker` until the agent's loop or the desired-state sender goes away.
pub fn spawn<W: Worker>(
    mut worker: W,
    mut desired: watch::Receiver<W::Desired>,
    poll: Duration,
    tx: mpsc::Sender<Msg>,
) {
    tokio::spawn(async move {
        let mut last: Option<W::Report> = None;
        let mut tick = tokio::time::interval(poll);
        loop {
            let want = desired.borrow_and_update().clone();
            let Some(report) = worker.pass(&want).await else {
                if desired.changed().await.is_err() {
                    return;
                }
                continue;
            };
            if last.as_ref() != Some(&report) {
                last = Some(report.clone());
                if tx.send(W::message(report)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                r = desired.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    });
}

/// Hands `value` to the worker only when it differs from what the worker already has (an equal
/// value would wake it for nothing).
pub fn want<T: PartialEq>(desired: &watch::Sender<T>, value: T) {
    desired.send_if_modified(|cur| {
        let changed = *cur != value;
        if changed {
            *cur = value;
        }
        changed
    });
}
