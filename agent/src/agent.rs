//! The agent's state and its one loop. Everything that changes the node's IPAM goes through
//! this loop: watch changes and CNI calls are drained together, then the queued assignments are
//! committed in one group (one IPAMBlock write per dirty block), then the calls whose writes are
//! stored get their dataplane work and answer. Dataplane work (netlink) runs in spawned tasks,
//! so a slow veth never holds up other pods' IPAM.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::{Client, ResourceExt};
use ocelot::api::node::Node;
use ocelot::api::nodestate::NodeNetworkStateStatus;
use ocelot::api::{IPAMBlock, IPPool, NodeNetworkState};
use ocelot::cni::AgentRequest;
use ocelot::ipam::{Ipam, IpamConfig};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::commit::BlockWriter;
use crate::metrics::Metrics;
use crate::netns::NodeNetns;
use crate::routes::RouteNetlink;
use crate::watch::{Change, Kind};

/// Messages drained per pass before committing, so one pass stays short under a flood.
const DRAIN: usize = 512;
/// Longest sleep between passes: parked calls time out and status is refreshed at this pace.
const TICK: Duration = Duration::from_millis(500);

/// How a CNI call is answered: the verb's result, `null`, or an error object.
pub type Reply = oneshot::Sender<Value>;

/// One CNI call from the plugin.
pub struct Call {
    pub req: AgentRequest,
    pub reply: Reply,
    pub started: Instant,
}

/// Everything the loop reacts to.
pub enum Msg {
    NodeState(Change<NodeNetworkState>),
    Block(Change<IPAMBlock>),
    Pool(Change<IPPool>),
    Namespace(Change<Namespace>),
    Pod(Change<Pod>),
    CalicoNode(Change<Node>),
    Cni(Call),
    /// A pod the watch had not brought yet, read directly.
    PodFetched(Call, Result<Option<Pod>, String>),
    /// An ADD's interfaces are made (Ok: the pod interface's MAC) or failed (the error reply).
    Interfaces {
        handle: String,
        result: Result<String, Value>,
    },
    /// The interfaces made for a lost assignment are deleted.
    Undone {
        handle: String,
    },
    /// A DEL's interfaces are gone; its address can be released.
    DelDone {
        handle: String,
        call: Call,
    },
    /// What BIRD runs and its sessions, when that changed.
    Bgp(crate::bird::BgpReport),
    /// A BGP password Secret was read.
    Secret {
        name: String,
        data: crate::bgp::SecretData,
    },
    /// The status write finished: what was written, or why not.
    StatusWritten(Result<NodeNetworkStateStatus, String>),
    /// Whether the kernel can make IP-in-IP links.
    IpipProbe(Result<bool, String>),
    /// What the WireGuard worker did, when that changed.
    Wireguard(crate::wireguard::WgReport),
    /// What the overlay worker did, when that changed.
    Overlay(crate::overlay::OverlayReport),
}

/// Fixed settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node: String,
    pub netns: NodeNetns,
    /// How long an ADD waits for the operator to claim a block the node asked for.
    pub block_wait: Duration,
    /// Where the node's `/proc/sys` is writable: `/proc/sys` itself, or a hostPath mount of it in a
    /// container, whose own `/proc/sys` is read-only unless privileged.
    pub proc_sys: PathBuf,
}

/// What one pod's metadata contributes to pool selection.
#[derive(Clone, Debug, Default)]
pub struct PodMeta {
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub struct Agent {
    pub settings: Settings,
    pub client: Client,
    pub tx: mpsc::Sender<Msg>,
    pub ipam: Ipam,
    pub writer: BlockWriter,
    pub nns: Option<NodeNetworkState>,
    pub namespaces: HashMap<String, NamespaceMeta>,
    pub pods: HashMap<(String, String), PodMeta>,
    pub calico_nodes: BTreeMap<String, Node>,
    pub synced: HashSet<Kind>,
    pub netlink: RouteNetlink,
    pub adds: Vec<crate::add::PendingAdd>,
    /// Calls answered once every queued IPAM change is stored (DEL, GC, failed ADDs).
    pub after_commit: Vec<(Call, Value)>,
    /// Pools the node needs a block from, with why.
    pub demand: BTreeMap<String, String>,
    pub last_status: Option<NodeNetworkStateStatus>,
    pub last_status_write: Option<Instant>,
    /// A status write is running (see `status::write_if_changed`).
    pub status_in_flight: bool,
    /// After a refused status write, none before this.
    pub status_retry_at: Option<Instant>,
    pub metrics: Metrics,
    pub bgp: crate::bgp::BgpState,
    pub wg: crate::wg_state::WgState,
    pub nat: crate::nat::NatState,
    pub tunnel: crate::tunnel::TunnelState,
    pub overlay: crate::overlay_state::OverlayState,
}

impl Agent {
    // One state per worker; a builder would only rename the arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        client: Client,
        tx: mpsc::Sender<Msg>,
        netlink: RouteNetlink,
        metrics: Metrics,
        bgp: crate::bgp::BgpState,
        wg: crate::wg_state::WgState,
        overlay: crate::overlay_state::OverlayState,
    ) -> Agent {
        Agent {
            writer: BlockWriter::new(Api::all(client.clone())),
            settings,
            client,
            tx,
            ipam: Ipam::new(IpamConfig::default()),
            nns: None,
            namespaces: HashMap::new(),
            pods: HashMap::new(),
            calico_nodes: BTreeMap::new(),
            synced: HashSet::new(),
            netlink,
            adds: Vec::new(),
            after_commit: Vec::new(),
            demand: BTreeMap::new(),
            last_status: None,
            last_status_write: None,
            status_in_flight: false,
            status_retry_at: None,
            metrics,
            bgp,
            wg,
            tunnel: Default::default(),
            overlay,
            nat: crate::nat::NatState::default(),
        }
    }

