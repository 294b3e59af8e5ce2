//! CNI ADD on the agent's side. Pick the pool (pod annotation > namespace annotation > node
//! selector, in the core), assign from the node's own blocks, and make the pod's interfaces
//! while the group commit stores the address: the answer goes out when both are done, so an ADD
//! costs the longer of the two, not their sum. When the write loses (a conflict), the interfaces
//! made for the lost address are deleted before the ADD is assigned again. When no block has
//! room the node reports demand and the call waits, bounded, for the operator's claim. Every
//! failure leaves no allocation and no interface behind.
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use ocelot::cni;
use ocelot::cni::codes;
use ocelot::cni::error_reply;
use ocelot::ipam::{AssignRequest, Assignment, Durability, Family, PodContext};
use ocelot::routes::Ownership;
use serde_json::Value;

use crate::agent::{Agent, Call, Msg, PodMeta};
use crate::calls::answer;
use crate::pods::{self, PodLink};

/// Where an ADD's address is.
pub enum Phase {
    /// To be assigned in the next pass.
    Queued,
    /// The node has no room; it asked for a block of this pool.
    WaitingForBlock(String),
    /// Assigned; waiting for the block write that stores it.
    Committing(Assignment),
    /// Stored in its IPAMBlock (this ADD's commit, or an earlier ADD of the same container).
    Stored(Ipv4Addr),
}

/// Where an ADD's interfaces are. At most one task works on a pod's interfaces at a time, so
/// its messages always belong to the current attempt.
pub enum Link {
    /// None made (or the last attempt's are gone).
    Idle,
    /// Being made for the assigned address.
    Making,
    /// Made: the pod interface's MAC, or the error reply (`pods::add` cleaned up after itself).
    Made(Result<String, Value>),
    /// Made for an address whose write was lost; being deleted.
    Undoing,
}

pub struct PendingAdd {
    pub call: Call,
    pub handle: String,
    pub namespace: String,
    pub pod: String,
    pub host_veth: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub phase: Phase,
    pub link: Link,
    pub deadline: Instant,
}

