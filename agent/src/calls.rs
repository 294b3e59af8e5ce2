//! The CNI verbs on the agent's side. ADD: pick the pool (pod annotation > namespace annotation >
//! node selector, in the core), assign from the node's own blocks, wait for the group commit,
//! make the interfaces, answer. When no block has room the node reports demand and the call
//! waits, bounded, for the operator's claim. DEL: interfaces first, then the address. GC:
//! releases the pods not in the runtime's list. Every failure leaves no allocation behind.
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use ocelot::cni::{self, Code, Command, codes, error_reply};
use ocelot::ipam::{AssignRequest, Assignment, Durability, Family, POD_HANDLE_PREFIX, PodContext};
use ocelot::routes::Ownership;
use serde_json::{Value, json};

use crate::agent::{Agent, Call, Msg, PodMeta};
use crate::metrics::Metrics;
use crate::pods::{self, PodLink};

/// Where an ADD is.
pub enum Phase {
    /// To be assigned in the next pass.
    Queued,
    /// The node has no room; it asked for a block of this pool.
    WaitingForBlock(String),
    /// Assigned; waiting for the block write that stores it.
    Committing(Assignment),
}

pub struct PendingAdd {
    pub call: Call,
    pub handle: String,
    pub namespace: String,
    pub pod: String,
    pub host_veth: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub phase: Phase,
    pub deadline: Instant,
}

/// Sends the answer and counts it.
pub fn answer(metrics: &Metrics, call: Call, value: Value) {
    let ok = value.get("code").is_none();
    metrics.observe_call(call.req.command, ok, call.started.elapsed());
    let _ = call.reply.send(value);
}

fn spec_error(code: Code, msg: &str, details: impl Into<String>) -> Value {
    error_reply(code as u32, msg, details)
}

impl Agent {
    pub fn on_call(&mut self, call: Call) {
        match call.req.command {
            Command::Status => {
                let v = match self.ready() {
                    Ok(()) => Value::Null,
                    Err(why) => spec_error(Code::NotAvailable, "agent not ready", why),
                };
                answer(&self.metrics, call, v);
            }
            Command::Version => {
                let v = cni::version_json("1.1.0");
                answer(&self.metrics, call, v);
            }
            Command::Add => self.on_add(call),
            Command::Del => self.on_del(call),
            Command::Check => self.on_check(call),
            Command::Gc => self.on_gc(call),
        }
    }