    /// Every watch has listed once: the agent knows its pools, blocks and spec.
    pub fn ready(&self) -> Result<(), String> {
        let missing: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| !self.synced.contains(k))
            .map(|k| format!("{k:?}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!("watches not synced yet: {}", missing.join(", ")));
        }
        if self.nns.is_none() {
            return Err(format!(
                "no NodeNetworkState {:?} yet (is ocelot-operator running?)",
                self.settings.node
            ));
        }
        Ok(())
    }

    /// The node's labels, for pool nodeSelectors: its Calico Node's.
    pub fn node_labels(&self) -> BTreeMap<String, String> {
        self.calico_nodes
            .get(&self.settings.node)
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }

    /// Runs until the message channel closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            match tokio::time::timeout(TICK, rx.recv()).await {
                Ok(Some(m)) => self.handle(m),
                Ok(None) => return,
                Err(_) => {}
            }
            for _ in 0..DRAIN {
                match rx.try_recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.pass().await;
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::NodeState(c) => self.on_node_state(c),
            Msg::Block(c) => self.on_block(c),
            Msg::Pool(c) => self.on_pool(c),
            Msg::Namespace(c) => self.on_namespace(c),
            Msg::Pod(c) => self.on_pod(c),
            Msg::CalicoNode(c) => self.on_calico_node(c),
            Msg::Cni(call) => self.on_call(call),
            Msg::PodFetched(call, pod) => self.on_pod_fetched(call, pod),
            Msg::Interfaces { handle, result } => self.on_interfaces(&handle, result),
            Msg::Undone { handle } => self.on_undone(&handle),
            Msg::DelDone { handle, call } => self.on_del_done(handle, call),
            Msg::Bgp(report) => {
                self.metrics.set_bgp_sessions(&report.peers);
                self.bgp.report = Some(report);
            }
            Msg::Secret { name, data } => self.bgp.secret_read(name, data),
            Msg::IpipProbe(r) => self.on_ipip_probe(r),
            Msg::StatusWritten(r) => crate::status::written(self, r),
            Msg::Wireguard(report) => {
                self.metrics.wireguard_peers.set(report.peers as i64);
                self.wg.report = Some(report);
            }
            Msg::Overlay(report) => self.overlay.report = Some(report),
        }
    }

    /// One pass after a batch of messages: assign, commit, hand out, answer, report.
    async fn pass(&mut self) {
        self.assign_pending();
        let started = Instant::now();
        let c = self.writer.commit(&mut self.ipam).await;
        if c.written > 0 || c.failed > 0 {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.ipam_writes.inc_by(c.written as u64);
            self.metrics.ipam_conflicts.inc_by(c.failed as u64);
            tracing::debug!(written = c.written, failed = c.failed, "group commit");
        }
        self.dispatch_committed();
        if !self.ipam.has_uncommitted() {
            for (call, value) in std::mem::take(&mut self.after_commit) {
                crate::calls::answer(&self.metrics, call, value);
            }
        }
        self.expire_waiting();
        self.sync_bgp();
        self.sync_wireguard();
        self.sync_overlay();
        self.sync_tunnel();
        let spec = self.nns.as_ref().map(|n| &n.spec);
        self.nat.sync(&self.settings.netns, spec).await;
        crate::status::write_if_changed(self);
    }

    fn on_node_state(&mut self, c: Change<NodeNetworkState>) {
        self.bgp.dirty = true;
        self.wg.dirty = true;
        self.overlay.dirty = true;
        match c {
            Change::Apply(n) => self.nns = Some(n),
            Change::Delete(_) => self.nns = None,
            Change::Relisted(mut all) => {
                self.nns = all.pop();
                self.synced.insert(Kind::NodeState);
            }
        }
    }

    fn on_block(&mut self, c: Change<IPAMBlock>) {
        let observe = |me: &mut Agent, b: &IPAMBlock| {
            me.writer.observed(b);
            match me.ipam.observe_block(&b.spec) {
                // Ops lost to a newer version are redone: their calls see the ticket lost.
                Ok(_) => {}
                Err(e) => tracing::warn!(block = %b.name_any(), error = %e, "IPAMBlock unreadable"),
            }
        };
        match c {
            Change::Apply(b) => observe(self, &b),
            Change::Delete(b) => self.forget_block(&b),
            Change::Relisted(all) => {
                let names: HashSet<String> = all.iter().map(|b| b.name_any()).collect();
                let gone: Vec<ipnet::IpNet> = self
                    .ipam
                    .blocks()
                    .filter(|b| !names.contains(&b.name()))
                    .map(|b| b.cidr())
                    .collect();
                for cidr in gone {
                    self.ipam.observe_block_deleted(&cidr);
                }
                for b in &all {
                    observe(self, b);
                }
                self.synced.insert(Kind::Block);
            }
        }
    }

    fn forget_block(&mut self, b: &IPAMBlock) {
        self.writer.forget(&b.name_any());
        if let Ok(cidr) = b.spec.cidr.parse() {
            self.ipam.observe_block_deleted(&cidr);
        }
    }

    fn on_pool(&mut self, c: Change<IPPool>) {
        let upsert = |me: &mut Agent, p: &IPPool| {
            me.bgp.upsert_pool(&p.name_any(), &p.spec);
            if let Err(e) = me.ipam.upsert_pool(&p.name_any(), &p.spec) {
                tracing::warn!(pool = %p.name_any(), error = %e, "IPPool not usable");
                me.ipam.remove_pool(&p.name_any());
            }
        };
        match c {
            Change::Apply(p) => upsert(self, &p),
            Change::Delete(p) => {
                self.ipam.remove_pool(&p.name_any());
                self.bgp.remove_pool(&p.name_any());
            }
            Change::Relisted(all) => {
                let names: HashSet<String> = all.iter().map(|p| p.name_any()).collect();
                let gone: Vec<String> = self
                    .ipam
                    .pools()
                    .filter(|p| !names.contains(&p.name))
                    .map(|p| p.name.clone())
                    .collect();
                for name in gone {
                    self.ipam.remove_pool(&name);
                    self.bgp.remove_pool(&name);
                }
                self.bgp.pools.clear();
                for p in &all {
                    upsert(self, p);
                }
                self.synced.insert(Kind::Pool);
            }
        }
    }

    fn on_namespace(&mut self, c: Change<Namespace>) {
        let meta = |n: &Namespace| NamespaceMeta {
            labels: n.labels().clone(),
            annotations: n.annotations().clone(),
        };
        match c {
            Change::Apply(n) => {
                self.namespaces.insert(n.name_any(), meta(&n));
            }
            Change::Delete(n) => {
                self.namespaces.remove(&n.name_any());
            }
            Change::Relisted(all) => {
                self.namespaces = all.iter().map(|n| (n.name_any(), meta(n))).collect();
                self.synced.insert(Kind::Namespace);
            }
        }
    }

    fn on_pod(&mut self, c: Change<Pod>) {
        let key = |p: &Pod| (p.namespace().unwrap_or_default(), p.name_any());
        let meta = |p: &Pod| PodMeta {
            annotations: p.annotations().clone(),
        };
        match c {
            Change::Apply(p) => {
                self.pods.insert(key(&p), meta(&p));
            }
            Change::Delete(p) => {
                self.pods.remove(&key(&p));
            }
            Change::Relisted(all) => {
                self.pods = all.iter().map(|p| (key(p), meta(p))).collect();
                self.synced.insert(Kind::Pod);
            }
        }
    }

    fn on_calico_node(&mut self, c: Change<Node>) {
        self.wg.dirty = true;
        self.overlay.dirty = true;
        match c {
            Change::Apply(n) => {
                self.bgp.upsert_node(&n);
                self.calico_nodes.insert(n.name_any(), n);
            }
            Change::Delete(n) => {
                self.bgp.remove_node(&n.name_any());
                self.calico_nodes.remove(&n.name_any());
            }
            Change::Relisted(all) => {
                self.bgp.nodes.clear();
                for n in &all {
                    self.bgp.upsert_node(n);
                }
                self.calico_nodes = all.into_iter().map(|n| (n.name_any(), n)).collect();
                self.synced.insert(Kind::CalicoNode);
            }
        }
    }
}
