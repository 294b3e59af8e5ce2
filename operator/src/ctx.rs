//! What every reconcile pass shares: the client, the Event recorder, the options, and the little
//! the operator remembers between passes (in memory only: a restart recomputes it from the API).
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use ocelot::ipam::GcState;

use crate::apply::FIELD_MANAGER;

/// Options from the command line.
#[derive(Clone, Debug)]
pub struct Opts {
    /// CIDR of `default-ipv4-ippool`, created once when no IPv4 pool exists.
    pub default_ipv4_pool_cidr: Option<Ipv4Net>,
    /// Prefix length given to a node's InternalIP in its Calico Node's `spec.bgp.ipv4Address`.
    pub node_prefix_length: u8,
    /// How long a deleted node's empty blocks are kept before they are freed.
    pub leak_grace: Duration,
}

/// Memory between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// The default pool was created (or found) once: never again, never touched afterwards.
    pub default_pool_done: bool,
    /// ClusterInformation `default` checked (and written if needed) since this process started.
    pub cluster_info_done: bool,
    /// GC timers (first sightings), fed back into the next GC decision.
    pub gc: GcState,
    /// Warnings already sent, (object, reason, detail): one Event per problem, not per pass.
    pub warned: BTreeSet<(String, String, String)>,
    /// Status last written per `Kind/name`, with the resourceVersion the object had then: while
    /// the watch still shows that version, the same status is not sent again.
    pub status_sent: HashMap<String, (Option<String>, serde_json::Value)>,
    /// When each pool's status was last written, for spacing writes that change only its address
    /// counts.
    pub usage_written: HashMap<String, std::time::Instant>,
}

/// Shared by the passes.
pub struct Ctx {
    pub client: Client,
    pub opts: Opts,
    pub memory: Memory,
    recorder: Recorder,
}

impl Ctx {
    pub fn new(client: Client, opts: Opts) -> Ctx {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            opts,
            memory: Memory::default(),
        }
    }

    /// A Warning Event on `regarding`, once per (object, reason, detail) while the operator runs.
    pub async fn warn_once(
        &mut self,
        regarding: ObjectReference,
        reason: &str,
        detail: &str,
        note: String,
    ) {
        let key = (
            object_key(
                regarding.kind.as_deref().unwrap_or(""),
                regarding.namespace.as_deref(),
                regarding.name.as_deref().unwrap_or(""),
            ),
            reason.to_string(),
            detail.to_string(),
        );
        if !self.memory.warned.insert(key) {
            return;
        }
        tracing::warn!(object = ?regarding.name, reason, %note, "warning event");
        self.event(regarding, EventType::Warning, reason, note)
            .await;
    }

    /// Forgets the warnings about `object`, so the problem is reported again if it comes back.
    pub fn clear_warnings(&mut self, kind: &str, name: &str, reason: &str) {
        let object = object_key(kind, None, name);
        self.memory
            .warned
            .retain(|(o, r, _)| !(o == &object && r == reason));
    }

    pub async fn event(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &regarding).await {
            tracing::warn!(error = %e, reason, "could not record Event");
        }
    }
}

/// A reference to a cluster-scoped object for Events.
/// How a warned-about object is remembered: `<kind>/<name>`, or `<kind>/<namespace>/<name>`.
pub fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

pub fn reference(api_version: &str, kind: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    }
}
