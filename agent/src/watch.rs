//! The agent's watches, each narrowed to what this node needs: its own NodeNetworkState (field
//! selector on the name), its own IPAMBlocks (the operator's node label), its own Pods
//! (`spec.nodeName`), and the small cluster-wide kinds (IPPools, Namespaces, Calico Nodes: one
//! object per node, each published once). No watch carries another node's pods.
use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::{Client, Resource};
use kube_runtime::WatchStreamExt;
use kube_runtime::watcher::{self, Event};
use ocelot::api::{IPAMBlock, IPPool, NodeNetworkState, node::Node};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::agent::Msg;

/// One change of a watched kind. A relist arrives whole, so what vanished while the watch was
/// down is seen as gone.
#[derive(Debug)]
pub enum Change<K> {
    Apply(K),
    Delete(K),
    Relisted(Vec<K>),
}

/// Which watch a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    NodeState,
    Block,
    Pool,
    Namespace,
    Pod,
    CalicoNode,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::NodeState,
        Kind::Block,
        Kind::Pool,
        Kind::Namespace,
        Kind::Pod,
        Kind::CalicoNode,
    ];
}

/// Starts every watch; each sends its changes into `tx` until the agent stops.
pub fn start(client: &Client, node: &str, tx: &mpsc::Sender<Msg>) {
    let own_name = format!("metadata.name={node}");
    spawn(
        Api::<NodeNetworkState>::all(client.clone()),
        watcher::Config::default().fields(&own_name),
        tx.clone(),
        Msg::NodeState,
    );
    spawn(
        Api::<IPAMBlock>::all(client.clone()),
        watcher::Config::default().labels(&format!("{}={node}", ocelot::ipam::BLOCK_NODE_LABEL)),
        tx.clone(),
        Msg::Block,
    );
    spawn(
        Api::<IPPool>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        Msg::Pool,
    );
    spawn(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        Msg::Namespace,
    );
    spawn(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        tx.clone(),
        Msg::Pod,
    );
    spawn(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        Msg::CalicoNode,
    );
}

fn spawn<K>(api: Api<K>, config: watcher::Config, tx: mpsc::Sender<Msg>, wrap: fn(Change<K>) -> Msg)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut relist: Vec<K> = Vec::new();
        while let Some(event) = stream.next().await {
            let change = match event {
                Ok(Event::Apply(k)) => Change::Apply(k),
                Ok(Event::Delete(k)) => Change::Delete(k),
                Ok(Event::Init) => {
                    relist.clear();
                    continue;
                }
                Ok(Event::InitApply(k)) => {
                    relist.push(k);
                    continue;
                }
                Ok(Event::InitDone) => Change::Relisted(std::mem::take(&mut relist)),
                Err(e) => {
                    tracing::warn!(kind = std::any::type_name::<K>(), error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if tx.send(wrap(change)).await.is_err() {
                return;
            }
        }
    });
}
