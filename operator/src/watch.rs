//! Watchers: one task per kind turns kube-runtime watch events into [`Msg`]s on one channel, so the
//! reconcile loop sees every kind's events in a single order and can batch them.
use std::fmt::Debug;

use futures::StreamExt;
pub use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use ocelot::api::{
    BGPConfiguration, BGPPeer, BlockAffinity, FelixConfiguration, IPAMBlock, IPPool, Node,
    NodeNetworkState,
};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// The kinds the operator watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IPPool,
    BGPPeer,
    BGPConfiguration,
    FelixConfiguration,
    Node,
    BlockAffinity,
    NodeNetworkState,
    /// Kubernetes (core/v1) Nodes: the source of Calico Nodes.
    KubeNode,
    IPAMBlock,
    /// Namespaces: their pool annotations are checked.
    Namespace,
    /// NetworkPolicies: each is reported as not enforced (Ocelot has no policy dataplane yet).
    NetworkPolicy,
}

/// Every watched kind; reconciling waits until each has sent InitDone once.
pub const KINDS: [Kind; 11] = [
    Kind::IPPool,
    Kind::BGPPeer,
    Kind::BGPConfiguration,
    Kind::FelixConfiguration,
    Kind::Node,
    Kind::BlockAffinity,
    Kind::KubeNode,
    Kind::IPAMBlock,
    Kind::Namespace,
    Kind::NodeNetworkState,
    Kind::NetworkPolicy,
];

/// One watched object (boxed: the kinds differ a lot in size).
#[derive(Debug)]
pub enum Obj {
    IPPool(Box<IPPool>),
    BGPPeer(Box<BGPPeer>),
    BGPConfiguration(Box<BGPConfiguration>),
    FelixConfiguration(Box<FelixConfiguration>),
    Node(Box<Node>),
    BlockAffinity(Box<BlockAffinity>),
    NodeNetworkState(Box<NodeNetworkState>),
    KubeNode(Box<KubeNode>),
    IPAMBlock(Box<IPAMBlock>),
    Namespace(Box<Namespace>),
    /// Only its `<namespace>/<name>` matters.
    NetworkPolicy(String),
}

impl Obj {
    pub fn kind(&self) -> Kind {
        match self {
            Obj::IPPool(_) => Kind::IPPool,
            Obj::BGPPeer(_) => Kind::BGPPeer,
            Obj::BGPConfiguration(_) => Kind::BGPConfiguration,
            Obj::FelixConfiguration(_) => Kind::FelixConfiguration,
            Obj::Node(_) => Kind::Node,
            Obj::BlockAffinity(_) => Kind::BlockAffinity,
            Obj::NodeNetworkState(_) => Kind::NodeNetworkState,
            Obj::KubeNode(_) => Kind::KubeNode,
            Obj::IPAMBlock(_) => Kind::IPAMBlock,
            Obj::Namespace(_) => Kind::Namespace,
            Obj::NetworkPolicy(_) => Kind::NetworkPolicy,
        }
    }

    /// metadata.name; the API server always sets it on watched objects.
    pub fn name(&self) -> Option<&str> {
        match self {
            Obj::IPPool(o) => o.metadata.name.as_deref(),
            Obj::BGPPeer(o) => o.metadata.name.as_deref(),
            Obj::BGPConfiguration(o) => o.metadata.name.as_deref(),
            Obj::FelixConfiguration(o) => o.metadata.name.as_deref(),
            Obj::Node(o) => o.metadata.name.as_deref(),
            Obj::BlockAffinity(o) => o.metadata.name.as_deref(),
            Obj::NodeNetworkState(o) => o.metadata.name.as_deref(),
            Obj::KubeNode(o) => o.metadata.name.as_deref(),
            Obj::IPAMBlock(o) => o.metadata.name.as_deref(),
            Obj::Namespace(o) => o.metadata.name.as_deref(),
            Obj::NetworkPolicy(key) => Some(key),
        }
    }
}

/// A watch event of one kind.
#[derive(Debug)]
pub enum Msg {
    /// A (re)list starts: objects not re-listed before the matching InitDone are gone.
    Init(Kind),
    /// Added or modified (also each object of a list).
    Apply(Obj),
    /// Deleted.
    Delete(Obj),
    /// The (re)list is complete.
    InitDone(Kind),
}

/// Starts one watcher task per kind, all sending to `tx`.
pub fn spawn_all(client: &Client, tx: &UnboundedSender<Msg>) -> Vec<JoinHandle<()>> {
    vec![
        spawn(client, Kind::IPPool, |o| Obj::IPPool(Box::new(o)), tx),
        spawn(client, Kind::BGPPeer, |o| Obj::BGPPeer(Box::new(o)), tx),
        spawn(
            client,
            Kind::BGPConfiguration,
            |o| Obj::BGPConfiguration(Box::new(o)),
            tx,
        ),
        spawn(
            client,
            Kind::FelixConfiguration,
            |o| Obj::FelixConfiguration(Box::new(o)),
            tx,
        ),
        spawn(client, Kind::Node, |o| Obj::Node(Box::new(o)), tx),
        spawn(
            client,
            Kind::BlockAffinity,
            |o| Obj::BlockAffinity(Box::new(o)),
            tx,
        ),
        spawn(client, Kind::KubeNode, |o| Obj::KubeNode(Box::new(o)), tx),
        spawn(client, Kind::IPAMBlock, |o| Obj::IPAMBlock(Box::new(o)), tx),
        spawn(client, Kind::Namespace, |o| Obj::Namespace(Box::new(o)), tx),
        spawn(
            client,
            Kind::NodeNetworkState,
            |o| Obj::NodeNetworkState(Box::new(o)),
            tx,
        ),
        spawn(
            client,
            Kind::NetworkPolicy,
            |p: NetworkPolicy| {
                let ns = p.metadata.namespace.unwrap_or_default();
                Obj::NetworkPolicy(format!("{ns}/{}", p.metadata.name.unwrap_or_default()))
            },
            tx,
        ),
    ]
}

fn spawn<K>(
    client: &Client,
    kind: Kind,
    wrap: fn(K) -> Obj,
    tx: &UnboundedSender<Msg>,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let tx = tx.clone();
    tokio::spawn(async move {
        // default_backoff: a failed list or watch is retried with exponential backoff, and the
        // retry starts with Init again, so a relist prunes what was deleted meanwhile.
        let mut events = watcher(api).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let msg = match event {
                Ok(Event::Init) => Msg::Init(kind),
                Ok(Event::InitApply(o) | Event::Apply(o)) => Msg::Apply(wrap(o)),
                Ok(Event::Delete(o)) => Msg::Delete(wrap(o)),
                Ok(Event::InitDone) => Msg::InitDone(kind),
                Err(e) => {
                    tracing::warn!(?kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            if tx.send(msg).is_err() {
                return; // the reconcile loop ended (shutdown)
            }
        }
    })
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
}
