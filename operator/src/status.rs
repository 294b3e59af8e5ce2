//! Writes the status of source objects (IPPool, BGPPeer, BGPConfiguration, FelixConfiguration):
//! only the objects the core's roll-up marked dirty, each at most once per pass, and only when the
//! status differs. Server-side apply on the status subresource as `ocelot-operator`: never a
//! user's spec or metadata. Set fields that are not acted on yet get a `Supported=False`
//! condition and one Warning Event per field.
use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use ocelot::api::{BGPConfiguration, BGPPeer, Condition, FelixConfiguration};
use ocelot::bgp::support::{NOT_SUPPORTED_YET, Unsupported, config_unsupported, peer_unsupported};
use ocelot::desired::support::felix_unsupported;
use ocelot::rollup::status::{bgp_config_status, felix_status, kind, peer_status};
use ocelot::rollup::{NodeTotals, Source};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::FIELD_MANAGER;
use crate::ctx::{Ctx, reference};
use crate::feed::Feed;
use crate::pools;

/// Status writes of one pass, by kind.
#[derive(Debug, Default)]
pub struct Writes {
    pub pools: usize,
    pub peers: usize,
    pub bgp_configs: usize,
    pub felix: usize,
}

impl Writes {
    pub fn total(&self) -> usize {
        self.pools + self.peers + self.bgp_configs + self.felix
    }
}

