//! Leader election on a `coordination.k8s.io` Lease, as client-go's leaderelection does it: the
//! holder renews `renewTime` every `renew` interval; another replica takes the Lease once it has
//! not been renewed for `leaseDurationSeconds`. Every write to the Lease is a compare-and-swap on
//! its resourceVersion, so two replicas never both win. A leader that cannot renew within the
//! lease duration stops writing at once.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::apply::FIELD_MANAGER;

/// Where and how long.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Whether this replica holds the Lease now. Cheap to check before every write pass.
#[derive(Clone, Debug)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// Always leader (election off).
    pub fn always() -> Leadership {
        Leadership(Arc::new(AtomicBool::new(true)))
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Starts the election loop; it runs until the task is aborted.
pub fn spawn(client: Client, cfg: LeaseConfig) -> (Leadership, tokio::task::JoinHandle<()>) {
    let flag = Leadership(Arc::new(AtomicBool::new(false)));
    let out = flag.clone();
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        // Renew at a third of the duration, as client-go's defaults (15 s / 10 s deadline / 2 s retry) allow.
        let renew = (cfg.duration / 3).max(Duration::from_millis(500));
        let mut last_ok: Option<Instant> = None;
        loop {
            let held = match try_hold(&api, &cfg).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "lease request failed");
                    // Keep leading only while the last renewal is younger than the duration.
                    last_ok.is_some_and(|t| t.elapsed() < cfg.duration)
                }
            };
            if held {
                last_ok = Some(Instant::now());
            } else {
                last_ok = None;
            }
            let was = flag.0.swap(held, Ordering::SeqCst);
            if held != was {
                if held {
                    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
                } else {
                    tracing::warn!(identity = %cfg.identity, lease = %cfg.name, "lost the lease: writes stop");
                }
            }
            tokio::time::sleep(renew).await;
        }
    });
    (out, task)
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One round: take or renew the Lease if possible; Ok(true) when we hold it afterwards.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> kube::Result<bool> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let secs = cfg.duration.as_secs().max(1) as i32;
    let current = match api.get_opt(&cfg.name).await? {
        Some(l) => l,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&pp, &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(1) as u64);
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    let expired = free
        || match &spec.renew_time {
            Some(t) => {
                let age = jiff::Timestamp::now().duration_since(t.0);
                // A renewal in the future (clock skew) is not expired.
                !age.is_negative() && age.unsigned_abs() >= duration
            }
            None => true,
        };
    if !mine && !expired {
        return Ok(false);
    }
    let mut next = current.clone();
    let mut s = spec.clone();
    if !mine {
        s.holder_identity = Some(cfg.identity.clone());
        s.acquire_time = Some(now());
        s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        tracing::info!(previous = ?spec.holder_identity, "taking over an expired lease");
    }
    s.lease_duration_seconds = Some(secs);
    s.renew_time = Some(now());
    next.spec = Some(s);
    // replace carries metadata.resourceVersion: a concurrent writer makes this fail with 409.
    match api.replace(&cfg.name, &pp, &next).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up on a clean shutdown, so the next replica need not wait for it to expire.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.replace(&cfg.name, &pp, &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "lease released"),
        Err(e) => tracing::warn!(error = %e, "could not release the lease; it expires on its own"),
    }
}