    fn on_add(&mut self, call: Call) {
        if let Err(e) = pods::sandbox_exists(&PathBuf::from(&call.req.netns)) {
            let v = spec_error(Code::InvalidEnv, "CNI_NETNS is not a network namespace", e);
            return answer(&self.metrics, call, v);
        }
        if let Err(why) = self.ready() {
            let v = spec_error(Code::TryAgainLater, "agent not ready", why);
            return answer(&self.metrics, call, v);
        }
        let (Some(ns), Some(name)) = (call.req.pod_namespace.clone(), call.req.pod_name.clone())
        else {
            let v = spec_error(
                Code::InvalidEnv,
                "missing pod identity in CNI_ARGS",
                "CNI_ARGS needs K8S_POD_NAMESPACE and K8S_POD_NAME",
            );
            return answer(&self.metrics, call, v);
        };
        match self.pods.get(&(ns.clone(), name.clone())) {
            Some(meta) => {
                let meta = meta.clone();
                self.start_add(call, &ns, &name, meta)
            }
            None => {
                // Right after the pod was bound the watch may not have brought it yet.
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let pod = api.get_opt(&name).await.map_err(|e| e.to_string());
                    let _ = tx.send(Msg::PodFetched(call, pod)).await;
                });
            }
        }
    }

    pub fn on_pod_fetched(&mut self, call: Call, pod: Result<Option<Pod>, String>) {
        let (ns, name) = (
            call.req.pod_namespace.clone().unwrap_or_default(),
            call.req.pod_name.clone().unwrap_or_default(),
        );
        match pod {
            Ok(Some(p)) => {
                let meta = PodMeta {
                    annotations: p.annotations().clone(),
                };
                self.pods.insert((ns.clone(), name.clone()), meta.clone());
                self.start_add(call, &ns, &name, meta);
            }
            Ok(None) => {
                let v = error_reply(
                    codes::POD_NOT_FOUND,
                    "pod not found",
                    format!("pod {ns}/{name} does not exist in the API server"),
                );
                answer(&self.metrics, call, v);
            }
            Err(e) => {
                let v = spec_error(Code::TryAgainLater, "cannot read the pod", e);
                answer(&self.metrics, call, v);
            }
        }
    }

    fn start_add(&mut self, call: Call, ns: &str, name: &str, meta: PodMeta) {
        let prefix = self
            .nns
            .as_ref()
            .and_then(|n| n.spec.dataplane.interface_prefix.clone())
            .unwrap_or_else(|| "cali".into());
        let host_veth = match ocelot::naming::host_veth_name(&prefix, ns, name) {
            Ok(v) => v,
            Err(e) => {
                let v = error_reply(
                    codes::DATAPLANE,
                    "host interface name too long",
                    e.to_string(),
                );
                return answer(&self.metrics, call, v);
            }
        };
        let handle = ocelot::ipam::pod_handle(&call.req.container_id);
        let mut add = PendingAdd {
            call,
            handle,
            namespace: ns.to_string(),
            pod: name.to_string(),
            host_veth,
            annotations: meta.annotations,
            phase: Phase::Queued,
            deadline: Instant::now() + self.settings.block_wait,
        };
        if let Some(&addr) = self.ipam.handle_addresses(&add.handle).first() {
            let owner = self.ipam.address_owner(addr);
            let same = owner.is_some_and(|a| a.namespace() == Some(ns) && a.pod() == Some(name));
            if !same {
                let v = error_reply(
                    codes::CONTAINER_IN_USE,
                    "container ID already in use",
                    format!(
                        "{} holds {addr} for pod {}/{}, not {ns}/{name}",
                        add.handle,
                        owner.and_then(|a| a.namespace()).unwrap_or("?"),
                        owner.and_then(|a| a.pod()).unwrap_or("?"),
                    ),
                );
                return answer(&self.metrics, add.call, v);
            }
            // The same sandbox again (a retry after a crash): its stored address is reused.
            if let IpAddr::V4(v4) = addr {
                return self.make_interfaces(add, v4);
            }
        }
        add.phase = Phase::Queued;
        self.adds.push(add);
    }

    /// Assigns every queued or waiting ADD from the node's own blocks.
    pub fn assign_pending(&mut self) {
        let node_labels = self.node_labels();
        let now = SystemTime::now();
        let mut failed = Vec::new();
        for (i, add) in self.adds.iter_mut().enumerate() {
            if matches!(add.phase, Phase::Committing(_)) {
                continue;
            }
            let empty = Default::default();
            let ns = self.namespaces.get(&add.namespace);
            let ctx = PodContext {
                pod_annotations: &add.annotations,
                namespace_annotations: ns.map_or(&empty, |n| &n.annotations),
                namespace_labels: ns.map(|n| &n.labels),
                node_labels: &node_labels,
            };
            let req = AssignRequest::pod(
                add.call.req.container_id.as_str(),
                &add.namespace,
                &add.pod,
                &self.settings.node,
                now,
            );
            let result = match self.ipam.select_pools(&ctx) {
                Err(e) => Err(error_reply(
                    codes::POOL_SELECTION,
                    "no pool for the pod",
                    e.to_string(),
                )),
                Ok(sel) => match sel.explicit.iter().find(|a| a.is_ipv4()) {
                    Some(&addr) => {
                        let own = self.ipam.node_blocks(&self.settings.node);
                        if own.iter().any(|b| b.contains(&addr)) {
                            self.ipam.assign_address(&req, addr, now).map_err(|e| {
                                error_reply(
                                    codes::NO_ADDRESS,
                                    "requested address not free",
                                    e.to_string(),
                                )
                            })
                        } else {
                            Err(error_reply(
                                codes::POOL_SELECTION,
                                "requested address not in this node's blocks",
                                format!(
                                    "ipAddrs {addr}: node {} has blocks {own:?}",
                                    self.settings.node
                                ),
                            ))
                        }
                    }
                    None => match self.ipam.auto_assign(&req, Family::V4, &sel.v4) {
                        Ok(a) => Ok(a),
                        Err(e) => match e.needs_block() {
                            Some((_, pool)) => {
                                let pool = pool.to_string();
                                self.demand.entry(pool.clone()).or_insert_with(|| {
                                    format!("no free address for pod {}/{}", add.namespace, add.pod)
                                });
                                add.phase = Phase::WaitingForBlock(pool);
                                continue;
                            }
                            None => Err(error_reply(
                                codes::NO_ADDRESS,
                                "no address for the pod",
                                e.to_string(),
                            )),
                        },
                    },
                },
            };
            match result {
                Ok(a) => add.phase = Phase::Committing(a),
                Err(v) => failed.push((i, v)),
            }
        }
        for (i, v) in failed.into_iter().rev() {
            let add = self.adds.remove(i);
            answer(&self.metrics, add.call, v);
        }
    }

    /// ADDs whose write is stored get their interfaces; lost writes go back to the queue.
    pub fn dispatch_committed(&mut self) {
        let mut ready = Vec::new();
        for (i, add) in self.adds.iter_mut().enumerate() {
            if let Phase::Committing(a) = &add.phase {
                match self.ipam.durability(&a.ticket) {
                    Durability::Committed => ready.push(i),
                    Durability::Lost => add.phase = Phase::Queued,
                    Durability::Pending => {}
                }
            }
        }
        for i in ready.into_iter().rev() {
            let add = self.adds.remove(i);
            let Phase::Committing(a) = &add.phase else {
                unreachable!("filtered above")
            };
            match a.address {
                IpAddr::V4(v4) => self.make_interfaces(add, v4),
                IpAddr::V6(_) => {
                    self.ipam.release_handle(&add.handle);
                    let v = error_reply(
                        codes::NO_ADDRESS,
                        "IPv6 pod addresses are not supported",
                        add.handle.clone(),
                    );
                    self.after_commit.push((add.call, v));
                }
            }
        }
        let waiting: HashSet<&str> = self
            .adds
            .iter()
            .filter_map(|a| match &a.phase {
                Phase::WaitingForBlock(p) => Some(p.as_str()),
                _ => None,
            })
            .collect();
        self.demand
            .retain(|pool, _| waiting.contains(pool.as_str()));
    }

    fn make_interfaces(&mut self, add: PendingAdd, address: std::net::Ipv4Addr) {
        let dataplane = self
            .nns
            .as_ref()
            .map(|n| n.spec.dataplane.clone())
            .unwrap_or_default();
        let own = Ownership::for_dataplane(&dataplane);
        let mtu = add
            .call
            .req
            .config
            .get("mtu")
            .and_then(Value::as_u64)
            .map(|m| m as u32)
            .or(dataplane.pod_mtu.filter(|m| *m > 0).map(|m| m as u32))
            // Auto: Calico's rule for the encapsulations in use on this node's uplink.
            .or(self.overlay.pod_mtu())
            .unwrap_or(cni::DEFAULT_MTU);
        let link = PodLink {
            host_veth: add.host_veth.clone(),
            ifname: add.call.req.ifname.clone(),
            netns: PathBuf::from(&add.call.req.netns),
            address,
            mtu,
            proc_sys: self.settings.proc_sys.clone(),
        };
        let (netlink, tx, handle, call) =
            (self.netlink.clone(), self.tx.clone(), add.handle, add.call);
        tokio::spawn(async move {
            let version = call
                .req
                .config
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or("1.1.0")
                .to_string();
            let result = match pods::add(&netlink, &own, &link).await {
                Ok(mac) => Ok(cni::add_result(
                    &version,
                    &link.host_veth,
                    &link.ifname,
                    &call.req.netns,
                    &mac,
                    address,
                )),
                Err(e) => Err(error_reply(
                    codes::DATAPLANE,
                    "pod interfaces not made",
                    e.to_string(),
                )),
            };
            let _ = tx
                .send(Msg::AddDone {
                    handle,
                    call,
                    result,
                })
                .await;
        });
    }

    pub fn on_add_done(&mut self, handle: String, call: Call, result: Result<Value, Value>) {
        match result {
            Ok(v) => {
                // The pod's host /32 is in the kernel before the answer.
                self.metrics.routes_applied.inc();
                answer(&self.metrics, call, v)
            }
            Err(v) => {
                tracing::warn!(%handle, error = %v, "ADD failed; releasing its address");
                self.ipam.release_handle(&handle);
                self.after_commit.push((call, v));
            }
        }
    }

    /// The host interface of the pod holding `addr` (named from the allocation's pod).
    fn host_veth_of(&self, addr: IpAddr) -> Option<String> {
        let prefix = self
            .nns
            .as_ref()
            .and_then(|n| n.spec.dataplane.interface_prefix.clone())
            .unwrap_or_else(|| "cali".into());
        let owner = self.ipam.address_owner(addr)?;
        ocelot::naming::host_veth_name(&prefix, owner.namespace()?, owner.pod()?).ok()
    }

    fn on_del(&mut self, call: Call) {
        let handle = ocelot::ipam::pod_handle(&call.req.container_id);
        let addrs = self.ipam.handle_addresses(&handle);
        let Some(&addr) = addrs.first() else {
            // Unknown or already released: DEL is idempotent.
            return answer(&self.metrics, call, Value::Null);
        };
        let veth = self.host_veth_of(addr);
        let (netlink, tx) = (self.netlink.clone(), self.tx.clone());
        tokio::spawn(async move {
            remove_host_side(&netlink, veth, addr, "DEL").await;
            let _ = tx.send(Msg::DelDone { handle, call }).await;
        });
    }

    pub fn on_del_done(&mut self, handle: String, call: Call) {
        self.ipam.release_handle(&handle);
        self.after_commit.push((call, Value::Null));
    }

    fn on_check(&mut self, call: Call) {
        let handle = ocelot::ipam::pod_handle(&call.req.container_id);
        let Some(&addr) = self.ipam.handle_addresses(&handle).first() else {
            let v = error_reply(codes::CHECK_FAILED, "no address for the container", handle);
            return answer(&self.metrics, call, v);
        };
        let want = call
            .req
            .config
            .pointer("/prevResult/ips/0/address")
            .and_then(Value::as_str)
            .map(str::to_string);
        let have = format!("{addr}/32");
        if want.as_deref() != Some(have.as_str()) {
            let v = error_reply(
                codes::CHECK_FAILED,
                "address differs from prevResult",
                format!("stored {have}, prevResult {want:?}"),
            );
            return answer(&self.metrics, call, v);
        }
        let veth = call
            .req
            .config
            .pointer("/prevResult/interfaces/0/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (netlink, metrics) = (self.netlink.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let v = match addr {
                IpAddr::V4(v4) if carries(&netlink, &veth, v4).await => Value::Null,
                _ => error_reply(
                    codes::CHECK_FAILED,
                    "host route to the pod missing",
                    format!("{addr}/32 dev {veth}"),
                ),
            };
            answer(&metrics, call, v);
        });
    }

    fn on_gc(&mut self, call: Call) {
        let valid: HashSet<String> = call
            .req
            .config
            .get("cni.dev/valid-attachments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("containerID")?.as_str().map(ocelot::ipam::pod_handle))
                    .collect()
            })
            .unwrap_or_default();
        let me = self.settings.node.clone();
        let stale: HashSet<String> = self
            .ipam
            .blocks()
            .filter(|b| b.node() == Some(me.as_str()))
            .flat_map(|b| {
                b.allocations()
                    .filter_map(|(_, a)| a.handle().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .filter(|h| h.starts_with(POD_HANDLE_PREFIX) && !valid.contains(h))
            .collect();
        let mut interfaces = Vec::new();
        for h in &stale {
            tracing::info!(handle = %h, "GC: releasing an attachment the runtime no longer has");
            for addr in self.ipam.handle_addresses(h) {
                interfaces.push((self.host_veth_of(addr), addr));
            }
            self.ipam.release_handle(h);
        }
        let netlink = self.netlink.clone();
        tokio::spawn(async move {
            for (veth, addr) in interfaces {
                remove_host_side(&netlink, veth, addr, "GC").await;
            }
        });
        self.after_commit.push((call, Value::Null));
    }

    /// ADDs that waited for a block longer than allowed fail with what to check.
    pub fn expire_waiting(&mut self) {
        let now = Instant::now();
        let wait = self.settings.block_wait;
        let mut i = 0;
        while i < self.adds.len() {
            let expired = now >= self.adds[i].deadline;
            if let (true, Phase::WaitingForBlock(pool)) = (expired, &self.adds[i].phase) {
                let details = format!(
                    "node {} asked for a block of IPPool {pool} (NodeNetworkState status.blockDemand) and none arrived within {}s; check that ocelot-operator runs and the pool has free blocks",
                    self.settings.node,
                    wait.as_secs()
                );
                let add = self.adds.remove(i);
                answer(
                    &self.metrics,
                    add.call,
                    error_reply(codes::NO_ADDRESS, "no free address", details),
                );
            } else {
                i += 1;
            }
        }
    }
}

/// Deletes a pod's host interface (and with it its route), but only while it still carries
/// `addr`: the veth is named per pod, and a newer sandbox of the pod may own it by now.
async fn remove_host_side(
    netlink: &crate::routes::RouteNetlink,
    veth: Option<String>,
    addr: IpAddr,
    verb: &str,
) {
    if let (Some(veth), IpAddr::V4(v4)) = (veth, addr)
        && carries(netlink, &veth, v4).await
        && let Err(e) = pods::delete(netlink, &veth).await
    {
        tracing::warn!(%veth, error = %e, "{verb}: host interface not deleted");
    }
}

/// Whether the host routes `<addr>/32 dev <veth>`.
async fn carries(
    netlink: &crate::routes::RouteNetlink,
    veth: &str,
    addr: std::net::Ipv4Addr,
) -> bool {
    let Ok(routes) = netlink.list(ocelot::routes::RT_TABLE_MAIN).await else {
        return false;
    };
    let want = ocelot::routes::Route::pod(addr, veth);
    routes
        .iter()
        .any(|r| r.dst == want.dst && r.kind == want.kind)
}

/// The JSON line for an unreadable request.
pub fn undecodable(e: &serde_json::Error) -> Value {
    json!({"code": Code::Decode as u32, "msg": "cannot decode the plugin's request", "details": e.to_string()})
}
