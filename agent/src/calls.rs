//! The CNI verbs on the agent's side (ADD's own path is in `add.rs`). DEL: interfaces first,
//! then the address. CHECK: the stored address and the host route. GC: releases the pods not in
//! the runtime's list. STATUS: the agent's readiness. Every failure leaves no allocation behind.
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use ocelot::cni::{self, Code, Command, codes, error_reply};
use ocelot::ipam::POD_HANDLE_PREFIX;
use serde_json::{Value, json};

use crate::agent::{Agent, Call, Msg, PodMeta};
use crate::metrics::Metrics;
use crate::pods;

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

    /// The host interface of the pod holding `addr` (named from the allocation's pod).
    fn host_veth_of(&self, addr: IpAddr) -> Option<String> {
        let prefix = self.interface_prefix();
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
