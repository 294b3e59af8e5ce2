//! NetworkPolicy is not enforced yet (no policy dataplane): say so on each policy, once, with a
//! Warning Event, rather than let users believe their pods are isolated. Calico enforces them;
//! this is the gap a migrating user must know about.
use crate::ctx::{Ctx, object_key};
use crate::feed::Feed;

pub const REASON: &str = "NotEnforced";
const KIND: &str = "NetworkPolicy";

/// One Warning Event per NetworkPolicy while the operator leads; a deleted policy is forgotten,
/// so one re-created under its name is reported again.
pub async fn report_unenforced(ctx: &mut Ctx, feed: &Feed) {
    for key in &feed.policies {
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some(KIND.into()),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        };
        let note = format!(
            "NetworkPolicy {ns}/{name} is not enforced: Ocelot does not filter pod traffic yet, so the pods it selects accept and send all traffic"
        );
        ctx.warn_once(regarding, REASON, "", note).await;
    }
    let live: std::collections::BTreeSet<String> = feed
        .policies
        .iter()
        .filter_map(|k| k.split_once('/'))
        .map(|(ns, name)| object_key(KIND, Some(ns), name))
        .collect();
    ctx.memory
        .warned
        .retain(|(o, r, _)| r != REASON || live.contains(o));
}
