//! Writes NodeNetworkState specs: server-side apply as `ocelot-operator`, only when the composed hash
//! differs from the stored one, and deletion for nodes the index no longer knows.
use std::collections::BTreeSet;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use ocelot::api::{NodeNetworkState, NodeNetworkStateSpec};
use ocelot::rollup::node_facts;

use crate::feed::Feed;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "ocelot-operator";
/// Writes in flight at once: enough to overlap round trips, few enough not to flood the API server.
const CONCURRENCY: usize = 16;

/// One write.
enum Action {
    Apply(Box<NodeNetworkStateSpec>),
    Delete(String),
}

impl Action {
    fn node(&self) -> &str {
        match self {
            Action::Apply(s) => &s.node,
            Action::Delete(n) => n,
        }
    }
}

/// Outcome of one batch.
#[derive(Debug, Default)]
pub struct Batch {
    pub looked_at: usize,
    pub applied: usize,
    pub deleted: usize,
    /// Nodes whose write failed; the caller retries them.
    pub failed: BTreeSet<String>,
}

/// Reconciles `nodes`: composes each one's state, updates its roll-up facts, and writes only what
/// differs from the API server.
pub async fn reconcile(client: &Client, feed: &mut Feed, nodes: BTreeSet<String>) -> Batch {
    let mut batch = Batch {
        looked_at: nodes.len(),
        ..Batch::default()
    };
    let mut actions: Vec<Action> = Vec::new();
    for node in nodes {
        let spec = feed.index.node_state(&node);
        // The roll-ups count this node again from its desired state and its agent's report: the
        // nodes looked at here are exactly those whose state or status may have changed.
        let facts = spec
            .as_ref()
            .map(|s| node_facts(s, feed.agent_status.get(&node)));
        feed.rollup.set_node(&node, facts);
        let stored = feed.written.get(&node);
        match spec {
            Some(spec) if stored != Some(&spec.hash) => actions.push(Action::Apply(Box::new(spec))),
            Some(_) => {}
            None if stored.is_some() => actions.push(Action::Delete(node)),
            None => {}
        }
    }
    let api: Api<NodeNetworkState> = Api::all(client.clone());
    let mut results = futures::stream::iter(actions)
        .map(|action| {
            let api = api.clone();
            async move {
                let result = write(&api, &action).await;
                (action, result)
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((action, result)) = results.next().await {
        let node = action.node().to_string();
        match (action, result) {
            (Action::Apply(spec), Ok(())) => {
                tracing::info!(%node, hash = %spec.hash, "NodeNetworkState applied");
                feed.written.insert(node, spec.hash);
                batch.applied += 1;
            }
            (Action::Delete(_), Ok(())) => {
                tracing::info!(%node, "NodeNetworkState deleted: node is gone");
                feed.written.remove(&node);
                batch.deleted += 1;
            }
            (_, Err(e)) => {
                tracing::warn!(%node, error = %e, "NodeNetworkState write failed; will retry");
                batch.failed.insert(node);
            }
        }
    }
    batch
}

async fn write(api: &Api<NodeNetworkState>, action: &Action) -> kube::Result<()> {
    match action {
        Action::Apply(spec) => {
            // Only apiVersion, kind, name and spec: the fields this manager owns. Status is the agent's.
            let body = serde_json::json!({
                "apiVersion": "ocelot.dev/v1alpha1",
                "kind": "NodeNetworkState",
                "metadata": { "name": spec.node },
                "spec": spec,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            api.patch(&spec.node, &params, &Patch::Apply(&body))
                .await
                .map(drop)
        }
        Action::Delete(node) => match api.delete(node, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        },
    }
}