/// Condition times in whole seconds, as the API server stores them: what is written compares
/// equal to what is read back.
fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// One pass over the dirty source objects. A failed write marks its object dirty again.
pub async fn reconcile(ctx: &mut Ctx, feed: &mut Feed) -> Writes {
    let dirty = feed.rollup.take_dirty();
    let mut w = Writes::default();
    if dirty.is_empty() {
        return w;
    }
    let now = now();
    let mut failed: Vec<Source> = Vec::new();
    let pools: BTreeSet<String> = if dirty.contains(&Source::AllPools) {
        feed.pools.keys().cloned().collect()
    } else {
        dirty
            .iter()
            .filter_map(|s| match s {
                Source::Pool(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    };
    for name in pools {
        match pools::write_status(ctx, feed, &name, &now).await {
            Ok(n) => w.pools += n,
            Err(()) => failed.push(Source::Pool(name)),
        }
    }
    for source in dirty {
        let result = match &source {
            Source::Peer(name) => peer(ctx, feed, name, &now).await.map(|n| w.peers += n),
            Source::BgpConfig(name) => bgp_config(ctx, feed, name, &now)
                .await
                .map(|n| w.bgp_configs += n),
            Source::Felix(name) => felix(ctx, feed, name, &now).await.map(|n| w.felix += n),
            Source::Pool(_) | Source::AllPools => Ok(()),
        };
        if result.is_err() {
            failed.push(source);
        }
    }
    for s in failed {
        feed.rollup.mark(s);
    }
    w
}

async fn peer(ctx: &mut Ctx, feed: &Feed, name: &str, now: &Time) -> Result<usize, ()> {
    let Some(p) = feed.peers.get(name) else {
        ctx.memory.status_sent.remove(&format!("BGPPeer/{name}"));
        return Ok(0);
    };
    let old = p.status.as_ref();
    let want = peer_status(
        p.metadata.generation,
        &p.spec,
        feed.rollup.peer(name),
        old,
        now,
    );
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    warn_unsupported(
        ctx,
        "BGPPeer",
        name,
        p.metadata.uid.as_deref(),
        &peer_unsupported(&p.spec),
        old_conditions,
        &want.conditions,
    )
    .await;
    if old == Some(&want) {
        return Ok(0);
    }
    let rv = p.metadata.resource_version.as_deref();
    write::<BGPPeer>(ctx, name, rv, &want)
        .await
        .map(usize::from)
}

async fn bgp_config(ctx: &mut Ctx, feed: &Feed, name: &str, now: &Time) -> Result<usize, ()> {
    let Some(c) = feed.bgp_configs.get(name) else {
        ctx.memory
            .status_sent
            .remove(&format!("BGPConfiguration/{name}"));
        return Ok(0);
    };
    let old = c.status.as_ref();
    let want = bgp_config_status(name, c.metadata.generation, &c.spec, old, now);
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    warn_unsupported(
        ctx,
        "BGPConfiguration",
        name,
        c.metadata.uid.as_deref(),
        &config_unsupported(&c.spec),
        old_conditions,
        &want.conditions,
    )
    .await;
    if old == Some(&want) {
        return Ok(0);
    }
    let rv = c.metadata.resource_version.as_deref();
    write::<BGPConfiguration>(ctx, name, rv, &want)
        .await
        .map(usize::from)
}

async fn felix(ctx: &mut Ctx, feed: &Feed, name: &str, now: &Time) -> Result<usize, ()> {
    let Some(f) = feed.felix_configs.get(name) else {
        ctx.memory
            .status_sent
            .remove(&format!("FelixConfiguration/{name}"));
        return Ok(0);
    };
    let totals = if name == "default" {
        feed.rollup.totals()
    } else if let Some(node) = name.strip_prefix("node.") {
        NodeTotals::of(feed.rollup.node(node))
    } else {
        NodeTotals::default()
    };
    let old = f.status.as_ref();
    let want = felix_status(f.metadata.generation, &f.spec, totals, old, now);
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    warn_unsupported(
        ctx,
        "FelixConfiguration",
        name,
        f.metadata.uid.as_deref(),
        &felix_unsupported(&f.spec),
        old_conditions,
        &want.conditions,
    )
    .await;
    if old == Some(&want) {
        return Ok(0);
    }
    let rv = f.metadata.resource_version.as_deref();
    write::<FelixConfiguration>(ctx, name, rv, &want)
        .await
        .map(usize::from)
}

/// One Warning Event per unsupported field, when the stored `Supported` condition does not say
/// it yet (so a restart finding it already reported sends none).
pub async fn warn_unsupported(
    ctx: &mut Ctx,
    kind_name: &str,
    name: &str,
    uid: Option<&str>,
    unsupported: &[Unsupported],
    old: &[Condition],
    want: &[Condition],
) {
    if unsupported.is_empty() {
        ctx.clear_warnings(kind_name, name, NOT_SUPPORTED_YET);
        return;
    }
    let find = |cs: &[Condition]| {
        cs.iter()
            .find(|c| c.type_ == kind::SUPPORTED)
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    if find(old) == find(want) {
        return;
    }
    for u in unsupported {
        let r = reference("projectcalico.org/v3", kind_name, name, uid);
        ctx.warn_once(
            r,
            NOT_SUPPORTED_YET,
            u.field,
            format!("{kind_name} {name:?}: {u}"),
        )
        .await;
    }
}

/// Server-side applies `status` to the status subresource of the cluster-scoped object `name`.
/// Skipped when the same status was already sent while the object was at `observed_rv` (the watch
/// has not delivered our write yet). Ok(true) when written; Err after logging the failure.
pub async fn write<K>(
    ctx: &mut Ctx,
    name: &str,
    observed_rv: Option<&str>,
    status: &impl Serialize,
) -> Result<bool, ()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let dt = K::DynamicType::default();
    let kind_name = K::kind(&dt).to_string();
    let status = serde_json::to_value(status).map_err(|e| {
        tracing::error!(kind = %kind_name, %name, error = %e, "status does not serialize");
    })?;
    let key = format!("{kind_name}/{name}");
    let in_flight = ctx
        .memory
        .status_sent
        .get(&key)
        .is_some_and(|(rv, sent)| rv.as_deref() == observed_rv && *sent == status);
    if in_flight {
        return Ok(false);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&dt),
        "kind": kind_name,
        "metadata": { "name": name },
        "status": status,
    });
    let api: Api<K> = Api::all(ctx.client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(name, &pp, &Patch::Apply(&body)).await {
        Ok(_) => {
            tracing::info!(kind = %kind_name, %name, "status applied");
            ctx.memory
                .status_sent
                .insert(key, (observed_rv.map(str::to_string), status));
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(kind = %kind_name, %name, error = %e, "status write failed; will retry");
            Err(())
        }
    }
}