impl Agent {
    pub fn start_add(&mut self, call: Call, ns: &str, name: &str, meta: PodMeta) {
        let prefix = self.interface_prefix();
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
            link: Link::Idle,
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
                add.phase = Phase::Stored(v4);
                self.adds.push(add);
                return self.make_interfaces(self.adds.len() - 1, v4);
            }
        }
        self.adds.push(add);
    }

    /// Assigns every queued or waiting ADD from the node's own blocks and starts its interfaces.
    pub fn assign_pending(&mut self) {
        // A lost attempt's interfaces may still be in the making: its route to the lost address
        // could land after another pod's route to the same address and then go with its device.
        // So no address is handed out until every lost attempt is cleaned up (conflicts are rare:
        // the agent is its blocks' only writer of allocations).
        let cleaning = self.adds.iter().any(|a| {
            matches!(a.phase, Phase::Queued | Phase::WaitingForBlock(_))
                && !matches!(a.link, Link::Idle)
        });
        if cleaning {
            return;
        }
        let node_labels = self.node_labels();
        let now = SystemTime::now();
        let mut failed = Vec::new();
        let mut links = Vec::new();
        for (i, add) in self.adds.iter_mut().enumerate() {
            let assignable = matches!(add.phase, Phase::Queued | Phase::WaitingForBlock(_));
            if !assignable {
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
                Ok(a) => {
                    if let IpAddr::V4(v4) = a.address {
                        links.push((i, v4));
                    }
                    add.phase = Phase::Committing(a);
                }
                Err(v) => failed.push((i, v)),
            }
        }
        // The interfaces are made while the commit is in flight.
        for (i, v4) in links {
            self.make_interfaces(i, v4);
        }
        for (i, v) in failed.into_iter().rev() {
            let add = self.adds.remove(i);
            answer(&self.metrics, add.call, v);
        }
    }

    /// Stored writes advance their ADDs; lost ones go back to the queue (their interfaces, if
    /// any, are deleted first). ADDs with both parts done answer.
    pub fn dispatch_committed(&mut self) {
        let mut undo = Vec::new();
        let mut v6 = Vec::new();
        for (i, add) in self.adds.iter_mut().enumerate() {
            let Phase::Committing(a) = &add.phase else {
                continue;
            };
            match self.ipam.durability(&a.ticket) {
                Durability::Committed => match a.address {
                    IpAddr::V4(v4) => add.phase = Phase::Stored(v4),
                    IpAddr::V6(_) => v6.push(i),
                },
                Durability::Lost => {
                    add.phase = Phase::Queued;
                    match &add.link {
                        Link::Made(Ok(_)) => undo.push(i),
                        Link::Made(Err(_)) => add.link = Link::Idle,
                        // Undone when the task reports (see `on_interfaces`).
                        Link::Making | Link::Undoing | Link::Idle => {}
                    }
                }
                Durability::Pending => {}
            }
        }
        for i in undo {
            self.undo_interfaces(i);
        }
        for i in v6.into_iter().rev() {
            let add = self.adds.remove(i);
            self.ipam.release_handle(&add.handle);
            let v = error_reply(
                codes::NO_ADDRESS,
                "IPv6 pod addresses are not supported",
                add.handle.clone(),
            );
            self.after_commit.push((add.call, v));
        }
        self.finish_ready();
        let waiting: std::collections::HashSet<&str> = self
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

    /// Answers the ADDs whose address is stored and whose interfaces are done.
    fn finish_ready(&mut self) {
        let mut i = 0;
        while i < self.adds.len() {
            let done = matches!(
                (&self.adds[i].phase, &self.adds[i].link),
                (Phase::Stored(_), Link::Made(_))
            );
            if !done {
                i += 1;
                continue;
            }
            let add = self.adds.remove(i);
            let (Phase::Stored(address), Link::Made(made)) = (add.phase, add.link) else {
                unreachable!("matched above")
            };
            match made {
                Ok(mac) => {
                    let req = &add.call.req;
                    let version = req
                        .config
                        .get("cniVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("1.1.0");
                    let v = cni::add_result(
                        version,
                        &add.host_veth,
                        &req.ifname,
                        &req.netns,
                        &mac,
                        address,
                    );
                    // The pod's host /32 is in the kernel before the answer.
                    self.metrics.routes_applied.inc();
                    answer(&self.metrics, add.call, v);
                }
                Err(v) => {
                    tracing::warn!(handle = %add.handle, error = %v, "ADD failed; releasing its address");
                    self.ipam.release_handle(&add.handle);
                    self.after_commit.push((add.call, v));
                }
            }
        }
    }

    pub(crate) fn interface_prefix(&self) -> String {
        self.nns
            .as_ref()
            .and_then(|n| n.spec.dataplane.interface_prefix.clone())
            .unwrap_or_else(|| "cali".into())
    }

    /// Starts the pod's veth, addresses and routes for `address`; the task reports with
    /// [`Msg::Interfaces`].
    fn make_interfaces(&mut self, i: usize, address: Ipv4Addr) {
        let auto_mtu = self.overlay.pod_mtu();
        let add = &mut self.adds[i];
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
            .or(auto_mtu)
            .unwrap_or(cni::DEFAULT_MTU);
        let link = PodLink {
            host_veth: add.host_veth.clone(),
            ifname: add.call.req.ifname.clone(),
            netns: PathBuf::from(&add.call.req.netns),
            address,
            mtu,
            proc_sys: self.settings.proc_sys.clone(),
        };
        add.link = Link::Making;
        let (netlink, tx, handle) = (self.netlink.clone(), self.tx.clone(), add.handle.clone());
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = pods::add(&netlink, &own, &link).await.map_err(|e| {
                error_reply(codes::DATAPLANE, "pod interfaces not made", e.to_string())
            });
            metrics
                .interfaces_seconds
                .observe(started.elapsed().as_secs_f64());
            let _ = tx.send(Msg::Interfaces { handle, result }).await;
        });
    }

    /// Deletes the interfaces a lost attempt made; the task reports with [`Msg::Undone`].
    fn undo_interfaces(&mut self, i: usize) {
        let add = &mut self.adds[i];
        add.link = Link::Undoing;
        let (netlink, tx) = (self.netlink.clone(), self.tx.clone());
        let (handle, veth) = (add.handle.clone(), add.host_veth.clone());
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            match pods::delete(&netlink, &veth).await {
                Ok(()) => {
                    metrics.interfaces_undone.inc();
                }
                Err(e) => {
                    tracing::warn!(%veth, error = %e, "interfaces of a lost assignment not deleted")
                }
            }
            let _ = tx.send(Msg::Undone { handle }).await;
        });
    }

    pub fn on_interfaces(&mut self, handle: &str, result: Result<String, Value>) {
        let Some(i) = self
            .adds
            .iter()
            .position(|a| a.handle == handle && matches!(a.link, Link::Making))
        else {
            tracing::warn!(%handle, "interfaces made for an ADD that is gone");
            return;
        };
        let add = &mut self.adds[i];
        match (&add.phase, result) {
            (Phase::Committing(_) | Phase::Stored(_), r) => add.link = Link::Made(r),
            // The write was lost while the interfaces were made.
            (_, Ok(_)) => self.undo_interfaces(i),
            (_, Err(_)) => add.link = Link::Idle,
        }
        self.finish_ready();
    }

    pub fn on_undone(&mut self, handle: &str) {
        if let Some(add) = self
            .adds
            .iter_mut()
            .find(|a| a.handle == handle && matches!(a.link, Link::Undoing))
        {
            add.link = Link::Idle;
        }
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
